//! End-to-end tests of the real `sidecar` binary with the real Bolt Wasm plugin
//! (target/wasm32-wasip1/plugin/bolt.wasm, built by `make plugins`), a Rust Bolt echo server
//! and a Bolt client, all over real loopback sockets. Events are ordered by what the backend has
//! counted and by answers it holds back until released, never by sleeping.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use integration::client::{BoltClient, ClientOptions};
use integration::echo::{wait_for_counters, EchoServer, HOLD_HEADER, SILENT_HEADER};
use integration::harness::{admin_get, free_addr, EchoProcess, Sidecar};
use integration::harness::{patch, MosnConfig};
use integration::wire::Request;
use serde_json::{json, Value};

const SERVICE: &str = "com.alipay.test.TestService:1.0";
/// Client ids far above anything the sidecar assigns upstream, so the two never mix up.
const CLIENT_FIRST_ID: u32 = 2_000_000_000;

// Bolt statuses (xprotocol spec (`docs/xprotocol-proxy-and-bolt.md`) §1.5) as the SDK-built plugin maps the proxy codes (§2.6).
const SUCCESS: u16 = 0;
const UNKNOWN: u16 = 3;
const NO_PROCESSOR: u16 = 6;
const TIMEOUT: u16 = 7;
const CONNECTION_CLOSED: u16 = 16;
/// Frame timeout of calls the app holds: far beyond any step of a test, so only the release
/// decides when they are answered.
const HELD_TIMEOUT_MS: i32 = 60_000;

fn client_options() -> ClientOptions {
    ClientOptions {
        first_id: CLIENT_FIRST_ID,
        call_timeout: Duration::from_secs(20),
        ..ClientOptions::default()
    }
}

async fn connect(addr: SocketAddr) -> BoltClient {
    BoltClient::connect_with(addr, client_options())
        .await
        .expect("connect to the sidecar")
}

struct TwoHops {
    sidecar: Sidecar,
    client_side: SocketAddr,
    server_side: SocketAddr,
}

fn config_with(
    app: SocketAddr,
    edit: impl FnOnce(MosnConfig) -> MosnConfig,
) -> (Value, SocketAddr, SocketAddr) {
    let client_side = free_addr().unwrap();
    let server_side = free_addr().unwrap();
    let mut cfg = edit(MosnConfig::sample(client_side, server_side, app)).build();
    // Two workers, so multiplexing across workers is exercised as well.
    assert!(patch(&mut cfg, "/servers/0/processor", json!(2)));
    (cfg, client_side, server_side)
}

fn two_hops(app: SocketAddr) -> TwoHops {
    two_hops_with(app, |c| c)
}

fn two_hops_with(app: SocketAddr, edit: impl FnOnce(MosnConfig) -> MosnConfig) -> TwoHops {
    let (cfg, client_side, server_side) = config_with(app, edit);
    let sidecar = Sidecar::spawn(cfg).expect("sidecar starts");
    TwoHops {
        sidecar,
        client_side,
        server_side,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_both_hops_returns_the_echo_with_the_clients_id() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let hops = two_hops(app.local_addr());
    let client = connect(hops.client_side).await;
    let id = client.next_id();
    let response = client
        .call(&Request::rpc(
            id,
            Some(SERVICE),
            Bytes::from_static(b"hello sidecar"),
        ))
        .await
        .expect("response");
    assert_eq!(response.id(), id);
    assert_eq!(response.status(), Some(SUCCESS));
    assert_eq!(&response.content()[..], b"hello sidecar");
    // The app saw an upstream id, not the client's.
    let seen = app.seen_requests();
    assert_eq!(seen.len(), 1);
    assert_ne!(seen[0].frame.id(), id);
    drop(hops);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_concurrent_calls_are_multiplexed_with_correct_ids() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let hops = two_hops(app.local_addr());

    // 1,000 concurrent calls on one client connection.
    let client = connect(hops.client_side).await;
    let ids = concurrent_echo_calls(&client, 1000, "call").await;
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 1000);

    // The same from 20 client connections at once (1,000 calls each).
    let mut tasks = Vec::new();
    for c in 0..20u32 {
        let addr = hops.client_side;
        tasks.push(tokio::spawn(async move {
            let client = connect(addr).await;
            concurrent_echo_calls(&client, 1000, &format!("conn-{c}")).await;
        }));
    }
    for t in tasks {
        t.await.expect("client task");
    }

    // The app sees only the server-side sidecar's pool: one connection per worker (default
    // max_connections 1, processor 2), carrying upstream ids unlike any client id.
    let conns = app.connections();
    assert!(
        !conns.is_empty() && conns.len() <= 2,
        "expected at most 2 upstream connections (1 per worker), got {}",
        conns.len()
    );
    let upstream_ids: Vec<u32> = conns.iter().flat_map(|c| c.request_ids.clone()).collect();
    assert_eq!(upstream_ids.len(), 21_000);
    assert!(upstream_ids.iter().all(|id| *id < CLIENT_FIRST_ID));
    drop(hops);
}

/// Makes `n` concurrent echo calls on `client`, each with its own body, and checks that every
/// answer carries the caller's id, SUCCESS and the caller's body. Returns the ids used.
async fn concurrent_echo_calls(client: &BoltClient, n: usize, tag: &str) -> Vec<u32> {
    let calls = (0..n).map(|i| async move {
        let id = client.next_id();
        let body = Bytes::from(format!("{tag}-{i}"));
        let r = client
            .call(&Request::rpc(id, Some(SERVICE), body.clone()))
            .await
            .expect("response");
        assert_eq!((r.id(), r.status()), (id, Some(SUCCESS)));
        assert_eq!(r.content(), body);
        id
    });
    futures_join_all(calls).await
}

/// Joins futures without an extra dependency.
async fn futures_join_all<F: std::future::Future>(
    futs: impl IntoIterator<Item = F>,
) -> Vec<F::Output> {
    let set: Vec<_> = futs.into_iter().collect();
    let mut out = Vec::with_capacity(set.len());
    // Poll all concurrently by pinning them in a local task set of boxed futures.
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = set.into_iter().map(Box::pin).collect();
    let mut results: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in pinned.iter_mut().enumerate() {
            if results[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => results[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.extend(
        results
            .into_iter()
            .map(|r| r.expect("every future finished")),
    );
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_answered_by_either_listener_even_with_the_backend_down() {
    let dead_app = free_addr().unwrap(); // nothing listens here
    let hops = two_hops(dead_app);
    for addr in [hops.client_side, hops.server_side] {
        let client = connect(addr).await;
        let ack = client.heartbeat().await.expect("heartbeat ack");
        assert!(ack.is_heartbeat());
        assert_eq!(ack.status(), Some(SUCCESS));
        assert_eq!(ack.raw().len(), 20, "a v1 heartbeat ack is 20 bytes");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_route_answers_no_processor_with_the_clients_id() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let hops = two_hops(app.local_addr());
    let client = connect(hops.client_side).await;
    for service in [None, Some("")] {
        let id = client.next_id();
        let r = client
            .call(&Request::rpc(id, service, Bytes::from_static(b"x")))
            .await
            .expect("hijack response");
        assert_eq!(r.id(), id);
        assert_eq!(r.status(), Some(NO_PROCESSOR));
    }
    assert_eq!(app.counters().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_down_gives_an_error_response_within_the_connect_timeout() {
    let dead_app = free_addr().unwrap();
    let hops = two_hops_with(dead_app, |c| {
        c.edit_cluster("serverCluster", |cl| cl.connect_timeout("2s"))
    });
    let client = connect(hops.client_side).await;
    let id = client.next_id();
    let r = client
        .call_within(
            &Request::rpc(id, Some(SERVICE), Bytes::from_static(b"x")),
            Duration::from_secs(10),
        )
        .await
        .expect("error response, not silence");
    assert_eq!(r.id(), id);
    // 502 from the server-side hop, mapped by the SDK-built plugin (spec §2.6).
    assert_eq!(r.status(), Some(CONNECTION_CLOSED));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_backend_with_100_requests_in_flight_gives_100_error_responses() {
    let app_addr = free_addr().unwrap();
    let mut app = EchoProcess::spawn(app_addr).expect("echo process");
    let hops = two_hops(app_addr);
    let client = connect(hops.client_side).await;
    client.rpc(SERVICE, "warm").await.expect("warm-up call");
    let calls = (0..100).map(|_| {
        let client = &client;
        async move {
            let id = client.next_id();
            let req = Request::rpc(id, Some(SERVICE), Bytes::from_static(b"unanswered"))
                .timeout_ms(HELD_TIMEOUT_MS)
                .header(SILENT_HEADER, "1");
            let r = client
                .call(&req)
                .await
                .expect("every request gets a response");
            assert_eq!(r.id(), id);
            r.status()
        }
    });
    let kill = async {
        // Kill the app hard once it has all 100 (and the warm-up call): they are in flight
        // upstream, not queued in the sidecar.
        let all_there =
            wait_for_counters(app_addr, Duration::from_secs(20), |n| n.requests == 101).await;
        assert!(
            all_there.expect("ask the app"),
            "the app received every call"
        );
        app.kill();
    };
    let (statuses, ()) = tokio::join!(futures_join_all(calls), kill);
    assert_eq!(statuses.len(), 100);
    for s in statuses {
        // Upstream closed with the request in flight: 500 → UNKNOWN.
        assert_eq!(s, Some(UNKNOWN));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_backend_gives_timeout_and_the_late_reply_is_dropped() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let hops = two_hops(app.local_addr());
    let client = connect(hops.client_side).await;
    let id = client.next_id();
    // The app holds its answer until released: the sidecar's timeout is the only way out.
    let req = Request::rpc(id, Some(SERVICE), Bytes::from_static(b"slow"))
        .timeout_ms(300)
        .header(HOLD_HEADER, "1");
    let r = client.call(&req).await.expect("timeout response");
    assert_eq!(r.id(), id);
    assert_eq!(r.status(), Some(TIMEOUT));
    // Now the late reply goes out, on the upstream connections the next call takes after it,
    // so it reaches the sidecar (and is dropped) before that call's answer.
    assert_eq!(app.release_held().await, 1);
    let ok = client.rpc(SERVICE, "after").await.expect("later call");
    assert_eq!(ok.status(), Some(SUCCESS));
    assert!(client
        .next_unsolicited(Duration::from_millis(200))
        .await
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bytes_close_only_that_connection() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let hops = two_hops(app.local_addr());
    let good = connect(hops.client_side).await;
    let bad = connect(hops.client_side).await;
    assert_eq!(
        good.rpc(SERVICE, "before").await.unwrap().status(),
        Some(SUCCESS)
    );
    bad.send_raw(Bytes::from_static(
        b"\x07GARBAGE-NOT-BOLT-AT-ALL-0123456789",
    ))
    .unwrap();
    assert!(
        bad.wait_closed(Duration::from_secs(10)).await.is_some(),
        "the sidecar closes the connection that sent garbage"
    );
    for i in 0..10 {
        let r = good.rpc(SERVICE, format!("after-{i}")).await.unwrap();
        assert_eq!(r.status(), Some(SUCCESS));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oneway_requests_reach_the_server_and_get_no_response() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let hops = two_hops(app.local_addr());
    let client = connect(hops.client_side).await;
    for i in 0..5 {
        client
            .send_oneway(&Request::rpc(
                client.next_id(),
                Some(SERVICE),
                format!("ow-{i}"),
            ))
            .unwrap();
    }
    assert!(
        app.wait_for(Duration::from_secs(10), |c| c.oneways == 5)
            .await,
        "5 oneway requests reach the app"
    );
    assert!(client
        .next_unsolicited(Duration::from_millis(300))
        .await
        .is_none());
    // A normal call still works afterwards.
    assert_eq!(
        client.rpc(SERVICE, "x").await.unwrap().status(),
        Some(SUCCESS)
    );
}

#[test]
fn a_broken_config_exits_non_zero_with_a_useful_message_and_starts_nothing() {
    let app = free_addr().unwrap();
    let (mut cfg, client_side, _) = config_with(app, |c| c);
    // A route naming a cluster that does not exist.
    let routers = cfg
        .pointer_mut("/servers/0/routers")
        .and_then(Value::as_array_mut)
        .unwrap();
    routers[0]["virtual_hosts"][0]["routers"][0]["route"]["cluster_name"] = json!("nope");
    let out = Sidecar::run_check(cfg.clone()).expect("run check");
    assert!(!out.status.success());
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(text.contains("cluster_name"), "names the JSON path: {text}");
    assert!(text.contains("nope"), "names the bad value: {text}");
    // `start` refuses too, before binding anything.
    let err = Sidecar::spawn(cfg).expect_err("start must fail");
    let msg = err.to_string();
    assert!(msg.contains("nope") || msg.contains("cluster"), "{msg}");
    assert!(
        std::net::TcpStream::connect(client_side).is_err(),
        "nothing listens"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_in_flight_requests_finish_then_exits_zero() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let mut hops = two_hops(app.local_addr());
    let client = connect(hops.client_side).await;
    let id = client.next_id();
    let req = Request::rpc(id, Some(SERVICE), Bytes::from_static(b"in flight"))
        .timeout_ms(HELD_TIMEOUT_MS)
        .header(HOLD_HEADER, "1");
    let call = client.call(&req);
    let client_side = hops.client_side;
    let stop = async {
        assert!(app.wait_for(Duration::from_secs(10), |c| c.held == 1).await);
        hops.sidecar.signal("TERM").expect("send SIGTERM");
        // The answer is released only once the sidecar is stopping (no longer accepting).
        assert!(
            stops_accepting(client_side, Duration::from_secs(10)).await,
            "the sidecar still accepts connections after SIGTERM"
        );
        assert_eq!(app.release_held().await, 1);
    };
    let (r, ()) = tokio::join!(call, stop);
    let r = r.expect("the in-flight request is answered during the graceful stop");
    assert_eq!(r.id(), id);
    assert_eq!(&r.content()[..], b"in flight");
    let status = tokio::task::block_in_place(|| hops.sidecar.wait_exit(Duration::from_secs(30)))
        .expect("exits");
    assert!(status.success(), "exit status {status}");
}

/// Waits until connecting to `addr` fails (its listener is closed); false if `deadline` passes
/// first.
async fn stops_accepting(addr: SocketAddr, deadline: Duration) -> bool {
    let until = tokio::time::Instant::now() + deadline;
    while tokio::time::Instant::now() < until {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_has_exactly_one_outcome_and_the_counters_add_up() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let admin = free_addr().unwrap();
    let hops = two_hops_with(app.local_addr(), |c| c.admin(admin));
    let client = connect(hops.client_side).await;
    let mut expected_ok = 0;
    for i in 0..50 {
        let r = client.rpc(SERVICE, format!("{i}")).await.unwrap();
        assert_eq!(r.status(), Some(SUCCESS));
        expected_ok += 1;
    }
    for _ in 0..7 {
        let id = client.next_id();
        let r = client.call(&Request::rpc(id, None, "x")).await.unwrap();
        assert_eq!(r.status(), Some(NO_PROCESSOR));
    }
    let id = client.next_id();
    // Held by the app and never released: it can only time out.
    let slow = Request::rpc(id, Some(SERVICE), "slow")
        .timeout_ms(200)
        .header(HOLD_HEADER, "1");
    assert_eq!(client.call(&slow).await.unwrap().status(), Some(TIMEOUT));

    // Both listeners live in this process, so its counters cover both hops: the client
    // side saw 58 requests, the server side 51 (the no-route ones stopped at the client side).
    // The server-side copy of the slow call may still be timing out when the client already
    // has its answer: wait (bounded) until nothing is active before checking the invariant.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let stats = loop {
        let stats = admin_get(admin, "/api/v1/stats")
            .await
            .expect("admin stats");
        let active = stats["downstream"]["downstream.proxy.global"]["request_active"].as_u64();
        if active == Some(0) || std::time::Instant::now() > deadline {
            break stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let g = &stats["downstream"]["downstream.proxy.global"];
    let n = |k: &str| {
        g[k].as_u64()
            .unwrap_or_else(|| panic!("counter {k} in {g}"))
    };
    assert_eq!(n("request_active"), 0);
    assert_eq!(
        n("request_total"),
        n("response_forwarded") + n("oneway_forwarded") + n("hijacked") + n("reset"),
        "{g}"
    );
    assert_eq!(n("request_total"), 58 + 51);
    // Each hop's first routed call connects (so it runs as a task), the no-route ones are
    // answered by a task; the other 2 × 50 calls are sent and answered inline (the default
    // route retries nothing once sent, the listeners have no filters).
    assert_eq!(n("request_inline_total"), 2 * 50, "{g}");
    assert_eq!(n("request_404_total"), 7);
    assert!(n("request_504_total") >= 1);
    // Both hops time the slow call out at 200 ms; whichever fires first answers it, so the
    // client side either hijacks (504) or relays the server side's 504.
    assert!(n("response_forwarded") >= 2 * expected_ok, "{g}");
    let up = &stats["upstream"]["upstream.cluster.serverCluster"];
    assert_eq!(up["request_total"], 51);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_native_codec_serves_the_same_topology() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let hops = two_hops_with(app.local_addr(), |c| c.native());
    let client = connect(hops.client_side).await;
    concurrent_echo_calls(&client, 200, "native").await;
    let ack = client.heartbeat().await.expect("ack");
    assert!(ack.is_heartbeat());
    let id = client.next_id();
    let r = client.call(&Request::rpc(id, None, "x")).await.unwrap();
    assert_eq!((r.id(), r.status()), (id, Some(NO_PROCESSOR)));
}
