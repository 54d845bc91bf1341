//! `servers[0].listeners[]`: bound addresses, idle timeout, and the proxy filter that picks
//! the protocol (codec) and route config.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use super::access_log::{parse_access_logs, AccessLogConfig};
use super::codec::CodecConfig;
use super::error::{invalid, ConfigError, Invalid, Warnings};
use super::filter::{parse_stream_filters, StreamFilterConfig, WasmEnv};
use super::json::{Item, Obj};

/// Downstream idle timeout when `connection_idle_timeout` is absent (MOSN: 90 s).
pub const DEFAULT_CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Protocol auto-detection: the most first bytes buffered while the candidates cannot tell
/// (`extend_config.auto_detect.max_bytes`).
pub const DEFAULT_DETECT_MAX_BYTES: usize = 1024;
/// Range of `extend_config.auto_detect.max_bytes`.
pub const DETECT_MAX_BYTES_RANGE: std::ops::RangeInclusive<usize> = 16..=65536;
/// Protocol auto-detection: how long a connection may take to send bytes that decide its
/// protocol (`extend_config.auto_detect.timeout`).
pub const DEFAULT_DETECT_TIMEOUT: Duration = Duration::from_secs(10);
/// What the display protocol of an auto-detecting listener is (`downstream_protocol`).
pub const AUTO: &str = "Auto";

/// A listener, validated.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Unique name (stats `listener.<name>`).
    pub name: String,
    /// Where to listen.
    pub address: SocketAddr,
    /// `bind_port`: false = a virtual listener (original-dst redirect) that never accepts;
    /// the runtime skips it.
    pub bind_port: bool,
    /// Close downstream connections idle this long; `None` = never (`"0s"`).
    pub connection_idle_timeout: Option<Duration>,
    /// The proxy filter.
    pub proxy: ProxyConfig,
    /// `stream_filters` the sidecar implements, in order (unimplemented ones only warn).
    pub stream_filters: Vec<StreamFilterConfig>,
    /// `access_logs`: one line per request in each.
    pub access_logs: Vec<AccessLogConfig>,
    /// JSON path, for messages.
    pub json_path: String,
}

/// The `proxy` network filter of `filter_chains[0]`.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// The protocol spoken on both sides (legacy `"X"` + `sub_protocol` resolved); `"Auto"`
    /// for a listener that detects it per connection ([`ProxyConfig::auto_detect`]).
    pub protocol: String,
    /// Indices into [`super::Config::codecs`] of the codecs serving the listener: one, or
    /// for an auto-detecting listener its candidates in detection order.
    pub codecs: Vec<usize>,
    /// Protocol auto-detection (`downstream_protocol: "Auto"`, or `"X"` with several
    /// comma-separated sub-protocols, MOSN's matcher); `None` for a single protocol.
    pub auto_detect: Option<AutoDetectConfig>,
    /// `router_config_name`.
    pub router_config_name: String,
    /// Index into [`super::Config::route_configs`].
    pub route_config: usize,
    /// `extend_config.enable_bolt_goaway` (MOSN's name; any protocol with a GoAway): on a
    /// graceful stop, send the protocol's GoAway on every downstream connection first.
    pub goaway_on_drain: bool,
}

/// How an auto-detecting listener picks a connection's protocol (its candidates are
/// [`ProxyConfig::codecs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AutoDetectConfig {
    /// The most first bytes buffered while no candidate can tell yet.
    pub max_bytes: usize,
    /// How long a connection may take to send bytes that decide.
    pub timeout: Duration,
}

/// Parses one `listeners[i]`. `codecs` are the enabled codecs; `route_configs` maps
/// router config names to indices, `clusters` cluster names to indices; relative access
/// log paths resolve against `work_dir`.
pub(crate) fn parse_listener(
    item: &Item<'_>,
    codecs: &[CodecConfig],
    route_configs: &HashMap<String, usize>,
    clusters: &HashMap<&str, usize>,
    wasm: &WasmEnv<'_>,
    warnings: &mut Warnings,
) -> Result<ListenerConfig, ConfigError> {
    let work_dir = wasm.work_dir;
    let mut o = item.obj()?;
    let name = o.required_str("name")?.to_owned();
    let address_text = o.required_str("address")?;
    let address = address_text.parse::<SocketAddr>().map_err(|_| {
        invalid(
            o.child("address"),
            Invalid::Address {
                value: address_text.to_owned(),
            },
        )
    })?;
    match o.str("network")? {
        None | Some("") | Some("tcp") | Some("tcp4") | Some("tcp6") => {}
        Some(other) => {
            return Err(invalid(
                o.child("network"),
                Invalid::Unsupported {
                    value: other.to_owned(),
                    supported: "\"tcp\"",
                },
            ))
        }
    }
    let bind_port = o.bool("bind_port")?.unwrap_or(false);
    if !bind_port {
        warnings.push(
            o.child("bind_port"),
            "bind_port is not true: this is a virtual listener (original-destination redirect \
             only, not supported) and will not accept connections",
        );
    }
    let connection_idle_timeout = match o.duration("connection_idle_timeout")? {
        None => Some(DEFAULT_CONNECTION_IDLE_TIMEOUT),
        Some(d) if d.is_zero() => None,
        Some(d) => Some(d),
    };
    let chains = o.items("filter_chains")?;
    let Some(chain) = chains.first() else {
        return Err(invalid(o.child("filter_chains"), Invalid::Missing));
    };
    for extra in &chains[1..] {
        warnings.push(
            extra.path.clone(),
            "only the first filter chain is used (as in MOSN); ignored",
        );
    }
    let proxy = parse_chain(chain, codecs, route_configs, warnings)?;
    let stream_filters = parse_stream_filters(&mut o, clusters, wasm, warnings)?;
    let access_logs = parse_access_logs(o.items("access_logs")?, &name, work_dir, warnings)?;
    o.accept("type");
    for key in [
        "listener_filters",
        "inspector",
        "use_original_dst",
        "per_conn_buffer_limit_bytes",
        "handoff_restoreddestination_connections",
    ] {
        o.warn_if_set(key, "not supported; ignored", warnings);
    }
    let json_path = o.path().to_owned();
    o.finish(warnings);
    Ok(ListenerConfig {
        name,
        address,
        bind_port,
        connection_idle_timeout,
        proxy,
        stream_filters,
        access_logs,
        json_path,
    })
}

fn parse_chain(
    chain: &Item<'_>,
    codecs: &[CodecConfig],
    route_configs: &HashMap<String, usize>,
    warnings: &mut Warnings,
) -> Result<ProxyConfig, ConfigError> {
    let mut c = chain.obj()?;
    let mut proxy = None;
    for f in c.items("filters")? {
        let mut fo = f.obj()?;
        let kind = fo.str("type")?.unwrap_or_default();
        if kind != "proxy" {
            warnings.push(
                format!("{}.type", f.path),
                format!("network filter {kind:?} is not supported; ignored"),
            );
            fo.accept("config");
        } else if proxy.is_some() {
            warnings.push(
                f.path.clone(),
                "a second proxy filter in one chain is ignored",
            );
            fo.accept("config");
        } else {
            let mut p = fo
                .obj("config")?
                .ok_or_else(|| invalid(fo.child("config"), Invalid::Missing))?;
            proxy = Some(parse_proxy(&mut p, codecs, route_configs, warnings)?);
            p.finish(warnings);
        }
        fo.finish(warnings);
    }
    let proxy = proxy.ok_or_else(|| {
        invalid(
            c.child("filters"),
            Invalid::Rule("the first filter chain needs a filter of type \"proxy\""),
        )
    })?;
    for key in ["match", "tls_context", "tls_context_set"] {
        c.warn_if_set(key, "not supported; ignored", warnings);
    }
    c.finish(warnings);
    Ok(proxy)
}

fn parse_proxy(
    p: &mut Obj<'_>,
    codecs: &[CodecConfig],
    route_configs: &HashMap<String, usize>,
    warnings: &mut Warnings,
) -> Result<ProxyConfig, ConfigError> {
    let downstream = p.required_str("downstream_protocol")?;
    let mut sub_protocol = None;
    // MOSN's bolt switch (`enable_bolt_goaway`, default false), read as MOSN's bolt config
    // handler does: under the protocol's key (`bolt`) or directly in `extend_config`.
    let mut goaway_on_drain = false;
    let mut detect = None;
    if let Some(mut ext) = p.obj("extend_config")? {
        sub_protocol = ext.str("sub_protocol")?.filter(|s| !s.is_empty());
        goaway_on_drain = ext.bool("enable_bolt_goaway")?.unwrap_or(false);
        if let Some(mut bolt) = ext.obj("bolt")? {
            goaway_on_drain = bolt.bool("enable_bolt_goaway")?.unwrap_or(goaway_on_drain);
            bolt.finish(warnings);
        }
        if let Some(mut d) = ext.obj("auto_detect")? {
            detect = Some(parse_auto_detect(&mut d)?);
            d.finish(warnings);
        }
        ext.finish(warnings);
    }
    let sub_path = p.child("extend_config.sub_protocol");
    // MOSN's two spellings of several protocols on one listener: "Auto", and "X" with a
    // comma-separated sub_protocol (its xprotocol matcher engine).
    let several = sub_protocol.is_some_and(|s| s.contains(','));
    let (protocol, names, names_path): (&str, Vec<&str>, String) = if downstream == AUTO
        || (downstream == "X" && several)
    {
        let names = match sub_protocol {
            Some(list) => split_protocols(list, &sub_path)?,
            // Auto without a list: every enabled codec, in config order.
            None => codecs.iter().map(|c| c.protocol.as_str()).collect(),
        };
        if names.is_empty() {
            return Err(invalid(
                p.child("downstream_protocol"),
                Invalid::Rule("\"Auto\" needs at least one enabled codec"),
            ));
        }
        (AUTO, names, sub_path)
    } else if downstream == "X" {
        // Legacy form (xprotocol spec (`docs/xprotocol-proxy-and-bolt.md`) §2.1): the real protocol is the sub-protocol.
        let sub = sub_protocol.ok_or_else(|| {
            invalid(
                sub_path.clone(),
                Invalid::Rule("downstream_protocol \"X\" needs extend_config.sub_protocol"),
            )
        })?;
        (sub, vec![sub], sub_path)
    } else {
        if let Some(sub) = sub_protocol {
            warnings.push(
                sub_path,
                format!("ignored: downstream_protocol {downstream:?} is not \"X\" or \"Auto\" (sub_protocol {sub:?} unused)"),
            );
        }
        (downstream, vec![downstream], p.child("downstream_protocol"))
    };
    let mut indices = Vec::with_capacity(names.len());
    for name in names {
        let codec = codecs
            .iter()
            .position(|c| c.protocol == name)
            .ok_or_else(|| {
                let enabled: Vec<&str> = codecs.iter().map(|c| c.protocol.as_str()).collect();
                invalid(
                    names_path.clone(),
                    Invalid::UnknownProtocol {
                        protocol: name.to_owned(),
                        enabled: if enabled.is_empty() {
                            "none".to_owned()
                        } else {
                            enabled.join(", ")
                        },
                    },
                )
            })?;
        if indices.contains(&codec) {
            return Err(invalid(
                names_path,
                Invalid::Duplicate {
                    what: "candidate protocol",
                    name: name.to_owned(),
                    first: "earlier in the same list".to_owned(),
                },
            ));
        }
        indices.push(codec);
    }
    let auto_detect = if protocol == AUTO {
        Some(detect.unwrap_or(AutoDetectConfig {
            max_bytes: DEFAULT_DETECT_MAX_BYTES,
            timeout: DEFAULT_DETECT_TIMEOUT,
        }))
    } else {
        if detect.is_some() {
            warnings.push(
                p.child("extend_config.auto_detect"),
                "ignored: the listener serves one protocol (auto_detect needs \"Auto\")",
            );
        }
        None
    };
    match p.str("upstream_protocol")? {
        None | Some("") | Some("X") => {}
        Some(AUTO) if auto_detect.is_some() => {}
        Some(up) if up == protocol => {}
        Some(up) if auto_detect.is_some() => warnings.push(
            p.child("upstream_protocol"),
            format!("ignored (as in MOSN's \"Auto\"): upstream traffic uses each connection's detected protocol, not {up:?}"),
        ),
        Some(up) => warnings.push(
            p.child("upstream_protocol"),
            format!("ignored (as in MOSN): upstream traffic uses {protocol:?}, not {up:?}"),
        ),
    }
    let router_config_name = p.required_str("router_config_name")?.to_owned();
    let route_config = *route_configs.get(&router_config_name).ok_or_else(|| {
        invalid(
            p.child("router_config_name"),
            Invalid::UnknownRouterConfig {
                name: router_config_name.clone(),
            },
        )
    })?;
    p.accept("name");
    p.warn_if_set(
        "concurrency_num",
        "ignored: requests run on the connection's worker",
        warnings,
    );
    p.warn_if_set(
        "fallback_for_unknown_protocol",
        "not supported; connections that do not decode are closed",
        warnings,
    );
    if let Some(h) = p.str("router_handler_name")? {
        if !h.is_empty() && h != "default" {
            warnings.push(
                p.child("router_handler_name"),
                format!("router handler {h:?} is not supported; the default is used"),
            );
        }
    }
    Ok(ProxyConfig {
        protocol: protocol.to_owned(),
        codecs: indices,
        auto_detect,
        router_config_name,
        route_config,
        goaway_on_drain,
    })
}

/// The protocols of a comma-separated `sub_protocol` list (spaces around names ignored).
fn split_protocols<'a>(list: &'a str, path: &str) -> Result<Vec<&'a str>, ConfigError> {
    let names: Vec<&str> = list.split(',').map(str::trim).collect();
    if names.iter().any(|n| n.is_empty()) {
        return Err(invalid(
            path.to_owned(),
            Invalid::Rule("an empty protocol name in the comma-separated list"),
        ));
    }
    Ok(names)
}

/// `extend_config.auto_detect {max_bytes, timeout}` (our extension; both optional).
fn parse_auto_detect(d: &mut Obj<'_>) -> Result<AutoDetectConfig, ConfigError> {
    let max_bytes = match d.i64("max_bytes")? {
        None => DEFAULT_DETECT_MAX_BYTES,
        Some(n) => usize::try_from(n)
            .ok()
            .filter(|n| DETECT_MAX_BYTES_RANGE.contains(n))
            .ok_or_else(|| {
                invalid(
                    d.child("max_bytes"),
                    Invalid::OutOfRange {
                        value: n.to_string(),
                        range: "16..=65536",
                    },
                )
            })?,
    };
    let timeout = match d.duration("timeout")? {
        None => DEFAULT_DETECT_TIMEOUT,
        Some(t) if t.is_zero() => {
            return Err(invalid(
                d.child("timeout"),
                Invalid::Rule("must be positive: a silent peer would hold its connection forever"),
            ))
        }
        Some(t) => t,
    };
    Ok(AutoDetectConfig { max_bytes, timeout })
}
