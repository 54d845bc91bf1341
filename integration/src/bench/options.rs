//! What a load-generator run does: target, loop shape, bounds, request shape.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::BenchError;

/// Service name put in the `service` header by default.
pub const DEFAULT_SERVICE: &str = "com.alipay.test.TestService:1.0";

/// Loop shape.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Each connection keeps `in_flight` calls outstanding; a new call goes out as soon as one
    /// completes. Measures capacity.
    Closed {
        /// TCP connections.
        connections: usize,
        /// Calls outstanding per connection.
        in_flight: usize,
    },
    /// Calls go out on a fixed schedule regardless of answers; latency counts from each call's
    /// intended send time, so a stalled peer shows up as latency instead of hiding.
    Open {
        /// TCP connections (the rate is split evenly over them).
        connections: usize,
        /// Total calls per second.
        rate: f64,
    },
}

/// A full run description.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Where to send (must be loopback).
    pub target: SocketAddr,
    /// Closed or open loop.
    pub mode: Mode,
    /// Length of the measured window.
    pub duration: Duration,
    /// Unmeasured load before the window.
    pub warmup: Duration,
    /// Stop after this many measured calls even if the window is not over.
    pub max_requests: Option<u64>,
    /// Content bytes per request.
    pub payload_size: usize,
    /// `service` header value.
    pub service: String,
    /// More headers on every request, after `service` (e.g. the echo server's control headers).
    pub extra_headers: Vec<(String, String)>,
    /// Per-call timeout; also written into the frame's timeout field.
    pub timeout: Duration,
    /// First request id on every connection.
    pub first_id: u32,
    /// Open loop only: spin (instead of sleeping) for this long before each send, trading CPU
    /// for send-time precision.
    pub spin: Duration,
}

impl BenchOptions {
    /// Defaults: closed loop 1 × 64, 5 s measured after 1 s warm-up, 128-byte payload, 3 s
    /// timeout.
    pub fn new(target: SocketAddr) -> Self {
        BenchOptions {
            target,
            mode: Mode::Closed {
                connections: 1,
                in_flight: 64,
            },
            duration: Duration::from_secs(5),
            warmup: Duration::from_secs(1),
            max_requests: None,
            payload_size: 128,
            service: DEFAULT_SERVICE.to_owned(),
            extra_headers: Vec::new(),
            timeout: Duration::from_secs(3),
            first_id: 1,
            spin: Duration::ZERO,
        }
    }

    /// Checks the options before anything connects.
    ///
    /// # Errors
    /// [`BenchError::NonLoopback`] or [`BenchError::Options`].
    pub fn validate(&self) -> Result<(), BenchError> {
        if !self.target.ip().is_loopback() {
            return Err(BenchError::NonLoopback(self.target));
        }
        match self.mode {
            Mode::Closed {
                connections,
                in_flight,
            } => {
                if connections == 0 || in_flight == 0 {
                    return Err(BenchError::Options(
                        "connections and in-flight must be at least 1",
                    ));
                }
            }
            Mode::Open { connections, rate } => {
                if connections == 0 {
                    return Err(BenchError::Options("connections must be at least 1"));
                }
                if !(rate.is_finite() && rate > 0.0) {
                    return Err(BenchError::Options("rate must be a positive number"));
                }
            }
        }
        if self.duration.is_zero() {
            return Err(BenchError::Options("duration must be positive"));
        }
        if self.timeout.is_zero() {
            return Err(BenchError::Options("timeout must be positive"));
        }
        if self.max_requests == Some(0) {
            return Err(BenchError::Options("max requests must be at least 1"));
        }
        Ok(())
    }
}

/// Parses `250ms`, `1.5s`, `2m`, or a bare number of seconds.
///
/// # Errors
/// A message naming the bad input.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("not a duration: {s:?} (use e.g. 500ms, 5s, 2m)"))?;
    if !(v.is_finite() && v >= 0.0) {
        return Err(format!("not a duration: {s:?}"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse_duration("40us"), Ok(Duration::from_micros(40)));
        assert!(parse_duration("fast").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn non_loopback_targets_are_refused() {
        let opts = BenchOptions::new("10.1.2.3:2045".parse().unwrap());
        assert!(matches!(opts.validate(), Err(BenchError::NonLoopback(_))));
        let opts = BenchOptions::new("[::1]:2045".parse().unwrap());
        assert!(opts.validate().is_ok());
    }

    #[test]
    fn nonsense_options_are_refused() {
        let mut opts = BenchOptions::new("127.0.0.1:1".parse().unwrap());
        opts.mode = Mode::Open {
            connections: 1,
            rate: 0.0,
        };
        assert!(matches!(opts.validate(), Err(BenchError::Options(_))));
        opts.mode = Mode::Closed {
            connections: 1,
            in_flight: 0,
        };
        assert!(matches!(opts.validate(), Err(BenchError::Options(_))));
    }
}
