//! A process-wide limit on calls in flight: one atomic counter shared by every worker, and an
//! RAII slot per admitted call that gives its place back exactly once, when dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// At most `max` calls at once, across all threads.
#[derive(Debug)]
pub struct ConcurrencyLimit {
    active: AtomicU64,
    max: u64,
}

/// One admitted call's place under a [`ConcurrencyLimit`]; released when dropped.
#[derive(Debug)]
#[must_use = "the slot is released as soon as it is dropped"]
pub struct ConcurrencySlot {
    limit: Arc<ConcurrencyLimit>,
}

impl ConcurrencyLimit {
    /// A limit of `max` calls in flight (0 admits nothing).
    pub fn new(max: u64) -> Arc<ConcurrencyLimit> {
        Arc::new(ConcurrencyLimit {
            active: AtomicU64::new(0),
            max,
        })
    }

    /// A slot, or `None` when `max` calls already hold one.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ConcurrencySlot> {
        let mut current = self.active.load(Ordering::Relaxed);
        loop {
            if current >= self.max {
                return None;
            }
            match self.active.compare_exchange_weak(
                current,
                current + 1,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(self.slot()),
                Err(actual) => current = actual,
            }
        }
    }

    /// A slot whatever the count (monitor mode: the call goes ahead and is counted as in
    /// flight), and whether it is over the limit.
    pub fn acquire_over(self: &Arc<Self>) -> (ConcurrencySlot, bool) {
        let before = self.active.fetch_add(1, Ordering::Relaxed);
        (self.slot(), before >= self.max)
    }

    /// Calls holding a slot now.
    pub fn active(&self) -> u64 {
        self.active.load(Ordering::Relaxed)
    }

    /// The configured maximum.
    pub fn max(&self) -> u64 {
        self.max
    }

    fn slot(self: &Arc<Self>) -> ConcurrencySlot {
        ConcurrencySlot {
            limit: Arc::clone(self),
        }
    }
}

impl Drop for ConcurrencySlot {
    fn drop(&mut self) {
        self.limit.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_up_to_max_and_frees_on_drop() {
        let limit = ConcurrencyLimit::new(2);
        let a = limit.try_acquire().expect("first");
        let b = limit.try_acquire().expect("second");
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.active(), 2);
        drop(a);
        assert_eq!(limit.active(), 1);
        let c = limit.try_acquire().expect("a freed place");
        drop((b, c));
        assert_eq!(limit.active(), 0);
    }

    #[test]
    fn zero_admits_nothing() {
        let limit = ConcurrencyLimit::new(0);
        assert!(limit.try_acquire().is_none());
        assert_eq!(limit.active(), 0);
    }

    #[test]
    fn monitored_calls_count_as_in_flight_and_say_when_they_are_over() {
        let limit = ConcurrencyLimit::new(1);
        let (a, over_a) = limit.acquire_over();
        let (b, over_b) = limit.acquire_over();
        assert_eq!((over_a, over_b), (false, true));
        assert_eq!(limit.active(), 2);
        assert!(limit.try_acquire().is_none());
        drop((a, b));
        assert_eq!(limit.active(), 0);
    }

    #[test]
    fn threads_never_exceed_the_limit_and_leave_nothing_behind() {
        let limit = ConcurrencyLimit::new(3);
        let peak = AtomicU64::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        if let Some(slot) = limit.try_acquire() {
                            peak.fetch_max(limit.active(), Ordering::Relaxed);
                            drop(slot);
                        }
                    }
                });
            }
        });
        assert!(peak.load(Ordering::Relaxed) <= 3);
        assert_eq!(limit.active(), 0);
    }
}
