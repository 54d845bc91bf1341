//! The retry rule (xprotocol spec, `docs/xprotocol-proxy-and-bolt.md` §2.8), compiled once
//! per route from its `retry_policy`: how many attempts a request gets, how long each may
//! take, and which failures let another attempt run.
//!
//! * Connection failures (refused, connect timeout, a closed connection before the write)
//!   are always retried.
//! * An upstream close with the request in flight, and a per-try timeout, only with
//!   `retry_on`.
//! * A response, only with `retry_on`, when the codec maps its protocol status to a code in
//!   `status_codes` (empty: any code ≥ 500), as MOSN's `doRetryCheck` with
//!   `MappingHeaderStatusCode`. The response of the last attempt is relayed as it is.
//! * Everything else (no route, overflow, the request's own deadline, …) is final.
//! * Attempts: MOSN's `max(3, num_retries)`; 3 without a policy.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::RetryPolicy;
use crate::failure::Failure;

/// Pause between attempts (MOSN sleeps 10 ms before each retry).
pub const RETRY_BACKOFF: Duration = Duration::from_millis(10);

/// A route's compiled retry plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPlan {
    attempts: u32,
    retry_on: bool,
    per_try_timeout: Option<Duration>,
    statuses: StatusRetry,
}

/// Which mapped response codes are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StatusRetry {
    /// None (no `retry_on`).
    Off,
    /// Any code ≥ 500 (`retry_on` with no `status_codes`).
    ServerErrors,
    /// Exactly these codes (sorted).
    Codes(Box<[u32]>),
}

impl RetryPlan {
    /// The plan for a route with `policy` (or none).
    pub fn new(policy: Option<&RetryPolicy>) -> RetryPlan {
        RetryPlan {
            attempts: policy.map_or(3, |p| p.num_retries.max(3)),
            retry_on: policy.is_some_and(|p| p.retry_on),
            // Each try is capped by the request's own deadline, so a per-try timeout that is
            // not shorter than the request timeout simply never fires (§2.7).
            per_try_timeout: policy.and_then(|p| p.retry_timeout),
            statuses: match policy {
                Some(p) if p.retry_on && p.status_codes.is_empty() => StatusRetry::ServerErrors,
                Some(p) if p.retry_on => {
                    let mut codes = p.status_codes.clone();
                    codes.sort_unstable();
                    codes.dedup();
                    StatusRetry::Codes(codes.into())
                }
                _ => StatusRetry::Off,
            },
        }
    }

    /// Whether some response could be retried (the proxy then asks the codec for the
    /// response's code; otherwise it never does).
    pub fn retries_responses(&self) -> bool {
        self.statuses != StatusRetry::Off
    }

    /// Whether a response whose status the codec maps to proxy code `code` lets another
    /// attempt run (attempts left permitting).
    pub fn retries_response(&self, code: u32) -> bool {
        match &self.statuses {
            StatusRetry::Off => false,
            StatusRetry::ServerErrors => code >= 500,
            StatusRetry::Codes(codes) => codes.binary_search(&code).is_ok(),
        }
    }

    /// Whether anything that can happen once a request is sent (the connection closing, a
    /// timeout, a response's code) can lead to another attempt. When not, a sent request
    /// needs nothing of the plan but its per-try deadline.
    pub fn retries_after_send(&self) -> bool {
        self.retry_on || self.retries_responses()
    }

    /// Most attempts one request gets (≥ 1).
    pub fn attempts(&self) -> u32 {
        self.attempts.max(1)
    }

    /// When the attempt starting `now` gives up: the per-try timeout, bounded by the
    /// request's `deadline`.
    pub fn try_deadline(&self, now: Instant, deadline: Instant) -> Instant {
        match self.per_try_timeout {
            Some(t) => deadline.min(now + t),
            None => deadline,
        }
    }

    /// Whether an attempt that failed with `failure` at `now` lets another attempt run
    /// (attempts left permitting).
    pub fn retries(&self, failure: Failure, now: Instant, deadline: Instant) -> bool {
        match failure {
            Failure::ConnectFailed => true,
            Failure::UpstreamClosed => self.retry_on,
            // A per-try timeout that fired before the request's own deadline.
            Failure::Timeout => self.retry_on && self.per_try_timeout.is_some() && now < deadline,
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(retry_on: bool, retry_timeout: Option<Duration>, num_retries: u32) -> RetryPolicy {
        RetryPolicy {
            retry_on,
            retry_timeout,
            num_retries,
            status_codes: Vec::new(),
        }
    }

    #[test]
    fn responses_retry_only_with_retry_on_by_their_mapped_code() {
        assert!(!RetryPlan::new(None).retries_responses());
        assert!(!RetryPlan::new(None).retries_response(503));
        let mut listed = policy(false, None, 0);
        listed.status_codes = vec![503, 502, 503];
        let off = RetryPlan::new(Some(&listed));
        assert!(!off.retries_responses(), "status_codes need retry_on");
        assert!(!off.retries_response(503));
        listed.retry_on = true;
        let on = RetryPlan::new(Some(&listed));
        assert!(on.retries_responses());
        assert!(on.retries_response(503) && on.retries_response(502));
        assert!(!on.retries_response(500) && !on.retries_response(200));
        let any = RetryPlan::new(Some(&policy(true, None, 0)));
        assert!(any.retries_response(500) && any.retries_response(504));
        assert!(!any.retries_response(200) && !any.retries_response(404));
    }

    #[test]
    fn only_connection_failures_retry_without_retry_on() {
        let now = Instant::now();
        let later = now + Duration::from_secs(1);
        let without = RetryPlan::new(None);
        let with = RetryPlan::new(Some(&policy(true, None, 0)));
        assert!(without.retries(Failure::ConnectFailed, now, later));
        assert!(!without.retries(Failure::UpstreamClosed, now, later));
        assert!(with.retries(Failure::UpstreamClosed, now, later));
        assert!(!with.retries(Failure::Timeout, now, later));
    }

    #[test]
    fn a_per_try_timeout_retries_only_before_the_deadline_and_with_retry_on() {
        let now = Instant::now();
        let deadline = now + Duration::from_secs(1);
        let plan = RetryPlan::new(Some(&policy(true, Some(Duration::from_millis(100)), 0)));
        assert!(plan.retries(Failure::Timeout, now, deadline));
        assert!(!plan.retries(Failure::Timeout, deadline, deadline));
        let off = RetryPlan::new(Some(&policy(false, Some(Duration::from_millis(100)), 0)));
        assert!(!off.retries(Failure::Timeout, now, deadline));
        assert_eq!(
            plan.try_deadline(now, deadline),
            now + Duration::from_millis(100)
        );
        assert_eq!(RetryPlan::new(None).try_deadline(now, deadline), deadline);
    }

    #[test]
    fn attempts_follow_mosn() {
        assert_eq!(RetryPlan::new(None).attempts(), 3);
        assert_eq!(RetryPlan::new(Some(&policy(false, None, 1))).attempts(), 3);
        assert_eq!(RetryPlan::new(Some(&policy(false, None, 5))).attempts(), 5);
    }

    #[test]
    fn final_failures_never_retry() {
        let now = Instant::now();
        let plan = RetryPlan::new(Some(&policy(true, Some(Duration::from_millis(1)), 9)));
        for f in [
            Failure::NoRoute,
            Failure::NoHealthyHost,
            Failure::Overflow,
            Failure::HeaderDecode,
            Failure::EncodeFailed,
        ] {
            assert!(!plan.retries(f, now, now + Duration::from_secs(1)), "{f}");
        }
    }
}
