//! Resilience of the real `sidecar` binary: upstream keepalive (acks and misses, periodic
//! heartbeats finding a blackholed busy upstream), ping-pong
//! pools, retries past a dead host, the max-requests circuit breaker, header decode errors,
//! and plugins that trap, loop or exhaust memory. Concurrency is set up with answers the backend
//! holds back until released, not with delays.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use integration::blackhole::Blackhole;
use integration::client::{BoltClient, ClientOptions};
use integration::echo::{EchoServer, HOLD_HEADER};
use integration::harness;
use integration::harness::eventually;
use integration::harness::{free_addr, ClusterSpec, MosnConfig, Sidecar};
use integration::wire::{FrameReader, Request};
use serde_json::json;
use tokio::io::AsyncReadExt;

const SERVICE: &str = "com.alipay.test.TestService:1.0";
const SUCCESS: u16 = 0;
const SERVER_THREADPOOL_BUSY: u16 = 4;
const UNKNOWN: u16 = 3;
/// Frame timeout of calls the app holds: far beyond any step of a test, so only the release
/// decides when they are answered.
const HELD_TIMEOUT_MS: i32 = 60_000;

async fn connect(addr: SocketAddr) -> BoltClient {
    BoltClient::connect_with(
        addr,
        ClientOptions {
            first_id: 2_000_000_000,
            call_timeout: Duration::from_secs(20),
            ..ClientOptions::default()
        },
    )
    .await
    .expect("connect")
}

fn one_hop(
    upstream: Vec<SocketAddr>,
    edit: impl FnOnce(ClusterSpec) -> ClusterSpec,
) -> (Sidecar, SocketAddr) {
    one_hop_with(upstream, edit, |c| c)
}

fn one_hop_with(
    upstream: Vec<SocketAddr>,
    edit: impl FnOnce(ClusterSpec) -> ClusterSpec,
    config: impl FnOnce(MosnConfig) -> MosnConfig,
) -> (Sidecar, SocketAddr) {
    let listen = free_addr().unwrap();
    let cfg = config(MosnConfig::single_hop(listen, upstream))
        .edit_cluster("upstreamCluster", edit)
        .build();
    (Sidecar::spawn(cfg).expect("sidecar starts"), listen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_upstream_gets_heartbeats_and_stays_open() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (_sidecar, listen) = one_hop(vec![app.local_addr()], |c| {
        c.field("keepalive", json!({"idle": "300ms", "timeout": "1s"}))
    });
    let client = connect(listen).await;
    assert_eq!(
        client.rpc(SERVICE, "open").await.unwrap().status(),
        Some(SUCCESS)
    );
    assert!(
        app.wait_for(Duration::from_secs(10), |c| c.heartbeats >= 3)
            .await,
        "the sidecar sends heartbeats on its idle upstream connection"
    );
    let conns = app.connections();
    assert_eq!(conns.len(), 1);
    assert!(
        conns[0].open,
        "acknowledged heartbeats keep the connection open"
    );
    // Acks are consumed by the sidecar, never forwarded to the client.
    assert!(client
        .next_unsolicited(Duration::from_millis(200))
        .await
        .is_none());
    assert_eq!(
        client.rpc(SERVICE, "still").await.unwrap().status(),
        Some(SUCCESS)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_heartbeats_close_the_upstream_after_max_failures() {
    // An upstream that reads everything and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let (_sidecar, listen) = one_hop(vec![upstream], |c| {
        c.field(
            "keepalive",
            json!({"idle": "200ms", "timeout": "200ms", "max_failures": 3}),
        )
    });
    let client = connect(listen).await;
    // A oneway request opens the upstream connection without waiting for an answer.
    client
        .send_oneway(&Request::rpc(client.next_id(), Some(SERVICE), "hi"))
        .unwrap();
    let (mut sock, _) = tokio::time::timeout(Duration::from_secs(10), listener.accept())
        .await
        .expect("the sidecar connects")
        .unwrap();
    let reader = FrameReader::new(1 << 20);
    let mut buf = BytesMut::new();
    let mut heartbeats = 0;
    let closed = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let n = sock.read_buf(&mut buf).await.unwrap_or(0);
            while let Ok(Some(f)) = reader.next_frame(&mut buf) {
                if f.is_heartbeat() {
                    heartbeats += 1;
                }
            }
            if n == 0 {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the sidecar closes the silent connection");
    assert_eq!(heartbeats, 3, "one heartbeat per allowed miss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_pong_pools_carry_one_request_per_connection() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (_sidecar, listen) = one_hop(vec![app.local_addr()], |c| {
        c.field("pool_mode", json!("ping-pong"))
            .field("circuit_breakers", json!([{"max_connections": 4}]))
    });
    let client = std::sync::Arc::new(connect(listen).await);
    let mut handles = Vec::new();
    for i in 0..40 {
        let req = Request::rpc(client.next_id(), Some(SERVICE), format!("pp-{i}"))
            .timeout_ms(HELD_TIMEOUT_MS)
            .header(HOLD_HEADER, "1");
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            let r = client.call(&req).await.expect("answered");
            assert_eq!(r.id(), req.head.id);
            assert_eq!(r.content(), Bytes::from(format!("pp-{i}")));
        }));
    }
    // While the app holds every answer, the pool fills up to its limit, one request each.
    assert!(
        app.wait_for(Duration::from_secs(10), |c| c.held == 4).await,
        "{:?}",
        app.counters()
    );
    let per_connection: Vec<usize> = app
        .connections()
        .iter()
        .map(|c| c.request_ids.len())
        .collect();
    assert_eq!(per_connection, [1, 1, 1, 1]);
    assert_eq!(
        app.counters().requests,
        4,
        "nothing beyond the 4 busy connections"
    );
    assert_eq!(app.release_held().await, 4);
    for h in handles {
        h.await.unwrap();
    }
    let conns = app.connections();
    assert_eq!(conns.len(), 4, "the connections are reused");
    assert_eq!(conns.iter().map(|c| c.request_ids.len()).sum::<usize>(), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_failures_are_retried_on_another_host() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let dead = free_addr().unwrap();
    let (_sidecar, listen) = one_hop(vec![dead, app.local_addr()], |c| {
        c.field("lb_type", json!("LB_ROUNDROBIN"))
    });
    let client = connect(listen).await;
    for i in 0..20 {
        let r = client.rpc(SERVICE, format!("{i}")).await.unwrap();
        assert_eq!(r.status(), Some(SUCCESS), "call {i}");
    }
    assert_eq!(app.counters().requests, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_max_requests_circuit_breaker_answers_overflow_with_busy() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (_sidecar, listen) = one_hop(vec![app.local_addr()], |c| {
        c.field("circuit_breakers", json!([{"max_requests": 5}]))
    });
    let client = std::sync::Arc::new(connect(listen).await);
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..20 {
        let client = client.clone();
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            let req = Request::rpc(client.next_id(), Some(SERVICE), "x")
                .timeout_ms(HELD_TIMEOUT_MS)
                .header(HOLD_HEADER, "1");
            let status = client.call(&req).await.expect("answered").status();
            let _ = done_tx.send(status);
        });
    }
    drop(done_tx);
    // The app holds the answers: 5 requests are active upstream until released, so the other
    // 15 overflow and are answered first, whatever the order they arrived in.
    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(done.recv().await.expect("a status"));
    }
    assert_eq!(statuses, vec![Some(SERVER_THREADPOOL_BUSY); 15]);
    assert!(app.wait_for(Duration::from_secs(10), |c| c.held == 5).await);
    assert_eq!(app.counters().requests, 5);
    assert_eq!(app.release_held().await, 5);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(done.recv().await.expect("a status"));
    }
    assert_eq!(statuses, vec![Some(SUCCESS); 5]);
}

/// A Bolt v1 request whose header section claims a 50-byte key but holds one byte.
fn request_with_broken_headers(id: u32) -> Bytes {
    let class = b"com.alipay.sofa.rpc.core.request.SofaRequest";
    let header = [0u8, 0, 0, 50, b'a'];
    let content = b"body";
    let mut b = BytesMut::new();
    b.put_u8(1);
    b.put_u8(1);
    b.put_u16(1);
    b.put_u8(1);
    b.put_u32(id);
    b.put_u8(1);
    b.put_i32(3000);
    b.put_u16(class.len() as u16);
    b.put_u16(header.len() as u16);
    b.put_u32(content.len() as u32);
    b.put_slice(class);
    b.put_slice(&header);
    b.put_slice(content);
    b.freeze()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_with_a_broken_header_map_gets_an_error_response_not_a_reset() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (_sidecar, listen) = one_hop(vec![app.local_addr()], |c| c);
    let client = connect(listen).await;
    let id = client.next_id();
    let r = client
        .call_raw(request_with_broken_headers(id), id, Duration::from_secs(10))
        .await
        .expect("an answer");
    assert_eq!(r.id(), id);
    assert_eq!(r.status(), Some(UNKNOWN), "code 2 maps to UNKNOWN");
    assert_eq!(
        client.rpc(SERVICE, "ok").await.unwrap().status(),
        Some(SUCCESS)
    );
    assert_eq!(app.counters().requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_traps_loops_or_exhausts_memory_costs_only_that_connection() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (_sidecar, listen) = one_hop_with(
        vec![app.local_addr()],
        |c| c,
        |m| m.wasm_plugin("target/wasm32-wasip1/plugin/misbehave.wasm"),
    );
    let good = connect(listen).await;
    assert_eq!(
        good.rpc(SERVICE, "before").await.unwrap().status(),
        Some(SUCCESS)
    );
    for mode in ["trap", "loop", "oom"] {
        let bad = connect(listen).await;
        let id = bad.next_id();
        let req = Request::rpc(id, Some(SERVICE), "boom").header("misbehave", mode);
        let r = bad.call_within(&req, Duration::from_secs(20)).await;
        assert!(
            r.is_err(),
            "{mode}: the offending connection is closed, got {r:?}"
        );
        // Every other connection keeps working, on a fresh plugin instance.
        for i in 0..5 {
            let r = good.rpc(SERVICE, format!("{mode}-{i}")).await.unwrap();
            assert_eq!(r.status(), Some(SUCCESS), "{mode}");
        }
    }
}

/// A counter of `upstreamCluster` from the admin API (0 when absent).
async fn cluster_counter(admin: SocketAddr, name: &str) -> u64 {
    harness::cluster_counter(admin, "upstreamCluster", name)
        .await
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_interval_finds_a_blackholed_busy_upstream_and_calls_move_to_another_host() {
    let app_a = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let app_b = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let hole = Blackhole::start(app_a.local_addr()).await.unwrap();
    let admin = free_addr().unwrap();
    // `idle` is far beyond the test: every heartbeat below comes from `interval`.
    let (_sidecar, listen) = one_hop_with(
        vec![hole.addr(), app_b.local_addr()],
        |c| {
            c.field("lb_type", json!("LB_ROUNDROBIN")).field(
                "keepalive",
                json!({"interval": "300ms", "timeout": "300ms", "idle": "60s", "max_failures": 2}),
            )
        },
        |m| {
            m.admin(admin).edit_listener("listener", |l| {
                l.route_field("retry_policy", json!({"retry_on": true, "num_retries": 10}))
            })
        },
    );
    let client = std::sync::Arc::new(connect(listen).await);

    // Busy: a steady stream of calls keeps both upstream connections reading, and the
    // periodic heartbeats still go out and are acknowledged.
    let busy = {
        let client = client.clone();
        tokio::spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..400 {
                statuses.push(
                    client
                        .rpc(SERVICE, format!("busy {i}"))
                        .await
                        .map(|r| r.status()),
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            statuses
        })
    };
    let acked = eventually(
        Duration::from_secs(20),
        async || cluster_counter(admin, "keepalive_ack").await,
        |n| *n >= 4,
    )
    .await;
    assert!(
        acked >= 4,
        "heartbeats on busy connections are acknowledged: {acked}"
    );
    assert_eq!(cluster_counter(admin, "keepalive_timeout").await, 0);
    assert!(app_a.counters().requests > 0 && app_b.counters().requests > 0);

    // Calls held by the app on A are in flight when A goes silent.
    let mut held = Vec::new();
    for i in 0..6 {
        let client = client.clone();
        held.push(tokio::spawn(async move {
            let req = Request::rpc(client.next_id(), Some(SERVICE), format!("held {i}"))
                .timeout_ms(HELD_TIMEOUT_MS)
                .header(HOLD_HEADER, "1");
            client.call(&req).await.map(|r| r.status())
        }));
    }
    assert!(
        app_a
            .wait_for(Duration::from_secs(10), |c| c.held >= 1)
            .await,
        "some held calls reached A"
    );
    let held_on_a = app_a.counters().held;
    hole.cut();
    let cut_at = tokio::time::Instant::now();
    // B answers its share; A's answers would be dropped by the blackhole.
    app_b.release_held().await;
    app_a.release_held().await;

    let closed = eventually(
        Duration::from_secs(20),
        async || hole.counters().closed_by_client_after_cut,
        |n| *n >= 1,
    )
    .await;
    let detected_in = cut_at.elapsed();
    assert_eq!(closed, 1, "the sidecar closed its silent connection to A");
    // interval + max_failures × timeout = 0.9 s; the bound only catches "never".
    assert!(detected_in < Duration::from_secs(15), "{detected_in:?}");
    eprintln!("blackholed upstream detected and closed after {detected_in:?}");
    assert!(cluster_counter(admin, "connection_keepalive_close").await >= 1);
    assert!(cluster_counter(admin, "keepalive_timeout").await >= 2);

    // The calls in flight on A failed with their connection and were retried on B, long
    // before their own 60 s timeout.
    for h in held {
        let status = tokio::time::timeout(Duration::from_secs(20), h)
            .await
            .expect("held call ends with the connection, not its timeout")
            .unwrap()
            .expect("answered");
        assert_eq!(status, Some(SUCCESS));
    }
    assert!(cluster_counter(admin, "request_connection_closed").await >= held_on_a as u64);
    assert!(cluster_counter(admin, "request_retry").await >= held_on_a as u64);

    // The busy stream never saw a failure, and new calls go to B (A refuses connections).
    let statuses = busy.await.unwrap();
    assert!(
        statuses.iter().all(|s| matches!(s, Ok(Some(SUCCESS)))),
        "{statuses:?}"
    );
    let before = app_b.counters().requests;
    for i in 0..20 {
        let r = client.rpc(SERVICE, format!("after {i}")).await.unwrap();
        assert_eq!(r.status(), Some(SUCCESS), "call {i}");
    }
    assert_eq!(app_b.counters().requests, before + 20);
    assert_eq!(hole.counters().accepted, 1, "A was never reached again");
}
