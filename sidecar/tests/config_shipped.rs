//! The configs shipped in `configs/` parse into the documented two-listener topology.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sidecar::config::{ClusterTarget, CodecKind, Config, LoadContext, LogPath};

const PLUGIN: &str = "target/wasm32-wasip1/plugin/bolt.wasm";

fn repo_file(rel: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A working directory holding a stand-in plugin file (the config check only needs the
/// file to exist; loading it is the runtime's job).
struct WorkDir(PathBuf);

impl WorkDir {
    fn new(tag: &str) -> WorkDir {
        let dir =
            std::env::temp_dir().join(format!("sidecar-shipped-{tag}-{}", std::process::id()));
        let plugin = dir.join(PLUGIN);
        std::fs::create_dir_all(plugin.parent().expect("parent")).expect("mkdir");
        std::fs::write(&plugin, b"\0asm\x01\0\0\0").expect("write plugin");
        WorkDir(dir)
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn load(rel: &str, work_dir: &Path) -> Config {
    let ctx = LoadContext {
        work_dir: work_dir.to_path_buf(),
        config_path: Some(PathBuf::from(rel)),
        cpu_count: 2,
    };
    Config::parse(&repo_file(rel), &ctx).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn assert_topology(c: &Config) {
    assert_eq!(c.server.log.path, LogPath::Stdout);
    let names: Vec<(&str, String, &str)> = c
        .listeners
        .iter()
        .map(|l| {
            (
                l.name.as_str(),
                l.address.to_string(),
                c.route_configs[l.proxy.route_config].name.as_str(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            (
                "serverListener",
                "127.0.0.1:2046".to_owned(),
                "server_router"
            ),
            (
                "clientListener",
                "127.0.0.1:2045".to_owned(),
                "client_router"
            ),
        ]
    );
    for l in &c.listeners {
        assert!(l.bind_port);
        assert_eq!(l.proxy.protocol, "x-bolt");
        assert_eq!(l.connection_idle_timeout, Some(Duration::from_secs(90)));
        let rc = &c.route_configs[l.proxy.route_config];
        let route = &rc.virtual_hosts[0].routes[0];
        let ClusterTarget::Cluster(target) = &route.action.target else {
            panic!("single cluster expected");
        };
        let expected = if l.name == "clientListener" {
            ("clientCluster", "127.0.0.1:2046")
        } else {
            ("serverCluster", "127.0.0.1:12199")
        };
        assert_eq!(target.name, expected.0);
        let cluster = &c.clusters[target.index];
        assert_eq!(cluster.name, expected.0);
        assert_eq!(cluster.hosts[0].address.to_string(), expected.1);
        assert_eq!(cluster.max_request_per_conn, 1024);
        assert_eq!(cluster.conn_buffer_limit_bytes, 32768);
    }
    assert_eq!(
        c.admin,
        Some(
            "127.0.0.1:34901"
                .parse::<std::net::SocketAddr>()
                .expect("addr")
        )
    );
    assert_eq!(c.codecs.len(), 1);
    assert_eq!(c.codecs[0].protocol, "x-bolt");
    // Exactly one warning: the obsolete healthcheck stream filter of MOSN's sample.
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
    assert_eq!(
        c.warnings[0].path,
        "servers[0].listeners[0].stream_filters[0].type"
    );
}

#[test]
fn wasm_config_is_the_two_listener_topology() {
    let dir = WorkDir::new("wasm");
    let c = load("configs/mosn_rpc_config_wasm.json", &dir.0);
    assert_topology(&c);
    let CodecKind::Wasm(w) = &c.codecs[0].kind else {
        panic!("wasm codec expected");
    };
    assert_eq!(w.root_id, 1);
    let plugin = &c.plugins[w.plugin];
    assert_eq!(plugin.name, "wasm-bolt");
    assert_eq!(plugin.vm.path, PLUGIN);
    assert_eq!(plugin.vm.resolved_path, dir.0.join(PLUGIN));
    assert_eq!(plugin.instance_num, 2);
}

#[test]
fn wasm_config_needs_the_built_plugin() {
    let empty = std::env::temp_dir();
    let ctx = LoadContext {
        work_dir: empty.join(format!("sidecar-no-plugin-{}", std::process::id())),
        config_path: None,
        cpu_count: 2,
    };
    let err = Config::parse(&repo_file("configs/mosn_rpc_config_wasm.json"), &ctx)
        .expect_err("plugin file is missing");
    assert_eq!(
        err.json_path(),
        Some("wasm_global_plugins[0].vm_config.path")
    );
}

#[test]
fn native_config_is_the_same_topology() {
    let c = load(
        "configs/mosn_rpc_config_native.json",
        Path::new("/nonexistent"),
    );
    assert_topology(&c);
    assert!(matches!(
        c.codecs[0].kind,
        CodecKind::Native(n) if n.name() == "bolt"
    ));
    assert!(c.plugins.is_empty());
}
