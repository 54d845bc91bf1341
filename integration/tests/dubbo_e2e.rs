//! End-to-end: a real Apache Dubbo 3.3.6 consumer calling real Dubbo providers through both
//! sidecar hops, with the Dubbo Wasm plugin (`protocols/dubbo`) as the codec.
//!
//! Topology per test: `Consumer` → sidecar clientListener → sidecar serverListener → `Provider`
//! "green" (serverCluster: EchoService version 1.0.0) or "blue" (blueCluster: EchoService in
//! group blue, and InfoService), one sidecar process playing both roles
//! (configs/mosn_rpc_config_dubbo.json with free ports). The peers live in
//! integration/peers/dubbo (`make dubbo-peers`). Every child process has a deadline and is
//! killed on drop; nothing here measures time.

use std::fs;

use anyhow::{ensure, Context, Result};
use integration::harness::{find_named, free_port, repo_root};
use integration::Sidecar;
use serde_json::{json, Value};

mod dubbo_peers;

use dubbo_peers::*;

// ---------------------------------------------------------------------------------------------
// The sidecar

/// Where the sidecar listeners and the providers live in one test.
struct Ports {
    client_listener: u16,
    server_listener: u16,
    green: u16,
    blue: u16,
}

impl Ports {
    fn new() -> Self {
        let port = || free_port().expect("a free loopback port");
        Ports {
            client_listener: port(),
            server_listener: port(),
            green: port(),
            blue: port(),
        }
    }
}

fn set_cluster_host(config: &mut Value, cluster: &str, port: u16) -> Result<()> {
    let c = find_named(config, cluster).with_context(|| format!("cluster {cluster}"))?;
    c["hosts"] = json!([{ "address": format!("127.0.0.1:{port}") }]);
    Ok(())
}

/// configs/mosn_rpc_config_dubbo.json with this test's ports.
fn sidecar_config(ports: &Ports) -> Result<Value> {
    let path = repo_root().join("configs/mosn_rpc_config_dubbo.json");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut config: Value = serde_json::from_str(&text)?;
    for (listener, port) in [
        ("clientListener", ports.client_listener),
        ("serverListener", ports.server_listener),
    ] {
        let l =
            find_named(&mut config, listener).with_context(|| format!("listener {listener}"))?;
        l["address"] = json!(format!("127.0.0.1:{port}"));
    }
    set_cluster_host(&mut config, "clientCluster", ports.server_listener)?;
    set_cluster_host(&mut config, "serverCluster", ports.green)?;
    set_cluster_host(&mut config, "blueCluster", ports.blue)?;
    if let Some(admin) = config.pointer_mut("/admin/address/socket_address") {
        admin["port_value"] = json!(free_port()?);
    }
    let plugin = config
        .pointer("/wasm_global_plugins/0/vm_config/path")
        .and_then(Value::as_str)
        .context("wasm_global_plugins[0].vm_config.path")?;
    ensure!(
        repo_root().join(plugin).is_file(),
        "the Dubbo plugin {plugin} is missing: run `make plugins`"
    );
    Ok(config)
}

/// Both providers and the sidecar in front of them.
struct Topology {
    ports: Ports,
    green: Provider,
    _blue: Provider,
    sidecar: Sidecar,
}

impl Topology {
    fn start() -> Self {
        let ports = Ports::new();
        let green = must(Provider::start(ports.green, "green", None));
        let blue = must(Provider::start(ports.blue, "blue", Some("blue")));
        let config = must(sidecar_config(&ports));
        let sidecar =
            Sidecar::spawn(config).unwrap_or_else(|e| panic!("starting the sidecar: {e}"));
        Topology {
            ports,
            green,
            _blue: blue,
            sidecar,
        }
    }

    /// A consumer run through both hops.
    fn call(&self, args: &[&str]) -> Run {
        let mut all = vec!["--version", VERSION];
        all.extend_from_slice(args);
        must(consumer(self.ports.client_listener, &all))
    }

    fn assert_alive(&mut self) {
        if let Some(status) = self.sidecar.try_status() {
            panic!("sidecar exited ({status})");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn sync_and_async_calls_and_200_in_flight_pass_both_hops() {
    let _serial = serial();
    let mut t = Topology::start();

    let sync = t.call(&["--method", "echo", "--arg", "sync", "--count", "50"]);
    assert_eq!((sync.ok(), sync.failed()), (50, 0), "{:?}", sync.calls);
    assert_eq!(
        sync.summary["mismatched"], 0,
        "every answer is its own call's argument"
    );
    assert_eq!(sync.calls[49]["value"], "sync-49");

    let one_async = t.call(&["--method", "echoAsync", "--arg", "future"]);
    assert_eq!(one_async.only()["value"], "future-0");

    // 200 CompletableFuture calls started before any is awaited: in flight together on the
    // consumer's single connection; each answer must match its own request id.
    let flight = t.call(&["--method", "echoAsync", "--arg", "flight", "--count", "200"]);
    assert_eq!(
        (flight.ok(), flight.failed()),
        (200, 0),
        "{:?}",
        flight.summary
    );
    assert_eq!(flight.summary["mismatched"], 0);

    // Arguments of most Hessian2 types, skipped by the plugin to reach the attachments.
    let mixed = t.call(&["--method", "mixed"]);
    let value = mixed.only()["value"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert_eq!(
        value,
        "-5,-9000000000,12.375,false,1700000000123,40000,9,13,first,true,40011,true"
    );
    t.assert_alive();
}

#[test]
fn a_provider_exception_reaches_the_consumer_as_itself() {
    let _serial = serial();
    let mut t = Topology::start();
    let run = t.call(&["--method", "fail", "--arg", "boom", "--count", "3"]);
    assert_eq!((run.ok(), run.failed()), (0, 3));
    for (i, call) in run.calls.iter().enumerate() {
        assert_eq!(call["error"], "org.example.dubbo.EchoException", "{call}");
        assert_eq!(
            call["message"],
            format!("fail(boom-{i}) on green"),
            "{call}"
        );
    }
    let after = t.call(&["--method", "echo", "--arg", "after"]);
    assert_eq!(after.only()["value"], "after-0");
    t.assert_alive();
}

#[test]
fn a_call_slower_than_the_route_timeout_gets_the_sidecars_timeout() {
    let _serial = serial();
    let mut t = Topology::start();
    // The route allows 1 s; the provider sleeps 4 s; the consumer would wait 60 s. The error
    // therefore is the sidecar's hijack (status 31 SERVER_TIMEOUT with its message), which
    // the consumer turns into a timeout RpcException carrying that message.
    let run = t.call(&[
        "--method",
        "slow",
        "--arg",
        "4000",
        "--timeout",
        "60000",
        "--count",
        "2",
    ]);
    assert_eq!((run.ok(), run.failed()), (0, 2), "{:?}", run.calls);
    for call in &run.calls {
        assert_eq!(call["error"], "org.apache.dubbo.rpc.RpcException", "{call}");
        assert_eq!(call["timeout"], true, "{call}");
        let message = call["message"].as_str().unwrap_or_default();
        assert!(
            message.contains("rpc sidecar: upstream timed out"),
            "{call}"
        );
        assert!(
            !message.contains("Waiting server-side response timeout"),
            "{call}"
        );
    }
    let after = t.call(&["--method", "slow", "--arg", "10"]);
    assert_eq!(after.only()["value"], "green", "a short call still passes");
    t.assert_alive();
}

#[test]
fn calls_are_routed_by_service_and_by_group_attachment() {
    let _serial = serial();
    let mut t = Topology::start();
    let green = t.call(&["--method", "whoami", "--count", "5"]);
    assert_eq!(green.ok(), 5);
    assert!(
        green.calls.iter().all(|c| c["value"] == "green"),
        "{:?}",
        green.calls
    );

    // The group travels as an attachment: the route on `group` sends it to blue.
    let blue = t.call(&["--method", "whoami", "--group", "blue", "--count", "5"]);
    assert_eq!(blue.ok(), 5, "{:?}", blue.calls);
    assert!(
        blue.calls.iter().all(|c| c["value"] == "blue"),
        "{:?}",
        blue.calls
    );

    // Another service path: the route on `service` sends it to blue.
    let info = t.call(&["--service", "info", "--count", "3"]);
    assert_eq!(info.ok(), 3, "{:?}", info.calls);
    assert!(info.calls.iter().all(|c| c["value"] == "info@blue"));

    // A version no route matches: the sidecar answers SERVICE_NOT_FOUND itself.
    let none = must(consumer(
        t.ports.client_listener,
        &["--version", "9.9.9", "--method", "echo"],
    ));
    let call = none.only();
    assert_eq!(call["ok"], false);
    let message = call["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("rpc sidecar: no route for this service"),
        "{call}"
    );
    t.assert_alive();
}

#[test]
fn oneway_calls_reach_the_provider_and_get_no_answer() {
    let _serial = serial();
    let mut t = Topology::start();
    let run = t.call(&["--method", "fire", "--arg", "ping", "--count", "20"]);
    assert_eq!((run.ok(), run.failed()), (20, 0), "{:?}", run.calls);
    must(
        t.green
            .wait_for(CONSUMER_RUN, "20 oneway calls on the provider", |l| {
                serde_json::from_str::<Value>(l)
                    .is_ok_and(|v| v["event"] == "fired" && v["count"] == 20)
            }),
    );
    let fired = t.call(&["--method", "fired"]);
    assert_eq!(fired.only()["value"], "20");
    t.assert_alive();
}
