//! `flowControlFilter`: local limits per limit key, process-wide. Each request's key is
//! rendered from its headers; every rule whose resource matches it applies, in order. A rate
//! rule takes a token from its bucket (or, when throttling, reserves one and waits for it); a
//! concurrency rule takes a slot that the request's [`FilterGuard`] holds until it ends. The
//! first rule over its limit rejects the request (monitor mode only counts it).

use std::sync::Arc;
use std::time::Duration;

use regex::bytes::Regex;
use serde_json::{json, Value};
use tracing::debug;

use super::clock::MonotonicClock;
use super::concurrency::ConcurrencyLimit;
use super::limit_key::LimitKey;
use super::token_bucket::TokenBucket;
use super::{FilterGuard, RejectReason, Rejection, RequestView, Verdict};
use crate::config::{FlowControlConfig, FlowLimit, FlowRuleConfig};
use crate::stats::{Counter, StatsSource};

/// A compiled, enabled `flowControlFilter`.
#[derive(Debug)]
pub struct FlowControl {
    key: LimitKey,
    rules: Box<[Rule]>,
    monitor: bool,
    rejection: Rejection,
    clock: MonotonicClock,
}

#[derive(Debug)]
struct Rule {
    resource: Resource,
    limit: Limit,
    stats: Arc<RuleStats>,
    namespace: String,
}

#[derive(Debug)]
enum Resource {
    Exact(Box<[u8]>),
    Pattern(Regex),
}

#[derive(Debug)]
enum Limit {
    /// Calls per second; `max_wait` > 0 only when throttling.
    Rate { bucket: TokenBucket, max_wait: u64 },
    /// Calls in flight.
    Concurrency(Arc<ConcurrencyLimit>),
}

/// One rule's counters (admin API `stream_filter.<listener>.<rule>`).
#[derive(Debug, Default)]
pub struct RuleStats {
    /// Calls within the limit.
    pub passed: Counter,
    /// Calls over the limit, answered with the action status.
    pub rejected: Counter,
    /// Oneway calls over the limit, dropped.
    pub oneway_dropped: Counter,
    /// Calls over the limit let through because the filter is in monitor mode.
    pub monitored: Counter,
    /// Calls admitted after waiting for a token (throttling).
    pub queued: Counter,
    concurrency: Option<Arc<ConcurrencyLimit>>,
}

impl StatsSource for RuleStats {
    fn to_json(&self) -> Value {
        let mut v = json!({
            "passed": self.passed.get(),
            "rejected": self.rejected.get(),
            "oneway_dropped": self.oneway_dropped.get(),
            "monitored": self.monitored.get(),
            "queued": self.queued.get(),
        });
        if let Some(limit) = &self.concurrency {
            v["active"] = json!(limit.active());
            v["max_active"] = json!(limit.max());
        }
        v
    }
}

impl Resource {
    fn matches(&self, key: &[u8]) -> bool {
        match self {
            Resource::Exact(r) => **r == *key,
            Resource::Pattern(re) => re.is_match(key),
        }
    }
}

impl Rule {
    fn new(listener: &str, config: &FlowRuleConfig) -> Rule {
        let resource = match &config.regex {
            Some(re) => Resource::Pattern(re.clone()),
            None => Resource::Exact(config.resource.as_bytes().into()),
        };
        let (limit, concurrency) = match &config.limit {
            FlowLimit::Rate {
                threshold,
                stat_interval,
                burst,
                max_queueing,
            } => (
                Limit::Rate {
                    bucket: TokenBucket::new(
                        FlowLimit::rate_per_sec(*threshold, *stat_interval),
                        *burst,
                    ),
                    max_wait: max_queueing
                        .map_or(0, |q| u64::try_from(q.as_nanos()).unwrap_or(u64::MAX)),
                },
                None,
            ),
            FlowLimit::Concurrency { max } => {
                let limit = ConcurrencyLimit::new(u64::from(*max));
                (Limit::Concurrency(limit.clone()), Some(limit))
            }
        };
        Rule {
            resource,
            limit,
            stats: Arc::new(RuleStats {
                concurrency,
                ..RuleStats::default()
            }),
            namespace: format!("stream_filter.{listener}.{}", config.label),
        }
    }
}

impl FlowControl {
    /// Compiles an enabled filter of listener `listener`; `clock` drives its rate limits.
    pub fn new(listener: &str, config: &FlowControlConfig, clock: MonotonicClock) -> FlowControl {
        FlowControl {
            key: LimitKey::new(&config.limit_key),
            rules: config
                .rules
                .iter()
                .map(|r| Rule::new(listener, r))
                .collect(),
            monitor: config.monitor,
            rejection: Rejection {
                status: config.status,
                reason: RejectReason::RateLimited,
            },
            clock,
        }
    }

    /// Applies every matching rule to `req`, at the real time.
    pub async fn apply(&self, req: &RequestView<'_>, guard: &mut FilterGuard) -> Verdict {
        match self.admit(req, guard, self.clock.now_nanos()) {
            Admitted::Now => Verdict::Continue,
            Admitted::After(wait) => {
                tokio::time::sleep(wait).await;
                Verdict::Continue
            }
            Admitted::No => Verdict::Reject(self.rejection),
        }
    }

    /// The decision at time `now` (nanoseconds of the filter's clock), without waiting:
    /// slots taken go into `guard`; on a rejection the caller drops the guard.
    fn admit(&self, req: &RequestView<'_>, guard: &mut FilterGuard, now: u64) -> Admitted {
        let key = self.key.render(req.headers);
        let mut wait = 0u64;
        for rule in self.rules.iter() {
            if !rule.resource.matches(&key) {
                continue;
            }
            let within = match &rule.limit {
                Limit::Rate { bucket, max_wait } => match bucket.reserve(now, *max_wait) {
                    Some(0) => true,
                    Some(w) => {
                        rule.stats.queued.inc();
                        wait = wait.max(w);
                        true
                    }
                    None => false,
                },
                Limit::Concurrency(limit) if self.monitor => {
                    let (slot, over) = limit.acquire_over();
                    guard.hold(slot);
                    !over
                }
                Limit::Concurrency(limit) => match limit.try_acquire() {
                    Some(slot) => {
                        guard.hold(slot);
                        true
                    }
                    None => false,
                },
            };
            if within {
                rule.stats.passed.inc();
            } else if self.monitor {
                rule.stats.monitored.inc();
            } else {
                if req.oneway {
                    rule.stats.oneway_dropped.inc();
                } else {
                    rule.stats.rejected.inc();
                }
                debug!(
                    rule = %rule.namespace,
                    key = %String::from_utf8_lossy(&key),
                    cluster = req.cluster,
                    "over the local limit"
                );
                return Admitted::No;
            }
        }
        if wait == 0 || self.monitor {
            Admitted::Now
        } else {
            Admitted::After(Duration::from_nanos(wait))
        }
    }

    /// Each rule's counters under its namespace.
    pub fn stats(&self) -> Vec<(String, Arc<dyn StatsSource>)> {
        self.rules
            .iter()
            .map(|r| {
                let stats: Arc<dyn StatsSource> = r.stats.clone();
                (r.namespace.clone(), stats)
            })
            .collect()
    }
}

/// What the rules decided for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admitted {
    Now,
    /// Throttled: go ahead after waiting this long for the reserved token.
    After(Duration),
    No,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LimitKeyPart;
    use codec_host::HeaderMap;

    const SEC: u64 = 1_000_000_000;

    fn rule(label: &str, resource: &str, limit: FlowLimit) -> FlowRuleConfig {
        FlowRuleConfig {
            label: label.into(),
            resource: resource.into(),
            regex: None,
            limit,
            json_path: String::new(),
        }
    }

    fn rate(per_sec: f64, burst: u32) -> FlowLimit {
        FlowLimit::Rate {
            threshold: per_sec,
            stat_interval: Duration::from_secs(1),
            burst,
            max_queueing: None,
        }
    }

    fn filter(rules: Vec<FlowRuleConfig>, monitor: bool) -> FlowControl {
        FlowControl::new(
            "l",
            &FlowControlConfig {
                enabled: true,
                monitor,
                limit_key_text: "{service}".into(),
                limit_key: vec![LimitKeyPart::Header("service".into())],
                status: 503,
                rules,
                json_path: String::new(),
            },
            MonotonicClock::new(),
        )
    }

    fn headers(service: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("service", service);
        h
    }

    fn view(h: &HeaderMap, oneway: bool) -> RequestView<'_> {
        RequestView {
            headers: h,
            cluster: "c",
            listener: "l",
            oneway,
        }
    }

    fn stat(f: &FlowControl, rule: usize) -> Value {
        f.rules[rule].stats.to_json()
    }

    #[test]
    fn a_rate_rule_limits_its_own_key_only() {
        let f = filter(vec![rule("r", "a", rate(10.0, 3))], false);
        let (a, b) = (headers("a"), headers("b"));
        let mut outcomes = Vec::new();
        for _ in 0..5 {
            let mut g = FilterGuard::none();
            outcomes.push(f.admit(&view(&a, false), &mut g, SEC));
        }
        assert_eq!(
            outcomes,
            [
                Admitted::Now,
                Admitted::Now,
                Admitted::Now,
                Admitted::No,
                Admitted::No
            ]
        );
        for _ in 0..100 {
            let mut g = FilterGuard::none();
            assert_eq!(f.admit(&view(&b, false), &mut g, SEC), Admitted::Now);
        }
        assert_eq!(stat(&f, 0)["passed"], 3);
        assert_eq!(stat(&f, 0)["rejected"], 2);
        // 100 ms later one token is back.
        let mut g = FilterGuard::none();
        assert_eq!(
            f.admit(&view(&a, false), &mut g, SEC + SEC / 10),
            Admitted::Now
        );
    }

    #[test]
    fn oneway_calls_over_the_limit_are_counted_as_dropped() {
        let f = filter(vec![rule("r", "a", rate(1.0, 1))], false);
        let a = headers("a");
        let mut g = FilterGuard::none();
        assert_eq!(f.admit(&view(&a, true), &mut g, SEC), Admitted::Now);
        assert_eq!(f.admit(&view(&a, true), &mut g, SEC), Admitted::No);
        assert_eq!(stat(&f, 0)["oneway_dropped"], 1);
        assert_eq!(stat(&f, 0)["rejected"], 0);
    }

    #[test]
    fn monitor_mode_counts_but_lets_everything_through() {
        let f = filter(
            vec![
                rule("r", "a", rate(1.0, 1)),
                rule("c", "a", FlowLimit::Concurrency { max: 1 }),
            ],
            true,
        );
        let a = headers("a");
        let mut guards = Vec::new();
        for _ in 0..4 {
            let mut g = FilterGuard::none();
            assert_eq!(f.admit(&view(&a, false), &mut g, SEC), Admitted::Now);
            guards.push(g);
        }
        assert_eq!(stat(&f, 0)["monitored"], 3);
        assert_eq!(stat(&f, 1)["monitored"], 3);
        // Monitored calls are really in flight: they hold slots until they end.
        assert_eq!(stat(&f, 1)["active"], 4);
        drop(guards);
        assert_eq!(stat(&f, 1)["active"], 0);
    }

    #[test]
    fn a_concurrency_slot_is_held_by_the_guard_until_the_request_ends() {
        let f = filter(
            vec![rule("c", "a", FlowLimit::Concurrency { max: 2 })],
            false,
        );
        let a = headers("a");
        let mut first = FilterGuard::none();
        let mut second = FilterGuard::none();
        let mut third = FilterGuard::none();
        assert_eq!(f.admit(&view(&a, false), &mut first, SEC), Admitted::Now);
        assert_eq!(f.admit(&view(&a, false), &mut second, SEC), Admitted::Now);
        assert_eq!(f.admit(&view(&a, false), &mut third, SEC), Admitted::No);
        assert_eq!((first.slots(), third.slots()), (1, 0));
        drop(first);
        let mut fourth = FilterGuard::none();
        assert_eq!(f.admit(&view(&a, false), &mut fourth, SEC), Admitted::Now);
        drop((second, fourth));
        assert_eq!(stat(&f, 0)["active"], 0);
    }

    #[test]
    fn a_later_rule_rejecting_releases_the_slot_an_earlier_rule_took() {
        let f = filter(
            vec![
                rule("c", "a", FlowLimit::Concurrency { max: 5 }),
                rule("r", "a", rate(1.0, 1)),
            ],
            false,
        );
        let a = headers("a");
        let mut g1 = FilterGuard::none();
        assert_eq!(f.admit(&view(&a, false), &mut g1, SEC), Admitted::Now);
        let mut g2 = FilterGuard::none();
        assert_eq!(f.admit(&view(&a, false), &mut g2, SEC), Admitted::No);
        // The chain drops the rejected request's guard.
        drop(g2);
        assert_eq!(stat(&f, 0)["active"], 1);
        drop(g1);
        assert_eq!(stat(&f, 0)["active"], 0);
    }

    #[test]
    fn throttling_waits_for_a_reserved_token_within_the_queueing_bound() {
        let throttled = FlowLimit::Rate {
            threshold: 10.0,
            stat_interval: Duration::from_secs(1),
            burst: 1,
            max_queueing: Some(Duration::from_millis(150)),
        };
        let f = filter(vec![rule("t", "a", throttled)], false);
        let a = headers("a");
        let mut g = FilterGuard::none();
        let outcomes: Vec<Admitted> = (0..3)
            .map(|_| f.admit(&view(&a, false), &mut g, SEC))
            .collect();
        assert_eq!(
            outcomes,
            [
                Admitted::Now,
                Admitted::After(Duration::from_millis(100)),
                Admitted::No
            ]
        );
        assert_eq!(stat(&f, 0)["queued"], 1);
    }

    #[test]
    fn regex_resources_share_one_budget_across_the_keys_they_match() {
        let mut r = rule("re", "svc\\..*", rate(1.0, 2));
        r.regex = Some(Regex::new("^(?:svc\\..*)$").unwrap());
        let f = filter(vec![r], false);
        let (x, y, other) = (headers("svc.x"), headers("svc.y"), headers("other"));
        let mut g = FilterGuard::none();
        assert_eq!(f.admit(&view(&x, false), &mut g, SEC), Admitted::Now);
        assert_eq!(f.admit(&view(&y, false), &mut g, SEC), Admitted::Now);
        assert_eq!(f.admit(&view(&x, false), &mut g, SEC), Admitted::No);
        assert_eq!(f.admit(&view(&other, false), &mut g, SEC), Admitted::Now);
    }

    #[test]
    fn counters_are_named_by_listener_and_rule() {
        let f = filter(
            vec![rule("stream_filters[0].rules[0]", "a", rate(1.0, 1))],
            false,
        );
        let names: Vec<String> = f.stats().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["stream_filter.l.stream_filters[0].rules[0]"]);
    }
}
