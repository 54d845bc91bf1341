//! `listeners[].stream_filters[]`: `{type, config}` entries in MOSN's shape. The filters the
//! sidecar implements (`flowControlFilter`, `fault`, `rateLimit`) are parsed strictly: an unknown field or
//! a value that cannot be honoured is a config error naming its JSON path, because a typo in
//! a limit must not leave a service unprotected. MOSN filters that are not implemented are
//! accepted with one warning each, as before.
//!
//! Adding a filter kind = one [`StreamFilterConfig`] variant, one arm in
//! [`parse_stream_filters`] and one module beside `flow_control.rs` and `fault.rs`.

mod fault;
mod flow_control;
mod proxy_wasm;
mod rate_limit;

use std::collections::HashMap;
#[cfg(test)]
use std::path::Path;

use serde_json::Value;

use super::error::{invalid, ConfigError, Invalid, Warnings};
use super::json::{Item, Obj};

pub use fault::{FaultAbort, FaultConfig, FaultDelay};
pub use flow_control::{
    FlowControlConfig, FlowLimit, FlowRuleConfig, LimitKeyPart, DEFAULT_ACTION_STATUS,
    DEFAULT_LIMIT_KEY,
};
pub use proxy_wasm::ProxyWasmConfig;
pub(crate) use proxy_wasm::WasmEnv;
pub use rate_limit::{
    DescriptorConfig, DescriptorEntryConfig, EntrySource, GlobalRateLimitConfig,
    DEFAULT_RATE_LIMIT_STATUS, DEFAULT_RATE_LIMIT_TIMEOUT, GENERIC_KEY,
};

/// One implemented stream filter, validated.
#[derive(Debug, Clone)]
pub enum StreamFilterConfig {
    /// `flowControlFilter`: local rate and concurrency limits (Sentinel flow rules).
    FlowControl(FlowControlConfig),
    /// `fault` (also spelt `faultinject`): injected delays and aborts.
    Fault(FaultConfig),
    /// `rateLimit`: fleet-wide limits kept by Envoy's rate limit service.
    RateLimit(GlobalRateLimitConfig),
    /// `proxywasm`: a proxy-wasm filter plugin.
    ProxyWasm(ProxyWasmConfig),
}

impl StreamFilterConfig {
    /// The MOSN `type` this filter is configured with.
    pub fn type_name(&self) -> &'static str {
        match self {
            StreamFilterConfig::FlowControl(_) => flow_control::TYPE,
            StreamFilterConfig::Fault(_) => fault::TYPE,
            StreamFilterConfig::RateLimit(_) => rate_limit::TYPE,
            StreamFilterConfig::ProxyWasm(_) => proxy_wasm::TYPE,
        }
    }

    /// The effective config as `{type, config}` JSON (defaults filled in), for the config
    /// dump.
    pub fn to_json(&self) -> Value {
        let config = match self {
            StreamFilterConfig::FlowControl(f) => f.to_json(),
            StreamFilterConfig::Fault(f) => f.to_json(),
            StreamFilterConfig::RateLimit(f) => f.to_json(),
            StreamFilterConfig::ProxyWasm(f) => f.to_json(),
        };
        serde_json::json!({"type": self.type_name(), "config": config})
    }

    /// One line describing the filter (`sidecar check`).
    pub fn describe(&self) -> String {
        match self {
            StreamFilterConfig::FlowControl(f) => f.describe(),
            StreamFilterConfig::Fault(f) => f.describe(),
            StreamFilterConfig::RateLimit(f) => f.describe(),
            StreamFilterConfig::ProxyWasm(f) => f.describe(),
        }
    }
}

/// Parses the `stream_filters` of one listener object. `clusters` maps cluster names to
/// indices (a fault filter's `upstream_cluster` must exist).
pub(crate) fn parse_stream_filters(
    listener: &mut Obj<'_>,
    clusters: &HashMap<&str, usize>,
    wasm: &WasmEnv<'_>,
    warnings: &mut Warnings,
) -> Result<Vec<StreamFilterConfig>, ConfigError> {
    let mut filters = Vec::new();
    let mut rule_labels: HashMap<String, String> = HashMap::new();
    for (index, f) in listener.items("stream_filters")?.into_iter().enumerate() {
        let mut fo = f.obj()?;
        let kind = fo.str("type")?.unwrap_or_default();
        let config = fo.get("config");
        let label = format!("stream_filters[{index}]");
        let parsed = match kind {
            flow_control::TYPE => Some(StreamFilterConfig::FlowControl(flow_control::parse(
                config_obj(&fo, config)?,
                &label,
                warnings,
            )?)),
            fault::TYPE | fault::LEGACY_TYPE => Some(StreamFilterConfig::Fault(fault::parse(
                config_obj(&fo, config)?,
                &label,
                clusters,
                warnings,
            )?)),
            rate_limit::TYPE => Some(StreamFilterConfig::RateLimit(rate_limit::parse(
                config_obj(&fo, config)?,
                &label,
            )?)),
            proxy_wasm::TYPE => Some(StreamFilterConfig::ProxyWasm(proxy_wasm::parse(
                config_obj(&fo, config)?,
                wasm,
                warnings,
            )?)),
            _ => {
                let message = match kind {
                    "healthcheck" => {
                        "obsolete healthcheck stream filter (removed from MOSN): heartbeats are \
                         always answered by the proxy itself; ignored"
                    }
                    _ => "unknown stream filter, skipped",
                };
                warnings.push(format!("{}.type", f.path), format!("{kind:?}: {message}"));
                None
            }
        };
        fo.finish(warnings);
        if let Some(StreamFilterConfig::FlowControl(fc)) = &parsed {
            for rule in &fc.rules {
                if let Some(first) = rule_labels.insert(rule.label.clone(), rule.json_path.clone())
                {
                    return Err(invalid(
                        format!("{}.id", rule.json_path),
                        Invalid::Duplicate {
                            what: "flow rule id on this listener",
                            name: rule.label.clone(),
                            first,
                        },
                    ));
                }
            }
        }
        filters.extend(parsed);
    }
    Ok(filters)
}

/// The filter's `config` object; an absent or null `config` reads as `{}`.
fn config_obj<'a>(filter: &Obj<'a>, config: Option<Item<'a>>) -> Result<Obj<'a>, ConfigError> {
    match config {
        Some(item) => item.obj(),
        None => Obj::new(empty_object(), filter.child("config")),
    }
}

fn empty_object() -> &'static Value {
    static EMPTY: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| Value::Object(serde_json::Map::new()))
}

/// `0..=100`, MOSN's integer percentages.
pub(crate) fn percent(o: &mut Obj<'_>, key: &str) -> Result<Option<u32>, ConfigError> {
    match o.u32(key)? {
        Some(p) if p > 100 => Err(invalid(
            o.child(key),
            Invalid::OutOfRange {
                value: p.to_string(),
                range: "0..=100 (percent)",
            },
        )),
        other => Ok(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub(super) fn parse_json(
        filters: Value,
    ) -> Result<(Vec<StreamFilterConfig>, Vec<String>), ConfigError> {
        let listener = json!({ "stream_filters": filters });
        let mut o = Obj::new(&listener, "listeners[0]".into()).unwrap();
        let clusters: HashMap<&str, usize> = [("serverCluster", 0), ("other", 1)].into();
        let mut warnings = Warnings::default();
        let plugins = HashMap::new();
        let wasm = WasmEnv {
            plugins: &plugins,
            work_dir: Path::new("."),
            cpu_count: 2,
        };
        let out = parse_stream_filters(&mut o, &clusters, &wasm, &mut warnings)?;
        Ok((out, warnings.0.iter().map(ToString::to_string).collect()))
    }

    #[test]
    fn unimplemented_mosn_filters_keep_their_warning() {
        let (filters, warnings) = parse_json(json!([
            {"type": "healthcheck", "config": {"passthrough": false}},
            {"type": "gzip"},
        ]))
        .unwrap();
        assert!(filters.is_empty());
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("listeners[0].stream_filters[0].type"));
        assert!(warnings[1].contains("unknown stream filter"));
    }

    #[test]
    fn a_proxywasm_filter_needs_a_module_path_or_a_known_global_plugin() {
        let e = parse_json(
            json!([{"type": "proxywasm", "config": {"vm_config": {"engine": "wasmer"}}}]),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.starts_with("listeners[0].stream_filters[0].config.vm_config.path: "),
            "{e}"
        );
        let e = parse_json(json!([{"type": "proxywasm", "config": {}}]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("listeners[0].stream_filters[0].config.vm_config: "),
            "{e}"
        );
        let e = parse_json(json!([{"type": "proxywasm", "config": {"from_wasm_plugin": "nope"}}]))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("listeners[0].stream_filters[0].config.from_wasm_plugin: "),
            "{e}"
        );
    }

    #[test]
    fn implemented_filters_are_parsed_in_order() {
        let (filters, _) = parse_json(json!([
            {"type": "fault", "config": {"abort": {"status": 500, "percentage": 100}}},
            {"type": "flowControlFilter", "config": {"global_switch": true,
                "rules": [{"resource": "svc", "threshold": 1}]}},
        ]))
        .unwrap();
        assert_eq!(filters.len(), 2);
        assert!(matches!(filters[0], StreamFilterConfig::Fault(_)));
        assert!(matches!(filters[1], StreamFilterConfig::FlowControl(_)));
    }

    #[test]
    fn rule_ids_are_unique_per_listener() {
        let e = parse_json(json!([
            {"type": "flowControlFilter", "config": {"global_switch": true,
                "rules": [{"id": "a", "resource": "x", "threshold": 1}]}},
            {"type": "flowControlFilter", "config": {"global_switch": true,
                "rules": [{"id": "a", "resource": "y", "threshold": 1}]}},
        ]))
        .unwrap_err();
        assert_eq!(
            e.json_path(),
            Some("listeners[0].stream_filters[1].config.rules[0].id")
        );
    }

    #[test]
    fn percentages_above_100_are_refused() {
        let e = parse_json(json!([
            {"type": "fault", "config": {"abort": {"status": 500, "percentage": 101}}},
        ]))
        .unwrap_err();
        assert_eq!(
            e.json_path(),
            Some("listeners[0].stream_filters[0].config.abort.percentage")
        );
    }
}
