//! The MOSN-format JSON config (xprotocol spec (`docs/xprotocol-proxy-and-bolt.md`) §7), parsed into validated, typed structs
//! before anything starts. Fields the sidecar does not implement are accepted and reported
//! as [`ConfigWarning`]s (one per field), never logged from here.
//!
//! Parse order follows MOSN's startup order: wasm plugins, codecs, clusters, admin, then
//! the server (route configs before the listeners that name them).

mod access_log;
mod cluster;
mod codec;
mod dns;
mod dump;
mod duration;
mod error;
mod filter;
mod health;
mod json;
mod limits;
mod listener;
mod log_format;
mod md5;
mod plugin;
mod route;
mod server;
mod summary;

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;

pub use access_log::{AccessLogConfig, LogTarget};
pub use cluster::{
    CircuitBreakers, ClusterConfig, ClusterType, HostAddress, HostConfig, KeepaliveConfig, LbType,
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_CONN_BUFFER_LIMIT_BYTES, DEFAULT_KEEPALIVE_IDLE,
    DEFAULT_KEEPALIVE_MAX_FAILURES, DEFAULT_KEEPALIVE_TIMEOUT, DEFAULT_MAX_REQUEST_PER_CONN,
    HOST_WEIGHT_RANGE,
};
pub use codec::{CodecConfig, CodecKind, NativeCodec, PoolMode, WasmCodecConfig};
pub use dns::{
    DnsConfig, DnsServers, LookupFamily, DEFAULT_DNS_ATTEMPTS, DEFAULT_DNS_MAX_HOSTS,
    DEFAULT_DNS_PORT, DEFAULT_DNS_REFRESH_RATE, DEFAULT_DNS_TIMEOUT,
};
pub use duration::{format_go_duration, parse_go_duration, DurationError};
pub use error::{ConfigError, ConfigWarning, Invalid};
pub use filter::{
    DescriptorConfig, DescriptorEntryConfig, EntrySource, FaultAbort, FaultConfig, FaultDelay,
    FlowControlConfig, FlowLimit, FlowRuleConfig, GlobalRateLimitConfig, LimitKeyPart,
    ProxyWasmConfig, StreamFilterConfig, DEFAULT_ACTION_STATUS, DEFAULT_LIMIT_KEY,
    DEFAULT_RATE_LIMIT_STATUS, DEFAULT_RATE_LIMIT_TIMEOUT, GENERIC_KEY,
};
pub use health::{
    HealthCheckConfig, HealthCheckKind, OutlierDetectionConfig, DEFAULT_BASE_EJECTION_TIME,
    DEFAULT_CONSECUTIVE_ERRORS, DEFAULT_HEALTHY_PANIC_THRESHOLD, DEFAULT_HEALTH_CHECK_INTERVAL,
    DEFAULT_HEALTH_CHECK_TIMEOUT, DEFAULT_HEALTH_THRESHOLD, DEFAULT_MAX_EJECTION_PERCENT,
    DEFAULT_MAX_EJECTION_TIME, DEFAULT_OUTLIER_INTERVAL, FIRST_CHECK_AFTER,
};
pub use limits::{
    LimitsConfig, DEFAULT_FRAME_READ_TIMEOUT, DEFAULT_MAX_BUFFERED_BYTES,
    DEFAULT_MAX_DOWNSTREAM_CONNECTIONS, DEFAULT_MAX_PLUGIN_RESTARTS_PER_MINUTE,
    DEFAULT_MAX_REQUESTS_PER_CONNECTION, DEFAULT_WRITE_HIGH_WATER, DEFAULT_WRITE_LOW_WATER,
};
pub use listener::{
    AutoDetectConfig, ListenerConfig, ProxyConfig, DEFAULT_CONNECTION_IDLE_TIMEOUT,
    DEFAULT_DETECT_MAX_BYTES, DEFAULT_DETECT_TIMEOUT,
};
pub use log_format::{
    FormatError, LogEncoding, LogFormat, Segment, Variable, DEFAULT_ACCESS_LOG_FORMAT,
    REQUEST_HEADER_PREFIX, RESPONSE_HEADER_PREFIX, VARIABLES,
};
pub use plugin::{Engine, PluginConfig, VmConfig};
pub use route::{
    ClusterRef, ClusterTarget, HeaderMatcherConfig, RetryPolicy, RouteAction, RouteConfig,
    RouteMatch, RouteRuleConfig, VirtualHostConfig, WeightedCluster, DEFAULT_GLOBAL_TIMEOUT,
};
pub use server::{LogLevel, LogPath, LogSettings, ServerSettings, DEFAULT_GRACEFUL_TIMEOUT};

use error::{invalid, Warnings};
use json::Obj;

/// The whole validated config.
#[derive(Debug, Clone)]
pub struct Config {
    /// `servers[0]` settings: logging, graceful timeout, processor count.
    pub server: ServerSettings,
    /// `servers[0].listeners`.
    pub listeners: Vec<ListenerConfig>,
    /// `servers[0].routers` (named route configs).
    pub route_configs: Vec<RouteConfig>,
    /// `cluster_manager.clusters`, shared read-only with every worker.
    pub clusters: Vec<Arc<ClusterConfig>>,
    /// `admin.address`, if the admin API is configured.
    pub admin: Option<SocketAddr>,
    /// `wasm_global_plugins`, then anonymous plugins of codecs with inline `vm_config`.
    pub plugins: Vec<PluginConfig>,
    /// The enabled codecs (`third_part_codec.codecs`, disabled ones dropped).
    pub codecs: Vec<CodecConfig>,
    /// `limits`: what one peer may cost, and the process-wide overload budget.
    pub limits: LimitsConfig,
    /// Accepted fields that have no effect, one entry each, in parse order.
    pub warnings: Vec<ConfigWarning>,
}

/// What a config is parsed against: the process environment, injectable for tests.
#[derive(Debug, Clone)]
pub struct LoadContext {
    /// Relative plugin paths and log files resolve against this (MOSN: the working
    /// directory).
    pub work_dir: PathBuf,
    /// The config file, if any (the default log file lives beside its directory).
    pub config_path: Option<PathBuf>,
    /// Used for `processor` and `instance_num` ≤ 0.
    pub cpu_count: usize,
}

impl LoadContext {
    /// The real environment: the current directory and CPU count.
    ///
    /// # Errors
    /// [`ConfigError::Read`] when the current directory cannot be determined.
    pub fn from_env(config_path: Option<&Path>) -> Result<LoadContext, ConfigError> {
        let work_dir = std::env::current_dir().map_err(|source| ConfigError::Read {
            path: PathBuf::from("."),
            source,
        })?;
        let cpu_count = std::thread::available_parallelism().map_or(1, |n| n.get());
        Ok(LoadContext {
            work_dir,
            config_path: config_path.map(Path::to_path_buf),
            cpu_count,
        })
    }
}

impl Config {
    /// Reads and validates the config file at `path`, resolving relative plugin paths
    /// against the current directory.
    ///
    /// # Errors
    /// [`ConfigError`] naming the file, the JSON position, or the JSON path and reason.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, &LoadContext::from_env(Some(path))?)
    }

    /// Validates config text.
    ///
    /// # Errors
    /// [`ConfigError::Syntax`] for bad JSON (with line and column),
    /// [`ConfigError::Invalid`] for a bad field (with its JSON path).
    pub fn parse(text: &str, ctx: &LoadContext) -> Result<Config, ConfigError> {
        let value: Value = serde_json::from_str(text).map_err(|source| ConfigError::Syntax {
            line: source.line(),
            column: source.column(),
            source,
        })?;
        Config::from_value(&value, ctx)
    }

    /// Validates an already-parsed JSON document.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for a bad field (with its JSON path).
    pub fn from_value(value: &Value, ctx: &LoadContext) -> Result<Config, ConfigError> {
        let mut warnings = Warnings::default();
        let mut root = Obj::new(value, String::new())?;

        let plugins = parse_plugins(&mut root, ctx, &mut warnings)?;
        let (plugins, codecs) = parse_codecs(&mut root, plugins, ctx, &mut warnings)?;
        let clusters = parse_clusters(&mut root, &mut warnings)?;
        let admin = parse_admin(&mut root, &mut warnings)?;
        let limits = limits::parse_limits(&mut root, &mut warnings)?;

        let servers = root.items("servers")?;
        let server_item = match servers.as_slice() {
            [one] => one,
            [] => return Err(invalid("servers", Invalid::Missing)),
            many => {
                return Err(invalid(
                    "servers",
                    Invalid::NotExactlyOne { count: many.len() },
                ))
            }
        };
        let cluster_index: HashMap<&str, usize> = clusters
            .iter()
            .enumerate()
            .map(|(i, c)| (c.name.as_str(), i))
            .collect();
        let parsed = server::parse_server(
            server_item,
            &codecs,
            &cluster_index,
            &plugins,
            ctx,
            &mut warnings,
        )?;

        for key in [
            "tracing",
            "metrics",
            "pprof",
            "dynamic_resources",
            "static_resources",
            "raw_dynamic_resources",
            "raw_static_resources",
            "plugin",
            "extends",
        ] {
            root.warn_if_set(key, "not supported; ignored", &mut warnings);
        }
        root.accept("close_graceful");
        root.accept("inherit_old_mosnconfig");
        root.finish(&mut warnings);

        // MOSN's `instance_num` sizes a plugin's instance pool for the whole process; here
        // each worker runs its share of a codec plugin's (rounded up), and one instance of
        // a plugin used only by stream filters.
        let workers = parsed.settings.workers();
        for (i, p) in plugins.iter().enumerate() {
            let codec_plugin = codecs
                .iter()
                .any(|c| matches!(&c.kind, CodecKind::Wasm(w) if w.plugin == i));
            let per_worker = p.instances_per_worker(workers);
            let why = if !codec_plugin {
                (p.instance_num != workers).then(|| {
                    format!(
                        "instance_num {} is not used: each of the {workers} worker threads runs \
                         one instance of a filter plugin",
                        p.instance_num
                    )
                })
            } else if per_worker * workers != p.instance_num {
                Some(format!(
                    "instance_num {} runs as {per_worker} per worker thread, {} in all over \
                     {workers} workers",
                    p.instance_num,
                    per_worker * workers
                ))
            } else {
                None
            };
            if let Some(why) = why {
                warnings.push(format!("{}.instance_num", p.json_path), why);
            }
        }

        Ok(Config {
            server: parsed.settings,
            listeners: parsed.listeners,
            route_configs: parsed.route_configs,
            clusters: clusters.into_iter().map(Arc::new).collect(),
            admin,
            plugins,
            codecs,
            limits,
            warnings: warnings.0,
        })
    }

    /// The cluster named `name`.
    pub fn cluster(&self, name: &str) -> Option<&Arc<ClusterConfig>> {
        self.clusters.iter().find(|c| c.name == name)
    }

    /// The enabled codec serving `protocol`.
    pub fn codec(&self, protocol: &str) -> Option<&CodecConfig> {
        self.codecs.iter().find(|c| c.protocol == protocol)
    }

    /// The route config named `name`.
    pub fn route_config(&self, name: &str) -> Option<&RouteConfig> {
        self.route_configs.iter().find(|r| r.name == name)
    }

    /// The effective config in MOSN's JSON layout, every default filled in (for the admin
    /// API's `config_dump`). It parses back into an equivalent config.
    pub fn to_json(&self) -> Value {
        dump::render(self)
    }

    /// A human summary (what `sidecar check` prints).
    pub fn summary(&self) -> String {
        summary::render(self)
    }
}

fn parse_plugins(
    root: &mut Obj<'_>,
    ctx: &LoadContext,
    warnings: &mut Warnings,
) -> Result<Vec<PluginConfig>, ConfigError> {
    let mut plugins: Vec<PluginConfig> = Vec::new();
    for item in root.items("wasm_global_plugins")? {
        let mut o = item.obj()?;
        let name = o.required_str("plugin_name")?.to_owned();
        if let Some(first) = plugins.iter().find(|p| p.name == name) {
            return Err(invalid(
                o.child("plugin_name"),
                Invalid::Duplicate {
                    what: "plugin name",
                    name,
                    first: format!("{}.plugin_name", first.json_path),
                },
            ));
        }
        let plugin =
            plugin::parse_vm_and_instances(&mut o, name, &ctx.work_dir, ctx.cpu_count, warnings)?;
        o.finish(warnings);
        plugins.push(plugin);
    }
    Ok(plugins)
}

fn parse_codecs(
    root: &mut Obj<'_>,
    mut plugins: Vec<PluginConfig>,
    ctx: &LoadContext,
    warnings: &mut Warnings,
) -> Result<(Vec<PluginConfig>, Vec<CodecConfig>), ConfigError> {
    let mut codecs: Vec<CodecConfig> = Vec::new();
    if let Some(mut tpc) = root.obj("third_part_codec")? {
        for item in tpc.items("codecs")? {
            let Some(codec) = codec::parse_codec(&item, &mut plugins, ctx, warnings)? else {
                continue;
            };
            if let Some(first) = codecs.iter().find(|c| c.protocol == codec.protocol) {
                return Err(invalid(
                    format!("{}.config.protocol", codec.json_path),
                    Invalid::Duplicate {
                        what: "codec protocol",
                        name: codec.protocol,
                        first: format!("{}.config.protocol", first.json_path),
                    },
                ));
            }
            codecs.push(codec);
        }
        tpc.finish(warnings);
    }
    Ok((plugins, codecs))
}

fn parse_clusters(
    root: &mut Obj<'_>,
    warnings: &mut Warnings,
) -> Result<Vec<ClusterConfig>, ConfigError> {
    let mut clusters: Vec<ClusterConfig> = Vec::new();
    if let Some(mut cm) = root.obj("cluster_manager")? {
        for item in cm.items("clusters")? {
            let cluster = cluster::parse_cluster(&item, warnings)?;
            if let Some(first) = clusters.iter().find(|c| c.name == cluster.name) {
                return Err(invalid(
                    format!("{}.name", cluster.json_path),
                    Invalid::Duplicate {
                        what: "cluster name",
                        name: cluster.name,
                        first: format!("{}.name", first.json_path),
                    },
                ));
            }
            clusters.push(cluster);
        }
        cm.warn_if_set("tls_context", "TLS is not supported; ignored", warnings);
        cm.finish(warnings);
    }
    Ok(clusters)
}

fn parse_admin(
    root: &mut Obj<'_>,
    warnings: &mut Warnings,
) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(mut admin) = root.obj("admin")? else {
        return Ok(None);
    };
    let Some(mut address) = admin.obj("address")? else {
        admin.finish(warnings);
        return Ok(None);
    };
    let mut sock = address
        .obj("socket_address")?
        .ok_or_else(|| invalid(address.child("socket_address"), Invalid::Missing))?;
    let ip_text = sock.required_str("address")?;
    let ip = ip_text.parse::<IpAddr>().map_err(|_| {
        invalid(
            sock.child("address"),
            Invalid::Address {
                value: ip_text.to_owned(),
            },
        )
    })?;
    let port = match sock.u32("port_value")? {
        Some(p) => u16::try_from(p).map_err(|_| {
            invalid(
                sock.child("port_value"),
                Invalid::OutOfRange {
                    value: p.to_string(),
                    range: "0..=65535",
                },
            )
        })?,
        None => return Err(invalid(sock.child("port_value"), Invalid::Missing)),
    };
    if !ip.is_loopback() {
        // The admin API changes the running process (log level, plugin reload): reachable
        // from the network, it is anyone's.
        warnings.push(
            sock.child("address"),
            format!("the admin API listens on {ip}, reachable beyond this host; use 127.0.0.1 unless that is intended"),
        );
    }
    sock.accept("protocol");
    sock.accept("ipv4_compat");
    sock.finish(warnings);
    address.finish(warnings);
    admin.finish(warnings);
    Ok(Some(SocketAddr::new(ip, port)))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{json, Value};

    use super::*;

    /// A scratch directory removed on drop.
    struct Scratch(PathBuf);

    impl Scratch {
        fn new(tag: &str) -> Scratch {
            use std::sync::atomic::{AtomicUsize, Ordering};
            static N: AtomicUsize = AtomicUsize::new(0);
            let dir = std::env::temp_dir().join(format!(
                "sidecar-config-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("scratch dir");
            Scratch(dir)
        }

        fn file(&self, rel: &str, bytes: &[u8]) {
            let path = self.0.join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("dirs");
            std::fs::write(path, bytes).expect("write");
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    const PLUGIN: &str = "target/wasm32-wasip1/plugin/bolt.wasm";

    fn ctx(work_dir: &Path) -> LoadContext {
        LoadContext {
            work_dir: work_dir.to_path_buf(),
            config_path: Some(PathBuf::from("/etc/mosn/configs/mosn.json")),
            cpu_count: 3,
        }
    }

    /// The two-listener sample topology with the native codec (no plugin file needed).
    fn base() -> Value {
        let route = |name: &str, cluster: &str| {
            json!({"router_config_name": name, "virtual_hosts": [{"name": "h", "domains": ["*"],
                "routers": [{"match": {"headers": [{"name": "service", "value": ".*"}]},
                             "route": {"cluster_name": cluster}}]}]})
        };
        let listener = |name: &str, addr: &str, router: &str| {
            json!({"name": name, "address": addr, "bind_port": true, "filter_chains": [{"filters": [
                {"type": "proxy", "config": {"downstream_protocol": "X", "upstream_protocol": "X",
                 "router_config_name": router, "extend_config": {"sub_protocol": "x-bolt"}}}]}]})
        };
        json!({
            "servers": [{
                "default_log_path": "stdout",
                "routers": [route("server_router", "serverCluster"), route("client_router", "clientCluster")],
                "listeners": [listener("serverListener", "127.0.0.1:2046", "server_router"),
                              listener("clientListener", "127.0.0.1:2045", "client_router")]
            }],
            "cluster_manager": {"clusters": [
                {"name": "serverCluster", "type": "SIMPLE", "lb_type": "LB_RANDOM",
                 "hosts": [{"address": "127.0.0.1:12199"}]},
                {"name": "clientCluster", "type": "SIMPLE", "lb_type": "LB_RANDOM",
                 "hosts": [{"address": "127.0.0.1:2046"}]}
            ]},
            "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 34901}}},
            "third_part_codec": {"codecs": [
                {"type": "native", "enable": true, "config": {"protocol": "x-bolt", "codec": "bolt"}}
            ]}
        })
    }

    /// `base()` with the wasm codec from plugin `wasm-bolt`.
    fn wasm_base() -> Value {
        let mut v = base();
        v["wasm_global_plugins"] = json!([{"plugin_name": "wasm-bolt",
            "vm_config": {"engine": "wasmer", "path": PLUGIN, "cpu": 100, "mem": 100}}]);
        v["third_part_codec"] = json!({"codecs": [{"type": "wasm", "enable": true,
            "config": {"from_wasm_plugin": "wasm-bolt", "protocol": "x-bolt", "root_id": 1}}]});
        v
    }

    fn parse(v: &Value) -> Result<Config, ConfigError> {
        Config::from_value(v, &ctx(Path::new("/nonexistent-workdir")))
    }

    fn parse_in(v: &Value, dir: &Scratch) -> Result<Config, ConfigError> {
        Config::from_value(v, &ctx(&dir.0))
    }

    /// Sets the value at `pointer`, adding the last key to its object if absent.
    fn set(v: &mut Value, pointer: &str, new: Value) {
        if let Some(slot) = v.pointer_mut(pointer) {
            *slot = new;
            return;
        }
        let (parent, key) = pointer.rsplit_once('/').expect("pointer");
        v.pointer_mut(parent)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("no object at {parent} in test config"))
            .insert(key.to_owned(), new);
    }

    fn remove(v: &mut Value, pointer: &str, key: &str) {
        v.pointer_mut(pointer)
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| panic!("no {pointer}"))
            .remove(key);
    }

    /// Parses, expects an error at `path` whose message contains `needle`.
    fn expect_error(v: &Value, path: &str, needle: &str) {
        expect_error_with(parse(v), path, needle);
    }

    fn expect_error_with(r: Result<Config, ConfigError>, path: &str, needle: &str) {
        match r {
            Ok(_) => panic!("expected an error at {path}"),
            Err(e) => {
                assert_eq!(e.json_path(), Some(path), "{e}");
                assert!(e.to_string().contains(needle), "{e:?} lacks {needle:?}");
            }
        }
    }

    fn warning_paths(c: &Config) -> Vec<&str> {
        c.warnings.iter().map(|w| w.path.as_str()).collect()
    }

    #[test]
    fn base_topology_parses_without_warnings() {
        let c = parse(&base()).expect("valid");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.listeners.len(), 2);
        let client = &c.listeners[1];
        assert_eq!(client.name, "clientListener");
        assert_eq!(
            client.address,
            "127.0.0.1:2045".parse::<SocketAddr>().unwrap()
        );
        assert_eq!(client.proxy.protocol, "x-bolt");
        assert_eq!(client.proxy.codecs.len(), 1);
        assert_eq!(c.codecs[client.proxy.codecs[0]].protocol, "x-bolt");
        assert!(client.proxy.auto_detect.is_none());
        assert_eq!(
            c.route_configs[client.proxy.route_config].name,
            "client_router"
        );
        assert_eq!(
            c.admin,
            Some("127.0.0.1:34901".parse::<SocketAddr>().unwrap())
        );
        assert!(matches!(
            c.codecs[0].kind,
            CodecKind::Native(n) if n.name() == "bolt"
        ));
        assert_eq!(
            c.cluster("clientCluster").map(|c| c.lb),
            Some(LbType::Random)
        );
        assert!(c.codec("x-bolt").is_some());
        assert!(c.route_config("server_router").is_some());
    }

    #[test]
    fn mosn_defaults_are_filled_in() {
        let c = parse(&base()).expect("valid");
        assert_eq!(c.server.graceful_timeout, Duration::from_secs(30));
        assert_eq!(c.server.processor, 3);
        assert_eq!(c.server.log.level, LogLevel::Info);
        let l = &c.listeners[0];
        assert_eq!(l.connection_idle_timeout, Some(Duration::from_secs(90)));
        let cl = &c.clusters[0];
        assert_eq!(cl.kind, ClusterType::Simple);
        assert_eq!(cl.connect_timeout, Duration::from_secs(10));
        assert_eq!(cl.keepalive.idle, Duration::from_secs(15));
        assert_eq!(cl.keepalive.timeout, Duration::from_secs(1));
        assert_eq!(cl.keepalive.max_failures, 6);
        assert_eq!(cl.keepalive.interval, None);
        assert_eq!(cl.max_request_per_conn, 1024);
        assert_eq!(cl.conn_buffer_limit_bytes, 16384);
        assert_eq!(cl.circuit_breakers, CircuitBreakers::default());
        assert_eq!(cl.circuit_breakers.multiplex_connections_per_host(), 1);
        assert_eq!(cl.hosts[0].weight, 1);
        assert_eq!(cl.pool_mode, None);
        assert_eq!(
            cl.effective_pool_mode(PoolMode::PingPong),
            PoolMode::PingPong
        );
        assert_eq!(c.codecs[0].pool_mode, PoolMode::Multiplex);
        let route = &c.route_configs[0].virtual_hosts[0].routes[0];
        assert_eq!(route.action.timeout, None);
        assert!(route.action.retry_policy.is_none());
    }

    #[test]
    fn default_log_path_is_beside_the_config_directory() {
        let mut v = base();
        remove(&mut v, "/servers/0", "default_log_path");
        let c = parse(&v).expect("valid");
        assert_eq!(
            c.server.log.path,
            LogPath::File(PathBuf::from("/etc/mosn/logs/mosn.log"))
        );
        set(&mut v, "/servers/0/default_log_path", json!("stderr"));
        assert_eq!(parse(&v).expect("valid").server.log.path, LogPath::Stderr);
        set(&mut v, "/servers/0/default_log_path", json!("logs/x.log"));
        assert_eq!(
            parse(&v).expect("valid").server.log.path,
            LogPath::File(PathBuf::from("/nonexistent-workdir/logs/x.log"))
        );
    }

    #[test]
    fn log_levels_parse_and_unknown_means_info_with_a_warning() {
        let mut v = base();
        set(&mut v, "/servers/0/default_log_level", json!("DEBUG"));
        assert_eq!(parse(&v).expect("valid").server.log.level, LogLevel::Debug);
        set(&mut v, "/servers/0/default_log_level", json!("FATAL"));
        assert_eq!(parse(&v).expect("valid").server.log.level, LogLevel::Error);
        set(&mut v, "/servers/0/default_log_level", json!("LOUD"));
        let c = parse(&v).expect("valid");
        assert_eq!(c.server.log.level, LogLevel::Info);
        assert_eq!(warning_paths(&c), ["servers[0].default_log_level"]);
    }

    #[test]
    fn explicit_server_and_listener_settings() {
        let mut v = base();
        set(&mut v, "/servers/0/graceful_timeout", json!("1m30s"));
        set(&mut v, "/servers/0/processor", json!(8));
        set(
            &mut v,
            "/servers/0/listeners/0/connection_idle_timeout",
            json!("0s"),
        );
        set(
            &mut v,
            "/servers/0/listeners/1/connection_idle_timeout",
            json!("5m"),
        );
        let c = parse(&v).expect("valid");
        assert_eq!(c.server.graceful_timeout, Duration::from_secs(90));
        assert_eq!(c.server.processor, 8);
        assert_eq!(c.listeners[0].connection_idle_timeout, None);
        assert_eq!(
            c.listeners[1].connection_idle_timeout,
            Some(Duration::from_secs(300))
        );
        set(&mut v, "/servers/0/processor", json!(0));
        assert_eq!(parse(&v).expect("valid").server.processor, 3);
        set(&mut v, "/servers/0/processor", json!(-2));
        assert_eq!(parse(&v).expect("valid").server.processor, 3);
    }

    #[test]
    fn explicit_cluster_settings() {
        let mut v = base();
        set(
            &mut v,
            "/cluster_manager/clusters/0",
            json!({"name": "serverCluster", "type": "STRICT_DNS", "lb_type": "LB_LEAST_REQUEST",
                "hosts": [{"address": "app.local:12199", "weight": 500, "hostname": "app",
                           "metadata": {"zone": "a"}},
                          {"address": "127.0.0.1:12200", "weight": 0}],
                "connect_timeout": "500ms",
                "circuit_breakers": [{"max_connections": 4, "max_pending_requests": 0,
                                      "max_requests": 1000, "max_retries": 3}],
                "max_request_per_conn": 10, "conn_buffer_limit_bytes": 32768,
                "keepalive": {"interval": "30s", "timeout": "2s", "idle": "20s", "max_failures": 3},
                "pool_mode": "ping-pong"}),
        );
        let c = parse(&v).expect("valid");
        let cl = &c.clusters[0];
        assert_eq!(cl.kind, ClusterType::StrictDns);
        assert_eq!(cl.lb, LbType::LeastRequest);
        assert_eq!(
            cl.hosts[0].address,
            HostAddress::Dns {
                host: "app.local".into(),
                port: 12199
            }
        );
        assert_eq!(cl.hosts[0].weight, 128);
        assert_eq!(cl.hosts[0].hostname.as_deref(), Some("app"));
        assert_eq!(
            cl.hosts[0].metadata.get("zone").map(String::as_str),
            Some("a")
        );
        assert_eq!(cl.hosts[1].weight, 1);
        assert_eq!(cl.connect_timeout, Duration::from_millis(500));
        assert_eq!(cl.circuit_breakers.max_connections, Some(4));
        assert_eq!(cl.circuit_breakers.max_pending_requests, None);
        assert_eq!(cl.circuit_breakers.max_requests, Some(1000));
        assert_eq!(cl.circuit_breakers.max_retries, Some(3));
        assert_eq!(cl.circuit_breakers.multiplex_connections_per_host(), 4);
        assert_eq!(cl.max_request_per_conn, 10);
        assert_eq!(cl.conn_buffer_limit_bytes, 32768);
        assert_eq!(
            cl.keepalive,
            KeepaliveConfig {
                interval: Some(Duration::from_secs(30)),
                timeout: Duration::from_secs(2),
                idle: Duration::from_secs(20),
                max_failures: 3
            }
        );
        assert_eq!(cl.pool_mode, Some(PoolMode::PingPong));
        assert_eq!(
            warning_paths(&c),
            ["cluster_manager.clusters[0].hosts[0].weight"]
        );
        // STRICT_DNS without DNS fields: MOSN's defaults (system resolver, every 5 s).
        assert_eq!(cl.dns, Some(DnsConfig::default()));
    }

    #[test]
    fn lb_and_cluster_types_fall_back_with_warnings() {
        let mut v = base();
        set(&mut v, "/cluster_manager/clusters/0/lb_type", json!(""));
        set(
            &mut v,
            "/cluster_manager/clusters/1/lb_type",
            json!("LB_MAGLEV"),
        );
        set(&mut v, "/cluster_manager/clusters/1/type", json!("EDS"));
        let c = parse(&v).expect("valid");
        assert_eq!(c.clusters[0].lb, LbType::RoundRobin);
        assert_eq!(c.clusters[1].lb, LbType::RoundRobin);
        assert_eq!(c.clusters[1].kind, ClusterType::Simple);
        assert_eq!(
            warning_paths(&c),
            [
                "cluster_manager.clusters[1].type",
                "cluster_manager.clusters[1].lb_type"
            ]
        );
    }

    #[test]
    fn obsolete_and_unknown_fields_warn_once_each() {
        let mut v = base();
        set(
            &mut v,
            "/servers/0/listeners/0/stream_filters",
            json!([{"type": "healthcheck", "config": {"passthrough": false}},
                   {"type": "flowControlFilter", "config": {}},
                   {"type": "mystery"}]),
        );
        set(
            &mut v,
            "/cluster_manager/clusters/0/health_check",
            json!({"service_name": "x", "check_path": "/status"}),
        );
        set(
            &mut v,
            "/cluster_manager/clusters/0/lb_subset_config",
            json!({"fallback_policy": 1}),
        );
        set(
            &mut v,
            "/cluster_manager/clusters/0/tls_context",
            json!({"status": true}),
        );
        set(&mut v, "/cluster_manager/clusters/0/frobnicate", json!(1));
        set(&mut v, "/tracing", json!({"enable": true}));
        set(&mut v, "/unknown_top", json!("x"));
        let c = parse(&v).expect("valid");
        let mut paths = warning_paths(&c);
        paths.sort_unstable();
        assert_eq!(
            paths,
            [
                "cluster_manager.clusters[0].frobnicate",
                "cluster_manager.clusters[0].health_check.check_path",
                "cluster_manager.clusters[0].lb_subset_config",
                "cluster_manager.clusters[0].tls_context",
                "servers[0].listeners[0].stream_filters[0].type",
                "servers[0].listeners[0].stream_filters[1].config.global_switch",
                "servers[0].listeners[0].stream_filters[2].type",
                "tracing",
                "unknown_top",
            ]
        );
        assert!(c.warnings.iter().any(|w| w.message.contains("healthcheck")));
    }

    #[test]
    fn unset_obsolete_fields_do_not_warn() {
        let mut v = base();
        set(
            &mut v,
            "/cluster_manager/clusters/0/health_check",
            json!({}),
        );
        set(
            &mut v,
            "/cluster_manager/clusters/0/tls_context",
            json!(null),
        );
        let c = parse(&v).expect("valid");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn bad_json_reports_line_and_column() {
        let err = Config::parse("{\n  \"servers\": [\n    }\n", &ctx(Path::new("/")))
            .expect_err("bad json");
        match err {
            ConfigError::Syntax { line, column, .. } => assert_eq!((line, column), (3, 5)),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unknown_cluster_in_a_route_names_the_path() {
        let mut v = base();
        let routes = "/servers/0/routers/0/virtual_hosts/0/routers";
        let extra = json!({"match": {"headers": []}, "route": {"cluster_name": "nope"}});
        v.pointer_mut(routes)
            .and_then(Value::as_array_mut)
            .expect("routes")
            .push(extra);
        expect_error(
            &v,
            "servers[0].routers[0].virtual_hosts[0].routers[1].route.cluster_name",
            "unknown cluster \"nope\"",
        );
    }

    #[test]
    fn weighted_clusters_are_validated() {
        let mut v = base();
        let route = "/servers/0/routers/0/virtual_hosts/0/routers/0/route";
        set(
            &mut v,
            route,
            json!({"weighted_clusters": [{"cluster": {"name": "serverCluster", "weight": 3}},
                                        {"cluster": {"name": "clientCluster", "weight": 1}}],
                   "timeout": "3s",
                   "retry_policy": {"retry_on": true, "retry_timeout": "1s", "num_retries": 2,
                                    "status_codes": [503, 504]}}),
        );
        let c = parse(&v).expect("valid");
        let action = &c.route_configs[0].virtual_hosts[0].routes[0].action;
        match &action.target {
            ClusterTarget::Weighted(w) => {
                assert_eq!(w.len(), 2);
                assert_eq!(w[1].cluster.index, 1);
                assert_eq!(w[0].weight, 3);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(action.timeout, Some(Duration::from_secs(3)));
        assert_eq!(
            action.retry_policy,
            Some(RetryPolicy {
                retry_on: true,
                retry_timeout: Some(Duration::from_secs(1)),
                num_retries: 2,
                status_codes: vec![503, 504]
            })
        );

        set(
            &mut v,
            &format!("{route}/weighted_clusters/1/cluster/name"),
            json!("ghost"),
        );
        expect_error(
            &v,
            "servers[0].routers[0].virtual_hosts[0].routers[0].route.weighted_clusters[1].cluster.name",
            "unknown cluster \"ghost\"",
        );
        set(
            &mut v,
            &format!("{route}/weighted_clusters"),
            json!([{"cluster": {"name": "serverCluster", "weight": 0}}]),
        );
        expect_error(
            &v,
            "servers[0].routers[0].virtual_hosts[0].routers[0].route.weighted_clusters",
            "must not all be zero",
        );
        set(
            &mut v,
            &format!("{route}/cluster_name"),
            json!("serverCluster"),
        );
        expect_error(
            &v,
            "servers[0].routers[0].virtual_hosts[0].routers[0].route.weighted_clusters",
            "not both",
        );
    }

    #[test]
    fn route_without_target_is_an_error() {
        let mut v = base();
        set(
            &mut v,
            "/servers/0/routers/0/virtual_hosts/0/routers/0/route",
            json!({"timeout": "1s"}),
        );
        expect_error(
            &v,
            "servers[0].routers[0].virtual_hosts[0].routers[0].route.cluster_name",
            "cluster_name or weighted_clusters",
        );
    }

    #[test]
    fn bad_regex_and_bad_duration_name_their_fields() {
        let mut v = base();
        let m = "/servers/0/routers/0/virtual_hosts/0/routers/0/match/headers/0";
        set(
            &mut v,
            m,
            json!({"name": "service", "value": "(", "regex": true}),
        );
        expect_error(
            &v,
            "servers[0].routers[0].virtual_hosts[0].routers[0].match.headers[0].value",
            "invalid regex",
        );
        let mut v = base();
        set(
            &mut v,
            "/servers/0/routers/0/virtual_hosts/0/routers/0/route/timeout",
            json!("3 seconds"),
        );
        expect_error(
            &v,
            "servers[0].routers[0].virtual_hosts[0].routers[0].route.timeout",
            "invalid duration",
        );
    }

    #[test]
    fn duplicate_names_are_errors() {
        let mut v = base();
        set(
            &mut v,
            "/servers/0/listeners/1/name",
            json!("serverListener"),
        );
        expect_error(
            &v,
            "servers[0].listeners[1].name",
            "duplicate listener name",
        );

        let mut v = base();
        set(
            &mut v,
            "/servers/0/listeners/1/address",
            json!("127.0.0.1:2046"),
        );
        expect_error(
            &v,
            "servers[0].listeners[1].address",
            "duplicate listener address",
        );

        let mut v = base();
        set(
            &mut v,
            "/cluster_manager/clusters/1/name",
            json!("serverCluster"),
        );
        expect_error(
            &v,
            "cluster_manager.clusters[1].name",
            "first defined at cluster_manager.clusters[0].name",
        );

        let mut v = base();
        set(
            &mut v,
            "/servers/0/routers/1/router_config_name",
            json!("server_router"),
        );
        expect_error(&v, "servers[0].routers[1].router_config_name", "duplicate");

        let mut v = base();
        let codec = json!({"type": "native", "enable": true, "config": {"protocol": "x-bolt", "codec": "bolt"}});
        v["third_part_codec"]["codecs"]
            .as_array_mut()
            .expect("codecs")
            .push(codec);
        expect_error(
            &v,
            "third_part_codec.codecs[1].config.protocol",
            "duplicate codec protocol",
        );
    }

    #[test]
    fn two_default_virtual_hosts_are_an_error() {
        let mut v = base();
        let vh = v["servers"][0]["routers"][0]["virtual_hosts"][0].clone();
        v["servers"][0]["routers"][0]["virtual_hosts"]
            .as_array_mut()
            .expect("vhosts")
            .push(vh);
        expect_error(
            &v,
            "servers[0].routers[0].virtual_hosts[1].domains",
            "duplicate default virtual host",
        );
    }

    #[test]
    fn other_domains_beside_the_default_warn() {
        let mut v = base();
        let mut vh = v["servers"][0]["routers"][0]["virtual_hosts"][0].clone();
        vh["domains"] = json!(["example.com"]);
        v["servers"][0]["routers"][0]["virtual_hosts"]
            .as_array_mut()
            .expect("vhosts")
            .push(vh);
        let c = parse(&v).expect("valid");
        assert_eq!(
            warning_paths(&c),
            ["servers[0].routers[0].virtual_hosts[1].domains"]
        );
        set(
            &mut v,
            "/servers/0/routers/0/virtual_hosts/0/domains",
            json!(["a.com"]),
        );
        let c = parse(&v).expect("valid");
        assert_eq!(warning_paths(&c), ["servers[0].routers[0].virtual_hosts"]);
    }

    #[test]
    fn bad_addresses_are_errors() {
        let mut v = base();
        set(
            &mut v,
            "/servers/0/listeners/0/address",
            json!("localhost:99999"),
        );
        expect_error(&v, "servers[0].listeners[0].address", "invalid address");

        let mut v = base();
        set(
            &mut v,
            "/cluster_manager/clusters/0/hosts/0/address",
            json!("app.local:12199"),
        );
        expect_error(
            &v,
            "cluster_manager.clusters[0].hosts[0].address",
            "expected ip:port",
        );

        let mut v = base();
        set(
            &mut v,
            "/admin/address/socket_address/address",
            json!("nowhere"),
        );
        expect_error(
            &v,
            "admin.address.socket_address.address",
            "invalid address",
        );

        let mut v = base();
        set(
            &mut v,
            "/admin/address/socket_address/port_value",
            json!(70000),
        );
        expect_error(
            &v,
            "admin.address.socket_address.port_value",
            "out of range",
        );

        let mut v = base();
        set(&mut v, "/servers/0/listeners/0/network", json!("udp"));
        expect_error(
            &v,
            "servers[0].listeners[0].network",
            "unsupported value \"udp\"",
        );
    }

    #[test]
    fn unknown_router_config_is_an_error() {
        let mut v = base();
        set(
            &mut v,
            "/servers/0/listeners/0/filter_chains/0/filters/0/config/router_config_name",
            json!("missing_router"),
        );
        expect_error(
            &v,
            "servers[0].listeners[0].filter_chains[0].filters[0].config.router_config_name",
            "unknown router config \"missing_router\"",
        );
    }

    #[test]
    fn enable_bolt_goaway_is_read_from_extend_config_or_its_bolt_object() {
        let ext = "/servers/0/listeners/0/filter_chains/0/filters/0/config/extend_config";
        let c = parse(&base()).expect("valid");
        assert!(
            !c.listeners[0].proxy.goaway_on_drain,
            "default false (MOSN)"
        );

        let mut v = base();
        set(&mut v, &format!("{ext}/enable_bolt_goaway"), json!(true));
        let c = parse(&v).expect("valid");
        assert!(c.listeners[0].proxy.goaway_on_drain);
        assert!(!c.listeners[1].proxy.goaway_on_drain, "per listener");
        assert!(warning_paths(&c).is_empty(), "{:?}", warning_paths(&c));

        let mut v = base();
        set(
            &mut v,
            &format!("{ext}/bolt"),
            json!({"enable_bolt_goaway": true}),
        );
        assert!(parse(&v).expect("valid").listeners[0].proxy.goaway_on_drain);
        // The bolt object's value wins over the flat one.
        set(&mut v, &format!("{ext}/enable_bolt_goaway"), json!(true));
        set(
            &mut v,
            &format!("{ext}/bolt"),
            json!({"enable_bolt_goaway": false}),
        );
        assert!(!parse(&v).expect("valid").listeners[0].proxy.goaway_on_drain);

        let mut v = base();
        set(&mut v, &format!("{ext}/enable_bolt_goaway"), json!("yes"));
        expect_error(
            &v,
            "servers[0].listeners[0].filter_chains[0].filters[0].config.extend_config.enable_bolt_goaway",
            "",
        );
    }

    #[test]
    fn protocols_must_come_from_enabled_codecs() {
        let proxy = "/servers/0/listeners/0/filter_chains/0/filters/0/config";
        let mut v = base();
        set(
            &mut v,
            &format!("{proxy}/extend_config/sub_protocol"),
            json!("x-dubbo"),
        );
        expect_error(
            &v,
            "servers[0].listeners[0].filter_chains[0].filters[0].config.extend_config.sub_protocol",
            "protocol \"x-dubbo\" is not provided by any enabled codec (enabled: x-bolt)",
        );

        let mut v = base();
        set(&mut v, "/third_part_codec/codecs/0/enable", json!(false));
        expect_error(
            &v,
            "servers[0].listeners[0].filter_chains[0].filters[0].config.extend_config.sub_protocol",
            "(enabled: none)",
        );

        let mut v = base();
        remove(&mut v, proxy, "extend_config");
        expect_error(
            &v,
            "servers[0].listeners[0].filter_chains[0].filters[0].config.extend_config.sub_protocol",
            "needs extend_config.sub_protocol",
        );
    }

    /// `base()` with a second enabled codec, `x-bolt-b` (the native Bolt codec again).
    fn two_codecs() -> Value {
        let mut v = base();
        v["third_part_codec"]["codecs"]
            .as_array_mut()
            .expect("codecs")
            .push(json!({"type": "native", "enable": true,
                "config": {"protocol": "x-bolt-b", "codec": "bolt"}}));
        v
    }

    #[test]
    fn auto_lists_its_candidates_in_sub_protocol_order_or_takes_every_codec() {
        let proxy = "/servers/0/listeners/0/filter_chains/0/filters/0/config";
        let protocols = |c: &Config, l: usize| -> Vec<String> {
            c.listeners[l]
                .proxy
                .codecs
                .iter()
                .map(|&i| c.codecs[i].protocol.clone())
                .collect()
        };
        // "Auto" with a list: that order; MOSN's "X" with a comma-separated list: the same.
        for downstream in ["Auto", "X"] {
            let mut v = two_codecs();
            set(
                &mut v,
                &format!("{proxy}/downstream_protocol"),
                json!(downstream),
            );
            set(
                &mut v,
                &format!("{proxy}/upstream_protocol"),
                json!(downstream),
            );
            set(
                &mut v,
                &format!("{proxy}/extend_config/sub_protocol"),
                json!("x-bolt-b, x-bolt"),
            );
            let c = parse(&v).expect("valid");
            assert_eq!(c.listeners[0].proxy.protocol, "Auto");
            assert_eq!(protocols(&c, 0), ["x-bolt-b", "x-bolt"]);
            assert_eq!(
                c.listeners[0].proxy.auto_detect,
                Some(AutoDetectConfig {
                    max_bytes: DEFAULT_DETECT_MAX_BYTES,
                    timeout: DEFAULT_DETECT_TIMEOUT
                })
            );
            assert!(c.listeners[1].proxy.auto_detect.is_none(), "per listener");
            assert!(c.warnings.is_empty(), "{:?}", c.warnings);
            // config_dump parses back into the same candidates.
            let again = parse(&c.to_json()).expect("dump parses");
            assert_eq!(protocols(&again, 0), ["x-bolt-b", "x-bolt"]);
            assert_eq!(
                again.listeners[0].proxy.auto_detect,
                c.listeners[0].proxy.auto_detect
            );
            assert!(
                c.summary()
                    .contains("protocol Auto (x-bolt-b native bolt, x-bolt native bolt)"),
                "{}",
                c.summary()
            );
        }
        // "Auto" without a list: every enabled codec, in config order; limits set.
        let mut v = two_codecs();
        set(
            &mut v,
            &format!("{proxy}/downstream_protocol"),
            json!("Auto"),
        );
        set(
            &mut v,
            &format!("{proxy}/extend_config"),
            json!({"auto_detect": {"max_bytes": 64, "timeout": "250ms"}}),
        );
        let c = parse(&v).expect("valid");
        assert_eq!(protocols(&c, 0), ["x-bolt", "x-bolt-b"]);
        assert_eq!(
            c.listeners[0].proxy.auto_detect,
            Some(AutoDetectConfig {
                max_bytes: 64,
                timeout: Duration::from_millis(250)
            })
        );
    }

    #[test]
    fn auto_candidates_and_limits_are_checked() {
        let proxy = "/servers/0/listeners/0/filter_chains/0/filters/0/config";
        let ext = format!("{proxy}/extend_config");
        let path = "servers[0].listeners[0].filter_chains[0].filters[0].config.extend_config";
        let auto = |sub: Value, detect: Option<Value>| {
            let mut v = two_codecs();
            set(
                &mut v,
                &format!("{proxy}/downstream_protocol"),
                json!("Auto"),
            );
            set(&mut v, &format!("{ext}/sub_protocol"), sub);
            if let Some(d) = detect {
                set(&mut v, &format!("{ext}/auto_detect"), d);
            }
            v
        };
        expect_error(
            &auto(json!("x-bolt,x-dubbo"), None),
            &format!("{path}.sub_protocol"),
            "protocol \"x-dubbo\" is not provided by any enabled codec",
        );
        expect_error(
            &auto(json!("x-bolt,x-bolt"), None),
            &format!("{path}.sub_protocol"),
            "duplicate candidate protocol \"x-bolt\"",
        );
        expect_error(
            &auto(json!("x-bolt,,x-bolt-b"), None),
            &format!("{path}.sub_protocol"),
            "empty protocol name",
        );
        expect_error(
            &auto(json!("x-bolt"), Some(json!({"max_bytes": 8}))),
            &format!("{path}.auto_detect.max_bytes"),
            "out of range",
        );
        expect_error(
            &auto(json!("x-bolt"), Some(json!({"timeout": "0s"}))),
            &format!("{path}.auto_detect.timeout"),
            "must be positive",
        );
        // One candidate is still detection (a listener that refuses other protocols'
        // bytes at once); auto_detect on a single-protocol listener only warns.
        let c = parse(&auto(json!("x-bolt-b"), None)).expect("valid");
        assert_eq!(c.listeners[0].proxy.codecs.len(), 1);
        assert!(c.listeners[0].proxy.auto_detect.is_some());
        let mut v = two_codecs();
        set(
            &mut v,
            &format!("{ext}/auto_detect"),
            json!({"max_bytes": 64}),
        );
        let c = parse(&v).expect("valid");
        assert!(c.listeners[0].proxy.auto_detect.is_none());
        assert_eq!(warning_paths(&c), [format!("{path}.auto_detect")]);
    }

    #[test]
    fn modern_protocol_form_is_accepted() {
        let proxy = "/servers/0/listeners/0/filter_chains/0/filters/0/config";
        let mut v = base();
        set(
            &mut v,
            &format!("{proxy}/downstream_protocol"),
            json!("x-bolt"),
        );
        set(
            &mut v,
            &format!("{proxy}/upstream_protocol"),
            json!("x-bolt"),
        );
        remove(&mut v, proxy, "extend_config");
        let c = parse(&v).expect("valid");
        assert_eq!(c.listeners[0].proxy.protocol, "x-bolt");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn listener_needs_a_proxy_filter() {
        let mut v = base();
        set(
            &mut v,
            "/servers/0/listeners/0/filter_chains/0/filters",
            json!([{"type": "tcp_proxy", "config": {}}]),
        );
        expect_error(
            &v,
            "servers[0].listeners[0].filter_chains[0].filters",
            "needs a filter of type \"proxy\"",
        );
    }

    #[test]
    fn server_count_must_be_one() {
        let mut v = base();
        let s = v["servers"][0].clone();
        v["servers"].as_array_mut().expect("servers").push(s);
        expect_error(&v, "servers", "exactly one");
        set(&mut v, "/servers", json!([]));
        expect_error(&v, "servers", "missing");
    }

    #[test]
    fn wrong_types_and_missing_names_are_errors() {
        let mut v = base();
        set(
            &mut v,
            "/cluster_manager/clusters/0/max_request_per_conn",
            json!("1024"),
        );
        expect_error(
            &v,
            "cluster_manager.clusters[0].max_request_per_conn",
            "expected a number, found a string",
        );
        let mut v = base();
        set(&mut v, "/cluster_manager/clusters/0/name", json!(""));
        expect_error(&v, "cluster_manager.clusters[0].name", "missing");
        let mut v = base();
        set(
            &mut v,
            "/cluster_manager/clusters/0/keepalive",
            json!({"max_failures": 0}),
        );
        expect_error(
            &v,
            "cluster_manager.clusters[0].keepalive.max_failures",
            "at least 1",
        );
        let mut v = base();
        set(
            &mut v,
            "/cluster_manager/clusters/0/pool_mode",
            json!("pipelined"),
        );
        expect_error(
            &v,
            "cluster_manager.clusters[0].pool_mode",
            "unsupported value",
        );
        let mut v = base();
        set(&mut v, "/servers/0/listeners", json!({"name": "x"}));
        expect_error(
            &v,
            "servers[0].listeners",
            "expected an array, found an object",
        );
    }

    #[test]
    fn wasm_codec_with_plugin_file() {
        let dir = Scratch::new("wasm");
        dir.file(PLUGIN, b"\0asm\x01\0\0\0");
        let c = parse_in(&wasm_base(), &dir).expect("valid");
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        assert_eq!(c.plugins.len(), 1);
        let p = &c.plugins[0];
        assert_eq!(p.name, "wasm-bolt");
        assert_eq!(p.instance_num, 3);
        assert_eq!(p.vm.resolved_path, dir.0.join(PLUGIN));
        assert_eq!(
            p.vm.pairs(),
            [
                ("Engine".to_owned(), "wasmer".to_owned()),
                ("Path".to_owned(), PLUGIN.to_owned()),
                ("Url".to_owned(), String::new()),
                ("Md5".to_owned(), String::new()),
            ]
        );
        let CodecKind::Wasm(w) = &c.codecs[0].kind else {
            panic!("wasm codec expected")
        };
        assert_eq!(w.plugin, 0);
        assert_eq!(w.root_id, 1);
        assert_eq!(
            w.plugin_config_pairs,
            [
                ("from_wasm_plugin".to_owned(), "wasm-bolt".to_owned()),
                ("protocol".to_owned(), "x-bolt".to_owned()),
            ]
        );
    }

    #[test]
    fn max_frame_bytes_is_one_field_for_host_and_plugin() {
        let dir = Scratch::new("frame-cap");
        dir.file(PLUGIN, b"plugin");
        let mut v = wasm_base();
        let c = parse_in(&v, &dir).expect("valid");
        assert_eq!(c.codecs[0].max_frame_bytes, None, "default: the host's");
        set(
            &mut v,
            "/third_part_codec/codecs/0/config/max_frame_bytes",
            json!("1048576"),
        );
        let c = parse_in(&v, &dir).expect("valid");
        assert_eq!(c.codecs[0].max_frame_bytes, Some(1 << 20));
        let CodecKind::Wasm(w) = &c.codecs[0].kind else {
            panic!("wasm codec expected")
        };
        assert!(
            w.plugin_config_pairs
                .iter()
                .all(|(k, _)| k != "max_frame_bytes"),
            "the host passes its own resolved value, not the text"
        );
        set(
            &mut v,
            "/third_part_codec/codecs/0/config/max_frame_bytes",
            json!(64 << 20),
        );
        let c = parse_in(&v, &dir).expect("valid");
        assert_eq!(c.codecs[0].max_frame_bytes, Some(64 << 20));
        for bad in [json!(10), json!("lots"), json!(-1), json!(1i64 << 40)] {
            set(
                &mut v,
                "/third_part_codec/codecs/0/config/max_frame_bytes",
                bad.clone(),
            );
            expect_error_with(
                parse_in(&v, &dir),
                "third_part_codec.codecs[0].config.max_frame_bytes",
                "out of range",
            );
        }
        let mut native = base();
        set(
            &mut native,
            "/third_part_codec/codecs/0/config/max_frame_bytes",
            json!(2048),
        );
        let c = parse(&native).expect("valid");
        assert_eq!(c.codecs[0].max_frame_bytes, Some(2048));
        assert!(
            warning_paths(&c).is_empty(),
            "accepted by native codecs too"
        );
    }

    #[test]
    fn wasm_codec_options() {
        let dir = Scratch::new("wasm-opts");
        dir.file(PLUGIN, b"plugin");
        let mut v = wasm_base();
        set(&mut v, "/wasm_global_plugins/0/instance_num", json!(2));
        set(
            &mut v,
            "/third_part_codec/codecs/0/config",
            json!({"from_wasm_plugin": "wasm-bolt", "protocol": "x-bolt", "root_id": 7,
                   "pool_mode": "ping-pong", "disable_worker_pool": true,
                   "plugin_generate_id": true, "custom": "v"}),
        );
        let c = parse_in(&v, &dir).expect("valid");
        assert_eq!(c.plugins[0].instance_num, 2);
        assert_eq!(c.codecs[0].pool_mode, PoolMode::PingPong);
        let CodecKind::Wasm(w) = &c.codecs[0].kind else {
            panic!("wasm codec expected")
        };
        assert_eq!(w.root_id, 7);
        assert!(w.disable_worker_pool);
        let keys: Vec<&str> = w
            .plugin_config_pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(
            keys,
            ["custom", "from_wasm_plugin", "pool_mode", "protocol"]
        );
        assert_eq!(
            warning_paths(&c),
            [
                "third_part_codec.codecs[0].config.plugin_generate_id",
                // 2 instances asked for; one per worker runs, 3 in all.
                "wasm_global_plugins[0].instance_num",
            ]
        );
        set(
            &mut v,
            "/third_part_codec/codecs/0/config/pool_mode",
            json!("weird"),
        );
        let c = parse_in(&v, &dir).expect("valid");
        assert_eq!(c.codecs[0].pool_mode, PoolMode::Multiplex);
    }

    #[test]
    fn inline_vm_config_makes_an_anonymous_plugin() {
        let dir = Scratch::new("inline");
        dir.file("p.wasm", b"plugin");
        let mut v = wasm_base();
        remove(&mut v, "", "wasm_global_plugins");
        set(
            &mut v,
            "/third_part_codec/codecs/0/config",
            json!({"protocol": "x-bolt", "root_id": 1, "instance_num": 0,
                   "vm_config": {"engine": "wasmer", "path": "p.wasm", "md5": ""}}),
        );
        let c = parse_in(&v, &dir).expect("valid");
        assert_eq!(c.plugins.len(), 1);
        assert_eq!(c.plugins[0].name, "codec:x-bolt");
        assert_eq!(c.plugins[0].instance_num, 3);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    }

    #[test]
    fn instance_num_is_shared_out_among_the_workers() {
        let dir = Scratch::new("instance-num");
        dir.file(PLUGIN, b"plugin");
        let mut v = wasm_base();
        // Three workers (the test machine's CPU count): six instances are two per worker.
        set(&mut v, "/wasm_global_plugins/0/instance_num", json!(6));
        let c = parse_in(&v, &dir).expect("valid");
        assert_eq!(c.plugins[0].instances_per_worker(3), 2);
        assert!(
            !warning_paths(&c).contains(&"wasm_global_plugins[0].instance_num"),
            "{:?}",
            c.warnings
        );
        // Seven round up to three per worker, nine in all: said in a warning.
        set(&mut v, "/wasm_global_plugins/0/instance_num", json!(7));
        let c = parse_in(&v, &dir).expect("valid");
        assert_eq!(c.plugins[0].instances_per_worker(3), 3);
        let w = c
            .warnings
            .iter()
            .find(|w| w.path == "wasm_global_plugins[0].instance_num")
            .expect("a warning");
        assert!(w.message.contains("3 per worker thread, 9 in all"), "{w:?}");
        // A typo cannot start thousands.
        set(
            &mut v,
            "/wasm_global_plugins/0/instance_num",
            json!(100_000),
        );
        let c = parse_in(&v, &dir).expect("valid");
        assert_eq!(
            c.plugins[0].instances_per_worker(3),
            plugin::MAX_INSTANCES_PER_WORKER
        );
    }

    #[test]
    fn plugin_errors() {
        let dir = Scratch::new("plugin-errors");
        dir.file(PLUGIN, b"abc");

        // Missing file.
        expect_error(
            &wasm_base(),
            "wasm_global_plugins[0].vm_config.path",
            "cannot be read",
        );

        let mut v = wasm_base();
        set(
            &mut v,
            "/third_part_codec/codecs/0/config/from_wasm_plugin",
            json!("nope"),
        );
        expect_error_with(
            parse_in(&v, &dir),
            "third_part_codec.codecs[0].config.from_wasm_plugin",
            "unknown wasm plugin \"nope\"",
        );

        let mut v = wasm_base();
        set(
            &mut v,
            "/third_part_codec/codecs/0/config/root_id",
            json!(0),
        );
        expect_error_with(
            parse_in(&v, &dir),
            "third_part_codec.codecs[0].config.root_id",
            "non-zero",
        );
        remove(&mut v, "/third_part_codec/codecs/0/config", "root_id");
        expect_error_with(
            parse_in(&v, &dir),
            "third_part_codec.codecs[0].config.root_id",
            "non-zero",
        );

        let mut v = wasm_base();
        set(
            &mut v,
            "/wasm_global_plugins/0/vm_config/engine",
            json!("wazero"),
        );
        expect_error_with(
            parse_in(&v, &dir),
            "wasm_global_plugins[0].vm_config.engine",
            "unsupported value \"wazero\"",
        );

        let mut v = wasm_base();
        set(&mut v, "/wasm_global_plugins/0/vm_config/path", json!(""));
        set(
            &mut v,
            "/wasm_global_plugins/0/vm_config/url",
            json!("http://x/bolt.wasm"),
        );
        expect_error_with(
            parse_in(&v, &dir),
            "wasm_global_plugins[0].vm_config.path",
            "url is not supported",
        );

        let mut v = wasm_base();
        set(
            &mut v,
            "/wasm_global_plugins/0/vm_config/md5",
            json!("1234"),
        );
        expect_error_with(
            parse_in(&v, &dir),
            "wasm_global_plugins[0].vm_config.md5",
            "32 hex digits",
        );

        let mut v = wasm_base();
        set(
            &mut v,
            "/wasm_global_plugins/0/vm_config/md5",
            json!("00000000000000000000000000000000"),
        );
        expect_error_with(
            parse_in(&v, &dir),
            "wasm_global_plugins[0].vm_config.path",
            "has MD5 900150983cd24fb0d6963f7d28e17f72",
        );
        set(
            &mut v,
            "/wasm_global_plugins/0/vm_config/md5",
            json!("900150983CD24FB0D6963F7D28E17F72"),
        );
        assert!(
            parse_in(&v, &dir).is_ok(),
            "md5 compares case-insensitively"
        );

        let mut v = wasm_base();
        let dup = v["wasm_global_plugins"][0].clone();
        v["wasm_global_plugins"]
            .as_array_mut()
            .expect("plugins")
            .push(dup);
        expect_error_with(
            parse_in(&v, &dir),
            "wasm_global_plugins[1].plugin_name",
            "duplicate plugin name",
        );

        let mut v = wasm_base();
        set(
            &mut v,
            "/third_part_codec/codecs/0/type",
            json!("go-plugin"),
        );
        expect_error_with(
            parse_in(&v, &dir),
            "third_part_codec.codecs[0].type",
            "unsupported value \"go-plugin\"",
        );

        let mut v = base();
        set(
            &mut v,
            "/third_part_codec/codecs/0/config/codec",
            json!("no-such-codec"),
        );
        expect_error(
            &v,
            "third_part_codec.codecs[0].config.codec",
            "unsupported value",
        );
    }

    #[test]
    fn codec_without_enable_is_disabled_with_a_warning() {
        let mut v = base();
        remove(&mut v, "/third_part_codec/codecs/0", "enable");
        expect_error(
            &v,
            "servers[0].listeners[0].filter_chains[0].filters[0].config.extend_config.sub_protocol",
            "enabled: none",
        );
    }

    #[test]
    fn admin_is_optional_and_zero_timeouts_are_rejected() {
        let mut v = base();
        remove(&mut v, "", "admin");
        assert_eq!(parse(&v).expect("valid").admin, None);

        let mut v = base();
        set(
            &mut v,
            "/cluster_manager/clusters/0/connect_timeout",
            json!("0s"),
        );
        expect_error(
            &v,
            "cluster_manager.clusters[0].connect_timeout",
            "greater than zero",
        );

        let mut v = base();
        set(
            &mut v,
            "/cluster_manager/clusters/0/keepalive",
            json!({"timeout": "0s"}),
        );
        expect_error(
            &v,
            "cluster_manager.clusters[0].keepalive.timeout",
            "greater than zero",
        );
    }

    #[test]
    fn virtual_listeners_warn() {
        let mut v = base();
        remove(&mut v, "/servers/0/listeners/0", "bind_port");
        let c = parse(&v).expect("valid");
        assert!(!c.listeners[0].bind_port);
        assert_eq!(warning_paths(&c), ["servers[0].listeners[0].bind_port"]);
    }

    #[test]
    fn dump_fills_in_defaults_and_parses_back() {
        let dir = Scratch::new("dump");
        dir.file(PLUGIN, b"plugin");
        let mut v = wasm_base();
        set(
            &mut v,
            "/servers/0/routers/0/virtual_hosts/0/routers/0/route",
            json!({"weighted_clusters": [{"cluster": {"name": "serverCluster", "weight": 3}},
                                        {"cluster": {"name": "clientCluster", "weight": 1}}],
                   "timeout": "3s",
                   "retry_policy": {"retry_on": true, "retry_timeout": "1s", "num_retries": 2}}),
        );
        set(
            &mut v,
            "/servers/0/listeners/0/stream_filters",
            json!([
                {"type": "flowControlFilter", "config": {"global_switch": true,
                    "limit_key": "{service}#{sofa_head_method_name}", "action": {"status": 509},
                    "rules": [
                        {"resource": "a#b", "threshold": 2.5, "controlBehavior": 1,
                         "maxQueueingTimeMs": 100},
                        {"id": "c", "resource": "a.*", "regex": true, "grade": 0, "threshold": 7},
                        {"id": "r", "resource": "x", "count": 30, "statIntervalInMs": 2000}]}},
                {"type": "faultinject", "config": {"delay_percent": 5, "delay_duration": "1s",
                    "abort": {"status": 500, "percentage": 1},
                    "upstream_cluster": "serverCluster",
                    "headers": [{"name": "x", "value": "y", "regex": true}]}},
            ]),
        );
        let c = parse_in(&v, &dir).expect("valid");
        let dump = c.to_json();
        let filters = &dump["servers"][0]["listeners"][0]["stream_filters"];
        assert_eq!(filters[0]["config"]["rules"][0]["burst"], 1);
        assert_eq!(filters[0]["config"]["rules"][2]["burst"], 30);
        assert_eq!(filters[1]["type"], "fault");
        assert_eq!(filters[1]["config"]["delay"]["fixed_delay"], "1s");
        assert_eq!(dump["servers"][0]["graceful_timeout"], "30s");
        assert_eq!(
            dump["servers"][0]["listeners"][0]["connection_idle_timeout"],
            "1m30s"
        );
        let cluster = &dump["cluster_manager"]["clusters"][0];
        assert_eq!(cluster["connect_timeout"], "10s");
        assert_eq!(cluster["keepalive"]["max_failures"], 6);
        assert_eq!(cluster["circuit_breakers"][0]["max_requests"], 0);
        assert_eq!(dump["wasm_global_plugins"][0]["instance_num"], 3);

        let again = parse_in(&dump, &dir).expect("the dump parses back");
        assert!(again.warnings.is_empty(), "{:?}", again.warnings);
        assert_eq!(again.to_json(), dump);
        assert_eq!(again.summary(), c.summary());
    }

    #[test]
    fn summary_mentions_every_section() {
        let mut v = base();
        set(
            &mut v,
            "/servers/0/listeners/0/stream_filters",
            json!([{"type": "healthcheck"},
                   {"type": "flowControlFilter", "config": {"global_switch": true,
                       "rules": [{"id": "svc", "resource": "s", "threshold": 10}]}}]),
        );
        let c = parse(&v).expect("valid");
        let s = c.summary();
        for needle in [
            "clientListener 127.0.0.1:2045 protocol x-bolt (native bolt)",
            "client_router",
            "when service is non-empty -> clientCluster",
            "serverCluster SIMPLE LB_RANDOM",
            "host 127.0.0.1:12199 weight 1",
            "x-bolt native bolt, pool multiplex",
            "admin: 127.0.0.1:34901",
            "warnings (1):",
            "stream_filters[0].type",
            "stream filter flowControlFilter: key {service}, rejects with code 503; \
             svc [key = \"s\"]: 10 calls/s, burst 10",
        ] {
            assert!(s.contains(needle), "summary lacks {needle:?}:\n{s}");
        }
    }

    #[test]
    fn access_logs_are_parsed_per_listener() {
        let mut v = base();
        set(
            &mut v,
            "/servers/0/listeners/1/access_logs",
            json!([
                {"log_path": "logs/access.log", "log_format": "%start_time% %request_header_service%"},
                {"log_path": "stdout", "log_encoding": "json"},
                {"log_path": "/var/log/a.log", "log_format": ""}
            ]),
        );
        let c = parse(&v).expect("valid");
        assert!(
            c.warnings.is_empty(),
            "access_logs no longer warns: {:?}",
            c.warnings
        );
        let logs = &c.listeners[1].access_logs;
        assert_eq!(logs.len(), 3);
        assert_eq!(
            logs[0].target,
            LogTarget::File(PathBuf::from("/nonexistent-workdir/logs/access.log"))
        );
        assert_eq!(logs[0].format.request_headers, ["service"]);
        assert_eq!(logs[1].target, LogTarget::Stdout);
        assert_eq!(logs[1].encoding, LogEncoding::Json);
        assert_eq!(logs[2].format_text, DEFAULT_ACCESS_LOG_FORMAT);
        assert!(c.listeners[0].access_logs.is_empty());
        let dump = c.to_json();
        assert_eq!(
            dump.pointer("/servers/0/listeners/1/access_logs/1/log_encoding"),
            Some(&json!("json"))
        );
        assert!(
            c.summary().contains("access log stdout (json lines)"),
            "{}",
            c.summary()
        );
    }

    #[test]
    fn a_bad_access_log_names_the_variable_and_the_listener() {
        let mut v = base();
        set(
            &mut v,
            "/servers/0/listeners/1/access_logs",
            json!([{"log_path": "a.log", "log_format": "%start_time% %upstream_hots%"}]),
        );
        expect_error(
            &v,
            "servers[0].listeners[1].access_logs[0].log_format",
            "access log of listener \"clientListener\": unknown access log variable %upstream_hots%",
        );
        set(
            &mut v,
            "/servers/0/listeners/1/access_logs",
            json!([{"log_path": "a.log", "log_encoding": "xml"}]),
        );
        expect_error(
            &v,
            "servers[0].listeners[1].access_logs[0].log_encoding",
            "unsupported value \"xml\"",
        );
        set(
            &mut v,
            "/servers/0/listeners/1/access_logs",
            json!([{"log_path": "a.log", "log_encoding": "json", "log_format": "code=%response_code%"}]),
        );
        expect_error(
            &v,
            "servers[0].listeners[1].access_logs[0].log_format",
            "literal text \"code=\" in a JSON lines format",
        );
        set(
            &mut v,
            "/servers/0/listeners/1/access_logs",
            json!([{"log_format": ""}]),
        );
        expect_error(
            &v,
            "servers[0].listeners[1].access_logs[0].log_path",
            "missing",
        );
    }
}
