//! MOSN's `fault` filter: for requests to the configured cluster with matching headers, wait
//! a fixed delay for a share of them, then abort a share with the configured status. As in
//! MOSN, the delay comes first and the two draws are independent.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tracing::debug;

use super::{RejectReason, Rejection, RequestView, Verdict};
use crate::config::{FaultAbort, FaultConfig, FaultDelay};
use crate::router::HeaderConditions;
use crate::stats::{Counter, StatsSource};

/// A compiled `fault` filter.
#[derive(Debug)]
pub struct Fault {
    delay: Option<FaultDelay>,
    abort: Option<FaultAbort>,
    upstream_cluster: Option<String>,
    headers: HeaderConditions,
    stats: Arc<FaultStats>,
    namespace: String,
}

/// What the filter does to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FaultAction {
    /// Wait this long first.
    pub delay: Option<Duration>,
    /// Then answer with this status instead of forwarding.
    pub abort: Option<u32>,
}

/// A fault filter's counters (admin API `stream_filter.<listener>.stream_filters[i]`).
#[derive(Debug, Default)]
pub struct FaultStats {
    /// Requests delayed.
    pub delayed: Counter,
    /// Requests aborted (answered with the abort status).
    pub aborted: Counter,
    /// Oneway requests aborted (dropped).
    pub oneway_dropped: Counter,
}

impl StatsSource for FaultStats {
    fn to_json(&self) -> Value {
        json!({
            "delayed": self.delayed.get(),
            "aborted": self.aborted.get(),
            "oneway_dropped": self.oneway_dropped.get(),
        })
    }
}

impl Fault {
    /// Compiles the filter of listener `listener`.
    pub fn new(listener: &str, config: &FaultConfig) -> Fault {
        Fault {
            delay: config.delay,
            abort: config.abort,
            upstream_cluster: config.upstream_cluster.as_ref().map(|c| c.name.clone()),
            headers: HeaderConditions::new(&config.headers),
            stats: Arc::new(FaultStats::default()),
            namespace: format!("stream_filter.{listener}.{}", config.label),
        }
    }

    /// What to do with `req`; `percent_draw` yields numbers in `0..100` (one per configured
    /// fault, delay first), as MOSN's `rand % 100 < percentage`.
    pub fn decide(
        &self,
        req: &RequestView<'_>,
        mut percent_draw: impl FnMut() -> u32,
    ) -> FaultAction {
        let applies = self
            .upstream_cluster
            .as_deref()
            .is_none_or(|c| c == req.cluster)
            && self.headers.matches(req.headers);
        if !applies {
            return FaultAction::default();
        }
        FaultAction {
            delay: self
                .delay
                .filter(|d| percent_draw() < d.percent)
                .map(|d| d.duration),
            abort: self
                .abort
                .filter(|a| percent_draw() < a.percent)
                .map(|a| a.status),
        }
    }

    /// Delays and/or aborts `req` as drawn.
    pub async fn apply(&self, req: &RequestView<'_>) -> Verdict {
        let action = self.decide(req, || fastrand::u32(0..100));
        if let Some(delay) = action.delay {
            self.stats.delayed.inc();
            tokio::time::sleep(delay).await;
        }
        match action.abort {
            None => Verdict::Continue,
            Some(status) => {
                if req.oneway {
                    self.stats.oneway_dropped.inc();
                } else {
                    self.stats.aborted.inc();
                }
                debug!(filter = %self.namespace, status, "injected abort");
                Verdict::Reject(Rejection {
                    status,
                    reason: RejectReason::FaultAbort,
                })
            }
        }
    }

    /// The filter's counters under its namespace.
    pub fn stats(&self) -> Vec<(String, Arc<dyn StatsSource>)> {
        let stats: Arc<dyn StatsSource> = self.stats.clone();
        vec![(self.namespace.clone(), stats)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ClusterRef, HeaderMatcherConfig};
    use codec_host::HeaderMap;

    fn fault(delay_pct: u32, abort_pct: u32) -> FaultConfig {
        FaultConfig {
            label: "stream_filters[0]".into(),
            delay: (delay_pct > 0).then_some(FaultDelay {
                duration: Duration::from_millis(200),
                percent: delay_pct,
            }),
            abort: (abort_pct > 0).then_some(FaultAbort {
                status: 500,
                percent: abort_pct,
            }),
            upstream_cluster: None,
            headers: Vec::new(),
            json_path: String::new(),
        }
    }

    fn view<'a>(h: &'a HeaderMap, cluster: &'a str) -> RequestView<'a> {
        RequestView {
            headers: h,
            cluster,
            listener: "l",
            oneway: false,
        }
    }

    #[test]
    fn percentages_compare_the_draw_like_mosn() {
        let f = Fault::new("l", &fault(30, 60));
        let h = HeaderMap::new();
        let v = view(&h, "c");
        // Draws: delay first, then abort.
        let act = |draws: [u32; 2]| {
            let mut it = draws.into_iter();
            f.decide(&v, || it.next().unwrap())
        };
        assert_eq!(
            act([29, 59]),
            FaultAction {
                delay: Some(Duration::from_millis(200)),
                abort: Some(500)
            }
        );
        assert_eq!(act([30, 60]), FaultAction::default());
        assert_eq!(
            act([0, 99]),
            FaultAction {
                delay: Some(Duration::from_millis(200)),
                abort: None
            }
        );
    }

    #[test]
    fn one_hundred_percent_always_applies_and_zero_never_draws() {
        let f = Fault::new("l", &fault(0, 100));
        let h = HeaderMap::new();
        let mut draws = 0;
        let a = f.decide(&view(&h, "c"), || {
            draws += 1;
            99
        });
        assert_eq!(a.abort, Some(500));
        assert_eq!(a.delay, None);
        assert_eq!(draws, 1, "no draw for the unconfigured delay");
    }

    #[test]
    fn only_the_configured_cluster_and_headers_are_touched() {
        let mut config = fault(100, 100);
        config.upstream_cluster = Some(ClusterRef {
            name: "target".into(),
            index: 0,
        });
        config.headers = vec![HeaderMatcherConfig {
            name: "service".into(),
            value: "svc".into(),
            regex: None,
        }];
        let f = Fault::new("l", &config);
        let mut svc = HeaderMap::new();
        svc.insert("service", "svc");
        let mut other = HeaderMap::new();
        other.insert("service", "other");
        assert!(f.decide(&view(&svc, "target"), || 0).abort.is_some());
        assert_eq!(
            f.decide(&view(&svc, "elsewhere"), || 0),
            FaultAction::default()
        );
        assert_eq!(
            f.decide(&view(&other, "target"), || 0),
            FaultAction::default()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_delay_waits_then_an_abort_rejects() {
        let f = Fault::new("l", &fault(100, 100));
        let h = HeaderMap::new();
        let start = tokio::time::Instant::now();
        let verdict = f.apply(&view(&h, "c")).await;
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert_eq!(
            verdict,
            Verdict::Reject(Rejection {
                status: 500,
                reason: RejectReason::FaultAbort
            })
        );
        assert_eq!(f.stats.delayed.get(), 1);
        assert_eq!(f.stats.aborted.get(), 1);
    }
}
