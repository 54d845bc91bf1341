//! What each admin endpoint answers, as plain functions of the request (method, path, query,
//! body) and the process state, so every status code and shape is tested without a socket.
//! Endpoints and shapes follow MOSN's admin API (`pkg/admin/server/apis.go`); `/metrics` and
//! `/api/v1/plugins` (with `/api/v1/plugins/reload`) are this sidecar's own.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::config::LogLevel;
use crate::logging::LogHandle;
use crate::plan::Plan;
use crate::stats::exposition;
use crate::{plugin_info, reload};

/// Every endpoint with the one method it accepts.
pub const ENDPOINTS: &[(&str, Method)] = &[
    ("/api/v1/config_dump", Method::Get),
    ("/api/v1/stats", Method::Get),
    ("/api/v1/stats_glob", Method::Get),
    ("/api/v1/update_loglevel", Method::Post),
    ("/api/v1/get_loglevel", Method::Get),
    ("/api/v1/states", Method::Get),
    ("/api/v1/version", Method::Get),
    ("/metrics", Method::Get),
    ("/api/v1/plugins", Method::Get),
    ("/api/v1/plugins/reload", Method::Post),
];

/// Whether answering `req` may block for long (a plugin reload compiles modules and waits for
/// every worker): the HTTP layer runs those off its event loop.
pub fn blocks(req: &Request<'_>) -> bool {
    req.path == "/api/v1/plugins/reload" && req.method == Method::Post
}

/// The HTTP methods the admin API distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// `GET` (and `HEAD`, answered like it).
    Get,
    /// `POST`.
    Post,
    /// Anything else.
    Other,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Other => "OTHER",
        }
    }
}

/// One admin request, as the HTTP layer read it.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// Its method.
    pub method: Method,
    /// The path, without the query.
    pub path: &'a str,
    /// The query string after `?`, if any.
    pub query: Option<&'a str>,
    /// The body (bounded by the HTTP layer).
    pub body: &'a [u8],
}

/// An admin answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// `content-type` header value.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
    /// For a 405: the method the endpoint accepts (`allow` header).
    pub allow: Option<&'static str>,
}

const JSON: &str = "application/json";
const TEXT: &str = "text/plain; charset=utf-8";

impl Response {
    fn json(status: u16, v: &Value) -> Response {
        Response {
            status,
            content_type: JSON,
            body: v.to_string(),
            allow: None,
        }
    }

    fn text(status: u16, body: impl Into<String>) -> Response {
        Response {
            status,
            content_type: TEXT,
            body: body.into(),
            allow: None,
        }
    }

    /// An error answer `{"error": reason}`.
    pub fn error(status: u16, reason: impl std::fmt::Display) -> Response {
        Response::json(status, &json!({ "error": reason.to_string() }))
    }
}

/// The process state MOSN's `/api/v1/states` reports (its stage manager's numbers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    /// Serving (MOSN `Running`, 6).
    Running,
    /// Draining after SIGTERM (MOSN `GracefulStopping`, 8).
    GracefulStopping,
}

impl ProcessState {
    fn code(self) -> u8 {
        match self {
            ProcessState::Running => 6,
            ProcessState::GracefulStopping => 8,
        }
    }
}

/// What the endpoints read and change.
pub struct AdminContext {
    /// The running plan (config, stats, plugins).
    pub plan: Arc<Plan>,
    /// The log level switch (`None` when logging is not this process's, e.g. in-process tests).
    pub log: Option<LogHandle>,
    /// The configured log path as MOSN names it (`default_log_path`, `stdout`, `stderr`).
    pub log_path: String,
}

/// Answers `req`.
pub fn route(req: &Request<'_>, ctx: &AdminContext, state: ProcessState) -> Response {
    if req.path == "/" {
        let list: Vec<&str> = ENDPOINTS.iter().map(|(p, _)| *p).collect();
        return Response::json(200, &json!({ "endpoints": list }));
    }
    let Some(&(path, method)) = ENDPOINTS.iter().find(|(p, _)| *p == req.path) else {
        return Response::error(404, format!("no such endpoint: {}", req.path));
    };
    if req.method != method {
        return Response {
            allow: Some(method.name()),
            ..Response::error(405, format!("{path} accepts {} only", method.name()))
        };
    }
    match path {
        "/api/v1/config_dump" => config_dump(&ctx.plan.config_json, req.query),
        "/api/v1/stats" => stats(&ctx.plan.stats.to_json(), req.query),
        "/api/v1/stats_glob" => stats_glob(&ctx.plan),
        "/api/v1/update_loglevel" => update_loglevel(ctx, req.body),
        "/api/v1/get_loglevel" => get_loglevel(ctx),
        "/api/v1/states" => Response::text(
            200,
            format!("pid={}&state={}\n", std::process::id(), state.code()),
        ),
        "/api/v1/version" => Response::json(200, &json!({ "version": env!("CARGO_PKG_VERSION") })),
        "/api/v1/plugins" => Response::json(200, &plugin_info::plugins_json(&ctx.plan)),
        "/api/v1/plugins/reload" => match reload::reload_plugins(&ctx.plan) {
            Ok(report) => Response::json(200, &json!(report)),
            // Every plugin that failed keeps serving its old version; the body says why.
            Err(e) => Response::json(500, &json!(e)),
        },
        "/metrics" => match exposition::render(&ctx.plan.stats) {
            Ok(body) => Response {
                status: 200,
                content_type: exposition::CONTENT_TYPE,
                body,
                allow: None,
            },
            Err(e) => Response::error(500, format!("cannot render metrics: {e}")),
        },
        _ => Response::error(404, format!("no such endpoint: {}", req.path)),
    }
}

/// The query's `key=value` pairs (values not percent-decoded: names here are plain).
fn query_pairs(query: Option<&str>) -> Vec<(&str, &str)> {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
        .collect()
}

/// `config_dump`: everything, or one part by MOSN's parameters (`mosnconfig`, `allrouters`,
/// `allclusters`, `alllisteners`, `router=<name>`, `cluster=<name>`, `listener=<name>`).
fn config_dump(config: &Value, query: Option<&str>) -> Response {
    let params = query_pairs(query);
    let (key, value) = match params.as_slice() {
        [] => return Response::json(200, config),
        [one] => *one,
        _ => return Response::error(400, "only support one parameter"),
    };
    let server = &config["servers"][0];
    let by_name = |list: &Value, field: &str| -> Map<String, Value> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|item| Some((item[field].as_str()?.to_owned(), item.clone())))
            .collect()
    };
    let routers = by_name(&server["routers"], "router_config_name");
    let listeners = by_name(&server["listeners"], "name");
    let clusters = by_name(&config["cluster_manager"]["clusters"], "name");
    let one = |map: &Map<String, Value>, kind: &str| match map.get(value) {
        Some(v) => Response::json(200, v),
        None => Response::error(404, format!("no {kind} named {value:?}")),
    };
    match key {
        "mosnconfig" => Response::json(200, config),
        "allrouters" => Response::json(200, &Value::Object(routers)),
        "allclusters" => Response::json(200, &Value::Object(clusters)),
        "alllisteners" => Response::json(200, &Value::Object(listeners)),
        "router" => one(&routers, "router"),
        "cluster" => one(&clusters, "cluster"),
        "listener" => one(&listeners, "listener"),
        other => Response::error(400, format!("unknown config_dump parameter {other:?}")),
    }
}

/// `stats`: every namespace by type, or (`?key=`) one type (`downstream`, `upstream`,
/// `codec`) or one namespace (`downstream.proxy.global`, `upstream.cluster.<name>`, …).
fn stats(all: &Value, query: Option<&str>) -> Response {
    let params = query_pairs(query);
    let key = match params.as_slice() {
        [] => return Response::json(200, all),
        [("key", key)] => *key,
        [_] => return Response::error(400, "the only parameter is key"),
        _ => return Response::error(400, "only support one parameter"),
    };
    if let Some(by_type) = all.get(key) {
        return Response::json(200, by_type);
    }
    let found = all
        .as_object()
        .into_iter()
        .flat_map(|types| types.values())
        .find_map(|namespaces| namespaces.get(key));
    match found {
        Some(v) => Response::json(200, &json!({ key: v })),
        None => Response::error(404, format!("no metrics key: {key}")),
    }
}

/// `stats_glob`: the proxy totals as `key:value` lines, as MOSN prints them.
fn stats_glob(plan: &Plan) -> Response {
    let totals = plan.stats.downstream_totals(None);
    let mut body = String::new();
    for (name, value) in totals.names.iter().zip(&totals.values) {
        body.push_str(name);
        body.push(':');
        body.push_str(&value.to_string());
        body.push('\n');
    }
    Response::text(200, body)
}

/// `update_loglevel`: `{"log_path": "<path>", "log_level": "DEBUG"}`; the path may be
/// omitted or empty (this process has one log).
fn update_loglevel(ctx: &AdminContext, body: &[u8]) -> Response {
    #[derive(serde::Deserialize)]
    struct Body {
        #[serde(default)]
        log_path: String,
        log_level: String,
    }
    let parsed: Body = match serde_json::from_slice(body) {
        Ok(b) => b,
        Err(e) => return Response::error(400, format!("bad body: {e}")),
    };
    if !parsed.log_path.is_empty() && parsed.log_path != ctx.log_path {
        return Response::error(
            400,
            format!(
                "unknown log path {:?} (this process logs to {:?})",
                parsed.log_path, ctx.log_path
            ),
        );
    }
    let Ok(level) = parsed.log_level.parse::<LogLevel>() else {
        return Response::error(400, format!("not found log level: {}", parsed.log_level));
    };
    let Some(log) = &ctx.log else {
        return Response::error(503, "logging is not managed by this process");
    };
    match log.set_level(level) {
        Ok(()) => {
            tracing::info!(target: "sidecar::admin", %level, "log level changed");
            Response::text(200, "update logger success\n")
        }
        Err(e) => Response::error(500, e),
    }
}

/// `get_loglevel`: `{"<log path>": "<LEVEL>"}`.
fn get_loglevel(ctx: &AdminContext) -> Response {
    let Some(log) = &ctx.log else {
        return Response::error(503, "logging is not managed by this process");
    };
    match log.level() {
        Ok(level) => Response::json(200, &json!({ ctx.log_path.clone(): level.to_string() })),
        Err(e) => Response::error(500, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Value {
        json!({
            "servers": [{
                "routers": [{"router_config_name": "r1", "virtual_hosts": []}],
                "listeners": [{"name": "egress", "address": "0.0.0.0:2045"}],
            }],
            "cluster_manager": {"clusters": [{"name": "app", "hosts": []}]},
        })
    }

    #[test]
    fn config_dump_parts_by_mosn_parameters() {
        let c = config();
        assert_eq!(config_dump(&c, None).body, c.to_string());
        let all = config_dump(&c, Some("allclusters"));
        assert_eq!(all.status, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&all.body).unwrap()["app"]["name"],
            "app"
        );
        let one = config_dump(&c, Some("listener=egress"));
        assert_eq!(one.status, 200);
        assert!(one.body.contains("2045"));
        assert_eq!(config_dump(&c, Some("router=r1")).status, 200);
        assert_eq!(config_dump(&c, Some("cluster=nope")).status, 404);
        assert_eq!(config_dump(&c, Some("a&b")).status, 400);
        assert_eq!(config_dump(&c, Some("colour=red")).status, 400);
        assert_eq!(config_dump(&c, Some("mosnconfig")).body, c.to_string());
    }

    #[test]
    fn stats_by_type_or_namespace() {
        let all = json!({"downstream": {"downstream.proxy.global": {"request_total": 3}},
                         "upstream": {"upstream.cluster.app": {"request_total": 2}}});
        assert_eq!(stats(&all, None).status, 200);
        let t = stats(&all, Some("key=upstream"));
        assert_eq!(t.status, 200);
        assert!(t.body.contains("upstream.cluster.app"));
        let n = stats(&all, Some("key=downstream.proxy.global"));
        assert_eq!(n.body, r#"{"downstream.proxy.global":{"request_total":3}}"#);
        assert_eq!(stats(&all, Some("key=nope")).status, 404);
        assert_eq!(stats(&all, Some("colour=red")).status, 400);
        assert_eq!(stats(&all, Some("key=a&key=b")).status, 400);
    }

    #[test]
    fn query_pairs_split_on_ampersand_and_equals() {
        assert_eq!(
            query_pairs(Some("a=1&b&c=")),
            [("a", "1"), ("b", ""), ("c", "")]
        );
        assert!(query_pairs(None).is_empty());
    }
}
