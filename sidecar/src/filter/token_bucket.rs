//! A token bucket shared by every worker thread, lock-free: the generic cell rate algorithm
//! (GCRA), which admits exactly what a bucket of `burst` tokens refilled at `rate` per second
//! admits, with its whole state in one `AtomicU64` (the "theoretical arrival time" of the next
//! call). A call is one compare-and-swap in the common case.
//!
//! Time is a parameter (nanoseconds on any monotonic scale), so tests can drive it.

use std::sync::atomic::{AtomicU64, Ordering};

/// A process-wide rate limit: `burst` calls at once, then `rate` calls per second.
#[derive(Debug)]
pub struct TokenBucket {
    /// When the bucket will next be full, minus nothing: a call arriving at `t` is admitted
    /// when `tat - tolerance <= t`, and then moves `tat` one interval later.
    tat: AtomicU64,
    /// Nanoseconds per token; `None` = rate 0 (nothing is ever admitted).
    interval: Option<u64>,
    /// `(burst - 1) * interval`: how far `tat` may run ahead of now.
    tolerance: u64,
}

impl TokenBucket {
    /// A bucket holding `burst` tokens (≥ 1), refilled with `rate_per_sec` tokens per second
    /// (≥ 0, finite; 0 admits nothing). The bucket starts full.
    pub fn new(rate_per_sec: f64, burst: u32) -> TokenBucket {
        let interval = (rate_per_sec > 0.0).then(|| {
            // At least 1 ns per token; rates below ~1 per 584 years saturate.
            let ns = (1e9 / rate_per_sec).round();
            if ns >= u64::MAX as f64 {
                u64::MAX
            } else {
                (ns as u64).max(1)
            }
        });
        let tolerance = interval.map_or(0, |i| i.saturating_mul(u64::from(burst.max(1) - 1)));
        TokenBucket {
            tat: AtomicU64::new(0),
            interval,
            tolerance,
        }
    }

    /// Takes one token at time `now` (nanoseconds); `false` when the bucket is empty.
    pub fn try_acquire(&self, now: u64) -> bool {
        self.reserve(now, 0).is_some()
    }

    /// Takes one token at time `now`, possibly one that will only exist later: returns how
    /// many nanoseconds the caller must wait before using it (0 = a token was there), or
    /// `None` when the wait would exceed `max_wait` (nothing is taken then).
    pub fn reserve(&self, now: u64, max_wait: u64) -> Option<u64> {
        let interval = self.interval?;
        let mut current = self.tat.load(Ordering::Relaxed);
        loop {
            let tat = current.max(now);
            let earliest = tat.saturating_sub(self.tolerance);
            let wait = earliest.saturating_sub(now);
            if wait > max_wait {
                return None;
            }
            let next = tat.saturating_add(interval);
            match self.tat.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(wait),
                Err(actual) => current = actual,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    fn admitted(bucket: &TokenBucket, now: u64, tries: usize) -> usize {
        (0..tries).filter(|_| bucket.try_acquire(now)).count()
    }

    #[test]
    fn a_full_bucket_admits_the_burst_at_once_and_no_more() {
        let b = TokenBucket::new(10.0, 10);
        assert_eq!(admitted(&b, 5 * SEC, 100), 10);
        // Same instant: still empty.
        assert_eq!(admitted(&b, 5 * SEC, 100), 0);
    }

    #[test]
    fn tokens_come_back_at_the_rate() {
        let b = TokenBucket::new(10.0, 10);
        let t0 = SEC;
        assert_eq!(admitted(&b, t0, 100), 10);
        // One interval (100 ms) later: one token; just before it: none.
        assert_eq!(admitted(&b, t0 + SEC / 10 - 1, 10), 0);
        assert_eq!(admitted(&b, t0 + SEC / 10, 10), 1);
        // A further 350 ms: three more.
        assert_eq!(admitted(&b, t0 + SEC / 10 + 350_000_000, 10), 3);
    }

    #[test]
    fn an_idle_bucket_refills_to_the_burst_and_no_further() {
        let b = TokenBucket::new(10.0, 5);
        assert_eq!(admitted(&b, SEC, 100), 5);
        // An hour idle is worth only `burst` tokens.
        assert_eq!(admitted(&b, 3600 * SEC, 100), 5);
    }

    #[test]
    fn over_any_window_admitted_is_at_most_burst_plus_rate_times_time() {
        let b = TokenBucket::new(50.0, 20);
        let start = 10 * SEC;
        let mut admitted_total = 0u64;
        // A call every millisecond for 3 s.
        for ms in 0..3000u64 {
            if b.try_acquire(start + ms * 1_000_000) {
                admitted_total += 1;
            }
        }
        // 20 + 50/s × 2.999 s = 169.95: exactly 169 fit.
        assert_eq!(admitted_total, 169);
    }

    #[test]
    fn fractional_rates_work() {
        let b = TokenBucket::new(0.5, 1);
        assert!(b.try_acquire(SEC));
        assert!(!b.try_acquire(2 * SEC));
        assert!(b.try_acquire(3 * SEC));
    }

    #[test]
    fn rate_zero_admits_nothing() {
        let b = TokenBucket::new(0.0, 10);
        assert_eq!(admitted(&b, SEC, 100), 0);
        assert_eq!(b.reserve(SEC, u64::MAX), None);
    }

    #[test]
    fn a_reservation_waits_for_a_future_token_within_the_queueing_bound() {
        // Throttling: burst 1, 10/s, wait up to 250 ms.
        let b = TokenBucket::new(10.0, 1);
        let t0 = SEC;
        assert_eq!(b.reserve(t0, 250_000_000), Some(0));
        assert_eq!(b.reserve(t0, 250_000_000), Some(100_000_000));
        assert_eq!(b.reserve(t0, 250_000_000), Some(200_000_000));
        // The next would wait 300 ms: refused, and nothing is taken.
        assert_eq!(b.reserve(t0, 250_000_000), None);
        assert_eq!(b.reserve(t0 + 50_000_000, 250_000_000), Some(250_000_000));
    }

    #[test]
    fn two_threads_share_one_budget() {
        // The budget is process-wide: two threads hammering the bucket at the same instants
        // get burst + rate × elapsed between them, not twice that.
        let b = TokenBucket::new(100.0, 10);
        let t0 = 7 * SEC;
        let per_step = |now: u64| {
            std::thread::scope(|s| {
                let a = s.spawn(|| admitted(&b, now, 1000));
                let c = s.spawn(|| admitted(&b, now, 1000));
                a.join().unwrap() + c.join().unwrap()
            })
        };
        assert_eq!(per_step(t0), 10);
        // 50 ms later: 5 tokens.
        assert_eq!(per_step(t0 + 50_000_000), 5);
        // 1 s later: refilled to the burst only.
        assert_eq!(per_step(t0 + 2 * SEC), 10);
        // Many interleaved steps: never more than one token per 10 ms overall.
        let mut total = 0;
        for step in 1..=100u64 {
            total += per_step(t0 + 2 * SEC + step * 10_000_000);
        }
        assert_eq!(total, 100);
    }
}
