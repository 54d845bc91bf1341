//! Upstream request ids for one multiplexed connection: a slab of waiters whose keys carry a
//! generation, so an id is never reused while a late response for it could still arrive.
//!
//! id = (generation << 16) | (slot + 1): never 0, fits Bolt's u32, and a response carrying an
//! old generation finds nothing (it is dropped and counted as late).

use slab::Slab;

/// Most requests in flight on one upstream connection.
pub const MAX_IN_FLIGHT: usize = 0xFFFF;

/// Waiters keyed by upstream id.
pub struct InFlight<T> {
    slots: Slab<T>,
    generations: Vec<u16>,
}

impl<T> InFlight<T> {
    /// An empty table.
    pub fn new() -> InFlight<T> {
        InFlight {
            slots: Slab::new(),
            generations: Vec::new(),
        }
    }

    /// Registers `entry` and returns its id, or gives it back when the table is full.
    pub fn insert(&mut self, entry: T) -> Result<u32, T> {
        if self.slots.len() >= MAX_IN_FLIGHT {
            return Err(entry);
        }
        let key = self.slots.insert(entry);
        if key >= self.generations.len() {
            self.generations.resize(key + 1, 0);
        }
        Ok(((self.generations[key] as u32) << 16) | (key as u32 + 1))
    }

    /// Removes and returns the entry for `id`, if it is live (same slot and generation).
    pub fn remove(&mut self, id: u64) -> Option<T> {
        let key = self.live_key(id)?;
        self.generations[key] = self.generations[key].wrapping_add(1);
        Some(self.slots.remove(key))
    }

    /// The entry for `id`, if it is live.
    pub fn get(&self, id: u64) -> Option<&T> {
        self.slots.get(self.live_key(id)?)
    }

    /// The entry for `id`, if it is live, to change.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut T> {
        let key = self.live_key(id)?;
        self.slots.get_mut(key)
    }

    /// The slot `id` names, when it holds an entry of `id`'s generation.
    fn live_key(&self, id: u64) -> Option<usize> {
        let id = u32::try_from(id).ok()?;
        let key = (id & 0xFFFF).checked_sub(1)? as usize;
        let generation = (id >> 16) as u16;
        (self.generations.get(key) == Some(&generation) && self.slots.contains(key)).then_some(key)
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when nothing is in flight.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Removes and returns every live entry (connection lost).
    pub fn drain(&mut self) -> Vec<T> {
        for (key, _) in self.slots.iter() {
            self.generations[key] = self.generations[key].wrapping_add(1);
        }
        self.slots.drain().collect()
    }
}

impl<T> Default for InFlight<T> {
    fn default() -> Self {
        InFlight::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_nonzero_and_found_once() {
        let mut t = InFlight::new();
        let a = t.insert("a").unwrap();
        let b = t.insert("b").unwrap();
        assert!(a != 0 && b != 0 && a != b);
        assert_eq!(t.remove(a as u64), Some("a"));
        assert_eq!(t.remove(a as u64), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn a_reused_slot_gets_a_new_id_so_late_responses_miss() {
        let mut t = InFlight::new();
        let old = t.insert(1).unwrap();
        t.remove(old as u64);
        let new = t.insert(2).unwrap();
        assert_ne!(old, new);
        assert_eq!(t.remove(old as u64), None, "late response must not match");
        assert_eq!(t.remove(new as u64), Some(2));
    }

    #[test]
    fn drain_invalidates_every_id() {
        let mut t = InFlight::new();
        let ids: Vec<u32> = (0..10).map(|i| t.insert(i).unwrap()).collect();
        assert_eq!(t.drain().len(), 10);
        for id in ids {
            assert_eq!(t.remove(id as u64), None);
        }
    }

    #[test]
    fn garbage_ids_find_nothing() {
        let mut t: InFlight<u8> = InFlight::new();
        t.insert(1).unwrap();
        for id in [0u64, 0x1_0000, u64::MAX, 0xFFFF_FFFF] {
            assert_eq!(t.remove(id), None);
        }
    }
}
