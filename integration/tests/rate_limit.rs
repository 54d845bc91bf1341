//! End-to-end: local rate limits, concurrency limits and fault injection (`stream_filters`)
//! through the real `sidecar` binary with the real Bolt Wasm plugin, a Rust Bolt echo server
//! and client over loopback. Rejected calls are answered through the plugin's hijack and never
//! reach the echo server, whose own request count proves it. Events are ordered explicitly
//! (wait until the server saw N requests, until a counter reads N) and every bound on time is
//! computed from the measured elapsed time; no wall-clock duration is asserted as an upper bound.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use integration::client::{BoltClient, ClientOptions};
use integration::echo::{EchoServer, DELAY_HEADER, STATUS_HEADER};
use integration::harness::{
    admin_get, free_addr, patch, repo_root, ClusterSpec, MosnConfig, Sidecar,
};
use integration::wire::{status, Request};
use serde_json::{json, Value};
use tokio::task::JoinSet;

const SERVICE: &str = "com.alipay.test.TestService:1.0";
const OTHER: &str = "com.alipay.test.OtherService:1.0";
const DEAD: &str = "com.alipay.test.DeadService:1.0";
/// Client ids far above anything the sidecar assigns upstream.
const CLIENT_FIRST_ID: u32 = 2_000_000_000;
/// Bound on every wait for an event (a counter, a request count).
const WAIT: Duration = Duration::from_secs(15);

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn connect(addr: SocketAddr) -> Arc<BoltClient> {
    let options = ClientOptions {
        first_id: CLIENT_FIRST_ID,
        call_timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    };
    Arc::new(
        BoltClient::connect_with(addr, options)
            .await
            .expect("connect to the sidecar"),
    )
}

/// A sidecar with one listener (`listener`, stream filters `filters`) in front of `app`, the
/// admin API on, `processor` workers; `edit` adjusts the config before it is built.
struct Proxy {
    /// Kept running for the test; killed on drop.
    _sidecar: Sidecar,
    listen: SocketAddr,
    admin: SocketAddr,
}

fn proxy(app: SocketAddr, processor: u32, filters: Vec<Value>) -> Proxy {
    proxy_with(app, processor, filters, |c| c, |_| {})
}

fn proxy_with(
    app: SocketAddr,
    processor: u32,
    filters: Vec<Value>,
    edit: impl FnOnce(MosnConfig) -> MosnConfig,
    patch_json: impl FnOnce(&mut Value),
) -> Proxy {
    let listen = free_addr().unwrap();
    let admin = free_addr().unwrap();
    let mut cfg = edit(
        MosnConfig::single_hop(listen, vec![app])
            .admin(admin)
            .edit_listener("listener", |mut l| {
                l.stream_filters = filters;
                l
            }),
    )
    .build();
    assert!(patch(&mut cfg, "/servers/0/processor", json!(processor)));
    patch_json(&mut cfg);
    let sidecar = Sidecar::spawn(cfg).expect("sidecar starts");
    Proxy {
        _sidecar: sidecar,
        listen,
        admin,
    }
}

fn flow_control(monitor: bool, rules: Value) -> Value {
    json!({"type": "flowControlFilter", "config": {
        "global_switch": true, "monitor": monitor,
        "limit_key_type": "HEADER", "limit_key": "{service}",
        "action": {"status": 503},
        "rules": rules,
    }})
}

impl Proxy {
    async fn stats(&self) -> Value {
        admin_get(self.admin, "/api/v1/stats")
            .await
            .expect("admin stats")
    }

    /// Polls the counters until `pred` holds (bounded by [`WAIT`]); returns the last reading.
    async fn stats_when(&self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + WAIT;
        loop {
            let stats = self.stats().await;
            if pred(&stats) {
                return stats;
            }
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}: {stats}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The counters once no request is active, checked to add up: every request has exactly
    /// one outcome.
    async fn quiet_stats(&self) -> Value {
        let stats = self
            .stats_when("no active request", |s| global(s, "request_active") == 0)
            .await;
        assert_eq!(
            global(&stats, "request_total"),
            global(&stats, "response_forwarded")
                + global(&stats, "oneway_forwarded")
                + global(&stats, "hijacked")
                + global(&stats, "reset"),
            "{stats}"
        );
        assert!(
            global(&stats, "hijacked_rate_limited") + global(&stats, "hijacked_fault_abort")
                <= global(&stats, "hijacked")
        );
        stats
    }
}

fn global(stats: &Value, key: &str) -> u64 {
    let g = &stats["downstream"]["downstream.proxy.global"];
    g[key]
        .as_u64()
        .unwrap_or_else(|| panic!("counter {key} in {g}"))
}

fn filter_stat(stats: &Value, namespace: &str, key: &str) -> u64 {
    let ns = &stats["downstream"][namespace];
    ns[key]
        .as_u64()
        .unwrap_or_else(|| panic!("counter {key} of {namespace} in {stats}"))
}

/// Starts `n` concurrent calls of `service` on `client`, each with the request `tweak` makes.
fn spawn_calls(
    set: &mut JoinSet<Option<u16>>,
    client: &Arc<BoltClient>,
    n: usize,
    service: &'static str,
    tweak: impl Fn(Request) -> Request,
) {
    for i in 0..n {
        let client = Arc::clone(client);
        let req = tweak(Request::rpc(
            client.next_id(),
            Some(service),
            Bytes::from(format!("{service}-{i}")),
        ));
        set.spawn(async move {
            match client.call(&req).await {
                Ok(r) => {
                    assert_eq!(r.id(), req.head.id, "the answer carries the caller's id");
                    r.status()
                }
                Err(_) => None,
            }
        });
    }
}

async fn statuses(mut set: JoinSet<Option<u16>>) -> Vec<Option<u16>> {
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        out.push(r.expect("call task"));
    }
    out
}

fn count(statuses: &[Option<u16>], status: u16) -> u64 {
    statuses.iter().filter(|s| **s == Some(status)).count() as u64
}

/// Most calls a token bucket of `burst` at `rate`/s can admit within `elapsed`, plus one for
/// the window's edges.
fn bucket_bound(burst: u64, rate: f64, elapsed: Duration) -> u64 {
    burst + (rate * elapsed.as_secs_f64()).floor() as u64 + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limit_admits_the_burst_and_answers_the_rest_server_busy() {
    let app = EchoServer::start(any_port()).await.unwrap();
    let rule = json!([{"id": "limited", "resource": SERVICE, "grade": 1, "threshold": 10}]);
    let p = proxy(app.local_addr(), 1, vec![flow_control(false, rule)]);
    let client = connect(p.listen).await;

    // 100 calls at once on one connection.
    let start = Instant::now();
    let mut set = JoinSet::new();
    spawn_calls(&mut set, &client, 100, SERVICE, |r| r);
    let limited = statuses(set).await;
    let elapsed = start.elapsed();
    let admitted = count(&limited, status::SUCCESS);
    let rejected = count(&limited, status::SERVER_THREADPOOL_BUSY);
    assert_eq!(
        admitted + rejected,
        100,
        "only SUCCESS or busy: {limited:?}"
    );
    // The bucket starts full: the burst (10) passes; then at most 10/s more.
    assert!(admitted >= 10, "admitted {admitted}");
    let bound = bucket_bound(10, 10.0, elapsed);
    assert!(
        admitted <= bound,
        "admitted {admitted} > {bound} in {elapsed:?}"
    );

    // Another service on the same connection is not limited.
    let mut set = JoinSet::new();
    spawn_calls(&mut set, &client, 50, OTHER, |r| r);
    let other = statuses(set).await;
    assert_eq!(count(&other, status::SUCCESS), 50, "{other:?}");

    // Rejected calls never reached the server.
    assert_eq!(app.counters().requests, admitted + 50);
    let stats = p.quiet_stats().await;
    assert_eq!(global(&stats, "hijacked_rate_limited"), rejected);
    assert_eq!(global(&stats, "request_503_total"), rejected);
    let ns = "stream_filter.listener.limited";
    assert_eq!(filter_stat(&stats, ns, "rejected"), rejected);
    assert_eq!(filter_stat(&stats, ns, "passed"), admitted);
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_workers_the_rate_holds_for_the_whole_process() {
    let app = EchoServer::start(any_port()).await.unwrap();
    let rule = json!([{"id": "shared", "resource": SERVICE, "grade": 1, "threshold": 20}]);
    let p = proxy(app.local_addr(), 2, vec![flow_control(false, rule)]);
    // Connections are handed to the workers in turn: 8 connections, 4 per worker.
    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(connect(p.listen).await);
    }
    let start = Instant::now();
    let mut set = JoinSet::new();
    for c in &clients {
        spawn_calls(&mut set, c, 50, SERVICE, |r| r);
    }
    let all = statuses(set).await;
    let elapsed = start.elapsed();
    let admitted = count(&all, status::SUCCESS);
    let rejected = count(&all, status::SERVER_THREADPOOL_BUSY);
    assert_eq!(admitted + rejected, 400, "{all:?}");
    // One process-wide bucket (burst 20, 20/s): a bucket per worker would admit about twice.
    assert!(admitted >= 20, "admitted {admitted}");
    let bound = bucket_bound(20, 20.0, elapsed);
    assert!(
        admitted <= bound,
        "admitted {admitted} > {bound} in {elapsed:?}: the rate is per worker, not per process"
    );
    assert_eq!(app.counters().requests, admitted);
    let stats = p.quiet_stats().await;
    assert_eq!(
        filter_stat(&stats, "stream_filter.listener.shared", "rejected"),
        rejected
    );
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_paces_calls_and_rejects_those_that_would_wait_too_long() {
    let app = EchoServer::start(any_port()).await.unwrap();
    // Sentinel's throttling: one call per 100 ms, a call may wait up to 1 s for its turn.
    let rule = json!([{"id": "paced", "resource": SERVICE, "grade": 1, "threshold": 10,
                       "controlBehavior": 1, "maxQueueingTimeMs": 1000}]);
    let p = proxy(app.local_addr(), 2, vec![flow_control(false, rule)]);
    let client = connect(p.listen).await;
    let start = Instant::now();
    let mut set = JoinSet::new();
    spawn_calls(&mut set, &client, 25, SERVICE, |r| r.timeout_ms(10_000));
    let all = statuses(set).await;
    let elapsed = start.elapsed();
    let admitted = count(&all, status::SUCCESS);
    assert_eq!(
        admitted + count(&all, status::SERVER_THREADPOOL_BUSY),
        25,
        "{all:?}"
    );
    // Calls arriving together: the first at once and ten more within the 1 s queueing bound.
    assert!(admitted >= 11, "admitted {admitted}");
    assert!(
        admitted <= bucket_bound(1, 10.0, elapsed),
        "admitted {admitted} in {elapsed:?}"
    );
    // Paced, not bunched: n admitted calls span at least n - 1 intervals.
    let paced = Duration::from_millis(100) * (admitted as u32 - 1);
    assert!(elapsed >= paced, "{admitted} calls in {elapsed:?}");
    let stats = p.quiet_stats().await;
    let ns = "stream_filter.listener.paced";
    assert_eq!(filter_stat(&stats, ns, "passed"), admitted);
    assert!(filter_stat(&stats, ns, "queued") >= 10, "{stats}");
    assert_eq!(app.counters().requests, admitted);
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_concurrency_limit_rejects_the_sixth_call_and_every_ending_frees_its_slot() {
    let app = EchoServer::start(any_port()).await.unwrap();
    let dead = free_addr().unwrap(); // nothing listens: connect failures, retried, then 502
    let rule = json!([{"id": "in-flight", "resource": ".*", "regex": true, "grade": 0,
                       "threshold": 5}]);
    let p = proxy_with(
        app.local_addr(),
        2,
        vec![flow_control(false, rule)],
        |c| c.cluster(ClusterSpec::new("deadCluster", vec![dead]).connect_timeout("1s")),
        |cfg| {
            // Calls for DEAD go to the dead cluster, the rest to the echo server.
            let routes = cfg
                .pointer_mut("/servers/0/routers/0/virtual_hosts/0/routers")
                .and_then(Value::as_array_mut)
                .expect("routes");
            routes.insert(
                0,
                json!({"match": {"headers": [{"name": "service", "value": DEAD}]},
                       "route": {"cluster_name": "deadCluster"}}),
            );
        },
    );
    let ns = "stream_filter.listener.in-flight";
    let active = |s: &Value| filter_stat(s, ns, "active");
    let (c1, c2, c3) = (
        connect(p.listen).await,
        connect(p.listen).await,
        connect(p.listen).await,
    );
    // Long request timeouts: these calls end only as the test decides.
    let slow = |ms: &'static str| move |r: Request| r.header(DELAY_HEADER, ms).timeout_ms(20_000);

    // Five slow calls fill the limit: 3 that will be answered, 2 whose client will go away.
    let mut answered = JoinSet::new();
    spawn_calls(&mut answered, &c1, 3, SERVICE, slow("1500"));
    let mut abandoned = JoinSet::new();
    spawn_calls(&mut abandoned, &c2, 2, SERVICE, slow("5000"));
    assert!(
        app.wait_for(WAIT, |c| c.requests == 5).await,
        "5 calls reach the app"
    );
    let sixth = c3.rpc(SERVICE, "sixth").await.expect("an answer, at once");
    assert_eq!(sixth.status(), Some(status::SERVER_THREADPOOL_BUSY));
    assert_eq!(active(&p.stats().await), 5);

    // Client disconnect: its two slots come back.
    c2.close();
    for s in statuses(abandoned).await {
        assert_eq!(s, None, "the closed client's calls fail locally");
    }
    p.stats_when("slots of the closed client freed", |s| active(s) == 3)
        .await;

    // One at a time beside the 3 in flight: an error response, a retry giving up, a timeout.
    let error = c3
        .call(&Request::rpc(c3.next_id(), Some(SERVICE), "err").header(STATUS_HEADER, "2"))
        .await
        .unwrap();
    assert_eq!(error.status(), Some(status::SERVER_EXCEPTION));
    let gave_up = c3.rpc(DEAD, "dead").await.unwrap();
    assert_eq!(gave_up.status(), Some(status::CONNECTION_CLOSED));
    let timed_out = c3
        .call(
            &Request::rpc(c3.next_id(), Some(SERVICE), "late")
                .timeout_ms(300)
                .header(DELAY_HEADER, "3000"),
        )
        .await
        .unwrap();
    assert_eq!(timed_out.status(), Some(status::TIMEOUT));

    // The three slow calls get their responses.
    for s in statuses(answered).await {
        assert_eq!(s, Some(status::SUCCESS));
    }
    // Every slot is back, exactly: five fit again and the sixth is refused again.
    p.stats_when("every slot freed", |s| active(s) == 0).await;
    let before = app.counters().requests;
    let mut again = JoinSet::new();
    spawn_calls(&mut again, &c1, 5, SERVICE, slow("1000"));
    assert!(
        app.wait_for(WAIT, |c| c.requests == before + 5).await,
        "five calls admitted again"
    );
    let sixth = c3.rpc(SERVICE, "sixth again").await.unwrap();
    assert_eq!(sixth.status(), Some(status::SERVER_THREADPOOL_BUSY));
    for s in statuses(again).await {
        assert_eq!(s, Some(status::SUCCESS));
    }
    let stats = p
        .stats_when("every slot freed at the end", |s| active(s) == 0)
        .await;
    assert_eq!(filter_stat(&stats, ns, "rejected"), 2);
    assert_eq!(filter_stat(&stats, ns, "max_active"), 5);
    let stats = p.quiet_stats().await;
    assert_eq!(global(&stats, "hijacked_rate_limited"), 2);
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_mode_counts_what_it_would_reject_and_forwards_it() {
    let app = EchoServer::start(any_port()).await.unwrap();
    // Threshold 0: every call is over the limit.
    let rule = json!([{"id": "watch", "resource": SERVICE, "grade": 1, "threshold": 0}]);
    let p = proxy(app.local_addr(), 2, vec![flow_control(true, rule)]);
    let client = connect(p.listen).await;
    let mut set = JoinSet::new();
    spawn_calls(&mut set, &client, 20, SERVICE, |r| r);
    let all = statuses(set).await;
    assert_eq!(count(&all, status::SUCCESS), 20, "{all:?}");
    assert_eq!(app.counters().requests, 20);
    let stats = p.quiet_stats().await;
    let ns = "stream_filter.listener.watch";
    assert_eq!(filter_stat(&stats, ns, "monitored"), 20);
    assert_eq!(filter_stat(&stats, ns, "rejected"), 0);
    assert_eq!(global(&stats, "hijacked_rate_limited"), 0);
    assert_eq!(global(&stats, "response_forwarded"), 20);
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneway_requests_over_the_limit_are_dropped_and_counted() {
    let app = EchoServer::start(any_port()).await.unwrap();
    let rule = json!([{"id": "no-oneway", "resource": SERVICE, "grade": 1, "threshold": 0}]);
    let p = proxy(app.local_addr(), 2, vec![flow_control(false, rule)]);
    let client = connect(p.listen).await;
    for i in 0..10 {
        let req = Request::rpc(client.next_id(), Some(SERVICE), format!("ow-{i}"));
        client.send_oneway(&req).unwrap();
    }
    let stats = p
        .stats_when("10 oneway requests dropped", |s| {
            global(s, "oneway_rate_limited") == 10
        })
        .await;
    assert_eq!(
        filter_stat(&stats, "stream_filter.listener.no-oneway", "oneway_dropped"),
        10
    );
    // A oneway of another service passes, and a call after it is answered: the dropped ones
    // got no answer and never reached the app.
    let ok = Request::rpc(client.next_id(), Some(OTHER), "ow-other");
    client.send_oneway(&ok).unwrap();
    assert!(app.wait_for(WAIT, |c| c.oneways == 1).await);
    assert_eq!(
        client.rpc(OTHER, "after").await.unwrap().status(),
        Some(status::SUCCESS)
    );
    assert!(client
        .next_unsolicited(Duration::from_millis(200))
        .await
        .is_none());
    assert_eq!(app.counters().oneways, 1);
    let stats = p.quiet_stats().await;
    assert_eq!(global(&stats, "oneway_forwarded"), 11);
    assert_eq!(global(&stats, "hijacked"), 0);
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abort_at_100_percent_answers_every_matching_call_itself() {
    let app = EchoServer::start(any_port()).await.unwrap();
    let filters = vec![
        json!({"type": "fault", "config": {
            "abort": {"status": 500, "percentage": 100},
            "headers": [{"name": "x-fault", "value": "abort"}]}}),
        // Only for a cluster nothing is routed to: never applies.
        json!({"type": "fault", "config": {
            "abort": {"status": 504, "percentage": 100}, "upstream_cluster": "idleCluster"}}),
    ];
    let p = proxy_with(
        app.local_addr(),
        2,
        filters,
        |c| c.cluster(ClusterSpec::new("idleCluster", vec![app.local_addr()])),
        |_| {},
    );
    let client = connect(p.listen).await;
    let mut set = JoinSet::new();
    spawn_calls(&mut set, &client, 20, SERVICE, |r| {
        r.header("x-fault", "abort")
    });
    let aborted = statuses(set).await;
    assert_eq!(
        count(&aborted, status::UNKNOWN),
        20,
        "500 → UNKNOWN: {aborted:?}"
    );
    let mut set = JoinSet::new();
    spawn_calls(&mut set, &client, 20, SERVICE, |r| r);
    let passed = statuses(set).await;
    assert_eq!(count(&passed, status::SUCCESS), 20, "{passed:?}");
    assert_eq!(
        app.counters().requests,
        20,
        "aborted calls never reach the app"
    );
    let stats = p.quiet_stats().await;
    assert_eq!(global(&stats, "hijacked_fault_abort"), 20);
    assert_eq!(global(&stats, "request_500_total"), 20);
    assert_eq!(global(&stats, "request_504_total"), 0);
    assert_eq!(
        filter_stat(
            &stats,
            "stream_filter.listener.stream_filters[0]",
            "aborted"
        ),
        20
    );
    assert_eq!(
        filter_stat(
            &stats,
            "stream_filter.listener.stream_filters[1]",
            "aborted"
        ),
        0
    );
    drop(p);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_delay_adds_at_least_the_delay_and_counts_against_the_timeout() {
    let app = EchoServer::start(any_port()).await.unwrap();
    let delay = Duration::from_millis(300);
    let filters = vec![json!({"type": "fault", "config": {
        "delay": {"fixed_delay": "300ms", "percentage": 100}}})];
    let p = proxy(app.local_addr(), 2, filters);
    let client = connect(p.listen).await;
    for i in 0..3 {
        let start = Instant::now();
        let r = client.rpc(SERVICE, format!("d{i}")).await.unwrap();
        let took = start.elapsed();
        assert_eq!(r.status(), Some(status::SUCCESS));
        assert!(
            took >= delay,
            "call {i} took {took:?}, less than the injected {delay:?}"
        );
    }
    // A request whose timeout is shorter than the delay times out before reaching the app.
    let r = client
        .call(&Request::rpc(client.next_id(), Some(SERVICE), "short").timeout_ms(100))
        .await
        .unwrap();
    assert_eq!(r.status(), Some(status::TIMEOUT));
    let stats = p.quiet_stats().await;
    assert_eq!(app.counters().requests, 3);
    assert_eq!(
        filter_stat(
            &stats,
            "stream_filter.listener.stream_filters[0]",
            "delayed"
        ),
        4
    );
    drop(p);
}

#[test]
fn the_shipped_rate_limit_config_passes_sidecar_check() {
    let path = repo_root().join("configs/mosn_rpc_config_ratelimit.json");
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let out = Sidecar::run_check(cfg.clone()).expect("run check");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(out.status.success(), "{text}");
    for needle in [
        "flowControlFilter",
        "test-service-rate",
        "test-service-in-flight",
        "demo-services-rate",
        "monitor only",
        "fault stream_filters[2]",
    ] {
        assert!(text.contains(needle), "summary mentions {needle}: {text}");
    }

    // A misspelt optional field is an error with its path, not a silently ignored setting.
    let mut broken = cfg;
    let rule = broken
        .pointer_mut("/servers/0/listeners/0/stream_filters/0/config/rules/0")
        .and_then(Value::as_object_mut)
        .expect("first rule");
    let burst = rule.remove("burst").expect("burst");
    rule.insert("brust".into(), burst);
    let out = Sidecar::run_check(broken).expect("run check");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("servers[0].listeners[0].stream_filters[0].config.rules[0].brust"),
        "names the path: {text}"
    );
}
