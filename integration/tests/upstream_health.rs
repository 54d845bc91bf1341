//! Upstream host health through the real `sidecar` binary with the real Bolt Wasm plugin:
//! active health checks by heartbeat (a host that stops acknowledging heartbeats leaves the
//! rotation and comes back), outlier ejection on consecutive failed tries bounded by
//! `max_ejection_percent`, and the panic threshold (every host unhealthy: requests still go to
//! them). Steps are ordered by events (counters of the sidecar and of the echo servers); every
//! wait is bounded by [`WAIT`], and no assertion is on wall-clock speed (the times printed
//! are measurements).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use integration::client::BoltClient;
use integration::echo::EchoServer;
use integration::harness::{admin_get, admin_request, free_addr, ClusterSpec, MosnConfig, Sidecar};
use integration::harness::{cluster_counter, counted_client, eventually, host_counter};
use serde_json::{json, Value};

const SERVICE: &str = "com.alipay.test.TestService:1.0";
const SUCCESS: u16 = 0;
const CONNECTION_CLOSED: u16 = 16;
const CLUSTER: &str = "upstreamCluster";
/// Bound on every wait for an event.
const WAIT: Duration = Duration::from_secs(30);

struct Proxy {
    sidecar: Sidecar,
    listen: SocketAddr,
    admin: SocketAddr,
}

/// One sidecar (admin on) in front of `hosts`, round robin; `edit` adds the health settings.
fn proxy(hosts: Vec<SocketAddr>, edit: impl FnOnce(ClusterSpec) -> ClusterSpec) -> Proxy {
    let listen = free_addr().unwrap();
    let admin = free_addr().unwrap();
    let cfg = MosnConfig::single_hop(listen, hosts)
        .admin(admin)
        .edit_cluster(CLUSTER, |c| {
            edit(c.field("lb_type", json!("LB_ROUNDROBIN")))
        })
        .build();
    Proxy {
        sidecar: Sidecar::spawn(cfg).expect("sidecar starts"),
        listen,
        admin,
    }
}

impl Proxy {
    /// Counter `key` of host `host` in `upstream.host.<cluster>.<host>`.
    async fn host(&self, host: SocketAddr, key: &str) -> u64 {
        host_counter(self.admin, CLUSTER, &host.to_string(), key)
            .await
            .unwrap_or_else(|| panic!("no host counter {key}"))
    }

    /// Counter `key` of `upstream.cluster.<cluster>`.
    async fn cluster(&self, key: &str) -> u64 {
        cluster_counter(self.admin, CLUSTER, key)
            .await
            .unwrap_or_else(|| panic!("no cluster counter {key}"))
    }

    async fn client(&self) -> BoltClient {
        counted_client(self.listen).await
    }
}

/// One call that must succeed.
async fn call_ok(client: &BoltClient, what: &str) {
    let answer = client
        .rpc(SERVICE, "ping")
        .await
        .unwrap_or_else(|e| panic!("{what}: call failed: {e}"));
    assert_eq!(answer.status(), Some(SUCCESS), "{what}: {answer:?}");
}

async fn echo() -> EchoServer {
    EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

fn heartbeat_check(interval: &str, timeout: &str) -> Value {
    json!({"protocol": "bolt", "interval": interval, "timeout": timeout,
           "unhealthy_threshold": 2, "healthy_threshold": 2})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_that_stops_acking_heartbeats_leaves_the_rotation_and_returns() {
    let (a, b) = (echo().await, echo().await);
    let (ha, hb) = (a.local_addr(), b.local_addr());
    let p = proxy(vec![ha, hb], |c| {
        c.field("health_check", heartbeat_check("200ms", "300ms"))
    });
    let client = p.client().await;
    // Both hosts pass their first checks and both serve.
    for h in [ha, hb] {
        let passed = eventually(
            WAIT,
            async || p.host(h, "health_check_success").await,
            |n| *n >= 1,
        )
        .await;
        assert!(passed >= 1, "{h} passes its checks");
        assert_eq!(p.host(h, "healthy").await, 1);
    }
    assert_eq!(p.cluster("healthy_hosts").await, 2);
    let mut calls = 0u64;
    for _ in 0..20 {
        call_ok(&client, "both healthy").await;
        calls += 1;
    }
    assert!(a.counters().requests > 0 && b.counters().requests > 0);

    // B stops acknowledging heartbeats (it still answers requests). Calls go on meanwhile:
    // none may fail.
    b.answer_heartbeats(false);
    let silenced = Instant::now();
    let left = eventually(
        WAIT,
        async || {
            call_ok(&client, "while b goes unhealthy").await;
            calls += 1;
            p.host(hb, "healthy").await
        },
        |h| *h == 0,
    )
    .await;
    let took = silenced.elapsed();
    assert_eq!(left, 0, "b is marked unhealthy");
    assert!(
        b.counters().heartbeats_ignored >= 2,
        "unhealthy only after unhealthy_threshold unanswered checks: {:?}",
        b.counters()
    );
    assert!(p.host(hb, "health_check_failure").await >= 2);
    assert_eq!(p.host(ha, "healthy").await, 1);
    assert_eq!(p.cluster("healthy_hosts").await, 1);
    assert_eq!(p.cluster("panic_mode").await, 0, "1 of 2 is not below 50%");
    eprintln!("b out of rotation {took:?} after its heartbeats stopped (2 × (200ms + 300ms timeout) expected)");

    // Out of rotation: B gets no request.
    let b_before = b.counters().requests;
    let a_before = a.counters().requests;
    for _ in 0..30 {
        call_ok(&client, "b out").await;
        calls += 1;
    }
    assert_eq!(b.counters().requests, b_before, "no request reaches b");
    assert_eq!(a.counters().requests, a_before + 30);
    let metrics = admin_request(p.admin, "GET", "/metrics", "")
        .await
        .expect("metrics")
        .body;
    let line = format!("sidecar_upstream_host_healthy{{cluster=\"{CLUSTER}\",host=\"{hb}\"}} 0");
    assert!(metrics.contains(&line), "{line} in\n{metrics}");
    assert!(metrics.contains(&format!(
        "sidecar_upstream_healthy_hosts{{cluster=\"{CLUSTER}\"}} 1"
    )));

    // B acknowledges again: back after healthy_threshold passes, and it serves again.
    b.answer_heartbeats(true);
    let back = eventually(
        WAIT,
        async || {
            call_ok(&client, "while b recovers").await;
            calls += 1;
            p.host(hb, "healthy").await
        },
        |h| *h == 1,
    )
    .await;
    assert_eq!(back, 1, "b is healthy again");
    let served = eventually(
        WAIT,
        async || {
            call_ok(&client, "b back").await;
            calls += 1;
            b.counters().requests
        },
        |n| *n > b_before,
    )
    .await;
    assert!(served > b_before, "b serves again");
    let dump = admin_get(p.admin, &format!("/api/v1/config_dump?cluster={CLUSTER}"))
        .await
        .expect("config dump");
    assert_eq!(dump["health_check"]["kind"], "protocol heartbeat", "{dump}");
    assert_eq!(dump["health_check"]["interval"], "200ms", "{dump}");
    assert_eq!(dump["healthy_panic_threshold"], 50, "{dump}");
    let log = p.sidecar.log_contents();
    assert!(log.contains("upstream host unhealthy"), "{log}");
    assert!(log.contains("upstream host healthy again"), "{log}");
    assert!(log.contains("active health checks started"), "{log}");
    eprintln!("{calls} calls, every one answered by the app");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consecutive_failures_eject_a_host_within_max_ejection_percent_and_it_returns() {
    let a = echo().await;
    let ha = a.local_addr();
    // Nothing listens on these: every connect is refused.
    let (hb, hc) = (free_addr().unwrap(), free_addr().unwrap());
    let p = proxy(vec![ha, hb, hc], |c| {
        c.connect_timeout("1s").field(
            "outlier_detection",
            json!({"consecutive_errors": 3, "base_ejection_time": "1s",
                   "max_ejection_percent": 50, "interval": "10s"}),
        )
    });
    let client = p.client().await;
    let ejections = async |p: &Proxy| {
        p.host(hb, "outlier_ejections").await + p.host(hc, "outlier_ejections").await
    };
    // Calls until one dead host is ejected and the other was refused for the 50% bound.
    // Connect failures are retried on the next host choice; a call whose three tries all
    // hit dead hosts (round robin can pick one twice when the healthy set changes between
    // tries) is answered CONNECTION_CLOSED by the sidecar.
    let mut calls = 0u64;
    let mut failed = 0u64;
    let mut most_ejected = 0;
    let (ejected, overflow) = eventually(
        WAIT,
        async || {
            let answer = client.rpc(SERVICE, "ping").await.expect("answered");
            match answer.status() {
                Some(SUCCESS) => {}
                Some(CONNECTION_CLOSED) => failed += 1,
                other => panic!("unexpected status {other:?}"),
            }
            calls += 1;
            let now_ejected = p.host(hb, "ejected").await + p.host(hc, "ejected").await;
            most_ejected = most_ejected.max(now_ejected);
            (
                ejections(&p).await,
                p.cluster("outlier_ejections_overflow").await,
            )
        },
        |(e, o)| *e >= 1 && *o >= 1,
    )
    .await;
    assert!(ejected >= 1, "a dead host was ejected");
    assert!(
        overflow >= 1,
        "the second dead host was held back by max_ejection_percent"
    );
    assert!(most_ejected <= 1, "never 2 of 3 hosts ejected at 50%");
    assert_eq!(
        p.host(ha, "outlier_ejections").await,
        0,
        "the live host never"
    );
    assert_eq!(p.host(ha, "ejected").await, 0);
    assert!(failed < calls, "calls reach the live host");
    eprintln!("ejection and overflow after {calls} calls ({failed} answered CONNECTION_CLOSED)");

    // Without traffic nothing fails: the ejected host returns after its ejection time.
    let still = eventually(
        WAIT,
        async || p.host(hb, "ejected").await + p.host(hc, "ejected").await,
        |n| *n == 0,
    )
    .await;
    assert_eq!(
        still, 0,
        "the ejected host is back after base_ejection_time"
    );
    assert_eq!(p.cluster("healthy_hosts").await, 3);
    let log = p.sidecar.log_contents();
    assert!(log.contains("upstream host ejected"), "{log}");
    assert!(log.contains("max_ejection_percent reached"), "{log}");
    assert!(log.contains("back from outlier ejection"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_every_host_unhealthy_the_panic_threshold_still_sends_requests_to_them() {
    let (a, b) = (echo().await, echo().await);
    let (ha, hb) = (a.local_addr(), b.local_addr());
    a.answer_heartbeats(false);
    b.answer_heartbeats(false);
    let p = proxy(vec![ha, hb], |c| {
        c.field("health_check", heartbeat_check("100ms", "200ms"))
    });
    let panic = eventually(WAIT, async || p.cluster("panic_mode").await, |n| *n == 1).await;
    assert_eq!(panic, 1, "0 of 2 healthy is below 50%: panic mode");
    assert_eq!(p.cluster("healthy_hosts").await, 0);
    assert_eq!(p.host(ha, "healthy").await, 0);
    assert_eq!(p.host(hb, "healthy").await, 0);

    let client = p.client().await;
    let (a0, b0) = (a.counters().requests, b.counters().requests);
    for _ in 0..20 {
        call_ok(&client, "every host unhealthy").await;
    }
    assert!(
        a.counters().requests > a0 && b.counters().requests > b0,
        "in panic mode both hosts serve: {:?} {:?}",
        a.counters(),
        b.counters()
    );
    assert!(p.sidecar.log_contents().contains("panic mode"));

    // One host recovers: 1 of 2 is not below 50%, so only it serves.
    a.answer_heartbeats(true);
    let healthy = eventually(WAIT, async || p.cluster("panic_mode").await, |n| *n == 0).await;
    assert_eq!(healthy, 0, "panic over");
    assert_eq!(p.host(ha, "healthy").await, 1);
    let b1 = b.counters().requests;
    for _ in 0..20 {
        call_ok(&client, "a healthy, b not").await;
    }
    assert_eq!(
        b.counters().requests,
        b1,
        "out of panic, unhealthy b gets nothing"
    );
}

#[tokio::test]
async fn check_and_config_dump_report_the_health_settings() {
    let hosts = vec![free_addr().unwrap()];
    let listen = free_addr().unwrap();
    let cfg = MosnConfig::single_hop(listen, hosts)
        .edit_cluster(CLUSTER, |c| {
            c.field(
                "health_check",
                json!({"protocol": "bolt", "interval": "2s", "check_path": "/x"}),
            )
            .field("outlier_detection", json!({"consecutive_errors": 7}))
            .field("healthy_panic_threshold", json!(30))
        })
        .build();
    let out = Sidecar::run_check(cfg).expect("check runs");
    assert!(out.status.success(), "{}{}", out.stdout, out.stderr);
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("health check: protocol heartbeat every 2s"),
        "{text}"
    );
    assert!(
        text.contains("outlier detection: eject after 7 consecutive failures"),
        "{text}"
    );
    assert!(text.contains("panic threshold: 30% healthy"), "{text}");
    assert!(text.contains("health_check.check_path"), "{text}");
    assert!(
        !text.contains("not supported; hosts stay healthy"),
        "{text}"
    );
}
