//! `servers[0].routers[]`: named route configs — virtual hosts, RPC header matchers and
//! route actions (cluster or weighted clusters, timeout, retry policy).

use std::collections::HashMap;
use std::time::Duration;

use regex::bytes::Regex;

use super::error::{invalid, ConfigError, Invalid, Warnings};
use super::json::{Item, Obj};

/// A named route config (`routers[i]`).
#[derive(Debug, Clone)]
pub struct RouteConfig {
    /// `router_config_name`.
    pub name: String,
    /// Virtual hosts in config order.
    pub virtual_hosts: Vec<VirtualHostConfig>,
    /// JSON path, for messages.
    pub json_path: String,
}

/// `virtual_hosts[j]`.
#[derive(Debug, Clone)]
pub struct VirtualHostConfig {
    /// `name` (a label).
    pub name: String,
    /// `domains`; RPC traffic uses the vhost whose domains include `*`.
    pub domains: Vec<String>,
    /// `routers` (the routes), tried in order.
    pub routes: Vec<RouteRuleConfig>,
    /// JSON path, for messages.
    pub json_path: String,
}

impl VirtualHostConfig {
    /// Whether this is the default (`*`) virtual host.
    pub fn is_default(&self) -> bool {
        self.domains.iter().any(|d| d == "*")
    }
}

/// One route (`routers[k]` inside a virtual host).
#[derive(Debug, Clone)]
pub struct RouteRuleConfig {
    /// What requests it takes.
    pub matcher: RouteMatch,
    /// Where they go.
    pub action: RouteAction,
    /// JSON path, for messages and logs.
    pub json_path: String,
}

/// A route's match rule.
#[derive(Debug, Clone)]
pub enum RouteMatch {
    /// An RPC rule: every matcher must find its header and match (empty = match all).
    Headers(Vec<HeaderMatcherConfig>),
    /// An HTTP or variable rule (`prefix`, `path`, `regex`, `variables`,
    /// `dsl_expressions`); RPC requests never match it.
    NonRpc,
}

/// `match.headers[m]`.
#[derive(Debug, Clone)]
pub struct HeaderMatcherConfig {
    /// Header name (case-sensitive).
    pub name: String,
    /// Value to compare with, or pattern when `regex` is set.
    pub value: String,
    /// The compiled pattern when `regex: true` (unanchored search).
    pub regex: Option<Regex>,
}

/// A route's action.
#[derive(Debug, Clone)]
pub struct RouteAction {
    /// Target cluster(s).
    pub target: ClusterTarget,
    /// `timeout`; `None` when absent or zero (the runtime then uses
    /// [`DEFAULT_GLOBAL_TIMEOUT`] unless the request carries its own).
    pub timeout: Option<Duration>,
    /// `retry_policy`, if any.
    pub retry_policy: Option<RetryPolicy>,
}

/// Global request timeout when neither the route nor the request sets one (MOSN: 60 s).
pub const DEFAULT_GLOBAL_TIMEOUT: Duration = Duration::from_secs(60);

/// Where a route sends requests.
#[derive(Debug, Clone)]
pub enum ClusterTarget {
    /// `cluster_name`.
    Cluster(ClusterRef),
    /// `weighted_clusters`: one is drawn per request, proportionally to weight. Entries of
    /// weight 0 are kept (never drawn); the total is positive.
    Weighted(Vec<WeightedCluster>),
}

/// A cluster by name and by index into [`super::Config::clusters`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterRef {
    /// Cluster name.
    pub name: String,
    /// Index into `Config::clusters`.
    pub index: usize,
}

/// `weighted_clusters[n].cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightedCluster {
    /// The cluster.
    pub cluster: ClusterRef,
    /// Its weight.
    pub weight: u32,
}

/// `retry_policy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// `retry_on`: retry on error statuses, per-try timeouts and terminations, not only on
    /// connection failures.
    pub retry_on: bool,
    /// `retry_timeout`: per-try timeout (dropped at runtime when ≥ the global timeout).
    pub retry_timeout: Option<Duration>,
    /// `num_retries` (MOSN's budget is `max(3, num_retries)` attempts).
    pub num_retries: u32,
    /// `status_codes`: mapped codes that are retried (empty = any code ≥ 500).
    pub status_codes: Vec<u32>,
}

/// Parses one `routers[i]` of a server; `clusters` maps cluster names to indices.
pub(crate) fn parse_route_config(
    item: &Item<'_>,
    clusters: &HashMap<&str, usize>,
    warnings: &mut Warnings,
) -> Result<RouteConfig, ConfigError> {
    let mut o = item.obj()?;
    let name = o.required_str("router_config_name")?.to_owned();
    let mut virtual_hosts = Vec::new();
    let mut default_vhost: Option<String> = None;
    for vh in o.items("virtual_hosts")? {
        let vhost = parse_virtual_host(&vh, clusters, warnings)?;
        if vhost.is_default() {
            if let Some(first) = &default_vhost {
                return Err(invalid(
                    format!("{}.domains", vhost.json_path),
                    Invalid::Duplicate {
                        what: "default virtual host domain",
                        name: "*".to_owned(),
                        first: first.clone(),
                    },
                ));
            }
            default_vhost = Some(format!("{}.domains", vhost.json_path));
        }
        virtual_hosts.push(vhost);
    }
    match &default_vhost {
        None => warnings.push(
            o.child("virtual_hosts"),
            "no virtual host has domain \"*\": RPC requests carry no host, so every request \
             on this route config gets a no-route error",
        ),
        Some(_) => {
            for vh in virtual_hosts.iter().filter(|v| !v.is_default()) {
                warnings.push(
                    format!("{}.domains", vh.json_path),
                    "RPC requests carry no host and always use the \"*\" virtual host; \
                     this virtual host is never used",
                );
            }
        }
    }
    for key in [
        "request_headers_to_add",
        "request_headers_to_remove",
        "response_headers_to_add",
        "response_headers_to_remove",
    ] {
        o.warn_if_set(key, "header rewriting is not supported; ignored", warnings);
    }
    let json_path = o.path().to_owned();
    o.finish(warnings);
    Ok(RouteConfig {
        name,
        virtual_hosts,
        json_path,
    })
}

fn parse_virtual_host(
    item: &Item<'_>,
    clusters: &HashMap<&str, usize>,
    warnings: &mut Warnings,
) -> Result<VirtualHostConfig, ConfigError> {
    let mut o = item.obj()?;
    let name = o.str("name")?.unwrap_or_default().to_owned();
    let mut domains = Vec::new();
    for d in o.items("domains")? {
        domains.push(d.node().as_str()?.to_owned());
    }
    let mut routes = Vec::new();
    for r in o.items("routers")? {
        routes.push(parse_route(&r, clusters, warnings)?);
    }
    for key in [
        "request_headers_to_add",
        "request_headers_to_remove",
        "response_headers_to_add",
        "response_headers_to_remove",
    ] {
        o.warn_if_set(key, "header rewriting is not supported; ignored", warnings);
    }
    o.warn_if_set(
        "per_filter_config",
        "per-filter config is not supported; ignored",
        warnings,
    );
    let json_path = o.path().to_owned();
    o.finish(warnings);
    Ok(VirtualHostConfig {
        name,
        domains,
        routes,
        json_path,
    })
}

fn parse_route(
    item: &Item<'_>,
    clusters: &HashMap<&str, usize>,
    warnings: &mut Warnings,
) -> Result<RouteRuleConfig, ConfigError> {
    let mut o = item.obj()?;
    let matcher = match o.obj("match")? {
        Some(m) => parse_match(m, warnings)?,
        None => RouteMatch::Headers(Vec::new()),
    };
    o.warn_if_set(
        "direct_response",
        "direct_response is not supported; the route's cluster is used",
        warnings,
    );
    o.warn_if_set("redirect", "redirects are not supported; ignored", warnings);
    o.warn_if_set(
        "per_filter_config",
        "per-filter config is not supported; ignored",
        warnings,
    );
    o.accept("metadata");
    let mut r = o
        .obj("route")?
        .ok_or_else(|| invalid(o.child("route"), Invalid::Missing))?;
    let action = parse_action(&mut r, clusters, warnings)?;
    r.finish(warnings);
    let json_path = o.path().to_owned();
    o.finish(warnings);
    Ok(RouteRuleConfig {
        matcher,
        action,
        json_path,
    })
}

fn parse_match(mut m: Obj<'_>, warnings: &mut Warnings) -> Result<RouteMatch, ConfigError> {
    let mut non_rpc = false;
    for key in ["prefix", "path", "regex", "variables", "dsl_expressions"] {
        if let Some(item) = m.get(key) {
            if super::json::is_set(item.value) {
                warnings.push(
                    item.path,
                    "HTTP/variable matching is not supported for RPC: this route never matches",
                );
                non_rpc = true;
            }
        }
    }
    let mut matchers = Vec::new();
    for h in m.items("headers")? {
        let mut ho = h.obj()?;
        matchers.push(parse_header_matcher(&mut ho)?);
        ho.finish(warnings);
    }
    m.finish(warnings);
    Ok(if non_rpc {
        RouteMatch::NonRpc
    } else {
        RouteMatch::Headers(matchers)
    })
}

/// Reads `{name, value, regex}` of one header matcher (routes and the fault filter); the
/// caller finishes the object.
pub(crate) fn parse_header_matcher(ho: &mut Obj<'_>) -> Result<HeaderMatcherConfig, ConfigError> {
    let name = ho.required_str("name")?.to_owned();
    let value = ho.str("value")?.unwrap_or_default().to_owned();
    let regex = if ho.bool("regex")?.unwrap_or(false) {
        Some(Regex::new(&value).map_err(|source| {
            invalid(
                ho.child("value"),
                Invalid::Regex {
                    pattern: value.clone(),
                    source,
                },
            )
        })?)
    } else {
        None
    };
    Ok(HeaderMatcherConfig { name, value, regex })
}

fn cluster_ref(
    name: &str,
    path: String,
    clusters: &HashMap<&str, usize>,
) -> Result<ClusterRef, ConfigError> {
    match clusters.get(name) {
        Some(&index) => Ok(ClusterRef {
            name: name.to_owned(),
            index,
        }),
        None => Err(invalid(
            path,
            Invalid::UnknownCluster {
                name: name.to_owned(),
            },
        )),
    }
}

fn parse_action(
    r: &mut Obj<'_>,
    clusters: &HashMap<&str, usize>,
    warnings: &mut Warnings,
) -> Result<RouteAction, ConfigError> {
    let cluster_name = r.str("cluster_name")?.filter(|s| !s.is_empty());
    let weighted = r.items("weighted_clusters")?;
    let target = match (cluster_name, weighted.is_empty()) {
        (Some(_), false) => {
            return Err(invalid(
                r.child("weighted_clusters"),
                Invalid::Rule("set either cluster_name or weighted_clusters, not both"),
            ))
        }
        (Some(name), true) => {
            ClusterTarget::Cluster(cluster_ref(name, r.child("cluster_name"), clusters)?)
        }
        (None, false) => {
            let mut list = Vec::new();
            let mut total: u64 = 0;
            for w in &weighted {
                let mut wo = w.obj()?;
                let mut c = wo
                    .obj("cluster")?
                    .ok_or_else(|| invalid(wo.child("cluster"), Invalid::Missing))?;
                let name = c.required_str("name")?;
                let cluster = cluster_ref(name, c.child("name"), clusters)?;
                let weight = c.u32("weight")?.unwrap_or(0);
                c.warn_if_set(
                    "metadata_match",
                    "subset load balancing is not supported; ignored",
                    warnings,
                );
                c.finish(warnings);
                wo.finish(warnings);
                total += u64::from(weight);
                list.push(WeightedCluster { cluster, weight });
            }
            if total == 0 {
                return Err(invalid(
                    r.child("weighted_clusters"),
                    Invalid::Rule("weighted cluster weights must not all be zero"),
                ));
            }
            if total > u64::from(u32::MAX) {
                return Err(invalid(
                    r.child("weighted_clusters"),
                    Invalid::Rule("the sum of weighted cluster weights must fit in 32 bits"),
                ));
            }
            ClusterTarget::Weighted(list)
        }
        (None, true) => {
            return Err(invalid(
                r.child("cluster_name"),
                Invalid::Rule("a route needs cluster_name or weighted_clusters"),
            ))
        }
    };
    let timeout = r.duration("timeout")?.filter(|t| !t.is_zero());
    let retry_policy = match r.obj("retry_policy")? {
        Some(mut p) => {
            let retry_on = p.bool("retry_on")?.unwrap_or(false);
            let retry_timeout = p.duration("retry_timeout")?.filter(|t| !t.is_zero());
            let num_retries = p.u32("num_retries")?.unwrap_or(0);
            let mut status_codes = Vec::new();
            let status_items = p.items("status_codes")?;
            for s in &status_items {
                status_codes.push(s.node().as_u32()?);
            }
            if !status_codes.is_empty() && !retry_on {
                warnings.push(
                    p.child("status_codes"),
                    "status_codes take effect only with retry_on: true (as in MOSN); no response is retried",
                );
            }
            p.finish(warnings);
            Some(RetryPolicy {
                retry_on,
                retry_timeout,
                num_retries,
                status_codes,
            })
        }
        None => None,
    };
    r.warn_if_set(
        "upstream_protocol",
        "per-route upstream_protocol is not supported; the listener's protocol is used",
        warnings,
    );
    r.warn_if_set(
        "cluster_header",
        "cluster_header is not supported; ignored",
        warnings,
    );
    r.warn_if_set(
        "cluster_variable",
        "cluster_variable is not supported; ignored",
        warnings,
    );
    r.warn_if_set(
        "metadata_match",
        "subset load balancing is not supported; ignored",
        warnings,
    );
    r.warn_if_set(
        "hash_policy",
        "hash policies are not supported; ignored",
        warnings,
    );
    for key in [
        "request_headers_to_add",
        "request_headers_to_remove",
        "response_headers_to_add",
        "response_headers_to_remove",
    ] {
        r.warn_if_set(key, "header rewriting is not supported; ignored", warnings);
    }
    Ok(RouteAction {
        target,
        timeout,
        retry_policy,
    })
}
