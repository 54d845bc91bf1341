//! `servers[0]`: log destination and level, graceful timeout, processor count, and the
//! server's route configs and listeners.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use super::codec::CodecConfig;
use super::error::{invalid, ConfigError, Invalid, Warnings};
use super::filter::WasmEnv;
use super::json::Item;
use super::listener::{parse_listener, ListenerConfig};
use super::plugin::PluginConfig;
use super::route::{parse_route_config, RouteConfig};
use super::LoadContext;

/// How long a graceful stop waits for in-flight requests (MOSN: 30 s).
pub const DEFAULT_GRACEFUL_TIMEOUT: Duration = Duration::from_secs(30);

/// Process-wide settings from `servers[0]`.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Logging.
    pub log: LogSettings,
    /// `graceful_timeout`.
    pub graceful_timeout: Duration,
    /// `processor`: worker threads (≤ 0 or absent → CPU count).
    pub processor: usize,
}

impl ServerSettings {
    /// The worker threads that run: `processor`, at least one.
    pub fn workers(&self) -> usize {
        self.processor.max(1)
    }
}

/// `default_log_path` and `default_log_level`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSettings {
    /// Where logs go.
    pub path: LogPath,
    /// Minimum level.
    pub level: LogLevel,
}

/// `default_log_path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogPath {
    /// `stdout`.
    Stdout,
    /// `stderr`.
    Stderr,
    /// A file (appended to; its directory is created). Empty config value → MOSN's
    /// `<parent of the config file's directory>/logs/mosn.log`.
    File(PathBuf),
}

impl fmt::Display for LogPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogPath::Stdout => f.write_str("stdout"),
            LogPath::Stderr => f.write_str("stderr"),
            LogPath::File(p) => write!(f, "{}", p.display()),
        }
    }
}

/// Log levels; MOSN's CRITICAL and FATAL map to [`LogLevel::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Bytes.
    Trace,
    /// Per request.
    Debug,
    /// Lifecycle (default).
    Info,
    /// A peer or guest misbehaved.
    Warn,
    /// An operator must act.
    Error,
}

impl FromStr for LogLevel {
    type Err = ();

    /// Case-insensitive: TRACE, DEBUG, INFO, WARN/WARNING, ERROR, CRITICAL, FATAL.
    fn from_str(s: &str) -> Result<LogLevel, ()> {
        match s.to_ascii_uppercase().as_str() {
            "TRACE" => Ok(LogLevel::Trace),
            "DEBUG" => Ok(LogLevel::Debug),
            "INFO" => Ok(LogLevel::Info),
            "WARN" | "WARNING" => Ok(LogLevel::Warn),
            "ERROR" | "CRITICAL" | "FATAL" => Ok(LogLevel::Error),
            _ => Err(()),
        }
    }
}

impl fmt::Display for LogLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogLevel::Trace => "TRACE",
            LogLevel::Debug => "DEBUG",
            LogLevel::Info => "INFO",
            LogLevel::Warn => "WARN",
            LogLevel::Error => "ERROR",
        })
    }
}

/// What `servers[0]` yields.
pub(crate) struct ParsedServer {
    pub(crate) settings: ServerSettings,
    pub(crate) route_configs: Vec<RouteConfig>,
    pub(crate) listeners: Vec<ListenerConfig>,
}

/// Parses `servers[0]`.
pub(crate) fn parse_server(
    item: &Item<'_>,
    codecs: &[CodecConfig],
    clusters: &HashMap<&str, usize>,
    plugins: &[PluginConfig],
    ctx: &LoadContext,
    warnings: &mut Warnings,
) -> Result<ParsedServer, ConfigError> {
    let mut o = item.obj()?;
    let path = match o.str("default_log_path")? {
        Some("stdout") => LogPath::Stdout,
        Some("stderr") => LogPath::Stderr,
        Some(p) if !p.is_empty() => LogPath::File(ctx.work_dir.join(p)),
        _ => LogPath::File(default_log_file(ctx)),
    };
    let level = match o.str("default_log_level")? {
        None | Some("") => LogLevel::Info,
        Some(s) => s.parse().unwrap_or_else(|()| {
            warnings.push(
                o.child("default_log_level"),
                format!("unknown log level {s:?}; INFO is used"),
            );
            LogLevel::Info
        }),
    };
    let graceful_timeout = o
        .duration("graceful_timeout")?
        .unwrap_or(DEFAULT_GRACEFUL_TIMEOUT);
    let processor = match o.i64("processor")? {
        Some(n) if n > 0 => usize::try_from(n).unwrap_or(ctx.cpu_count),
        _ => ctx.cpu_count,
    };

    let mut route_configs: Vec<RouteConfig> = Vec::new();
    let mut route_index: HashMap<String, usize> = HashMap::new();
    for r in o.items("routers")? {
        let rc = parse_route_config(&r, clusters, warnings)?;
        if let Some(&first) = route_index.get(&rc.name) {
            return Err(invalid(
                format!("{}.router_config_name", rc.json_path),
                Invalid::Duplicate {
                    what: "router_config_name",
                    name: rc.name,
                    first: format!("{}.router_config_name", route_configs[first].json_path),
                },
            ));
        }
        route_index.insert(rc.name.clone(), route_configs.len());
        route_configs.push(rc);
    }

    let plugin_index: HashMap<String, PluginConfig> = plugins
        .iter()
        .map(|p| (p.name.clone(), p.clone()))
        .collect();
    let wasm = WasmEnv {
        plugins: &plugin_index,
        work_dir: &ctx.work_dir,
        cpu_count: ctx.cpu_count,
    };
    let mut listeners: Vec<ListenerConfig> = Vec::new();
    for l in o.items("listeners")? {
        let listener = parse_listener(&l, codecs, &route_index, clusters, &wasm, warnings)?;
        if let Some(first) = listeners.iter().find(|x| x.name == listener.name) {
            return Err(invalid(
                format!("{}.name", listener.json_path),
                Invalid::Duplicate {
                    what: "listener name",
                    name: listener.name,
                    first: format!("{}.name", first.json_path),
                },
            ));
        }
        if let Some(first) = listeners
            .iter()
            .find(|x| x.bind_port && listener.bind_port && x.address == listener.address)
        {
            return Err(invalid(
                format!("{}.address", listener.json_path),
                Invalid::Duplicate {
                    what: "listener address",
                    name: listener.address.to_string(),
                    first: format!("{}.address", first.json_path),
                },
            ));
        }
        listeners.push(listener);
    }
    if listeners.is_empty() {
        warnings.push(
            o.child("listeners"),
            "no listeners: the sidecar accepts nothing",
        );
    }
    o.accept("server_name");
    for key in [
        "global_log_roller",
        "default_log_roller",
        "use_netpoll_mode",
        "optimize_local_write",
        "use_edge_mode",
    ] {
        o.warn_if_set(key, "not supported; ignored", warnings);
    }
    o.finish(warnings);
    Ok(ParsedServer {
        settings: ServerSettings {
            log: LogSettings { path, level },
            graceful_timeout,
            processor,
        },
        route_configs,
        listeners,
    })
}

/// MOSN's default log file: `<parent of the config file's directory>/logs/mosn.log`
/// (the working directory stands in for a config given as text).
fn default_log_file(ctx: &LoadContext) -> PathBuf {
    let base = ctx
        .config_path
        .as_ref()
        .map(|p| ctx.work_dir.join(p))
        .and_then(|p| p.parent().and_then(|dir| dir.parent()).map(PathBuf::from))
        .unwrap_or_else(|| ctx.work_dir.clone());
    base.join("logs").join("mosn.log")
}
