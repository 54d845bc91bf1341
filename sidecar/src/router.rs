//! Request routing (xprotocol spec, `docs/xprotocol-proxy-and-bolt.md` §3), compiled once from the config: a [`RouteTable`] per
//! route config, matched against a decoded frame's header map.
//!
//! Virtual hosts: RPC frames carry no host, so a table uses the route config's default
//! virtual host (domain `*`) and nothing else. Unlike MOSN, which finds no virtual host at
//! all when any other domain is configured beside `*`, the `*` host is used regardless;
//! the other virtual hosts are unreachable for RPC (the config parser warns about them). A
//! route config without a `*` virtual host routes nothing (every request gets a no-route
//! response).
//!
//! Routes are tried in order; the first match wins. A header matcher needs its header
//! present and matching: exact values compare case-sensitively, `regex: true` is an
//! unanchored search. An empty matcher list matches everything. MOSN's fast path is kept
//! for a lone `service` matcher without `regex`: the header must be non-empty and equal
//! the value, or the value is `.*` (so `{"name":"service","value":".*"}` means "any
//! non-empty service"). Unlike MOSN, `regex: true` on a lone `service` matcher is honoured.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use codec_host::HeaderMap;
use regex::bytes::Regex;

use crate::config::{
    ClusterRef, ClusterTarget, Config, HeaderMatcherConfig, RetryPolicy, RouteConfig, RouteMatch,
    WeightedCluster, DEFAULT_GLOBAL_TIMEOUT,
};
use crate::retry::RetryPlan;

/// The routes of one route config's default virtual host, ready to match.
#[derive(Debug)]
pub struct RouteTable {
    name: String,
    routes: Vec<Route>,
}

/// One compiled route.
#[derive(Debug)]
pub struct Route {
    matcher: Matcher,
    target: Target,
    timeout: Option<Duration>,
    retry_policy: Option<RetryPolicy>,
    retry: RetryPlan,
    json_path: String,
}

#[derive(Debug)]
enum Matcher {
    /// Empty matcher list.
    Any,
    /// HTTP rule: never matches an RPC request.
    Never,
    /// MOSN's lone-`service` fast path; `None` = value `.*` (any non-empty service).
    Service(Option<Vec<u8>>),
    /// All must match.
    Headers(HeaderConditions),
}

/// Header matchers that must all match: the header present, and equal to the value (case
/// sensitive) or, with `regex: true`, containing a match. An empty list matches everything.
/// Used by routes and by the fault filter's `headers` (which has no `service` fast path).
#[derive(Debug)]
pub struct HeaderConditions(Vec<HeaderMatch>);

impl HeaderConditions {
    /// Compiles `matchers`.
    pub fn new(matchers: &[HeaderMatcherConfig]) -> HeaderConditions {
        HeaderConditions(
            matchers
                .iter()
                .map(|h| HeaderMatch {
                    name: h.name.as_bytes().to_vec(),
                    value: h.value.as_bytes().to_vec(),
                    regex: h.regex.clone(),
                })
                .collect(),
        )
    }

    /// Whether every matcher matches `headers`.
    pub fn matches(&self, headers: &HeaderMap) -> bool {
        self.0.iter().all(|h| match headers.get(&h.name) {
            None => false,
            Some(got) => match &h.regex {
                Some(re) => re.is_match(got),
                None => got == h.value.as_slice(),
            },
        })
    }

    /// Whether there is no matcher (everything matches).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Debug)]
struct HeaderMatch {
    name: Vec<u8>,
    value: Vec<u8>,
    regex: Option<Regex>,
}

#[derive(Debug)]
enum Target {
    Cluster(ClusterRef),
    /// Clusters with their cumulative weight bounds, and the total weight.
    Weighted {
        clusters: Vec<(ClusterRef, u32)>,
        total: u32,
    },
}

impl RouteTable {
    /// Compiles the default (`*`) virtual host of `config`.
    pub fn new(config: &RouteConfig) -> RouteTable {
        RouteTable::speaking(config, |_| true)
    }

    /// Compiles the default (`*`) virtual host of `config`, keeping only the routes whose
    /// every cluster (by index) `speaks` (an auto-detecting listener's table for one of its
    /// protocols: a connection of that protocol is routed only to clusters speaking it).
    pub fn speaking(config: &RouteConfig, speaks: impl Fn(usize) -> bool) -> RouteTable {
        let routes = config
            .virtual_hosts
            .iter()
            .find(|vh| vh.is_default())
            .map(|vh| {
                vh.routes
                    .iter()
                    .filter(|r| match &r.action.target {
                        ClusterTarget::Cluster(c) => speaks(c.index),
                        ClusterTarget::Weighted(list) => {
                            list.iter().all(|w| speaks(w.cluster.index))
                        }
                    })
                    .map(|r| Route {
                        matcher: Matcher::compile(&r.matcher),
                        target: Target::compile(&r.action.target),
                        timeout: r.action.timeout,
                        retry_policy: r.action.retry_policy.clone(),
                        retry: RetryPlan::new(r.action.retry_policy.as_ref()),
                        json_path: r.json_path.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        RouteTable {
            name: config.name.clone(),
            routes,
        }
    }

    /// Compiles every route config of `config`, keyed by `router_config_name`.
    pub fn build_all(config: &Config) -> HashMap<String, Arc<RouteTable>> {
        config
            .route_configs
            .iter()
            .map(|rc| (rc.name.clone(), Arc::new(RouteTable::new(rc))))
            .collect()
    }

    /// The route config's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The compiled routes, in match order.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The first route matching `headers`; `None` = no route (a 404 hijack).
    pub fn route(&self, headers: &HeaderMap) -> Option<&Route> {
        self.routes.iter().find(|r| r.matcher.matches(headers))
    }
}

impl Route {
    /// The target cluster. For weighted clusters one is drawn from `rng`, each with
    /// probability weight / total weight; a single cluster draws nothing.
    pub fn cluster(&self, rng: &mut fastrand::Rng) -> &ClusterRef {
        match &self.target {
            Target::Cluster(c) => c,
            Target::Weighted { clusters, total } => pick_weighted(clusters, rng.u32(0..*total)),
        }
    }

    /// The target cluster for one request, drawn from the thread's generator when the
    /// route is weighted.
    pub fn pick_cluster(&self) -> &ClusterRef {
        match &self.target {
            Target::Cluster(c) => c,
            Target::Weighted { clusters, total } => {
                pick_weighted(clusters, fastrand::u32(0..*total))
            }
        }
    }

    /// Whether the route has a single target cluster (no draw needed), and which.
    pub fn single_cluster(&self) -> Option<&ClusterRef> {
        match &self.target {
            Target::Cluster(c) => Some(c),
            Target::Weighted { .. } => None,
        }
    }

    /// The route `timeout` as configured.
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// How long a request may take (xprotocol spec (`docs/xprotocol-proxy-and-bolt.md`) §2.7): its own timeout when it sets one, else the
    /// route's, else [`DEFAULT_GLOBAL_TIMEOUT`] (better than MOSN, where Bolt's -1 waits
    /// forever).
    pub fn request_timeout(&self, requested: Option<Duration>) -> Duration {
        requested.or(self.timeout).unwrap_or(DEFAULT_GLOBAL_TIMEOUT)
    }

    /// The route's retry policy, if configured.
    pub fn retry_policy(&self) -> Option<&RetryPolicy> {
        self.retry_policy.as_ref()
    }

    /// The route's compiled retry plan.
    pub fn retry(&self) -> &RetryPlan {
        &self.retry
    }

    /// JSON path of the route in the config (for logs).
    pub fn json_path(&self) -> &str {
        &self.json_path
    }
}

/// The cluster whose cumulative bound is the first above `draw` (`draw < total`).
fn pick_weighted(clusters: &[(ClusterRef, u32)], draw: u32) -> &ClusterRef {
    let i = clusters.partition_point(|(_, bound)| *bound <= draw);
    // `draw < total` = the last bound, so `i` is in range; the fallback only guards
    // against a broken invariant.
    &clusters[i.min(clusters.len() - 1)].0
}

impl Target {
    fn compile(target: &ClusterTarget) -> Target {
        match target {
            ClusterTarget::Cluster(c) => Target::Cluster(c.clone()),
            ClusterTarget::Weighted(list) => {
                let mut bound = 0u32;
                let clusters = list
                    .iter()
                    .filter(|w| w.weight > 0)
                    .map(|WeightedCluster { cluster, weight }| {
                        // The parser bounds the sum to u32.
                        bound = bound.saturating_add(*weight);
                        (cluster.clone(), bound)
                    })
                    .collect();
                Target::Weighted {
                    clusters,
                    total: bound,
                }
            }
        }
    }
}

impl Matcher {
    fn compile(m: &RouteMatch) -> Matcher {
        match m {
            RouteMatch::NonRpc => Matcher::Never,
            RouteMatch::Headers(list) if list.is_empty() => Matcher::Any,
            RouteMatch::Headers(list) => match list.as_slice() {
                [HeaderMatcherConfig {
                    name,
                    value,
                    regex: None,
                }] if name == "service" => {
                    Matcher::Service((value != ".*").then(|| value.as_bytes().to_vec()))
                }
                _ => Matcher::Headers(HeaderConditions::new(list)),
            },
        }
    }

    fn matches(&self, headers: &HeaderMap) -> bool {
        match self {
            Matcher::Any => true,
            Matcher::Never => false,
            Matcher::Service(value) => match headers.get(b"service") {
                Some(service) if !service.is_empty() => {
                    value.as_deref().is_none_or(|v| v == service)
                }
                _ => false,
            },
            Matcher::Headers(conditions) => conditions.matches(headers),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RouteAction, RouteRuleConfig, VirtualHostConfig};

    fn cref(name: &str, index: usize) -> ClusterRef {
        ClusterRef {
            name: name.to_owned(),
            index,
        }
    }

    fn matcher(name: &str, value: &str, regex: bool) -> HeaderMatcherConfig {
        HeaderMatcherConfig {
            name: name.to_owned(),
            value: value.to_owned(),
            regex: regex.then(|| Regex::new(value).expect("test regex")),
        }
    }

    fn rule(matchers: Vec<HeaderMatcherConfig>, cluster: &str) -> RouteRuleConfig {
        RouteRuleConfig {
            matcher: RouteMatch::Headers(matchers),
            action: RouteAction {
                target: ClusterTarget::Cluster(cref(cluster, 0)),
                timeout: None,
                retry_policy: None,
            },
            json_path: format!("route-to-{cluster}"),
        }
    }

    fn table(vhosts: Vec<(Vec<&str>, Vec<RouteRuleConfig>)>) -> RouteTable {
        RouteTable::new(&RouteConfig {
            name: "rc".into(),
            virtual_hosts: vhosts
                .into_iter()
                .enumerate()
                .map(|(i, (domains, routes))| VirtualHostConfig {
                    name: format!("vh{i}"),
                    domains: domains.into_iter().map(str::to_owned).collect(),
                    routes,
                    json_path: format!("vh{i}"),
                })
                .collect(),
            json_path: "rc".into(),
        })
    }

    fn one_vhost(routes: Vec<RouteRuleConfig>) -> RouteTable {
        table(vec![(vec!["*"], routes)])
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        pairs.iter().copied().collect()
    }

    fn routed<'a>(t: &'a RouteTable, pairs: &[(&str, &str)]) -> Option<&'a str> {
        t.route(&headers(pairs))
            .and_then(|r| r.single_cluster())
            .map(|c| c.name.as_str())
    }

    #[test]
    fn service_dot_star_means_non_empty_service() {
        let t = one_vhost(vec![rule(vec![matcher("service", ".*", false)], "a")]);
        assert_eq!(routed(&t, &[("service", "com.foo.Hello:1.0")]), Some("a"));
        assert_eq!(routed(&t, &[("service", "")]), None);
        assert_eq!(routed(&t, &[("other", "x")]), None);
        assert_eq!(routed(&t, &[]), None);
    }

    #[test]
    fn lone_service_exact_is_case_sensitive_and_needs_non_empty() {
        let t = one_vhost(vec![rule(
            vec![matcher("service", "com.A:1.0", false)],
            "a",
        )]);
        assert_eq!(routed(&t, &[("service", "com.A:1.0")]), Some("a"));
        assert_eq!(routed(&t, &[("service", "com.a:1.0")]), None);
        assert_eq!(routed(&t, &[("service", "com.A:1.0x")]), None);
        let empty = one_vhost(vec![rule(vec![matcher("service", "", false)], "a")]);
        assert_eq!(routed(&empty, &[("service", "")]), None);
    }

    #[test]
    fn lone_service_regex_is_honoured_unanchored() {
        let t = one_vhost(vec![rule(vec![matcher("service", "Hello", true)], "a")]);
        assert_eq!(
            routed(&t, &[("service", "com.foo.HelloService:1.0")]),
            Some("a")
        );
        assert_eq!(routed(&t, &[("service", "com.foo.Bye:1.0")]), None);
        let anchored = one_vhost(vec![rule(
            vec![matcher("service", "^com\\.foo\\.", true)],
            "a",
        )]);
        assert_eq!(routed(&anchored, &[("service", "com.foo.X")]), Some("a"));
        assert_eq!(routed(&anchored, &[("service", "org.com.foo.X")]), None);
    }

    #[test]
    fn multiple_matchers_all_must_be_present_and_match() {
        let t = one_vhost(vec![rule(
            vec![
                matcher("service", "com.A:1.0", false),
                matcher("sofa_head_method_name", "say.*", true),
            ],
            "a",
        )]);
        assert_eq!(
            routed(
                &t,
                &[
                    ("service", "com.A:1.0"),
                    ("sofa_head_method_name", "sayHello")
                ]
            ),
            Some("a")
        );
        assert_eq!(
            routed(
                &t,
                &[("service", "com.A:1.0"), ("sofa_head_method_name", "bye")]
            ),
            None
        );
        assert_eq!(routed(&t, &[("service", "com.A:1.0")]), None);
    }

    #[test]
    fn multi_matcher_dot_star_without_regex_is_literal() {
        // Outside the lone-service fast path, ".*" without regex is a literal value (MOSN).
        let t = one_vhost(vec![rule(
            vec![matcher("service", ".*", false), matcher("k", "v", false)],
            "a",
        )]);
        assert_eq!(routed(&t, &[("service", "x"), ("k", "v")]), None);
        assert_eq!(routed(&t, &[("service", ".*"), ("k", "v")]), Some("a"));
    }

    #[test]
    fn first_match_wins_and_empty_list_matches_everything() {
        let t = one_vhost(vec![
            rule(vec![matcher("service", "com.A:1.0", false)], "a"),
            rule(vec![matcher("service", ".*", false)], "b"),
            rule(vec![], "c"),
        ]);
        assert_eq!(routed(&t, &[("service", "com.A:1.0")]), Some("a"));
        assert_eq!(routed(&t, &[("service", "com.B:1.0")]), Some("b"));
        assert_eq!(routed(&t, &[]), Some("c"));
    }

    #[test]
    fn non_rpc_rules_never_match() {
        let mut r = rule(vec![], "a");
        r.matcher = RouteMatch::NonRpc;
        let t = one_vhost(vec![r, rule(vec![], "b")]);
        assert_eq!(routed(&t, &[("service", "x")]), Some("b"));
    }

    #[test]
    fn default_vhost_is_used_even_beside_other_domains() {
        let t = table(vec![
            (vec!["example.com"], vec![rule(vec![], "named")]),
            (vec!["*"], vec![rule(vec![], "default")]),
        ]);
        assert_eq!(routed(&t, &[("service", "x")]), Some("default"));
    }

    #[test]
    fn no_default_vhost_routes_nothing() {
        let t = table(vec![(vec!["example.com"], vec![rule(vec![], "named")])]);
        assert!(t.routes().is_empty());
        assert_eq!(routed(&t, &[("service", "x")]), None);
    }

    #[test]
    fn weighted_pick_is_exact_at_the_boundaries() {
        let clusters = vec![(cref("a", 0), 1), (cref("b", 1), 4), (cref("c", 2), 10)];
        let names: Vec<&str> = (0..10)
            .map(|d| pick_weighted(&clusters, d).name.as_str())
            .collect();
        assert_eq!(names, ["a", "b", "b", "b", "c", "c", "c", "c", "c", "c"]);
    }

    #[test]
    fn weighted_draw_follows_weights_and_skips_zero() {
        let mut r = rule(vec![], "unused");
        r.action.target = ClusterTarget::Weighted(vec![
            WeightedCluster {
                cluster: cref("a", 0),
                weight: 1,
            },
            WeightedCluster {
                cluster: cref("zero", 1),
                weight: 0,
            },
            WeightedCluster {
                cluster: cref("b", 2),
                weight: 3,
            },
        ]);
        let t = one_vhost(vec![r]);
        let route = t.route(&headers(&[])).expect("matches everything");
        assert!(route.single_cluster().is_none());
        let mut rng = fastrand::Rng::with_seed(7);
        let mut counts: HashMap<&str, u32> = HashMap::new();
        for _ in 0..40_000 {
            *counts
                .entry(route.cluster(&mut rng).name.as_str())
                .or_default() += 1;
        }
        assert_eq!(counts.get("zero"), None);
        let a = f64::from(counts["a"]) / 40_000.0;
        assert!((0.22..0.28).contains(&a), "a got {a}");
    }

    #[test]
    fn route_exposes_timeout_and_retry_policy() {
        let mut r = rule(vec![], "a");
        r.action.timeout = Some(Duration::from_secs(3));
        r.action.retry_policy = Some(RetryPolicy {
            retry_on: true,
            retry_timeout: Some(Duration::from_millis(500)),
            num_retries: 2,
            status_codes: vec![503],
        });
        let t = one_vhost(vec![r]);
        let route = t.route(&headers(&[])).expect("route");
        assert_eq!(route.timeout(), Some(Duration::from_secs(3)));
        assert_eq!(route.retry_policy().map(|p| p.num_retries), Some(2));
        assert_eq!(route.json_path(), "route-to-a");
        assert_eq!(route.retry().attempts(), 3);
        assert_eq!(route.request_timeout(None), Duration::from_secs(3));
        assert_eq!(
            route.request_timeout(Some(Duration::from_millis(20))),
            Duration::from_millis(20)
        );
        let untimed = one_vhost(vec![rule(vec![], "a")]);
        let route = untimed.route(&headers(&[])).expect("route");
        assert_eq!(route.request_timeout(None), DEFAULT_GLOBAL_TIMEOUT);
    }
}
