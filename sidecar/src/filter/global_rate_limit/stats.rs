//! Counters of one `rateLimit` filter (atomics, shared by every worker), in the admin API as
//! `stream_filter.<listener>.stream_filters[i]`.
//!
//! At a quiet moment `calls = ok + over_limit + error` and `error = fail_open + fail_closed`;
//! requests that produced no descriptor are counted in `no_descriptor` and make no call.

use serde_json::{json, Value};

use crate::stats::{Counter, StatsSource};

/// What one filter did.
#[derive(Debug, Default)]
pub struct GlobalRateLimitStats {
    /// Calls made to the rate limit service.
    pub calls: Counter,
    /// Calls answered OK: the request went on.
    pub ok: Counter,
    /// Calls answered OVER_LIMIT: the request was rejected.
    pub over_limit: Counter,
    /// Calls that got no usable answer (unreachable, error status, timeout, unknown code).
    pub error: Counter,
    /// Errors after which the request went on (`failure_mode_deny: false`).
    pub fail_open: Counter,
    /// Errors after which the request was rejected (`failure_mode_deny: true`).
    pub fail_closed: Counter,
    /// Requests for which no descriptor could be built (a header was absent): no call.
    pub no_descriptor: Counter,
    /// Sum of all calls' durations in microseconds (answered or not); ÷ `calls` = mean.
    pub latency_us_total: Counter,
}

impl StatsSource for GlobalRateLimitStats {
    fn to_json(&self) -> Value {
        json!({
            "calls": self.calls.get(),
            "ok": self.ok.get(),
            "over_limit": self.over_limit.get(),
            "error": self.error.get(),
            "fail_open": self.fail_open.get(),
            "fail_closed": self.fail_closed.get(),
            "no_descriptor": self.no_descriptor.get(),
            "latency_us_total": self.latency_us_total.get(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_counter_is_in_the_json() {
        let s = GlobalRateLimitStats::default();
        s.calls.add(3);
        s.ok.inc();
        s.over_limit.inc();
        s.error.inc();
        s.fail_open.inc();
        s.no_descriptor.add(2);
        s.latency_us_total.add(700);
        assert_eq!(
            s.to_json(),
            json!({"calls": 3, "ok": 1, "over_limit": 1, "error": 1, "fail_open": 1,
                   "fail_closed": 0, "no_descriptor": 2, "latency_us_total": 700})
        );
    }
}
