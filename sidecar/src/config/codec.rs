//! `third_part_codec.codecs[]`: which codec serves which protocol name — a Wasm plugin
//! (`type: "wasm"`) or our built-in native build of the same protocol code
//! (`type: "native"`) — and its upstream pool mode.

use std::fmt;

use serde_json::Value;

use super::error::{invalid, ConfigError, Invalid, Warnings};
use super::json::{Item, Obj};
use super::plugin::{parse_vm_and_instances, PluginConfig};
use super::LoadContext;

/// How upstream connections are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolMode {
    /// Many requests per connection, matched by id (default).
    Multiplex,
    /// One request at a time per connection.
    PingPong,
    /// One upstream connection per downstream connection.
    Tcp,
}

impl PoolMode {
    /// Our strict spelling (cluster `pool_mode`): `multiplex`, `ping-pong`, `tcp`.
    pub(crate) fn parse_strict(s: &str) -> Option<PoolMode> {
        match s {
            "multiplex" => Some(PoolMode::Multiplex),
            "ping-pong" => Some(PoolMode::PingPong),
            "tcp" => Some(PoolMode::Tcp),
            _ => None,
        }
    }
}

impl fmt::Display for PoolMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PoolMode::Multiplex => "multiplex",
            PoolMode::PingPong => "ping-pong",
            PoolMode::Tcp => "tcp",
        })
    }
}

/// An enabled codec.
#[derive(Debug, Clone)]
pub struct CodecConfig {
    /// The protocol name it registers (listeners select it).
    pub protocol: String,
    /// What implements it.
    pub kind: CodecKind,
    /// Upstream pool mode for this protocol.
    pub pool_mode: PoolMode,
    /// `max_frame_bytes`: the largest frame this codec accepts, enforced by the host and
    /// told to the plugin (one limit for both); `None` = the codec host's default (4 MiB).
    pub max_frame_bytes: Option<usize>,
    /// JSON path of this codec, for messages.
    pub json_path: String,
}

/// What implements a codec.
#[derive(Debug, Clone)]
pub enum CodecKind {
    /// A Wasm plugin speaking the MOSN codec ABI.
    Wasm(WasmCodecConfig),
    /// A codec compiled into the sidecar.
    Native(NativeCodec),
}

/// A Wasm codec.
#[derive(Debug, Clone)]
pub struct WasmCodecConfig {
    /// Index into [`super::Config::plugins`].
    pub plugin: usize,
    /// The plugin's name.
    pub plugin_name: String,
    /// Root context id (non-zero).
    pub root_id: i32,
    /// Plugin-configuration pairs (buffer type 7): every string-valued member of the codec
    /// `config`, sorted by key (ABI spec (`docs/mosn-wasm-codec-abi.md`) §7).
    pub plugin_config_pairs: Vec<(String, String)>,
    /// `disable_worker_pool` (accepted; requests are handled on the connection's worker).
    pub disable_worker_pool: bool,
}

/// A codec compiled into the sidecar, by its name in the codec host's registry
/// (`codec_host::native_codec_names`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NativeCodec {
    name: &'static str,
}

impl NativeCodec {
    /// The registered native codec called `name`, if this build has one.
    pub fn named(name: &str) -> Option<NativeCodec> {
        codec_host::native_codec_names()
            .iter()
            .find(|n| **n == name)
            .map(|name| NativeCodec { name })
    }

    /// Its registry name (what `config.codec` says).
    pub fn name(&self) -> &'static str {
        self.name
    }
}

impl fmt::Display for NativeCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

/// The registry's names as a message lists them: `"bolt"`, ….
fn native_codec_list() -> &'static str {
    static LIST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    LIST.get_or_init(|| {
        let quoted: Vec<String> = codec_host::native_codec_names()
            .iter()
            .map(|n| format!("{n:?}"))
            .collect();
        quoted.join(", ")
    })
}

/// Smallest and largest accepted `max_frame_bytes`.
pub const MAX_FRAME_BYTES_RANGE: std::ops::RangeInclusive<usize> = 1024..=(1 << 30);

/// Every string-valued member of a codec `config` object, sorted by key, except
/// `max_frame_bytes` (the host passes its own, resolved value).
pub(crate) fn string_pairs(config: &Value) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = config
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.as_str() != "max_frame_bytes")
        .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_owned())))
        .collect();
    pairs.sort();
    pairs
}

/// Parses one `codecs[i]`; `Ok(None)` when it is disabled. Inline `vm_config`s become
/// anonymous plugins appended to `plugins`.
pub(crate) fn parse_codec(
    item: &Item<'_>,
    plugins: &mut Vec<PluginConfig>,
    ctx: &LoadContext,
    warnings: &mut Warnings,
) -> Result<Option<CodecConfig>, ConfigError> {
    let mut o = item.obj()?;
    let kind = o.required_str("type")?;
    if !matches!(kind, "wasm" | "native") {
        return Err(invalid(
            o.child("type"),
            Invalid::Unsupported {
                value: kind.to_owned(),
                supported: "\"wasm\", \"native\"",
            },
        ));
    }
    let enabled = match o.bool("enable")? {
        Some(e) => e,
        None => {
            warnings.push(
                o.child("enable"),
                "enable is absent: the codec is disabled (as in MOSN); set \"enable\": true",
            );
            false
        }
    };
    let Some(config_item) = o.get("config") else {
        return Err(invalid(o.child("config"), Invalid::Missing));
    };
    o.finish(warnings);
    if !enabled {
        return Ok(None);
    }
    let mut c = config_item.obj()?;
    let protocol = c.required_str("protocol")?.to_owned();
    let pool_mode = match c.str("pool_mode")? {
        Some("ping-pong") => PoolMode::PingPong,
        Some("tcp") => PoolMode::Tcp,
        None | Some("") | Some("multiplex") => PoolMode::Multiplex,
        Some(other) => {
            warnings.push(
                c.child("pool_mode"),
                format!("pool_mode {other:?} is not \"ping-pong\" or \"tcp\": multiplex is used"),
            );
            PoolMode::Multiplex
        }
    };
    let max_frame_bytes = parse_max_frame_bytes(&mut c)?;
    let json_path = item.path.clone();
    let kind = if kind == "wasm" {
        let mut wasm = parse_wasm_codec(c, &protocol, plugins, ctx, warnings)?;
        wasm.plugin_config_pairs = string_pairs(config_item.value);
        CodecKind::Wasm(wasm)
    } else {
        let name = c.required_str("codec")?;
        let codec = NativeCodec::named(name).ok_or_else(|| {
            invalid(
                c.child("codec"),
                Invalid::Unsupported {
                    value: name.to_owned(),
                    supported: native_codec_list(),
                },
            )
        })?;
        c.finish(warnings);
        CodecKind::Native(codec)
    };
    Ok(Some(CodecConfig {
        protocol,
        kind,
        pool_mode,
        max_frame_bytes,
        json_path,
    }))
}

/// `max_frame_bytes`: a number, or a numeric string (plugin configs are strings in MOSN).
fn parse_max_frame_bytes(c: &mut Obj<'_>) -> Result<Option<usize>, ConfigError> {
    let Some(item) = c.get("max_frame_bytes") else {
        return Ok(None);
    };
    let out_of_range = |value: String| {
        invalid(
            item.path.clone(),
            Invalid::OutOfRange {
                value,
                range: "1024..=1073741824 bytes",
            },
        )
    };
    let n = match item.value.as_str() {
        Some(text) => text
            .trim()
            .parse::<i64>()
            .map_err(|_| out_of_range(text.to_owned()))?,
        None => item.node().as_i64()?,
    };
    usize::try_from(n)
        .ok()
        .filter(|n| MAX_FRAME_BYTES_RANGE.contains(n))
        .map(Some)
        .ok_or_else(|| out_of_range(n.to_string()))
}

fn parse_wasm_codec(
    mut c: Obj<'_>,
    protocol: &str,
    plugins: &mut Vec<PluginConfig>,
    ctx: &LoadContext,
    warnings: &mut Warnings,
) -> Result<WasmCodecConfig, ConfigError> {
    let root_id = match c.i64("root_id")? {
        None | Some(0) => {
            return Err(invalid(
                c.child("root_id"),
                Invalid::Rule("root_id must be a non-zero 32-bit integer (0 cannot own streams)"),
            ))
        }
        Some(n) => i32::try_from(n).map_err(|_| {
            invalid(
                c.child("root_id"),
                Invalid::OutOfRange {
                    value: n.to_string(),
                    range: "a non-zero 32-bit integer",
                },
            )
        })?,
    };
    let disable_worker_pool = c.bool("disable_worker_pool")?.unwrap_or(false);
    c.warn_if_set(
        "plugin_generate_id",
        "plugin_generate_id has no effect: upstream ids come from a per-connection counter",
        warnings,
    );
    let plugin = match c.str("from_wasm_plugin")? {
        Some(name) if !name.is_empty() => {
            if c.get("vm_config").is_some() {
                warnings.push(
                    c.child("vm_config"),
                    "ignored because from_wasm_plugin is set",
                );
            }
            c.accept("instance_num");
            plugins.iter().position(|p| p.name == name).ok_or_else(|| {
                invalid(
                    c.child("from_wasm_plugin"),
                    Invalid::UnknownPlugin {
                        name: name.to_owned(),
                    },
                )
            })?
        }
        _ => {
            let anonymous = parse_vm_and_instances(
                &mut c,
                format!("codec:{protocol}"),
                &ctx.work_dir,
                ctx.cpu_count,
                warnings,
            )?;
            plugins.push(anonymous);
            plugins.len() - 1
        }
    };
    c.accept("protocol");
    c.accept("pool_mode");
    // Other string members are plugin configuration; anything else is dropped.
    for (_, item) in c.rest() {
        if !item.value.is_string() {
            warnings.push(
                item.path,
                "not a string: not passed to the plugin (only string members are), ignored",
            );
        }
    }
    Ok(WasmCodecConfig {
        plugin,
        plugin_name: plugins[plugin].name.clone(),
        root_id,
        plugin_config_pairs: Vec::new(),
        disable_worker_pool,
    })
}
