//! Fixed-bucket latency histograms, one per worker shard: an observation is a bucket search
//! over a small constant table and two relaxed atomic adds on memory only its worker writes,
//! so recording shares nothing across threads. Scrapes merge the shards' snapshots.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the duration buckets, in microseconds (Prometheus `le`, inclusive), from
/// 25 µs (a sidecar hop on loopback) to 30 s (the longest sensible RPC timeout). Values above
/// the last bound count in the implicit `+Inf` bucket.
pub const DURATION_BOUNDS_US: [u64; 20] = [
    25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000, 15_000_000, 30_000_000,
];

const BUCKETS: usize = DURATION_BOUNDS_US.len() + 1;

/// A duration histogram with [`DURATION_BOUNDS_US`] buckets.
#[derive(Debug)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            counts: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let bucket = DURATION_BOUNDS_US.partition_point(|&bound| bound < us);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The counts as they are now.
    pub fn snapshot(&self) -> HistogramSnapshot {
        HistogramSnapshot {
            counts: std::array::from_fn(|i| self.counts[i].load(Ordering::Relaxed)),
            sum_us: self.sum_us.load(Ordering::Relaxed),
        }
    }
}

/// A histogram's counts at one moment; snapshots of several shards add up with
/// [`HistogramSnapshot::merge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// Observations per bucket (not cumulative), the last one `+Inf`.
    pub counts: [u64; BUCKETS],
    /// Sum of all observations, in microseconds.
    pub sum_us: u64,
}

impl Default for HistogramSnapshot {
    fn default() -> Self {
        HistogramSnapshot {
            counts: [0; BUCKETS],
            sum_us: 0,
        }
    }
}

impl HistogramSnapshot {
    /// Adds `other`'s observations to these.
    pub fn merge(&mut self, other: &HistogramSnapshot) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum_us += other.sum_us;
    }

    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(upper bound in seconds, observations in that bucket)` per bucket, the last bound
    /// `+Inf` (not cumulative).
    pub fn buckets_seconds(&self) -> Vec<(f64, u64)> {
        DURATION_BOUNDS_US
            .iter()
            .map(|&us| us as f64 / 1e6)
            .chain([f64::INFINITY])
            .zip(self.counts)
            .collect()
    }

    /// Sum of all observations in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_us as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_whose_bound_holds_them() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(25)); // le 25 (inclusive)
        h.observe(Duration::from_micros(26)); // le 50
        h.observe(Duration::from_millis(3)); // le 5 ms
        h.observe(Duration::from_secs(60)); // +Inf
        let s = h.snapshot();
        assert_eq!(s.counts[0], 1);
        assert_eq!(s.counts[1], 1);
        assert_eq!(s.counts[7], 1, "{:?}", s.counts);
        assert_eq!(s.counts[BUCKETS - 1], 1);
        assert_eq!(s.count(), 4);
        assert_eq!(s.sum_us, 25 + 26 + 3_000 + 60_000_000);
    }

    #[test]
    fn snapshots_of_shards_merge() {
        let (a, b) = (Histogram::default(), Histogram::default());
        a.observe(Duration::from_micros(80));
        b.observe(Duration::from_micros(90));
        b.observe(Duration::from_millis(2));
        let mut m = a.snapshot();
        m.merge(&b.snapshot());
        assert_eq!(m.count(), 3);
        assert_eq!(m.counts[2], 2);
        let buckets = m.buckets_seconds();
        assert_eq!(buckets.len(), BUCKETS);
        assert_eq!(buckets[2], (0.0001, 2));
        assert!(buckets[BUCKETS - 1].0.is_infinite());
        assert!((m.sum_seconds() - 0.00217).abs() < 1e-9);
    }
}
