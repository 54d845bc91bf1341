//! The `rateLimit` stream filter end to end: real `sidecar` processes with the real Bolt Wasm
//! plugin, Envoy's real rate limit service (envoyproxy/ratelimit) and a real Redis, all on
//! loopback. `make test` starts the shared service and Redis (`tools/services.sh run`); tests
//! that stop the service start a private instance of their own on the same Redis.
//!
//! The limits are in configs/ratelimit/config/sidecar.yaml: every service named
//! `com.example.Limited*` gets 20 calls an hour, each name its own budget, and every tenant 5
//! calls an hour. Each test uses fresh names, so runs and tests never share a budget. If the
//! hour turns during a test, the service starts new windows and more calls pass: such an
//! attempt is repeated with fresh names. Nothing here measures time.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use integration::client::{BoltClient, ClientOptions};
use integration::echo::EchoServer;
use integration::harness::{
    admin_get, free_addr, mosn_config, patch, ClusterSpec, ListenerSpec, RateLimitEnv,
    RateLimitProcess, Sidecar,
};
use integration::wire::{Frame, Request};
use integration::ClientError;
use serde_json::{json, Value};
use tokio::task::JoinHandle;

// Bolt statuses as the SDK-built plugin maps the proxy codes: 503 → SERVER_THREADPOOL_BUSY.
const SUCCESS: u16 = 0;
const SERVER_THREADPOOL_BUSY: u16 = 4;
/// The shared budget of each `com.example.Limited*` service (configs/ratelimit).
const SERVICE_BUDGET: usize = 20;
/// The budget of each tenant (configs/ratelimit).
const TENANT_BUDGET: usize = 5;
const CLIENT_FIRST_ID: u32 = 2_000_000_000;

/// A name no other test or run used.
fn unique(prefix: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}.{}-{nanos}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// The index of the current hour (the service's window for `unit: hour`).
fn hour_window() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 3600)
}

/// A `rateLimit` stream filter asking the service at `rls`, with a generous timeout so that a
/// loaded machine never turns an answer into a failure.
fn rate_limit_filter(rls: SocketAddr, descriptors: Value, extra: Value) -> Value {
    let mut config = json!({
        "domain": "sidecar",
        "rate_limit_service": {"address": rls.to_string()},
        "timeout": "10s",
        "descriptors": descriptors,
    });
    for (k, v) in extra.as_object().expect("an object") {
        config[k] = v.clone();
    }
    json!({"type": "rateLimit", "config": config})
}

fn by_service() -> Value {
    json!([{"entries": [{"key": "service", "header": "service"}]}])
}

/// A sidecar with one listener per `(name, filter)` routing to `app`, two workers and an admin
/// API; returns it with the listeners' addresses and the admin address.
fn sidecar(app: SocketAddr, listeners: &[(&str, Value)]) -> (Sidecar, Vec<SocketAddr>, SocketAddr) {
    let admin = free_addr().unwrap();
    let mut cfg = mosn_config()
        .cluster(ClusterSpec::new("appCluster", vec![app]))
        .admin(admin);
    let mut addrs = Vec::new();
    for (name, filter) in listeners {
        let addr = free_addr().unwrap();
        cfg =
            cfg.listener(ListenerSpec::new(name, addr, "appCluster").stream_filter(filter.clone()));
        addrs.push(addr);
    }
    let mut cfg = cfg.build();
    assert!(patch(&mut cfg, "/servers/0/processor", json!(2)));
    (Sidecar::spawn(cfg).expect("sidecar starts"), addrs, admin)
}

async fn connect(addr: SocketAddr) -> Arc<BoltClient> {
    let options = ClientOptions {
        first_id: CLIENT_FIRST_ID,
        call_timeout: Duration::from_secs(30),
        ..ClientOptions::default()
    };
    let client = BoltClient::connect_with(addr, options)
        .await
        .expect("connect to the sidecar");
    Arc::new(client)
}

type Call = JoinHandle<Result<Frame, ClientError>>;

/// Starts `n` concurrent calls for `service` (with extra `headers`) on `client`.
fn start_calls(
    client: &Arc<BoltClient>,
    service: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> Vec<Call> {
    (0..n)
        .map(|i| {
            let mut req =
                Request::rpc(client.next_id(), Some(service), Bytes::from(format!("{i}")));
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let client = client.clone();
            tokio::spawn(async move { client.call(&req).await })
        })
        .collect()
}

/// The Bolt statuses of `started` calls, in order.
async fn statuses(started: Vec<Call>) -> Vec<u16> {
    let mut out = Vec::with_capacity(started.len());
    for call in started {
        let response = call.await.unwrap().expect("every call is answered");
        out.push(response.status().expect("a response status"));
    }
    out
}

/// `n` concurrent calls; their statuses.
async fn calls(
    client: &Arc<BoltClient>,
    service: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> Vec<u16> {
    statuses(start_calls(client, service, headers, n)).await
}

fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

/// Requests the app saw whose `header` is `value`.
fn seen_by_app(app: &EchoServer, header: &str, value: &str) -> usize {
    app.seen_requests()
        .iter()
        .filter(|r| r.frame.header(header) == Some(value.as_bytes()))
        .count()
}

/// The `rateLimit` counters of `listener`, once every request it received is finished.
async fn rate_limit_stats(admin: SocketAddr, listener: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = admin_get(admin, "/api/v1/stats")
            .await
            .expect("admin stats");
        let active = stats["downstream"]["downstream.proxy.global"]["request_active"].as_u64();
        if active == Some(0) || Instant::now() > deadline {
            // The listener's only stream filter is stream_filters[0].
            let key = format!("stream_filter.{listener}.stream_filters[0]");
            let mut counters = stats["downstream"][&key].clone();
            assert!(counters.is_object(), "no {key} in {stats}");
            counters.as_object_mut().unwrap().remove("latency_us_total");
            return counters;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn counters(
    calls: u64,
    ok: u64,
    over: u64,
    error: u64,
    open: u64,
    closed: u64,
    none: u64,
) -> Value {
    json!({"calls": calls, "ok": ok, "over_limit": over, "error": error, "fail_open": open,
           "fail_closed": closed, "no_descriptor": none})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sidecars_share_one_budget_and_rejected_calls_never_reach_the_app() {
    let Some(env) = RateLimitEnv::from_env() else {
        return;
    };
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let filter = rate_limit_filter(env.addr, by_service(), json!({}));
    let (_a, a_addrs, a_admin) = sidecar(app.local_addr(), &[("limited", filter.clone())]);
    let (_b, b_addrs, b_admin) = sidecar(app.local_addr(), &[("limited", filter)]);
    // Two connections to each sidecar, so that both workers of each ask the service.
    let clients = [
        connect(a_addrs[0]).await,
        connect(a_addrs[0]).await,
        connect(b_addrs[0]).await,
        connect(b_addrs[0]).await,
    ];
    let per_client = SERVICE_BUDGET / 2; // 2 × the budget in all

    let mut limited_calls = 0;
    let mut rejected = 0;
    for attempt in 0.. {
        let limited = unique("com.example.Limited.e2e");
        let window = hour_window();
        let started: Vec<Call> = clients
            .iter()
            .flat_map(|c| start_calls(c, &limited, &[], per_client))
            .collect();
        let statuses = statuses(started).await;
        limited_calls += statuses.len();
        rejected += count(&statuses, SERVER_THREADPOOL_BUSY);
        if hour_window() != window && attempt < 2 {
            continue;
        }
        assert_eq!(statuses.len(), 2 * SERVICE_BUDGET);
        assert_eq!(count(&statuses, SUCCESS), SERVICE_BUDGET, "{statuses:?}");
        assert_eq!(
            count(&statuses, SERVER_THREADPOOL_BUSY),
            SERVICE_BUDGET,
            "{statuses:?}"
        );
        // The rejected calls were answered by the sidecars: the app saw only the budget.
        assert_eq!(seen_by_app(&app, "service", &limited), SERVICE_BUDGET);
        break;
    }

    // Another service has no limit: all its calls pass, through both sidecars.
    let free = unique("com.example.Free.e2e");
    let started: Vec<Call> = clients
        .iter()
        .flat_map(|c| start_calls(c, &free, &[], 15))
        .collect();
    let free_statuses = statuses(started).await;
    assert_eq!(count(&free_statuses, SUCCESS), 60, "{free_statuses:?}");
    assert_eq!(seen_by_app(&app, "service", &free), 60);

    // Each sidecar counted its own calls; together they add up to every request.
    let a = rate_limit_stats(a_admin, "limited").await;
    let b = rate_limit_stats(b_admin, "limited").await;
    let sum = |k: &str| a[k].as_u64().unwrap() + b[k].as_u64().unwrap();
    assert_eq!(sum("calls"), (limited_calls + 60) as u64, "{a} {b}");
    assert_eq!(sum("over_limit"), rejected as u64, "{a} {b}");
    assert_eq!(sum("ok"), (limited_calls + 60 - rejected) as u64, "{a} {b}");
    assert_eq!(sum("error") + sum("no_descriptor"), 0, "{a} {b}");
    // Both sidecars took part.
    assert!(a["calls"].as_u64() > Some(0) && b["calls"].as_u64() > Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_service_fails_open_and_counts_or_rejects_with_failure_mode_deny() {
    let Some(env) = RateLimitEnv::from_env() else {
        return;
    };
    let mut rls = tokio::task::block_in_place(|| RateLimitProcess::start(&env))
        .expect("a private rate limit service starts");
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let open = rate_limit_filter(rls.grpc_addr(), by_service(), json!({}));
    let deny = rate_limit_filter(
        rls.grpc_addr(),
        by_service(),
        json!({"failure_mode_deny": true}),
    );
    let (_sidecar, addrs, admin) = sidecar(app.local_addr(), &[("open", open), ("deny", deny)]);
    let open_client = connect(addrs[0]).await;
    let deny_client = connect(addrs[1]).await;

    // While the service answers, both listeners let an unlimited service through.
    let before = unique("com.example.Free.up");
    assert_eq!(
        count(&calls(&open_client, &before, &[], 5).await, SUCCESS),
        5
    );
    assert_eq!(
        count(&calls(&deny_client, &before, &[], 5).await, SUCCESS),
        5
    );

    tokio::task::block_in_place(|| rls.stop());

    // Now every call fails: the open listener lets the requests through, the deny listener
    // answers them itself.
    let after = unique("com.example.Free.down");
    let open_statuses = calls(&open_client, &after, &[("side", "open")], 10).await;
    assert_eq!(count(&open_statuses, SUCCESS), 10, "{open_statuses:?}");
    let deny_statuses = calls(&deny_client, &after, &[("side", "deny")], 10).await;
    assert_eq!(
        count(&deny_statuses, SERVER_THREADPOOL_BUSY),
        10,
        "{deny_statuses:?}"
    );
    assert_eq!(seen_by_app(&app, "side", "open"), 10);
    assert_eq!(seen_by_app(&app, "side", "deny"), 0);

    assert_eq!(
        rate_limit_stats(admin, "open").await,
        counters(15, 5, 0, 10, 10, 0, 0)
    );
    assert_eq!(
        rate_limit_stats(admin, "deny").await,
        counters(15, 5, 0, 10, 0, 10, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn descriptors_come_from_headers_and_a_missing_header_makes_no_call() {
    let Some(env) = RateLimitEnv::from_env() else {
        return;
    };
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // [(generic_key, tenant-budget), (tenant, <tenant header>)]: Envoy's generic_key and
    // request_headers actions.
    let by_tenant = json!([{"entries": [
        {"value": "tenant-budget"},
        {"key": "tenant", "header": "tenant"}]}]);
    let filter = rate_limit_filter(env.addr, by_tenant, json!({}));
    let (_sidecar, addrs, admin) = sidecar(app.local_addr(), &[("tenants", filter)]);
    let client = connect(addrs[0]).await;
    let service = unique("com.example.Free.tenants");

    // Without the tenant header there is no descriptor: no call, the request goes on.
    assert_eq!(count(&calls(&client, &service, &[], 7).await, SUCCESS), 7);

    let mut rounds = 0;
    for attempt in 0.. {
        let tenant = unique("acme");
        let window = hour_window();
        let statuses = calls(&client, &service, &[("tenant", &tenant)], 8).await;
        rounds += 1;
        if hour_window() != window && attempt < 2 {
            continue;
        }
        assert_eq!(count(&statuses, SUCCESS), TENANT_BUDGET, "{statuses:?}");
        assert_eq!(count(&statuses, SERVER_THREADPOOL_BUSY), 8 - TENANT_BUDGET);
        assert_eq!(seen_by_app(&app, "tenant", &tenant), TENANT_BUDGET);
        break;
    }
    let stats = rate_limit_stats(admin, "tenants").await;
    assert_eq!(stats["calls"], 8 * rounds, "{stats}");
    assert_eq!(stats["no_descriptor"], 7, "{stats}");
    assert_eq!(stats["error"], 0, "{stats}");
    assert_eq!(stats["over_limit"], 3 * rounds, "{stats}");
}

#[test]
fn the_shipped_global_rate_limit_config_passes_sidecar_check() {
    let path =
        integration::harness::repo_root().join("configs/mosn_rpc_config_global_ratelimit.json");
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let out = Sidecar::run_check(cfg.clone()).expect("run check");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("rateLimit stream_filters[0]: asks 127.0.0.1:8081"),
        "the summary describes the filter: {text}"
    );

    // A misspelt field is an error naming its path, not a silently unlimited listener.
    let mut broken = cfg;
    let config = broken
        .pointer_mut("/servers/0/listeners/1/stream_filters/0/config")
        .and_then(Value::as_object_mut)
        .expect("the client listener's rateLimit config");
    let deny = config
        .remove("failure_mode_deny")
        .expect("failure_mode_deny");
    config.insert("failure_mode_denied".into(), deny);
    let out = Sidecar::run_check(broken).expect("run check");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("servers[0].listeners[1].stream_filters[0].config.failure_mode_denied"),
        "names the path: {text}"
    );
}
