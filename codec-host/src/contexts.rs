//! Context ids of one plugin instance (ABI §6.1): u32, non-zero, unique among the live
//! contexts, never the root id. Ids are slab keys shifted past 0 and the root id, so freed
//! ids are reused and the id space stays dense.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use slab::Slab;

/// The live context ids of one instance, with lifetime counters.
#[derive(Debug)]
pub(crate) struct ContextIds {
    live: Slab<()>,
    root: u32,
    created: u64,
    deleted: u64,
    live_max: usize,
    /// Ids kept for reuse (allocated here, alive in the guest, holding no frame): not
    /// counted as live.
    pooled: usize,
}

impl ContextIds {
    /// No live contexts; `root` (non-zero) is never handed out.
    pub(crate) fn new(root: u32) -> ContextIds {
        ContextIds {
            live: Slab::new(),
            root,
            created: 0,
            deleted: 0,
            live_max: 0,
            pooled: 0,
        }
    }

    fn id_of(&self, key: usize) -> Option<u32> {
        let id = u32::try_from(key).ok()?.checked_add(1)?;
        if id >= self.root {
            id.checked_add(1)
        } else {
            Some(id)
        }
    }

    fn key_of(&self, id: u32) -> Option<usize> {
        if id == 0 || id == self.root {
            return None;
        }
        let key = if id > self.root { id - 2 } else { id - 1 };
        usize::try_from(key).ok()
    }

    /// Reserves a fresh id, or `None` when the id space is exhausted.
    pub(crate) fn allocate(&mut self) -> Option<u32> {
        let id = self.id_of(self.live.vacant_key())?;
        self.live.insert(());
        self.created += 1;
        self.live_max = self.live_max.max(self.live());
        Some(id)
    }

    /// Counts live id `id` as put aside for reuse (released, as far as the counters go; the
    /// id stays taken). False when it is not live.
    pub(crate) fn pool(&mut self, id: u32) -> bool {
        if !self.key_of(id).is_some_and(|k| self.live.contains(k)) {
            return false;
        }
        self.pooled += 1;
        self.deleted += 1;
        true
    }

    /// Counts a pooled id as in use again (created, as far as the counters go).
    pub(crate) fn unpool(&mut self) {
        self.pooled = self.pooled.saturating_sub(1);
        self.created += 1;
        self.live_max = self.live_max.max(self.live());
    }

    /// Frees `id`; false if it was not live (then nothing changes).
    /// Frees `id` (deleted in the guest). A pooled id is freed through [`ContextIds::unpool`]
    /// first.
    pub(crate) fn release(&mut self, id: u32) -> bool {
        match self.key_of(id) {
            Some(key) if self.live.contains(key) => {
                self.live.remove(key);
                self.deleted += 1;
                true
            }
            _ => false,
        }
    }

    /// Whether `id` is live.
    #[cfg(test)]
    pub(crate) fn is_live(&self, id: u32) -> bool {
        self.key_of(id).is_some_and(|k| self.live.contains(k))
    }

    /// Number of live contexts.
    pub(crate) fn live(&self) -> usize {
        self.live.len() - self.pooled
    }

    /// The most contexts live at once so far.
    pub(crate) fn live_max(&self) -> usize {
        self.live_max
    }

    /// Contexts created so far.
    pub(crate) fn created(&self) -> u64 {
        self.created
    }

    /// Contexts deleted so far.
    pub(crate) fn deleted(&self) -> u64 {
        self.deleted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_skip_zero_and_root_and_are_reused() {
        let mut ids = ContextIds::new(2);
        let a = ids.allocate().unwrap();
        let b = ids.allocate().unwrap();
        let c = ids.allocate().unwrap();
        assert_eq!((a, b, c), (1, 3, 4));
        assert!(ids.release(b));
        assert!(!ids.release(b));
        assert!(!ids.release(2));
        assert!(!ids.release(0));
        assert_eq!(ids.allocate(), Some(3));
        assert_eq!(ids.live(), 3);
        assert_eq!((ids.created(), ids.deleted()), (4, 1));
    }

    #[test]
    fn negative_root_ids_work() {
        // root_id is an i32 in MOSN's config; -1 arrives as u32::MAX.
        let mut ids = ContextIds::new(u32::MAX);
        assert_eq!(ids.allocate(), Some(1));
        assert!(ids.is_live(1));
        assert!(!ids.is_live(u32::MAX));
    }

    #[test]
    fn many_ids_are_unique() {
        let mut ids = ContextIds::new(1);
        let all: Vec<u32> = (0..1000).map(|_| ids.allocate().unwrap()).collect();
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 1000);
        assert!(!all.contains(&0) && !all.contains(&1));
    }
}
