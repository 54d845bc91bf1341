//! End-to-end: proxy-wasm stream filters (built from `filters/` with the Rust `proxy-wasm`
//! crate, one with the Go toolchain, one for ABI 0.1.0) on the real sidecar binary, between
//! real SOFA peers (sofa-rpc-node client and server from npm). The server prints every
//! request's Bolt header map as it arrived on the wire, which is how a test proves what a
//! filter put there. `make filters` builds the modules; `make peers` installs the peers.

use std::path::PathBuf;
use std::time::Duration;

use integration::error::HarnessError;
use integration::harness::{admin_get, admin_request, find_named, repo_root, Sidecar};
use serde_json::{json, Value};

mod sofa_peers;

use sofa_peers::*;

/// The service the SOFA client calls by default, and its other version (the server has both):
/// the `service` value of each request's header map, which the deny and misbehave tests key
/// on.
const V1: &str = "com.alipay.test.TestService:1.0";
const V2: &str = "com.alipay.test.TestService:2.0";

/// A filter module built by `make filters`, relative to the repository (the sidecar's working
/// directory).
fn filter(name: &str) -> String {
    let rel = format!("target/filters/wasm/{name}.wasm");
    assert!(
        repo_root().join(&rel).is_file(),
        "{rel} missing: run `make filters`"
    );
    rel
}

fn proxywasm(name: &str, configuration: Value) -> Value {
    json!({"type": "proxywasm", "config": {
        "vm_config": {"engine": "wasmer", "path": filter(name)},
        "configuration": configuration,
    }})
}

/// The shipped two-hop config with `filters` on the client-side listener.
fn config_with(ports: &Ports, filters: Value) -> Value {
    let mut config = must(sidecar_config(ports, None));
    find_named(&mut config, "clientListener").expect("clientListener")["stream_filters"] = filters;
    config
}

fn start(config: Value) -> Sidecar {
    Sidecar::spawn(config).unwrap_or_else(|e| panic!("starting the sidecar: {e}"))
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    integration::process::runtime(Some(1))
        .expect("runtime")
        .block_on(f)
}

/// The admin API's JSON stats.
fn stats(sidecar: &Sidecar) -> Value {
    let admin = sidecar.admin_addr().expect("admin address");
    block_on(admin_get(admin, "/api/v1/stats")).expect("stats")
}

/// The host counters of filter `<listener>.<plugin>`.
fn filter_stats(sidecar: &Sidecar, label: &str) -> Value {
    stats(sidecar)["downstream"][format!("wasm_filter.{label}")].clone()
}

fn downstream(sidecar: &Sidecar, listener: &str) -> Value {
    stats(sidecar)["downstream"][format!("downstream.proxy.{listener}")].clone()
}

/// The `request_headers` events the server printed so far.
fn requests_seen(server: &mut NodeServer) -> Vec<Value> {
    server
        .events()
        .into_iter()
        .filter(|e| e["event"] == "request_headers")
        .map(|e| e["headers"].clone())
        .collect()
}

/// Waits until the server has printed `n` request header maps (the prints trail the
/// responses by a little).
fn wait_requests(server: &mut NodeServer, n: usize) -> Vec<Value> {
    let _ = server.wait_event(Duration::from_secs(10), "request headers", {
        let mut seen = 0;
        move |e| {
            if e["event"] == "request_headers" {
                seen += 1;
            }
            seen >= n
        }
    });
    requests_seen(server)
}

#[test]
fn a_filter_adds_a_request_header_that_the_sofa_server_receives() {
    require_peers();
    let _serial = serial();
    let ports = Ports::new();
    let mut server = must(NodeServer::start_reporting_headers(ports.app_server));
    let sidecar = start(config_with(
        &ports,
        json!([proxywasm(
            "filter_add_header",
            json!({"name": "x-filter-added", "value": "by-filter"})
        )]),
    ));
    let r = must(run_client(ports.client_listener, &["seq", "20"]));
    assert!(ok(&r) && r["succeeded"] == 20, "{r}");
    let r = must(run_client(ports.client_listener, &["concurrent", "50"]));
    assert!(ok(&r) && r["succeeded"] == 50, "{r}");
    let seen = wait_requests(&mut server, 70);
    assert_eq!(seen.len(), 70, "every call reached the server");
    for h in &seen {
        assert_eq!(h["x-filter-added"], "by-filter", "server saw {h}");
        assert_eq!(h["service"], V1, "the client's own headers are kept: {h}");
    }
    let s = filter_stats(&sidecar, "clientListener.filter_add_header");
    assert_eq!(s["calls"], 70, "{s}");
    // Request and response phases each changed their frame (x-filter-seen on responses).
    assert_eq!(s["headers_changed"], 140, "{s}");
    assert_eq!(
        downstream(&sidecar, "clientListener")["response_forwarded"],
        70
    );
}

#[test]
fn a_filter_denies_calls_by_header_value_with_a_local_response_the_client_sees_as_an_error() {
    require_peers();
    let _serial = serial();
    let ports = Ports::new();
    let mut server = must(NodeServer::start_reporting_headers(ports.app_server));
    let sidecar = start(config_with(
        &ports,
        json!([proxywasm(
            "filter_deny",
            json!({"header": "service", "value": V2, "status": 403})
        )]),
    ));
    let denied = must(run_client(
        ports.client_listener,
        &["concurrent", "10", "--version", "2.0", "--breaker", "off"],
    ));
    assert_eq!(denied["succeeded"], 0, "every call denied: {denied}");
    assert!(!ok(&denied), "{denied}");
    let problems = denied["problems"].to_string();
    assert!(
        problems.contains("Error"),
        "the client surfaces an error: {problems}"
    );
    let fine = must(run_client(ports.client_listener, &["seq", "5"]));
    assert!(ok(&fine) && fine["succeeded"] == 5, "{fine}");
    let seen = wait_requests(&mut server, 5);
    assert_eq!(
        seen.len(),
        5,
        "denied calls never reached the server: {seen:?}"
    );
    assert!(seen.iter().all(|h| h["service"] == V1), "{seen:?}");
    let d = downstream(&sidecar, "clientListener");
    assert_eq!(d["hijacked_filter_local_response"], 10, "{d}");
    assert_eq!(d["request_other_code"], 10, "status 403 hijacks: {d}");
    let s = filter_stats(&sidecar, "clientListener.filter_deny");
    assert_eq!(s["local_responses"], 10, "{s}");
}

#[test]
fn shared_data_counts_calls_across_both_workers_and_the_count_is_a_metric() {
    require_peers();
    let _serial = serial();
    let ports = Ports::new();
    let mut server = must(NodeServer::start_reporting_headers(ports.app_server));
    let mut config = config_with(
        &ports,
        json!([proxywasm("filter_count", json!({"key": "calls"}))]),
    );
    config["servers"][0]["processor"] = json!(2);
    // One hop (clientListener straight to the app): connections to it are the only ones
    // accepted, and the acceptor deals them to the two workers in turn.
    must(set_cluster_host(
        &mut config,
        "clientCluster",
        ports.app_server,
    ));
    let sidecar = start(config);
    for _ in 0..2 {
        let r = must(run_client(ports.client_listener, &["seq", "100"]));
        assert!(ok(&r) && r["succeeded"] == 100, "{r}");
    }
    let s = filter_stats(&sidecar, "clientListener.filter_count");
    assert_eq!(
        s["instances_started"], 2,
        "one instance on each worker: {s}"
    );
    assert_eq!(s["calls"], 200, "{s}");
    // Every call got its own number: the compare-and-swap loop lost nothing across workers.
    let seen = wait_requests(&mut server, 200);
    let mut counts: Vec<u64> = seen
        .iter()
        .map(|h| {
            h["x-call-count"]
                .as_str()
                .expect("x-call-count")
                .parse()
                .unwrap()
        })
        .collect();
    counts.sort_unstable();
    assert_eq!(counts, (1..=200).collect::<Vec<u64>>());
    let m = &stats(&sidecar)["downstream"]["wasm_filter_metric.clientListener.filter_count"];
    assert_eq!(m["filter_count_calls"], 200, "{m}");
    // And the same in the Prometheus exposition.
    let admin = sidecar.admin_addr().unwrap();
    let text = block_on(admin_request(admin, "GET", "/metrics", ""))
        .unwrap()
        .body;
    assert!(
        text.contains(
            "sidecar_wasm_filter_metric_filter_count_calls{filter=\"clientListener.filter_count\"} 200"
        ),
        "{}",
        text.lines()
            .filter(|l| l.contains("wasm_filter"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_paused_call_is_continued_from_the_filters_tick() {
    require_peers();
    let _serial = serial();
    let ports = Ports::new();
    let mut server = must(NodeServer::start_reporting_headers(ports.app_server));
    let sidecar = start(config_with(
        &ports,
        json!([proxywasm("filter_pause", json!({"tick_ms": 20}))]),
    ));
    let r = must(run_client(ports.client_listener, &["concurrent", "30"]));
    assert!(ok(&r) && r["succeeded"] == 30, "{r}");
    let seen = wait_requests(&mut server, 30);
    assert_eq!(seen.len(), 30);
    assert!(seen.iter().all(|h| h["x-paused"] == "1"), "{seen:?}");
    let s = filter_stats(&sidecar, "clientListener.filter_pause");
    assert_eq!(
        (s["paused"].as_u64(), s["resumed"].as_u64()),
        (Some(30), Some(30)),
        "{s}"
    );
}

#[test]
fn go_built_and_abi_0_1_0_filters_run_in_one_chain_in_order() {
    require_peers();
    let _serial = serial();
    let ports = Ports::new();
    let mut server = must(NodeServer::start_reporting_headers(ports.app_server));
    let _sidecar = start(config_with(
        &ports,
        json!([
            proxywasm("go_add_header", json!(null)),
            proxywasm("filter_abi010", json!(null)),
            proxywasm(
                "filter_add_header",
                json!({"name": "x-third", "value": "3"})
            ),
        ]),
    ));
    let r = must(run_client(ports.client_listener, &["seq", "10"]));
    assert!(ok(&r) && r["succeeded"] == 10, "{r}");
    let seen = wait_requests(&mut server, 10);
    assert_eq!(seen.len(), 10);
    for h in &seen {
        assert_eq!(h["x-go-filter"], "1", "{h}");
        assert_eq!(h["x-abi"], "0.1.0", "{h}");
        assert_eq!(h["x-third"], "3", "{h}");
    }
}

#[test]
fn a_trap_a_loop_and_a_memory_bomb_fail_only_their_call() {
    require_peers();
    let _serial = serial();
    for mode in ["trap", "loop", "oom"] {
        let ports = Ports::new();
        let _server = must(NodeServer::start(ports.app_server, "draft", None));
        let mut f = proxywasm(
            "filter_misbehave",
            json!({"mode": mode, "header": "service", "value": V2}),
        );
        f["config"]["vm_config"]["mem"] = json!(16);
        let mut sidecar = start(config_with(&ports, json!([f])));
        // A client with good calls in flight on its own connection the whole time.
        let mut steady = must(NodeClient::spawn(
            ports.client_listener,
            &["load", "60", "--concurrency", "2"],
        ));
        must(
            steady.wait_progress(Duration::from_secs(20), "20 good calls", |p| {
                p["succeeded"].as_u64() >= Some(20)
            }),
        );
        let bad = must(run_client(
            ports.client_listener,
            &[
                "concurrent",
                "3",
                "--version",
                "2.0",
                "--breaker",
                "off",
                "--timeout",
                "10000",
            ],
        ));
        assert_eq!(bad["succeeded"], 0, "{mode}: {bad}");
        let after = must(run_client(ports.client_listener, &["seq", "20"]));
        assert!(ok(&after) && after["succeeded"] == 20, "{mode}: {after}");
        must(steady.stop_load());
        let steady = must(steady.finish(Duration::from_secs(30)));
        assert!(
            steady["errors"] == 0 && steady["succeeded"].as_u64() > Some(20),
            "{mode}: the other connection's calls: {steady}"
        );
        assert!(
            sidecar.try_status().is_none(),
            "{mode}: the sidecar is alive"
        );
        let s = filter_stats(&sidecar, "clientListener.filter_misbehave");
        let failed = s["traps"].as_u64().unwrap() + s["cpu_exhausted"].as_u64().unwrap();
        assert_eq!(failed, 3, "{mode}: {s}");
        if mode == "loop" {
            assert_eq!(s["cpu_exhausted"], 3, "{s}");
        }
        assert_eq!(
            downstream(&sidecar, "clientListener")["hijacked_filter_failure"],
            3,
            "{mode}"
        );
    }
}

fn refused(cfg: Value, needles: &[&str]) {
    let out = Sidecar::run_check(cfg.clone()).expect("run check");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.status.code(), Some(64), "check: {text}");
    for n in needles {
        assert!(text.contains(n), "check does not say {n:?}: {text}");
    }
    match Sidecar::spawn(cfg) {
        Err(HarnessError::ExitedEarly { status, tail, .. }) => {
            assert_eq!(status.code(), Some(64), "start: {tail}");
            for n in needles {
                assert!(tail.contains(n), "start does not say {n:?}: {tail}");
            }
        }
        Err(other) => panic!("start failed otherwise: {other}"),
        Ok(_) => panic!("start accepted the config"),
    }
}

fn scratch_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("proxy-wasm-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_filter_modules_and_configs_are_refused_at_start_with_their_json_path() {
    let ports = Ports::new();
    let path = ".stream_filters[0].config";
    refused(
        config_with(
            &ports,
            json!([proxywasm("filter_unknown_import", json!(null))]),
        ),
        &[
            &format!("{path}.vm_config.path"),
            "unknown import env.proxy_no_such_hostcall",
        ],
    );
    refused(
        config_with(
            &ports,
            json!([{"type": "proxywasm", "config": {"vm_config": {"engine": "wasmer"}}}]),
        ),
        &[&format!("{path}.vm_config.path"), "missing"],
    );
    let future = scratch_file(
        "future.wat",
        r#"(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_3_0"))
           (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 0)
           (func (export "proxy_on_context_create") (param i32 i32)))"#,
    );
    refused(
        config_with(
            &ports,
            json!([{"type": "proxywasm", "config": {"vm_config": {"engine": "wasmer", "path": future}}}]),
        ),
        &[&format!("{path}.vm_config.path"), "proxy_abi_version_0_3_0"],
    );
}
