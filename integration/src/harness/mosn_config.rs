//! Builder for sidecar configs in MOSN's JSON format (xprotocol spec (`docs/xprotocol-proxy-and-bolt.md`) §7), shaped exactly like
//! `configs/mosn_rpc_config_wasm.json`, with the ports, hosts, codec and timeouts a test needs.

use std::net::SocketAddr;

use serde_json::{json, Map, Value};

/// Where `make plugins` puts the Bolt plugin, relative to the repository root.
pub const DEFAULT_PLUGIN_PATH: &str = "target/wasm32-wasip1/plugin/bolt.wasm";
/// Plugin name the codec entry refers to.
const PLUGIN_NAME: &str = "wasm-bolt";
/// Protocol name the codec registers and the proxies select.
const PROTOCOL: &str = "x-bolt";

/// Which codec the sidecar loads for `x-bolt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecChoice {
    /// The Wasm plugin at this path (relative to the repository root, or absolute).
    Wasm {
        /// `vm_config.path`.
        plugin_path: String,
    },
    /// The natively compiled Bolt codec (`{"type": "native", "config": {"codec": "bolt"}}`).
    Native,
}

impl Default for CodecChoice {
    fn default() -> Self {
        CodecChoice::Wasm {
            plugin_path: DEFAULT_PLUGIN_PATH.to_owned(),
        }
    }
}

/// One listener with its proxy, route config and single route.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerSpec {
    /// Listener name (stats, config dump).
    pub name: String,
    /// Listen address.
    pub address: SocketAddr,
    /// `router_config_name` shared by the proxy and its route config.
    pub router_name: String,
    /// Virtual host name.
    pub virtual_host: String,
    /// `match.headers`; the sample's `[{"name": "service", "value": ".*"}]` by default.
    pub match_headers: Vec<Value>,
    /// `route` object (holds `cluster_name` plus e.g. `timeout`, `retry_policy`).
    pub route: Map<String, Value>,
    /// Extra keys of the proxy `config` (e.g. `concurrency_num`).
    pub proxy_extra: Map<String, Value>,
    /// `stream_filters`.
    pub stream_filters: Vec<Value>,
    /// Extra keys of the listener object (e.g. `connection_idle_timeout`).
    pub listener_extra: Map<String, Value>,
}

impl ListenerSpec {
    /// A listener on `address` routing every request with a non-empty `service` to `cluster`.
    /// Route config and virtual host are named after the listener (`<name>_router`,
    /// `<name>_host`).
    pub fn new(name: &str, address: SocketAddr, cluster: &str) -> Self {
        let mut route = Map::new();
        route.insert("cluster_name".into(), json!(cluster));
        ListenerSpec {
            name: name.to_owned(),
            address,
            router_name: format!("{name}_router"),
            virtual_host: format!("{name}_host"),
            match_headers: vec![json!({"name": "service", "value": ".*"})],
            route,
            proxy_extra: Map::new(),
            stream_filters: Vec::new(),
            listener_extra: Map::new(),
        }
    }

    /// Sets the route config and virtual host names.
    pub fn names(mut self, router_name: &str, virtual_host: &str) -> Self {
        self.router_name = router_name.to_owned();
        self.virtual_host = virtual_host.to_owned();
        self
    }

    /// Sets a key of the route object (`timeout`, `retry_policy`, `upstream_protocol`, ...).
    pub fn route_field(mut self, key: &str, value: Value) -> Self {
        self.route.insert(key.to_owned(), value);
        self
    }

    /// Route timeout, e.g. `"3s"`.
    pub fn route_timeout(self, timeout: &str) -> Self {
        self.route_field("timeout", json!(timeout))
    }

    /// Replaces the header matchers.
    pub fn match_headers(mut self, headers: Vec<Value>) -> Self {
        self.match_headers = headers;
        self
    }

    /// Sets a key of the proxy filter's config.
    pub fn proxy_field(mut self, key: &str, value: Value) -> Self {
        self.proxy_extra.insert(key.to_owned(), value);
        self
    }

    /// Appends a stream filter `{type, config}`.
    pub fn stream_filter(mut self, filter: Value) -> Self {
        self.stream_filters.push(filter);
        self
    }

    /// Sets a key of the listener object.
    pub fn listener_field(mut self, key: &str, value: Value) -> Self {
        self.listener_extra.insert(key.to_owned(), value);
        self
    }

    fn router_json(&self) -> Value {
        json!({
            "router_config_name": self.router_name,
            "virtual_hosts": [{
                "name": self.virtual_host,
                "domains": ["*"],
                "routers": [{
                    "match": {"headers": self.match_headers},
                    "route": self.route,
                }],
            }],
        })
    }

    fn listener_json(&self) -> Value {
        let mut proxy = Map::new();
        proxy.insert("downstream_protocol".into(), json!("X"));
        proxy.insert("upstream_protocol".into(), json!("X"));
        proxy.insert("router_config_name".into(), json!(self.router_name));
        proxy.insert("extend_config".into(), json!({"sub_protocol": PROTOCOL}));
        proxy.extend(self.proxy_extra.clone());
        let mut listener = Map::new();
        listener.insert("name".into(), json!(self.name));
        listener.insert("address".into(), json!(self.address.to_string()));
        listener.insert("bind_port".into(), json!(true));
        listener.insert(
            "filter_chains".into(),
            json!([{"filters": [{"type": "proxy", "config": proxy}]}]),
        );
        if !self.stream_filters.is_empty() {
            listener.insert("stream_filters".into(), json!(self.stream_filters));
        }
        listener.extend(self.listener_extra.clone());
        Value::Object(listener)
    }
}

/// One static cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ClusterSpec {
    /// Cluster name.
    pub name: String,
    /// Host addresses.
    pub hosts: Vec<SocketAddr>,
    /// The cluster object (`type`, `lb_type`, ... as in the sample, plus any extra keys such
    /// as `connect_timeout`, `keepalive`, `circuit_breakers`, `health_check`).
    pub fields: Map<String, Value>,
}

impl ClusterSpec {
    /// A `SIMPLE`, `LB_RANDOM` cluster with the sample's `max_request_per_conn` and
    /// `conn_buffer_limit_bytes`.
    pub fn new(name: &str, hosts: Vec<SocketAddr>) -> Self {
        let mut fields = Map::new();
        fields.insert("type".into(), json!("SIMPLE"));
        fields.insert("lb_type".into(), json!("LB_RANDOM"));
        fields.insert("max_request_per_conn".into(), json!(1024));
        fields.insert("conn_buffer_limit_bytes".into(), json!(32768));
        ClusterSpec {
            name: name.to_owned(),
            hosts,
            fields,
        }
    }

    /// Sets a key of the cluster object.
    pub fn field(mut self, key: &str, value: Value) -> Self {
        self.fields.insert(key.to_owned(), value);
        self
    }

    /// `connect_timeout`, e.g. `"1s"`.
    pub fn connect_timeout(self, timeout: &str) -> Self {
        self.field("connect_timeout", json!(timeout))
    }

    fn json(&self) -> Value {
        let mut c = Map::new();
        c.insert("name".into(), json!(self.name));
        c.extend(self.fields.clone());
        let hosts: Vec<Value> = self
            .hosts
            .iter()
            .map(|h| json!({"address": h.to_string()}))
            .collect();
        // A `hosts` field set explicitly (e.g. DNS names) wins over `self.hosts`.
        c.entry("hosts").or_insert(Value::Array(hosts));
        Value::Object(c)
    }
}

/// A sidecar config under construction.
#[derive(Debug, Clone, PartialEq)]
pub struct MosnConfig {
    /// Codec for `x-bolt`.
    pub codec: CodecChoice,
    /// `default_log_level`.
    pub log_level: String,
    /// `default_log_path`.
    pub log_path: String,
    /// Listeners, in order.
    pub listeners: Vec<ListenerSpec>,
    /// Clusters, in order.
    pub clusters: Vec<ClusterSpec>,
    /// Admin API address.
    pub admin: Option<SocketAddr>,
    /// The Wasm plugin's `instance_num` (`None`: not set, the CPU count).
    pub instance_num: Option<usize>,
}

/// An empty config: Wasm codec from [`DEFAULT_PLUGIN_PATH`], log to stdout at INFO, no
/// listeners, clusters or admin.
pub fn mosn_config() -> MosnConfig {
    MosnConfig {
        codec: CodecChoice::default(),
        log_level: "INFO".to_owned(),
        log_path: "stdout".to_owned(),
        listeners: Vec::new(),
        clusters: Vec::new(),
        admin: None,
        instance_num: None,
    }
}

impl MosnConfig {
    /// The topology of `configs/mosn_rpc_config_wasm.json`: `serverListener` on `server` →
    /// `serverCluster` (`app`), and `clientListener` on `client` → `clientCluster` (`server`),
    /// with the same names, route configs and the `healthcheck` stream filter on the server
    /// side. The sample's admin listener is left out; add it with [`MosnConfig::admin`].
    pub fn sample(client: SocketAddr, server: SocketAddr, app: SocketAddr) -> MosnConfig {
        mosn_config()
            .listener(
                ListenerSpec::new("serverListener", server, "serverCluster")
                    .names("server_router", "serverHost")
                    .stream_filter(json!({"type": "healthcheck", "config": {}})),
            )
            .listener(
                ListenerSpec::new("clientListener", client, "clientCluster")
                    .names("client_router", "clientHost"),
            )
            .cluster(ClusterSpec::new("serverCluster", vec![app]))
            .cluster(ClusterSpec::new("clientCluster", vec![server]))
    }

    /// One listener on `listen` forwarding to `upstream` hosts: cluster `upstreamCluster`.
    pub fn single_hop(listen: SocketAddr, upstream: Vec<SocketAddr>) -> MosnConfig {
        mosn_config()
            .listener(ListenerSpec::new("listener", listen, "upstreamCluster"))
            .cluster(ClusterSpec::new("upstreamCluster", upstream))
    }

    /// Adds a listener (with its route config).
    pub fn listener(mut self, listener: ListenerSpec) -> Self {
        self.listeners.push(listener);
        self
    }

    /// Adds a cluster.
    pub fn cluster(mut self, cluster: ClusterSpec) -> Self {
        self.clusters.push(cluster);
        self
    }

    /// Sets the codec.
    pub fn codec(mut self, codec: CodecChoice) -> Self {
        self.codec = codec;
        self
    }

    /// Uses the Wasm plugin at `path`.
    pub fn wasm_plugin(self, path: &str) -> Self {
        self.codec(CodecChoice::Wasm {
            plugin_path: path.to_owned(),
        })
    }

    /// Sets the Wasm plugin's `instance_num` (instances in all, shared out among the
    /// workers).
    pub fn instance_num(mut self, n: usize) -> Self {
        self.instance_num = Some(n);
        self
    }

    /// Uses the native codec.
    pub fn native(self) -> Self {
        self.codec(CodecChoice::Native)
    }

    /// Sets `default_log_level` (TRACE … FATAL).
    pub fn log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_owned();
        self
    }

    /// Sets `default_log_path` (`stdout`, `stderr` or a file).
    pub fn log_path(mut self, path: &str) -> Self {
        self.log_path = path.to_owned();
        self
    }

    /// Serves the admin API on `addr`.
    pub fn admin(mut self, addr: SocketAddr) -> Self {
        self.admin = Some(addr);
        self
    }

    /// Changes the listener called `name` (no-op if absent).
    pub fn edit_listener(
        mut self,
        name: &str,
        f: impl FnOnce(ListenerSpec) -> ListenerSpec,
    ) -> Self {
        if let Some(i) = self.listeners.iter().position(|l| l.name == name) {
            let l = self.listeners.remove(i);
            self.listeners.insert(i, f(l));
        }
        self
    }

    /// Changes the cluster called `name` (no-op if absent).
    pub fn edit_cluster(mut self, name: &str, f: impl FnOnce(ClusterSpec) -> ClusterSpec) -> Self {
        if let Some(i) = self.clusters.iter().position(|c| c.name == name) {
            let c = self.clusters.remove(i);
            self.clusters.insert(i, f(c));
        }
        self
    }

    /// The JSON document.
    pub fn build(&self) -> Value {
        let routers: Vec<Value> = self
            .listeners
            .iter()
            .map(ListenerSpec::router_json)
            .collect();
        let listeners: Vec<Value> = self
            .listeners
            .iter()
            .map(ListenerSpec::listener_json)
            .collect();
        let clusters: Vec<Value> = self.clusters.iter().map(ClusterSpec::json).collect();
        let mut doc = Map::new();
        doc.insert(
            "servers".into(),
            json!([{
                "default_log_path": self.log_path,
                "default_log_level": self.log_level,
                "routers": routers,
                "listeners": listeners,
            }]),
        );
        doc.insert("cluster_manager".into(), json!({"clusters": clusters}));
        if let Some(admin) = self.admin {
            doc.insert(
                "admin".into(),
                json!({"address": {"socket_address": {
                    "address": admin.ip().to_string(),
                    "port_value": admin.port(),
                }}}),
            );
        }
        match &self.codec {
            CodecChoice::Wasm { plugin_path } => {
                let mut plugin = json!({
                    "plugin_name": PLUGIN_NAME,
                    "vm_config": {"engine": "wasmer", "path": plugin_path, "cpu": 100, "mem": 100},
                });
                if let Some(n) = self.instance_num {
                    plugin["instance_num"] = json!(n);
                }
                doc.insert("wasm_global_plugins".into(), json!([plugin]));
                doc.insert(
                    "third_part_codec".into(),
                    json!({"codecs": [{
                        "type": "wasm",
                        "enable": true,
                        "config": {"from_wasm_plugin": PLUGIN_NAME, "protocol": PROTOCOL, "root_id": 1},
                    }]}),
                );
            }
            CodecChoice::Native => {
                doc.insert(
                    "third_part_codec".into(),
                    json!({"codecs": [{
                        "type": "native",
                        "enable": true,
                        "config": {"protocol": PROTOCOL, "codec": "bolt"},
                    }]}),
                );
            }
        }
        Value::Object(doc)
    }
}

/// The object whose `"name"` is `name`, anywhere in `doc` (a listener, cluster or router of a
/// config read from a file), depth first.
pub fn find_named<'a>(doc: &'a mut Value, name: &str) -> Option<&'a mut Value> {
    if doc.get("name").and_then(Value::as_str) == Some(name) {
        return Some(doc);
    }
    match doc {
        Value::Object(map) => map.values_mut().find_map(|c| find_named(c, name)),
        Value::Array(items) => items.iter_mut().find_map(|c| find_named(c, name)),
        _ => None,
    }
}

/// Sets the value at JSON pointer `pointer` (e.g. `/cluster_manager/clusters/0/keepalive`),
/// creating missing object keys on the way. Returns false when the path runs through a
/// non-object or an array index that does not exist.
pub fn patch(doc: &mut Value, pointer: &str, value: Value) -> bool {
    let Some(path) = pointer.strip_prefix('/') else {
        *doc = value;
        return true;
    };
    let mut keys: Vec<String> = path
        .split('/')
        .map(|k| k.replace("~1", "/").replace("~0", "~"))
        .collect();
    let Some(last) = keys.pop() else {
        return false;
    };
    let mut cur = doc;
    for key in keys {
        cur = match cur {
            Value::Object(map) => map.entry(key).or_insert_with(|| json!({})),
            Value::Array(items) => match key.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match cur {
        Value::Object(map) => {
            map.insert(last, value);
            true
        }
        Value::Array(items) => match last.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
            Some(slot) => {
                *slot = value;
                true
            }
            None => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sample topology built with the sample's ports is the sample file itself, apart from
    /// the log level (INFO instead of DEBUG), the plugin path and the admin address (0.0.0.0
    /// in the sample).
    #[test]
    fn sample_matches_mosn_rpc_config_wasm_shape() {
        let built = MosnConfig::sample(
            "127.0.0.1:2045".parse().unwrap(),
            "127.0.0.1:2046".parse().unwrap(),
            "127.0.0.1:12199".parse().unwrap(),
        )
        .admin("0.0.0.0:34901".parse().unwrap())
        .log_level("DEBUG")
        .build();
        let expected = json!({
          "servers": [{
            "default_log_path": "stdout",
            "default_log_level": "DEBUG",
            "routers": [
              {"router_config_name": "server_router", "virtual_hosts": [{"name": "serverHost", "domains": ["*"],
                "routers": [{"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"cluster_name": "serverCluster"}}]}]},
              {"router_config_name": "client_router", "virtual_hosts": [{"name": "clientHost", "domains": ["*"],
                "routers": [{"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"cluster_name": "clientCluster"}}]}]}
            ],
            "listeners": [
              {"name": "serverListener", "address": "127.0.0.1:2046", "bind_port": true,
               "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "X", "upstream_protocol": "X",
                 "router_config_name": "server_router", "extend_config": {"sub_protocol": "x-bolt"}}}]}],
               "stream_filters": [{"type": "healthcheck", "config": {}}]},
              {"name": "clientListener", "address": "127.0.0.1:2045", "bind_port": true,
               "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "X", "upstream_protocol": "X",
                 "router_config_name": "client_router", "extend_config": {"sub_protocol": "x-bolt"}}}]}]}
            ]
          }],
          "cluster_manager": {"clusters": [
            {"name": "serverCluster", "type": "SIMPLE", "lb_type": "LB_RANDOM", "max_request_per_conn": 1024,
             "conn_buffer_limit_bytes": 32768, "hosts": [{"address": "127.0.0.1:12199"}]},
            {"name": "clientCluster", "type": "SIMPLE", "lb_type": "LB_RANDOM", "max_request_per_conn": 1024,
             "conn_buffer_limit_bytes": 32768, "hosts": [{"address": "127.0.0.1:2046"}]}
          ]},
          "admin": {"address": {"socket_address": {"address": "0.0.0.0", "port_value": 34901}}},
          "wasm_global_plugins": [{"plugin_name": "wasm-bolt",
            "vm_config": {"engine": "wasmer", "path": DEFAULT_PLUGIN_PATH, "cpu": 100, "mem": 100}}],
          "third_part_codec": {"codecs": [{"type": "wasm", "enable": true,
            "config": {"from_wasm_plugin": "wasm-bolt", "protocol": "x-bolt", "root_id": 1}}]}
        });
        assert_eq!(built, expected);
    }

    /// The builder agrees with the repository's sample configs (Wasm and native codec) on
    /// everything but the plugin path, log level/path and admin address.
    #[test]
    fn sample_agrees_with_repository_configs() {
        for (file, native) in [
            ("configs/mosn_rpc_config_wasm.json", false),
            ("configs/mosn_rpc_config_native.json", true),
        ] {
            let path = crate::harness::repo_root().join(file);
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue; // Not written (yet).
            };
            let mut from_file: Value = serde_json::from_str(&text).expect("sample config parses");
            let mut builder = MosnConfig::sample(
                "127.0.0.1:2045".parse().unwrap(),
                "127.0.0.1:2046".parse().unwrap(),
                "127.0.0.1:12199".parse().unwrap(),
            );
            if native {
                builder = builder.native();
            }
            let mut built = builder.build();
            for doc in [&mut from_file, &mut built] {
                if let Value::Object(s) = &mut doc["servers"][0] {
                    s.remove("default_log_level");
                    s.remove("default_log_path");
                }
                if let Value::Object(d) = doc {
                    d.remove("admin");
                }
                if !native {
                    patch(
                        doc,
                        "/wasm_global_plugins/0/vm_config/path",
                        json!("<plugin>"),
                    );
                }
            }
            assert_eq!(built, from_file, "builder drifted from {file}");
        }
    }

    #[test]
    fn native_codec_entry_and_no_plugin() {
        let cfg = MosnConfig::single_hop(
            "127.0.0.1:3000".parse().unwrap(),
            vec!["127.0.0.1:3001".parse().unwrap()],
        )
        .native()
        .build();
        assert_eq!(
            cfg["third_part_codec"]["codecs"][0],
            json!({"type": "native", "enable": true, "config": {"protocol": "x-bolt", "codec": "bolt"}})
        );
        assert!(cfg.get("wasm_global_plugins").is_none());
        assert_eq!(
            cfg["cluster_manager"]["clusters"][0]["hosts"][0]["address"],
            "127.0.0.1:3001"
        );
    }

    #[test]
    fn edits_and_patches() {
        let mut cfg = MosnConfig::sample(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
            "127.0.0.1:3".parse().unwrap(),
        )
        .edit_listener("clientListener", |l| l.route_timeout("3s"))
        .edit_cluster("serverCluster", |c| c.connect_timeout("1s"))
        .build();
        assert_eq!(
            cfg["servers"][0]["routers"][1]["virtual_hosts"][0]["routers"][0]["route"],
            json!({"cluster_name": "clientCluster", "timeout": "3s"})
        );
        assert_eq!(
            cfg["cluster_manager"]["clusters"][0]["connect_timeout"],
            "1s"
        );
        assert!(patch(
            &mut cfg,
            "/cluster_manager/clusters/1/keepalive/timeout",
            json!("1s")
        ));
        assert_eq!(
            cfg["cluster_manager"]["clusters"][1]["keepalive"],
            json!({"timeout": "1s"})
        );
        assert!(!patch(&mut cfg, "/cluster_manager/clusters/9/x", json!(1)));
        assert!(!patch(&mut cfg, "/servers/0/default_log_level/x", json!(1)));
    }
}
