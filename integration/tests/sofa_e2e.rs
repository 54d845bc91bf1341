//! End-to-end: real SOFA peers (sofa-rpc-node from npm) calling each other through both sidecar hops.
//!
//! Topology per test: `node client.js` → sidecar clientListener → sidecar serverListener →
//! `node server.js`, one sidecar process playing both roles (configs/mosn_rpc_config_wasm.json with
//! free ports). The peers live in integration/peers (see its README.md); install them with
//! `make peers` (or `npm ci` in integration/peers). Every child process is bounded by a deadline
//! and killed on drop; nothing here measures time.

use std::time::Duration;

use integration::harness::find_named;
use integration::Sidecar;
use serde_json::{json, Value};

mod sofa_peers;

use sofa_peers::*;

// ---------------------------------------------------------------------------------------------
// The sidecar

/// The real sidecar binary (target/debug/sidecar) with both listeners, ready to accept.
fn start_sidecar(ports: &Ports, keepalive: Option<Value>) -> Sidecar {
    let config = must(sidecar_config(ports, keepalive));
    Sidecar::spawn(config).unwrap_or_else(|e| panic!("starting the sidecar: {e}"))
}

/// Panics (printing the sidecar's log) if the sidecar died.
fn assert_alive(sidecar: &mut Sidecar) {
    if let Some(status) = sidecar.try_status() {
        panic!("sidecar exited ({status})");
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[test]
fn echo_calls_pass_both_hops_sequentially_and_200_in_flight() {
    require_peers();
    let _serial = serial();
    let ports = Ports::new();
    let _server = must(NodeServer::start(ports.app_server, "draft", None));
    let mut sidecar = start_sidecar(&ports, None);

    let seq = must(run_client(ports.client_listener, &["seq", "50"]));
    assert!(
        ok(&seq) && seq["succeeded"] == 50,
        "sequential calls: {seq}"
    );

    let conc = must(run_client(ports.client_listener, &["concurrent", "200"]));
    assert!(
        ok(&conc) && conc["succeeded"] == 200,
        "200 in flight: {conc}"
    );
    assert_eq!(conc["connections"], 1, "one client connection: {conc}");
    assert_alive(&mut sidecar);
}

#[test]
fn bolt_v1_v2_and_v2_crc_frames_share_one_connection() {
    require_peers();
    let _serial = serial();
    let ports = Ports::new();
    let _server = must(NodeServer::start(ports.app_server, "draft", None));
    let mut sidecar = start_sidecar(&ports, None);

    // The peers verify the CRC32, so v2+CRC frames pass only if the sidecar recomputes it after
    // rewriting the request id.
    let mixed = must(run_client(ports.client_listener, &["mixed", "30"]));
    assert!(ok(&mixed), "mixed Bolt versions: {mixed}");
    for flavour in ["bolt/ver1=1", "bolt2/ver1=1", "bolt2/ver1=2/crc"] {
        assert_eq!(mixed["succeeded"][flavour], 10, "{flavour}: {mixed}");
    }
    assert_alive(&mut sidecar);
}

#[test]
fn server_exception_comes_back_as_rpc_server_exception() {
    require_peers();
    let _serial = serial();
    let ports = Ports::new();
    let _server = must(NodeServer::start(ports.app_server, "draft", None));
    let mut sidecar = start_sidecar(&ports, None);

    let thrown = must(run_client(ports.client_listener, &["throw"]));
    assert!(ok(&thrown), "throwError(): {thrown}");
    let message = thrown["message"].as_str().unwrap_or_default();
    // The server's own exception text: this is its response, not one the sidecar made up.
    assert!(
        message.contains("RpcServerException")
            && message.contains("thrown by TestService.throwError"),
        "unexpected error: {message}"
    );
    let after = must(run_client(ports.client_listener, &["seq", "3"]));
    assert!(ok(&after), "calls after the exception: {after}");
    assert_alive(&mut sidecar);
}

#[test]
fn both_hessian_dialects_pass_through_untouched() {
    require_peers();
    let _serial = serial();
    for dialect in ["draft", "4.0"] {
        let ports = Ports::new();
        let _server = must(NodeServer::start(ports.app_server, dialect, None));
        let mut sidecar = start_sidecar(&ports, None);
        let port = ports.client_listener;

        let types = must(run_client(port, &["types", "--hessian", dialect]));
        assert!(ok(&types), "Hessian {dialect} values: {types}");
        let thrown = must(run_client(port, &["throw", "--hessian", dialect]));
        assert!(ok(&thrown), "Hessian {dialect} exception: {thrown}");

        // Control: the dialects really differ on the wire, so a client speaking the other one
        // fails against this server; the check above could not pass by accident.
        let other = if dialect == "draft" { "4.0" } else { "draft" };
        let mismatch = must(run_client(port, &["types", "--hessian", other]));
        assert!(
            !ok(&mismatch),
            "a {other} client should not understand a {dialect} server: {mismatch}"
        );
        assert_alive(&mut sidecar);
    }
}

#[test]
fn a_call_slower_than_its_timeout_gets_timeout_from_the_sidecar() {
    require_peers();
    let _serial = serial();
    let ports = Ports::new();
    let mut server = must(NodeServer::start(ports.app_server, "draft", None));
    let mut sidecar = start_sidecar(&ports, None);

    // slow(60 s) with a 1000 ms timeout in the frame: the server answers after the test is over,
    // so only the sidecar can answer within it, with TIMEOUT (7) for the id. Then the connection
    // still works.
    let late = must(run_client(
        ports.client_listener,
        &["late", "60000", "--timeout", "1000"],
    ));
    assert!(ok(&late), "slow call past its timeout: {late}");
    assert_eq!(late["slow_response_status"], 7, "TIMEOUT response: {late}");
    assert_eq!(late["echoes_after"], 3, "calls after the timeout: {late}");
    let closed: Vec<Value> = server
        .events()
        .into_iter()
        .filter(|e| e["event"] == "close")
        .collect();
    assert!(
        closed.is_empty(),
        "a timeout should not cost the upstream connection: {closed:?}"
    );
    assert_alive(&mut sidecar);
}

#[test]
fn client_heartbeats_are_answered_by_the_sidecar_even_with_the_server_down() {
    require_peers();
    let _serial = serial();
    // Nothing listens on ports.app_server yet.
    let ports = Ports::new();
    // Upstream keepalive far beyond any test run: a heartbeat at the server is a forwarded one.
    let keepalive = json!({ "idle": "1h", "timeout": "1s" });
    let mut sidecar = start_sidecar(&ports, Some(keepalive));

    for port in [ports.client_listener, ports.server_listener] {
        let hb = must(run_client(port, &["heartbeat", "3"]));
        assert!(ok(&hb), "heartbeats to :{port} with the server down: {hb}");
    }

    // A call with the server down fails with an error response, long before the client gives up.
    let down = must(run_client(
        ports.client_listener,
        &["seq", "1", "--timeout", "10000"],
    ));
    assert!(!ok(&down), "a call with the server down succeeded: {down}");
    let error = down["error"].as_str().unwrap_or_default();
    assert!(
        !error.contains("RpcResponseTimeoutError"),
        "the sidecar left the call unanswered: {error}"
    );

    // With the server up, heartbeats are still answered and never forwarded, and calls work.
    let mut server = must(NodeServer::start(ports.app_server, "draft", None));
    let hb = must(run_client(ports.client_listener, &["heartbeat", "3"]));
    assert!(ok(&hb), "heartbeats with the server up: {hb}");
    let seq = must(run_client(ports.client_listener, &["seq", "3"]));
    assert!(ok(&seq), "calls once the server is up: {seq}");
    let forwarded: Vec<Value> = server
        .events()
        .into_iter()
        .filter(|e| e["event"] == "heartbeat")
        .collect();
    assert!(
        forwarded.is_empty(),
        "client heartbeats reached the server: {forwarded:?}"
    );
    assert_alive(&mut sidecar);
}

#[test]
fn server_side_sidecar_keeps_its_upstream_connection_alive() {
    require_peers();
    let _serial = serial();
    let ports = Ports::new();
    // The server closes connections without reads for 2 s (sofa-rpc-node checks every 2 s, so a
    // silent connection is closed within 4 s). The sidecar's heartbeats go out after 250 ms
    // without reads: eight times as often as the limit needs.
    let mut server = must(NodeServer::start(ports.app_server, "draft", Some(2000)));
    let keepalive = json!({ "idle": "250ms", "timeout": "1s" });
    let mut sidecar = start_sidecar(&ports, Some(keepalive));

    // Control, running meanwhile: a direct client that stays silent is dropped by the idle limit.
    let control = must(NodeClient::spawn(ports.app_server, &["hold", "20"]));

    // One call opens the sidecar's upstream connection; after that only the sidecar talks.
    let seq = must(run_client(ports.client_listener, &["seq", "1"]));
    assert!(ok(&seq), "first call: {seq}");

    // Enough heartbeats on one connection that it outlived the idle limit twice over: each comes
    // at least 250 ms after the previous ack (timers never fire early), so 20 take 5 s or more,
    // past the 4 s by which a silent connection is closed.
    let wanted = 20;
    let hb = must(
        server.wait_event(Duration::from_secs(40), "upstream heartbeats", |e| {
            e["event"] == "heartbeat" && e["count"].as_u64() >= Some(wanted)
        }),
    );
    let upstream = hb["remote"].clone();
    let closed: Vec<Value> = server
        .events()
        .into_iter()
        .filter(|e| e["event"] == "close" && e["remote"] == upstream)
        .collect();
    assert!(
        closed.is_empty(),
        "the kept-alive connection {upstream} was closed: {closed:?}"
    );

    let control = must(control.finish(CLIENT_RUN));
    assert!(
        ok(&control) && control["closed_by_peer"] == true,
        "control: an idle direct connection should be closed by the server: {control}"
    );

    let after = must(run_client(ports.client_listener, &["seq", "3"]));
    assert!(ok(&after), "calls after the idle period: {after}");
    assert_alive(&mut sidecar);
}

#[test]
fn killing_the_server_mid_load_gives_errors_not_hangs_and_calls_recover() {
    require_peers();
    let _serial = serial();
    let ports = Ports::new();
    let mut server = must(NodeServer::start(ports.app_server, "draft", None));
    let mut sidecar = start_sidecar(&ports, None);

    // The client's circuit breaker is forced closed so that every call really goes out. The load
    // runs until told to stop (120 s is only its own deadline), so it cannot end before the
    // kill and the restart however slow they are.
    let mut load = must(NodeClient::spawn(
        ports.client_listener,
        &[
            "load",
            "120",
            "--concurrency",
            "8",
            "--timeout",
            "5000",
            "--breaker",
            "off",
        ],
    ));
    let step = Duration::from_secs(15);
    must(load.wait_progress(step, "calls succeeding", |p| {
        p["succeeded"].as_u64() >= Some(200)
    }));

    server.kill();
    let down = must(load.wait_progress(step, "errors after the kill", |p| {
        p["errors"].as_u64() >= Some(20)
    }));
    let succeeded_while_down = down["succeeded"].as_u64().unwrap_or_default();

    let port = server.port;
    drop(server);
    let _server = must(NodeServer::start(port, "draft", None));
    must(
        load.wait_progress(step, "calls succeeding after the restart", |p| {
            p["succeeded"].as_u64() >= Some(succeeded_while_down + 200)
        }),
    );

    must(load.stop_load());
    let result = must(load.finish(Duration::from_secs(40)));
    assert!(ok(&result), "load run: {result}");
    assert_eq!(
        result["stopped"], true,
        "the load ran until told to stop: {result}"
    );
    assert!(
        result["errors"].as_u64() > Some(0),
        "killing the server caused no errors: {result}"
    );
    assert!(
        result["timeouts"] == 0 && result["overdue"] == 0,
        "calls were left unanswered instead of failing: {result}"
    );
    assert_eq!(
        result["error_responses"], result["errors"],
        "every failed call should be an error response from the sidecar: {result}"
    );
    assert!(
        result["ok_after_last_error"].as_u64() > Some(0),
        "no successful call after the server came back: {result}"
    );
    assert_eq!(
        result["connections"], 1,
        "the client's connection to the sidecar should survive: {result}"
    );
    assert_alive(&mut sidecar);
}

#[test]
fn a_client_over_its_rate_limit_gets_server_busy_at_once_not_a_hang() {
    require_peers();
    let _serial = serial();
    let ports = Ports::new();
    let _server = must(NodeServer::start(ports.app_server, "draft", None));
    // The server-side sidecar protects the app: 5 calls/s (burst 5) for the service the SOFA
    // client calls; the client-side hop relays the busy answers.
    let mut config = must(sidecar_config(&ports, None));
    let listener = find_named(&mut config, "serverListener").expect("serverListener");
    listener["stream_filters"] = json!([{"type": "flowControlFilter", "config": {
        "global_switch": true,
        "rules": [{"id": "sofa", "resource": "com.alipay.test.TestService:1.0",
                   "grade": 1, "threshold": 5}],
    }}]);
    let mut sidecar =
        Sidecar::spawn(config).unwrap_or_else(|e| panic!("starting the sidecar: {e}"));

    // The client's circuit breaker is forced closed so that every call really goes out.
    let result = must(run_client(
        ports.client_listener,
        &[
            "load",
            "3",
            "--concurrency",
            "4",
            "--timeout",
            "3000",
            "--breaker",
            "off",
        ],
    ));
    assert!(ok(&result), "load run: {result}");
    let errors = result["errors"].as_u64().unwrap_or_default();
    assert!(errors > 0, "nothing was limited: {result}");
    assert!(
        result["timeouts"] == 0 && result["overdue"] == 0,
        "calls over the limit were left waiting instead of failing: {result}"
    );
    assert_eq!(
        result["statuses"]["4"].as_u64(),
        Some(errors),
        "every failed call is a SERVER_THREADPOOL_BUSY answer: {result}"
    );
    assert_eq!(
        result["connections"], 1,
        "the connection survives: {result}"
    );
    assert_alive(&mut sidecar);
}
