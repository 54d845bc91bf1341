//! Outcome recording for a load-generator run (HDR histogram of latencies plus error counts)
//! and the JSON report it turns into.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// Largest latency the histograms track (anything longer is clamped): 10 minutes.
const MAX_TRACKED_NS: u64 = 600_000_000_000;

/// Percentiles the report lists as a curve (for plots).
pub const CURVE_PERCENTILES: [f64; 24] = [
    0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 92.5, 95.0, 97.0, 98.0,
    99.0, 99.5, 99.8, 99.9, 99.95, 99.99, 99.999, 100.0,
];

/// A latency histogram in nanoseconds, 3 significant digits.
#[derive(Debug, Clone)]
pub struct LatencyHistogram(Histogram<u64>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram(
            Histogram::new_with_bounds(1, MAX_TRACKED_NS, 3)
                .expect("static histogram bounds are valid"),
        )
    }
}

impl LatencyHistogram {
    /// Records one latency.
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0.saturating_record(ns.clamp(1, MAX_TRACKED_NS));
    }

    /// Adds another histogram's counts.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        // Same bounds on both sides, so adding cannot fail.
        let _ = self.0.add(&other.0);
    }

    /// Number of recorded values.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// True when nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Summary in microseconds.
    pub fn summary(&self) -> LatencySummary {
        let us = |ns: u64| ns as f64 / 1000.0;
        let h = &self.0;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            min: us(h.min()),
            mean: h.mean() / 1000.0,
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p999: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
        }
    }

    /// `(percentile, µs)` at each of [`CURVE_PERCENTILES`].
    pub fn curve(&self) -> Vec<(f64, f64)> {
        if self.0.is_empty() {
            return Vec::new();
        }
        CURVE_PERCENTILES
            .iter()
            .map(|&p| (p, self.0.value_at_quantile(p / 100.0) as f64 / 1000.0))
            .collect()
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    /// Values recorded.
    pub count: u64,
    /// Smallest.
    pub min: f64,
    /// Mean.
    pub mean: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
}

/// Failed calls by cause.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// Responses with a non-zero status, by status value.
    pub status: BTreeMap<u16, u64>,
    /// Calls without an answer within the timeout.
    pub timeouts: u64,
    /// Calls lost to a connection failure (including failed reconnects).
    pub connection: u64,
    /// Responses that matched no outstanding call (unknown or duplicate id).
    pub unexpected: u64,
}

impl ErrorCounts {
    /// Failed calls (status errors + timeouts + connection failures); `unexpected` responses
    /// are not calls and are not included.
    pub fn failed_calls(&self) -> u64 {
        self.status.values().sum::<u64>() + self.timeouts + self.connection
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: &ErrorCounts) {
        for (s, n) in &other.status {
            *self.status.entry(*s).or_default() += n;
        }
        self.timeouts += other.timeouts;
        self.connection += other.connection;
        self.unexpected += other.unexpected;
    }
}

/// Everything one connection (or one run, after merging) measured.
#[derive(Debug, Clone, Default)]
pub struct Recorder {
    /// Latency of successful measured calls.
    pub latency: LatencyHistogram,
    /// Open loop: how late each measured call went out versus its schedule.
    pub send_lag: LatencyHistogram,
    /// Measured calls sent.
    pub sent: u64,
    /// Every call sent, warm-up and drain included.
    pub total_sent: u64,
    /// Measured calls answered with status 0.
    pub ok: u64,
    /// Measured calls that failed.
    pub errors: ErrorCounts,
}

impl Recorder {
    /// Records an answered call.
    pub fn answered(&mut self, status: u16, latency: Duration) {
        if status == 0 {
            self.ok += 1;
            self.latency.record(latency);
        } else {
            *self.errors.status.entry(status).or_default() += 1;
        }
    }

    /// Adds another recorder's results.
    pub fn merge(&mut self, other: &Recorder) {
        self.latency.merge(&other.latency);
        self.send_lag.merge(&other.send_lag);
        self.sent += other.sent;
        self.total_sent += other.total_sent;
        self.ok += other.ok;
        self.errors.merge(&other.errors);
    }
}

/// The JSON report of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BenchReport {
    /// Target address.
    pub target: String,
    /// `closed` or `open`.
    pub mode: String,
    /// TCP connections.
    pub connections: usize,
    /// Closed loop: calls outstanding per connection.
    pub in_flight: Option<usize>,
    /// Open loop: scheduled calls per second.
    pub rate: Option<f64>,
    /// Content bytes per request.
    pub payload_size: usize,
    /// `service` header.
    pub service: String,
    /// Unmeasured warm-up, seconds.
    pub warmup_secs: f64,
    /// Length of the measured window actually run, seconds (shorter than asked when the
    /// request bound was hit first).
    pub duration_secs: f64,
    /// Measured calls sent.
    pub sent: u64,
    /// Every call sent, warm-up included (what CPU use per call is divided by).
    pub total_sent: u64,
    /// Measured calls answered with status 0.
    pub ok: u64,
    /// Failed calls by cause.
    pub errors: ErrorCounts,
    /// Successful calls per second of measured window.
    pub calls_per_sec: f64,
    /// Latency of successful calls, µs (open loop: from the intended send time).
    pub latency_us: LatencySummary,
    /// `(percentile, µs)` points of the latency distribution.
    pub percentiles_us: Vec<(f64, f64)>,
    /// Open loop: lateness of actual sends versus the schedule, µs (already included in
    /// `latency_us`).
    pub send_lag_us: Option<LatencySummary>,
}

/// The loop shape as the report states it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Shape {
    pub mode: &'static str,
    pub connections: usize,
    pub in_flight: Option<usize>,
    /// Open loop only; also means the send lag is reported.
    pub rate: Option<f64>,
}

/// Turns what a run recorded into its report.
pub(crate) fn build_report(
    options: &super::BenchOptions,
    shape: Shape,
    measured: Duration,
    rec: &Recorder,
) -> BenchReport {
    let secs = measured.as_secs_f64();
    BenchReport {
        target: options.target.to_string(),
        mode: shape.mode.to_owned(),
        connections: shape.connections,
        in_flight: shape.in_flight,
        rate: shape.rate,
        payload_size: options.payload_size,
        service: options.service.clone(),
        warmup_secs: options.warmup.as_secs_f64(),
        duration_secs: secs,
        sent: rec.sent,
        total_sent: rec.total_sent,
        ok: rec.ok,
        errors: rec.errors.clone(),
        calls_per_sec: if secs > 0.0 {
            rec.ok as f64 / secs
        } else {
            0.0
        },
        latency_us: rec.latency.summary(),
        percentiles_us: rec.latency.curve(),
        send_lag_us: shape.rate.map(|_| rec.send_lag.summary()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorder_counts_and_merges() {
        let mut a = Recorder {
            sent: 3,
            ..Recorder::default()
        };
        a.answered(0, Duration::from_micros(100));
        a.answered(0, Duration::from_micros(300));
        a.answered(7, Duration::from_micros(5));
        let mut b = Recorder {
            sent: 2,
            ..Recorder::default()
        };
        b.answered(0, Duration::from_micros(200));
        b.errors.timeouts = 1;
        a.merge(&b);
        assert_eq!((a.sent, a.ok), (5, 3));
        assert_eq!(a.errors.status.get(&7), Some(&1));
        assert_eq!(a.errors.failed_calls(), 2);
        let s = a.latency.summary();
        assert_eq!(s.count, 3);
        assert!((s.p50 - 200.0).abs() < 1.0, "{s:?}");
        assert!((s.max - 300.0).abs() < 1.0, "{s:?}");
        let curve = a.latency.curve();
        assert_eq!(curve.len(), CURVE_PERCENTILES.len());
        assert!(curve.windows(2).all(|w| w[0].1 <= w[1].1), "monotonic");
    }

    #[test]
    fn empty_histogram_summarises_to_zero() {
        let h = LatencyHistogram::default();
        assert_eq!(h.summary(), LatencySummary::default());
        assert!(h.curve().is_empty());
    }
}
