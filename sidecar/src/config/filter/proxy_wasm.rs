//! The `proxywasm` stream filter's `config` (MOSN's shape): a proxy-wasm filter plugin run on
//! every RPC call of the listener.
//!
//! ```json
//! {"type": "proxywasm", "config": {
//!   "from_wasm_plugin": "auth",            // a wasm_global_plugins[] entry, or:
//!   "vm_config": {"engine": "wasmer", "path": "filter.wasm", "md5": "", "mem": 64},
//!   "instance_num": 2,
//!   "root_context_id": 1,
//!   "vm_id": "",
//!   "configuration": {"header": "x-deny"}  // plugin configuration: a string as is, JSON as text
//! }}
//! ```
//!
//! Without `configuration`, the plugin configuration is MOSN's: every other string-valued
//! field of `config`, as proxy-wasm pairs. The VM configuration is `vm_config.configuration`
//! (string or JSON) when set, else the `vm_config` fields as pairs (MOSN's).

use std::collections::HashMap;
use std::path::Path;

use serde_json::{json, Value};

use super::super::error::{invalid, ConfigError, Invalid, Warnings};
use super::super::json::Obj;
use super::super::plugin::{parse_vm_and_instances, PluginConfig};

/// The filter type in `stream_filters[].type`.
pub(super) const TYPE: &str = "proxywasm";

/// One validated `proxywasm` filter.
#[derive(Debug, Clone)]
pub struct ProxyWasmConfig {
    /// The module to load (a global plugin's, or the inline `vm_config`'s), and
    /// `instance_num`.
    pub plugin: PluginConfig,
    /// `from_wasm_plugin`, when the module is a global plugin's.
    pub from_wasm_plugin: Option<String>,
    /// `root_context_id` (1).
    pub root_context_id: u32,
    /// `vm_id` ("").
    pub vm_id: String,
    /// The VM configuration buffer handed to `proxy_on_vm_start`.
    pub vm_configuration: Vec<u8>,
    /// The plugin configuration buffer handed to `proxy_on_configure`.
    pub plugin_configuration: Vec<u8>,
    /// JSON path of the filter's `config`, for messages.
    pub json_path: String,
}

/// What a `proxywasm` config is parsed against.
pub(crate) struct WasmEnv<'a> {
    /// `wasm_global_plugins` by name.
    pub(crate) plugins: &'a HashMap<String, PluginConfig>,
    /// Relative paths resolve against this.
    pub(crate) work_dir: &'a Path,
    /// `instance_num` ≤ 0 means this many.
    pub(crate) cpu_count: usize,
}

/// A string member as is, any other JSON as its text.
fn configuration_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        other => other.to_string().into_bytes(),
    }
}

pub(super) fn parse(
    mut o: Obj<'_>,
    env: &WasmEnv<'_>,
    warnings: &mut Warnings,
) -> Result<ProxyWasmConfig, ConfigError> {
    let json_path = o.path().to_owned();
    let from = o.str("from_wasm_plugin")?.filter(|s| !s.is_empty());
    let plugin = match from {
        Some(name) => {
            let p = env.plugins.get(name).ok_or_else(|| {
                invalid(
                    o.child("from_wasm_plugin"),
                    Invalid::Message(format!(
                        "unknown wasm plugin {name:?} (no wasm_global_plugins[].plugin_name)"
                    )),
                )
            })?;
            for key in ["vm_config", "instance_num"] {
                o.warn_if_set(
                    key,
                    "ignored: from_wasm_plugin is set (as in MOSN)",
                    warnings,
                );
            }
            p.clone()
        }
        None => {
            let vm_path = o.get("vm_config").and_then(|vm| {
                vm.value
                    .get("path")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            });
            let name = vm_path
                .as_deref()
                .and_then(|p| Path::new(p).file_stem())
                .map_or_else(
                    || "proxywasm".to_owned(),
                    |s| s.to_string_lossy().into_owned(),
                );
            parse_vm_and_instances(&mut o, name, env.work_dir, env.cpu_count, warnings)?
        }
    };
    let root_context_id = match o.u32("root_context_id")? {
        None => 1,
        Some(0) => {
            return Err(invalid(
                o.child("root_context_id"),
                Invalid::Rule("must be non-zero (0 is no context to a proxy-wasm guest)"),
            ))
        }
        Some(n) => n,
    };
    let vm_id = o.str("vm_id")?.unwrap_or_default().to_owned();
    let vm_configuration = match o
        .get("vm_config")
        .and_then(|vm| vm.value.get("configuration").cloned())
    {
        Some(v) if !v.is_null() => configuration_bytes(&v),
        _ => codec_host::filter::serialize_pairs(
            plugin
                .vm
                .pairs()
                .iter()
                .map(|(k, v)| (k.as_bytes(), v.as_bytes())),
        ),
    };
    let plugin_configuration = match o.get("configuration") {
        Some(item) => configuration_bytes(item.value),
        None => {
            // MOSN: the string-valued fields of the filter config are the plugin's.
            let user: Vec<(String, String)> = o
                .rest()
                .into_iter()
                .filter_map(|(k, item)| item.value.as_str().map(|v| (k.to_owned(), v.to_owned())))
                .collect();
            codec_host::filter::serialize_pairs(
                user.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())),
            )
        }
    };
    // Every other member is the plugin's (MOSN passes the string ones on); nothing to warn.
    let _ = o.rest();
    o.finish(warnings);
    Ok(ProxyWasmConfig {
        plugin,
        from_wasm_plugin: from.map(str::to_owned),
        root_context_id,
        vm_id,
        vm_configuration,
        plugin_configuration,
        json_path,
    })
}

impl ProxyWasmConfig {
    pub(super) fn to_json(&self) -> Value {
        let mut v = json!({
            "root_context_id": self.root_context_id,
            "vm_id": self.vm_id,
            "instance_num": self.plugin.instance_num,
            "vm_config": {
                "engine": self.plugin.vm.engine.as_str(),
                "path": self.plugin.vm.path,
                "md5": self.plugin.vm.md5,
            },
            "configuration": String::from_utf8_lossy(&self.plugin_configuration),
        });
        if let Some(from) = &self.from_wasm_plugin {
            v["from_wasm_plugin"] = json!(from);
        }
        v
    }

    pub(super) fn describe(&self) -> String {
        format!(
            "proxy-wasm filter {} ({}), root context {}",
            self.plugin.name, self.plugin.vm.path, self.root_context_id
        )
    }
}
