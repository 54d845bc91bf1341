//! Why the sidecar answers a request itself, and with which proxy code (xprotocol spec,
//! `docs/xprotocol-proxy-and-bolt.md` §2.6). Which failures are retried is the retry plan's
//! rule (`retry`). The code
//! goes to the plugin's hijack, which maps it to a protocol status (Bolt: 404→6, 502→16, …).

use std::fmt;

/// A reason to answer on the server's behalf.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Failure {
    /// No route matched, or the route config is missing (404).
    NoRoute,
    /// The cluster has no healthy host (502).
    NoHealthyHost,
    /// Connecting to the chosen host failed or timed out, or writing to it failed (502).
    ConnectFailed,
    /// The upstream connection closed with the request in flight (500).
    UpstreamClosed,
    /// The request's timeout expired (504).
    Timeout,
    /// A circuit breaker (max requests, max pending, in-flight table) overflowed (503).
    Overflow,
    /// The request's header section could not be decoded (2).
    HeaderDecode,
    /// The codec failed to encode the request toward upstream (500).
    EncodeFailed,
    /// A proxy-wasm stream filter failed on the request (trapped, ran out of CPU, or its
    /// instance could not be started): 500.
    FilterFailed,
    /// A stream filter ended the request (a local limit, an injected abort); the code is the
    /// filter's configured status.
    Rejected(Rejection),
}

/// Why and with which proxy code a request was ended by a stream filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Rejection {
    /// The proxy's HTTP-like code for the plugin's hijack (503 → Bolt
    /// SERVER_THREADPOOL_BUSY).
    pub status: u32,
    /// Which kind of filter ended it (counters are split by this).
    pub reason: RejectReason,
}

/// The kind of filter decision that ended a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// A local rate or concurrency limit (`flowControlFilter`).
    RateLimited,
    /// An injected abort (`fault`).
    FaultAbort,
    /// A fleet-wide limit kept by the rate limit service, or the service unavailable with
    /// `failure_mode_deny` (`rateLimit`).
    GlobalRateLimited,
    /// A proxy-wasm filter answered the request itself (`proxy_send_local_response`).
    FilterLocalResponse,
}

impl Failure {
    /// Whether a try that ended with this failure counts against its host for outlier
    /// detection: it could not connect, closed the connection with the request in flight,
    /// or did not answer in time.
    pub fn counts_against_host(self) -> bool {
        matches!(
            self,
            Failure::ConnectFailed | Failure::UpstreamClosed | Failure::Timeout
        )
    }

    /// The proxy's HTTP-like code passed to the plugin's hijack (MOSN's api codes).
    pub fn proxy_code(self) -> u32 {
        match self {
            Failure::NoRoute => 404,
            Failure::NoHealthyHost | Failure::ConnectFailed => 502,
            Failure::UpstreamClosed | Failure::EncodeFailed | Failure::FilterFailed => 500,
            Failure::Timeout => 504,
            Failure::Overflow => 503,
            Failure::HeaderDecode => 2,
            Failure::Rejected(r) => r.status,
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Failure::NoRoute => "no route",
            Failure::NoHealthyHost => "no healthy upstream host",
            Failure::ConnectFailed => "upstream connect failure",
            Failure::UpstreamClosed => "upstream connection closed",
            Failure::Timeout => "timeout",
            Failure::Overflow => "circuit breaker overflow",
            Failure::HeaderDecode => "request header decode error",
            Failure::EncodeFailed => "request encode failure",
            Failure::FilterFailed => "stream filter failure",
            Failure::Rejected(Rejection {
                reason: RejectReason::RateLimited,
                ..
            }) => "rate limited",
            Failure::Rejected(Rejection {
                reason: RejectReason::FaultAbort,
                ..
            }) => "injected fault abort",
            Failure::Rejected(Rejection {
                reason: RejectReason::GlobalRateLimited,
                ..
            }) => "over a global rate limit",
            Failure::Rejected(Rejection {
                reason: RejectReason::FilterLocalResponse,
                ..
            }) => "answered by a stream filter",
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_mosn() {
        assert_eq!(Failure::NoRoute.proxy_code(), 404);
        assert_eq!(Failure::ConnectFailed.proxy_code(), 502);
        assert_eq!(Failure::NoHealthyHost.proxy_code(), 502);
        assert_eq!(Failure::UpstreamClosed.proxy_code(), 500);
        assert_eq!(Failure::Timeout.proxy_code(), 504);
        assert_eq!(Failure::Overflow.proxy_code(), 503);
        assert_eq!(Failure::HeaderDecode.proxy_code(), 2);
    }

    #[test]
    fn a_rejection_answers_with_its_configured_status() {
        let r = Failure::Rejected(Rejection {
            status: 509,
            reason: RejectReason::RateLimited,
        });
        assert_eq!(r.proxy_code(), 509);
        assert_eq!(r.to_string(), "rate limited");
    }
}
