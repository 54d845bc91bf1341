//! `sidecar check` validates a config the way `start` does: plugins are loaded, compiled and
//! started; a file that is not a module, a negative memory cap and an admin API open to the
//! network are reported the same way by both, through the real binary.

use integration::error::HarnessError;
use integration::harness::{free_addr, patch, repo_root, MosnConfig, Sidecar};
use serde_json::{json, Value};

/// `EX_USAGE`: the config is unusable.
const EX_USAGE: i32 = 64;

fn config() -> Value {
    let listen = free_addr().unwrap();
    let app = free_addr().unwrap();
    MosnConfig::single_hop(listen, vec![app]).build()
}

fn with_plugin_path(path: &str) -> Value {
    let mut cfg = config();
    assert!(patch(
        &mut cfg,
        "/wasm_global_plugins/0/vm_config/path",
        json!(path)
    ));
    cfg
}

/// Runs `check`, then `start`, on `cfg`; both must exit 64 and say `needles`.
fn both_refuse(cfg: Value, needles: &[&str]) {
    let out = Sidecar::run_check(cfg.clone()).expect("run check");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.status.code(), Some(EX_USAGE), "check: {text}");
    for n in needles {
        assert!(text.contains(n), "check does not say {n:?}: {text}");
    }
    match Sidecar::spawn(cfg) {
        Err(HarnessError::ExitedEarly { status, tail, .. }) => {
            assert_eq!(status.code(), Some(EX_USAGE), "start: {tail}");
            for n in needles {
                assert!(tail.contains(n), "start does not say {n:?}: {tail}");
            }
        }
        Err(other) => panic!("start failed otherwise: {other}"),
        Ok(_) => panic!("start accepted the config"),
    }
}

#[test]
fn a_plugin_path_that_is_an_executable_is_refused_by_check_and_start_alike() {
    let elf = std::env::current_exe().unwrap();
    both_refuse(
        with_plugin_path(elf.to_str().unwrap()),
        &["not a WebAssembly module", "an ELF executable"],
    );
}

#[test]
fn a_plugin_path_that_is_a_text_file_is_refused_by_check_and_start_alike() {
    let text = repo_root().join("README.md");
    both_refuse(
        with_plugin_path(text.to_str().unwrap()),
        &["not a WebAssembly module", "text"],
    );
}

#[test]
fn a_negative_memory_cap_is_an_error_not_the_default() {
    let mut cfg = config();
    assert!(patch(
        &mut cfg,
        "/wasm_global_plugins/0/vm_config/mem",
        json!(-1)
    ));
    both_refuse(cfg, &["vm_config.mem", "-1"]);
}

#[test]
fn an_admin_api_open_to_the_network_is_accepted_with_a_warning() {
    let mut cfg = config();
    let port = free_addr().unwrap().port();
    cfg["admin"] =
        json!({"address": {"socket_address": {"address": "0.0.0.0", "port_value": port}}});
    let out = Sidecar::run_check(cfg.clone()).expect("run check");
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    assert!(
        out.stdout.contains("warning:") && out.stdout.contains("admin API listens on 0.0.0.0"),
        "{}",
        out.stdout
    );
    let sidecar = Sidecar::spawn(cfg).expect("start accepts it");
    assert!(
        sidecar
            .log_contents()
            .contains("admin API listens on 0.0.0.0"),
        "start logs the warning"
    );
}

#[test]
fn check_starts_the_plugin_as_start_does() {
    // A good config: check loads, compiles and starts the real Bolt plugin, and says so.
    let out = Sidecar::run_check(config()).expect("run check");
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("config OK"), "{}", out.stdout);
    assert!(
        out.stdout.contains("limits: frame read timeout 15s"),
        "{}",
        out.stdout
    );
}

#[test]
fn the_shipped_multi_protocol_config_checks_with_its_auto_listener() {
    // configs/mosn_rpc_config_multi.json as shipped: Bolt and Dubbo plugins both start, and
    // the summary shows the auto listener's candidates in order and its limits.
    let path = repo_root().join("configs/mosn_rpc_config_multi.json");
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let out = Sidecar::run_check(cfg).expect("run check");
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    assert!(out.stdout.contains("config OK"), "{}", out.stdout);
    assert!(
        out.stdout.contains("autoListener 127.0.0.1:2047 protocol Auto (x-bolt wasm plugin wasm-bolt, root_id 1, dubbo wasm plugin wasm-dubbo, root_id 1)"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("undecided after 1024 bytes or 10s: closed"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains("dubboClientListener 127.0.0.1:20881 protocol dubbo"),
        "{}",
        out.stdout
    );
}
