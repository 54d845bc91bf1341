//! The `rateLimit` stream filter: limits shared by a whole fleet of sidecars, kept by Envoy's
//! rate limit service (gRPC `envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`).
//!
//! For each request the filter builds descriptors from the request's headers (see
//! [`crate::config::GlobalRateLimitConfig`]) and, if there is at least one, asks the service
//! once, within the configured timeout. `OVER_LIMIT` rejects the request with the configured
//! proxy code; `OK` lets it through. When the service cannot answer (unreachable, error,
//! timeout) the request goes on (fail open) unless `failure_mode_deny` is set; either way it
//! is counted.
//!
//! The filter is `Send + Sync` and shared by every worker; its gRPC channels are per worker
//! thread (see [`client`]).

mod client;
mod descriptors;
mod stats;
#[cfg(test)]
mod test_service;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, info, warn};

pub use client::CallError;
pub use stats::GlobalRateLimitStats;

use super::{RejectReason, Rejection, RequestView, Verdict};
use crate::config::GlobalRateLimitConfig;
use crate::stats::StatsSource;
use client::{Answer, RateLimitRequest};

/// One `rateLimit` filter of one listener.
#[derive(Debug)]
pub struct GlobalRateLimit {
    config: GlobalRateLimitConfig,
    stats: Arc<GlobalRateLimitStats>,
    /// Admin API namespace of the counters: `stream_filter.<listener>.stream_filters[i]`.
    namespace: String,
    /// Whether the last call failed, so that only the first failure of a run is a warning.
    failing: AtomicBool,
}

impl GlobalRateLimit {
    /// The filter of listener `listener`, with fresh counters. Nothing connects until the
    /// first request.
    pub fn new(listener: &str, config: &GlobalRateLimitConfig) -> GlobalRateLimit {
        GlobalRateLimit {
            config: config.clone(),
            stats: Arc::new(GlobalRateLimitStats::default()),
            namespace: format!("stream_filter.{listener}.{}", config.label),
            failing: AtomicBool::new(false),
        }
    }

    /// The filter's counters.
    pub fn counters(&self) -> &Arc<GlobalRateLimitStats> {
        &self.stats
    }

    /// The counters under their admin API namespace.
    pub fn stats(&self) -> Vec<(String, Arc<dyn StatsSource>)> {
        let stats: Arc<dyn StatsSource> = self.stats.clone();
        vec![(self.namespace.clone(), stats)]
    }

    /// Decides for one request. Must run inside the worker's tokio runtime.
    pub async fn apply(&self, req: &RequestView<'_>) -> Verdict {
        let descriptors = descriptors::build(&self.config.descriptors, req.headers);
        if descriptors.is_empty() {
            self.stats.no_descriptor.inc();
            return Verdict::Continue;
        }
        let request = RateLimitRequest {
            domain: self.config.domain.clone(),
            descriptors,
            hits_addend: 0,
        };
        let started = Instant::now();
        let result =
            client::should_rate_limit(&self.config.service_address, self.config.timeout, request)
                .await;
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        self.stats.latency_us_total.add(micros);
        self.stats.calls.inc();
        match result {
            Ok(Answer::Ok) => {
                self.recovered();
                self.stats.ok.inc();
                Verdict::Continue
            }
            Ok(Answer::OverLimit) => {
                self.recovered();
                self.stats.over_limit.inc();
                self.reject()
            }
            Err(error) => {
                self.stats.error.inc();
                self.failed(&error);
                if self.config.failure_mode_deny {
                    self.stats.fail_closed.inc();
                    self.reject()
                } else {
                    self.stats.fail_open.inc();
                    Verdict::Continue
                }
            }
        }
    }

    fn reject(&self) -> Verdict {
        Verdict::Reject(Rejection {
            status: self.config.status,
            reason: RejectReason::GlobalRateLimited,
        })
    }

    fn failed(&self, error: &CallError) {
        if self.failing.swap(true, Ordering::Relaxed) {
            debug!(filter = %self.namespace, %error, "rate limit service call failed");
            return;
        }
        let mode = if self.config.failure_mode_deny {
            "rejecting requests (failure_mode_deny)"
        } else {
            "letting requests through (fail open)"
        };
        warn!(
            filter = %self.namespace,
            address = %self.config.service_address,
            domain = %self.config.domain,
            %error,
            "rate limit service call failed; {mode} until it answers again"
        );
    }

    fn recovered(&self) {
        if self.failing.swap(false, Ordering::Relaxed) {
            info!(filter = %self.namespace, address = %self.config.service_address,
                "rate limit service answers again");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::time::Duration;

    use codec_host::HeaderMap;
    use serde_json::json;

    use super::test_service::{rate_limit_service, unique};
    use super::*;
    use crate::config::{DescriptorConfig, DescriptorEntryConfig, EntrySource};

    fn header_entry(key: &str, header: &str) -> DescriptorEntryConfig {
        DescriptorEntryConfig {
            key: key.into(),
            source: EntrySource::Header {
                name: header.into(),
                skip_if_absent: false,
            },
        }
    }

    /// `[(service, <service>)]` and `[(generic_key, tenant-budget), (tenant, <tenant>)]`, as
    /// configs/ratelimit expects them.
    fn config(address: &str) -> GlobalRateLimitConfig {
        GlobalRateLimitConfig {
            label: "stream_filters[0]".into(),
            domain: "sidecar".into(),
            service_address: address.into(),
            timeout: Duration::from_secs(5),
            failure_mode_deny: false,
            status: 503,
            descriptors: vec![
                DescriptorConfig {
                    entries: vec![header_entry("service", "service")],
                },
                DescriptorConfig {
                    entries: vec![
                        DescriptorEntryConfig {
                            key: "generic_key".into(),
                            source: EntrySource::Value("tenant-budget".into()),
                        },
                        header_entry("tenant", "tenant"),
                    ],
                },
            ],
            json_path: String::new(),
        }
    }

    fn filter(config: &GlobalRateLimitConfig) -> GlobalRateLimit {
        GlobalRateLimit::new("l", config)
    }

    async fn check(f: &GlobalRateLimit, pairs: &[(&str, &str)]) -> Verdict {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.push(*k, *v);
        }
        let view = RequestView {
            headers: &h,
            cluster: "c",
            listener: "l",
            oneway: false,
        };
        f.apply(&view).await
    }

    fn rejected(status: u32) -> Verdict {
        Verdict::Reject(Rejection {
            status,
            reason: RejectReason::GlobalRateLimited,
        })
    }

    fn closed_port() -> String {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    }

    fn counts(f: &GlobalRateLimit) -> serde_json::Value {
        let mut v = StatsSource::to_json(f.counters().as_ref());
        v.as_object_mut().unwrap().remove("latency_us_total");
        v
    }

    #[test]
    fn the_filter_is_shared_by_workers() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<GlobalRateLimit>();
    }

    #[test]
    fn counters_are_named_after_the_listener_and_the_filter() {
        let f = filter(&config("127.0.0.1:1"));
        let names: Vec<String> = f.stats().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["stream_filter.l.stream_filters[0]"]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn no_descriptor_means_no_call() {
        // The service address is closed: a call would be counted as an error.
        let f = filter(&config(&closed_port()));
        assert_eq!(check(&f, &[]).await, Verdict::Continue);
        assert_eq!(
            counts(&f),
            json!({"calls": 0, "ok": 0, "over_limit": 0, "error": 0, "fail_open": 0,
                   "fail_closed": 0, "no_descriptor": 1})
        );
        // Only the tenant descriptor can be built: one call.
        assert_eq!(check(&f, &[("tenant", "t")]).await, Verdict::Continue);
        assert_eq!(f.counters().calls.get(), 1);
        assert_eq!(f.counters().no_descriptor.get(), 1);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn an_unreachable_service_fails_open_by_default_and_is_counted() {
        let f = filter(&config(&closed_port()));
        for _ in 0..3 {
            assert_eq!(check(&f, &[("service", "s")]).await, Verdict::Continue);
        }
        assert_eq!(
            counts(&f),
            json!({"calls": 3, "ok": 0, "over_limit": 0, "error": 3, "fail_open": 3,
                   "fail_closed": 0, "no_descriptor": 0})
        );
    }

    #[tokio::test(flavor = "current_thread")]
    async fn failure_mode_deny_rejects_with_the_configured_status_within_the_timeout() {
        // Accepts TCP but never speaks HTTP/2: only the filter's timeout ends the call.
        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut c = config(&silent.local_addr().unwrap().to_string());
        c.failure_mode_deny = true;
        c.status = 429;
        c.timeout = Duration::from_millis(100);
        let f = filter(&c);
        let verdict = tokio::time::timeout(Duration::from_secs(20), check(&f, &[("service", "s")]))
            .await
            .expect("the filter's own timeout ends the call");
        assert_eq!(verdict, rejected(429));
        assert_eq!(
            counts(&f),
            json!({"calls": 1, "ok": 0, "over_limit": 0, "error": 1, "fail_open": 0,
                   "fail_closed": 1, "no_descriptor": 0})
        );
        assert!(f.counters().latency_us_total.get() >= 100_000);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_real_service_rejects_over_the_limit() {
        let Some(address) = rate_limit_service() else {
            return;
        };
        // configs/ratelimit: 20 calls an hour for com.example.Limited*, each name apart. A
        // fresh name is a fresh budget; if the hour turns during the loop the service starts a
        // new window, so that attempt does not count.
        for attempt in 0.. {
            let f = filter(&config(&address));
            let service = unique("com.example.Limited.filter-test");
            let window = hour_window();
            let mut verdicts = Vec::new();
            for _ in 0..25 {
                verdicts.push(check(&f, &[("service", &service)]).await);
            }
            if hour_window() != window && attempt < 2 {
                continue;
            }
            assert_eq!(verdicts[..20], [Verdict::Continue; 20]);
            assert_eq!(verdicts[20..], [rejected(503); 5]);
            assert_eq!(
                counts(&f),
                json!({"calls": 25, "ok": 20, "over_limit": 5, "error": 0, "fail_open": 0,
                       "fail_closed": 0, "no_descriptor": 0})
            );
            // A service without a rule is never limited.
            for _ in 0..10 {
                let free = check(&f, &[("service", "com.example.Free")]).await;
                assert_eq!(free, Verdict::Continue);
            }
            assert_eq!(f.counters().ok.get(), 30);
            break;
        }
    }

    /// The index of the current hour since the epoch (the service's windows for `unit: hour`).
    fn hour_window() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            / 3600
    }
}
