//! Stream filters: what a listener does with each decoded request (and oneway request, never a
//! heartbeat) after its route is matched and before a host is chosen. A filter either passes
//! the request on or ends it with a [`Rejection`], which the proxy answers through the
//! protocol plugin's hijack (oneway requests are dropped instead).
//!
//! The chain is built once per listener at start-up from `listeners[].stream_filters` and
//! shared by every worker thread. Filters run in config order; the first rejection ends the
//! chain. What a passed request holds (concurrency slots) lives in its [`FilterGuard`] and is
//! released when the guard is dropped: once, however the request ends.
//!
//! Adding a filter kind = one [`StreamFilter`] variant, one match arm in
//! [`StreamFilter::apply`] and [`FilterChain::build`], and one module.

mod clock;
mod concurrency;
mod fault;
mod flow_control;
pub mod global_rate_limit;
mod limit_key;
pub mod proxy_wasm;
mod token_bucket;

use std::sync::Arc;

use codec_host::HeaderMap;

use crate::config::StreamFilterConfig;
use crate::stats::StatsSource;

/// Defined beside [`crate::failure::Failure`] (which carries them), so counters and failures
/// need not import the filters.
pub use crate::failure::{RejectReason, Rejection};

pub use clock::MonotonicClock;
pub use concurrency::{ConcurrencyLimit, ConcurrencySlot};
pub use fault::{Fault, FaultAction};
pub use flow_control::FlowControl;
pub use global_rate_limit::GlobalRateLimit;
pub use limit_key::LimitKey;
pub use proxy_wasm::{ProxyWasmFilter, WasmStream, WorkerWasmFilter};
pub use token_bucket::TokenBucket;

/// What a filter sees of a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The decoded header map (RPC headers such as `service`).
    pub headers: &'a HeaderMap,
    /// Name of the cluster the route chose.
    pub cluster: &'a str,
    /// Name of the listener the request arrived on.
    pub listener: &'a str,
    /// A oneway request: it gets no answer, so a rejection drops it.
    pub oneway: bool,
}

/// One filter's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Pass the request to the next filter (or on to the upstream).
    Continue,
    /// End the request here.
    Reject(Rejection),
}

/// What a passed request holds until it ends: concurrency slots of the limits it counts
/// against. Dropping it releases each slot exactly once (on a response, an error response, a
/// timeout, a retry giving up, or the request task being dropped because the downstream
/// closed).
#[derive(Debug, Default)]
#[must_use = "dropping the guard ends the request's hold on its concurrency slots"]
pub struct FilterGuard {
    /// The common case of at most one concurrency rule, without a heap allocation.
    first: Option<ConcurrencySlot>,
    more: Vec<ConcurrencySlot>,
}

impl FilterGuard {
    /// A guard holding nothing (a listener without filters).
    pub fn none() -> FilterGuard {
        FilterGuard::default()
    }

    /// Keeps `slot` until the guard is dropped.
    pub(crate) fn hold(&mut self, slot: ConcurrencySlot) {
        if self.first.is_none() {
            self.first = Some(slot);
        } else {
            self.more.push(slot);
        }
    }

    /// How many concurrency slots the guard holds.
    pub fn slots(&self) -> usize {
        usize::from(self.first.is_some()) + self.more.len()
    }
}

/// One configured filter (enum dispatch: no boxing per request).
#[derive(Debug)]
enum StreamFilter {
    /// `flowControlFilter`: local rate and concurrency limits.
    FlowControl(FlowControl),
    /// `fault`: injected delays and aborts.
    Fault(Fault),
    /// `rateLimit`: fleet-wide limits asked of Envoy's rate limit service.
    RateLimit(GlobalRateLimit),
}

impl StreamFilter {
    async fn apply(&self, req: &RequestView<'_>, guard: &mut FilterGuard) -> Verdict {
        match self {
            StreamFilter::FlowControl(f) => f.apply(req, guard).await,
            StreamFilter::Fault(f) => f.apply(req).await,
            StreamFilter::RateLimit(f) => f.apply(req).await,
        }
    }

    fn stats(&self) -> Vec<(String, Arc<dyn StatsSource>)> {
        match self {
            StreamFilter::FlowControl(f) => f.stats(),
            StreamFilter::Fault(f) => f.stats(),
            StreamFilter::RateLimit(f) => f.stats(),
        }
    }
}

/// A listener's stream filters, in config order. `Send + Sync`: built once at start-up and
/// shared by every worker; limit state is process-wide.
#[derive(Debug, Default)]
pub struct FilterChain {
    filters: Box<[StreamFilter]>,
}

impl FilterChain {
    /// Compiles the filters of listener `listener` from its validated config. Disabled
    /// filters (`global_switch: false`) are left out.
    pub fn build(listener: &str, configs: &[StreamFilterConfig]) -> FilterChain {
        let clock = MonotonicClock::new();
        let filters: Vec<StreamFilter> = configs
            .iter()
            .filter_map(|c| match c {
                StreamFilterConfig::FlowControl(fc) if !fc.enabled => None,
                StreamFilterConfig::FlowControl(fc) => Some(StreamFilter::FlowControl(
                    FlowControl::new(listener, fc, clock),
                )),
                StreamFilterConfig::Fault(fc) => {
                    Some(StreamFilter::Fault(Fault::new(listener, fc)))
                }
                StreamFilterConfig::RateLimit(rc) => {
                    Some(StreamFilter::RateLimit(GlobalRateLimit::new(listener, rc)))
                }
                // Per-worker guest instances: loaded by the plan (`ListenerPlan::wasm_filters`),
                // run by the proxy after this chain.
                StreamFilterConfig::ProxyWasm(_) => None,
            })
            .collect();
        FilterChain {
            filters: filters.into_boxed_slice(),
        }
    }

    /// Whether the chain has no filter: the proxy then skips it entirely (no view, no await).
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Runs the filters in order on one request: `Ok` with what the request holds until it
    /// ends, or the first filter's rejection (anything taken before it is released).
    ///
    /// # Errors
    /// The [`Rejection`] of the filter that ended the request.
    pub async fn run(&self, req: &RequestView<'_>) -> Result<FilterGuard, Rejection> {
        let mut guard = FilterGuard::none();
        for f in self.filters.iter() {
            if let Verdict::Reject(r) = f.apply(req, &mut guard).await {
                return Err(r);
            }
        }
        Ok(guard)
    }

    /// The counters of every filter, each under its admin-API namespace.
    pub fn stats(&self) -> Vec<(String, Arc<dyn StatsSource>)> {
        self.filters.iter().flat_map(StreamFilter::stats).collect()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::{
        FaultAbort, FaultConfig, FlowControlConfig, FlowLimit, FlowRuleConfig, LimitKeyPart,
    };

    fn concurrency_filter(max: u32, enabled: bool) -> StreamFilterConfig {
        StreamFilterConfig::FlowControl(FlowControlConfig {
            enabled,
            monitor: false,
            limit_key_text: "{service}".into(),
            limit_key: vec![LimitKeyPart::Header("service".into())],
            status: 503,
            rules: vec![FlowRuleConfig {
                label: "c".into(),
                resource: "svc".into(),
                regex: None,
                limit: FlowLimit::Concurrency { max },
                json_path: String::new(),
            }],
            json_path: String::new(),
        })
    }

    fn abort_all(status: u32) -> StreamFilterConfig {
        StreamFilterConfig::Fault(FaultConfig {
            label: "stream_filters[1]".into(),
            delay: None,
            abort: Some(FaultAbort {
                status,
                percent: 100,
            }),
            upstream_cluster: None,
            headers: Vec::new(),
            json_path: String::new(),
        })
    }

    fn svc() -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("service", "svc");
        h
    }

    fn view(h: &HeaderMap) -> RequestView<'_> {
        RequestView {
            headers: h,
            cluster: "c",
            listener: "l",
            oneway: false,
        }
    }

    fn active(chain: &FilterChain) -> u64 {
        let (_, stats) = chain
            .stats()
            .into_iter()
            .find(|(n, _)| n == "stream_filter.l.c")
            .expect("the concurrency rule's counters");
        stats.to_json()["active"].as_u64().expect("active gauge")
    }

    /// How a request that passed the chain ends, as the proxy's request task would see it.
    #[derive(Debug, Clone, Copy)]
    enum Ending {
        Response,
        ErrorResponse,
        Timeout,
        RetriesGiveUp,
        DownstreamClosed,
    }

    /// Runs one request through `chain` the way the proxy does (the guard lives in the
    /// request's future), ending it as `ending`. Returns whether it passed the chain.
    async fn request(chain: &Arc<FilterChain>, ending: Ending) -> bool {
        let chain = Arc::clone(chain);
        let (passed_tx, passed_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            let h = svc();
            let guard = match chain.run(&view(&h)).await {
                Ok(g) => g,
                Err(_) => {
                    let _ = passed_tx.send(false);
                    return Err("rejected");
                }
            };
            let _ = passed_tx.send(true);
            let upstream = async {
                match ending {
                    Ending::Response => Ok("response"),
                    Ending::ErrorResponse => Err("server error"),
                    Ending::RetriesGiveUp => {
                        for _ in 0..3 {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Err("no healthy host")
                    }
                    Ending::Timeout => std::future::pending::<Result<&str, &str>>().await,
                    // Never answered; only the abort below ends it.
                    Ending::DownstreamClosed => loop {
                        tokio::task::yield_now().await;
                    },
                }
            };
            let outcome = match ending {
                Ending::DownstreamClosed => upstream.await,
                _ => tokio::time::timeout(Duration::from_secs(3), upstream)
                    .await
                    .unwrap_or(Err("timeout")),
            };
            drop(guard);
            outcome
        });
        let passed = passed_rx.await.unwrap_or(false);
        if matches!(ending, Ending::DownstreamClosed) && passed {
            // The downstream went away: the proxy drops the request task mid-flight.
            tokio::task::yield_now().await;
            task.abort();
        }
        let _ = task.await;
        passed
    }

    #[tokio::test(start_paused = true)]
    async fn a_concurrency_slot_is_released_exactly_once_however_the_request_ends() {
        for ending in [
            Ending::Response,
            Ending::ErrorResponse,
            Ending::Timeout,
            Ending::RetriesGiveUp,
            Ending::DownstreamClosed,
        ] {
            let chain = Arc::new(FilterChain::build("l", &[concurrency_filter(1, true)]));
            assert!(
                request(&chain, ending).await,
                "{ending:?}: first call passes"
            );
            assert_eq!(active(&chain), 0, "{ending:?}: slot released");
            // Released once, not twice: the limit still holds exactly one call.
            let h = svc();
            let held = chain.run(&view(&h)).await.expect("the freed slot");
            assert_eq!(held.slots(), 1);
            assert!(
                chain.run(&view(&h)).await.is_err(),
                "{ending:?}: limit of 1"
            );
            drop(held);
            assert_eq!(active(&chain), 0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn many_requests_ending_every_way_leave_no_slot_behind() {
        let chain = Arc::new(FilterChain::build("l", &[concurrency_filter(5, true)]));
        let endings = [
            Ending::Response,
            Ending::ErrorResponse,
            Ending::Timeout,
            Ending::RetriesGiveUp,
            Ending::DownstreamClosed,
        ];
        let mut tasks = Vec::new();
        for i in 0..50 {
            let chain = Arc::clone(&chain);
            tasks.push(tokio::spawn(async move {
                request(&chain, endings[i % endings.len()]).await
            }));
        }
        let mut passed = 0;
        for t in tasks {
            passed += usize::from(t.await.unwrap());
        }
        assert!(passed >= 5, "at least the first five pass");
        assert_eq!(active(&chain), 0);
    }

    #[tokio::test]
    async fn filters_run_in_order_and_the_first_rejection_releases_what_was_taken() {
        let chain = FilterChain::build("l", &[concurrency_filter(1, true), abort_all(509)]);
        let h = svc();
        let err = chain.run(&view(&h)).await.expect_err("aborted");
        assert_eq!(
            err,
            Rejection {
                status: 509,
                reason: RejectReason::FaultAbort
            }
        );
        assert_eq!(
            active(&chain),
            0,
            "the slot taken by the first filter is back"
        );
    }

    #[tokio::test]
    async fn an_empty_or_disabled_chain_holds_nothing() {
        assert!(FilterChain::default().is_empty());
        let disabled = FilterChain::build("l", &[concurrency_filter(0, false)]);
        assert!(disabled.is_empty(), "global_switch false builds no filter");
        let h = svc();
        assert_eq!(disabled.run(&view(&h)).await.unwrap().slots(), 0);
    }
}
