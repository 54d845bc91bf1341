//! The test tools against each other: echo server + client + load generator, in process and as
//! processes (`bolt-echo`, `boltbench`), including servers that close or die mid-call.
//! Events are ordered by what the server has counted (requests seen, answers held), never by
//! sleeping; waits are bounded by deadlines.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use integration::bench::{self, BenchOptions, BenchReport, Mode};
use integration::echo::{
    query_counters, wait_for_counters, EchoOptions, DELAY_HEADER, HOLD_HEADER, SILENT_HEADER,
    STATUS_HEADER,
};
use integration::wire::{status, FrameType, Request, CMD_HEARTBEAT, CMD_RESPONSE, RESPONSE_CLASS};
use integration::{BoltClient, ClientError, ClientOptions, CloseReason, EchoProcess, EchoServer};

const SERVICE: &str = "com.alipay.test.TestService:1.0";
const LONG: Duration = Duration::from_secs(20);

fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

async fn client(addr: SocketAddr, first_id: u32) -> BoltClient {
    let options = ClientOptions {
        first_id,
        call_timeout: LONG,
        ..ClientOptions::default()
    };
    BoltClient::connect_with(addr, options).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_answers_calls_heartbeats_and_oneways() {
    let server = EchoServer::start(any_port()).await.unwrap();
    let c = client(server.local_addr(), 5000).await;

    let req = Request::rpc(c.next_id(), Some(SERVICE), &b"hello bolt"[..]);
    let resp = c.call(&req).await.unwrap();
    assert_eq!(resp.frame_type(), FrameType::Response);
    assert_eq!(resp.id(), 5000);
    assert_eq!(resp.cmd_code(), CMD_RESPONSE);
    assert_eq!(resp.status(), Some(status::SUCCESS));
    assert_eq!(resp.class(), RESPONSE_CLASS.as_bytes());
    assert_eq!(&resp.content()[..], b"hello bolt");

    let ack = c.heartbeat().await.unwrap();
    assert_eq!(
        (ack.id(), ack.cmd_code(), ack.status()),
        (5001, CMD_HEARTBEAT, Some(0))
    );
    assert_eq!(ack.raw().len(), 20);

    let oneway = Request::rpc(c.next_id(), Some(SERVICE), &b"fire"[..]);
    c.send_oneway(&oneway).unwrap();
    assert!(server.wait_for(LONG, |n| n.oneways == 1).await);
    // A later call is answered and nothing else arrived: the oneway got no answer.
    c.rpc(SERVICE, Bytes::new()).await.unwrap();
    assert!(c.next_unsolicited(Duration::ZERO).await.is_none());

    let counters = server.counters();
    assert_eq!(counters.connections_accepted, 1);
    assert_eq!((counters.requests, counters.heartbeats), (2, 1));
    let conns = server.connections();
    assert_eq!(conns.len(), 1);
    assert_eq!(conns[0].request_ids, vec![5000, 5001, 5002, 5003]);
    let seen = server.seen_requests();
    assert_eq!(seen[0].frame.header("service"), Some(SERVICE.as_bytes()));
    assert_eq!(seen[2].frame.frame_type(), FrameType::Oneway);
    // The counters query (on a connection of its own) reports the same, without counting itself.
    let queried = query_counters(server.local_addr()).await.unwrap();
    assert_eq!(queried, server.counters());
    assert_eq!((queried.requests, queried.connections_accepted), (2, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_answer_does_not_hold_up_later_calls() {
    let server = EchoServer::start(any_port()).await.unwrap();
    let c = Arc::new(client(server.local_addr(), 1).await);
    let held = Request::rpc(c.next_id(), Some(SERVICE), &b"held"[..]).header(HOLD_HEADER, "1");
    let held_call = {
        let c = c.clone();
        tokio::spawn(async move { c.call(&held).await })
    };
    assert!(server.wait_for(LONG, |n| n.held == 1).await);
    // A later call completes while the held one is still outstanding: answers go out of order.
    let fast = c.rpc(SERVICE, &b"fast"[..]).await.unwrap();
    assert_eq!(&fast.content()[..], b"fast");
    assert_eq!(c.in_flight(), 1, "the held call is still waiting");
    assert_eq!(server.release_held().await, 1);
    let held = held_call.await.unwrap().unwrap();
    assert_eq!((held.id(), &held.content()[..]), (1, &b"held"[..]));
    // Released once, the server holds nothing more.
    let late = Request::rpc(c.next_id(), Some(SERVICE), &b"late"[..]).header(HOLD_HEADER, "1");
    assert_eq!(&c.call(&late).await.unwrap().content()[..], b"late");
    assert_eq!(server.counters().held, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_answer_comes_no_sooner_than_its_delay() {
    let server = EchoServer::start(any_port()).await.unwrap();
    let c = client(server.local_addr(), 1).await;
    let delay = Duration::from_millis(200);
    let slow = Request::rpc(c.next_id(), Some(SERVICE), &b"slow"[..])
        .header(DELAY_HEADER, delay.as_millis().to_string());
    let sent = std::time::Instant::now();
    let slow = c.call(&slow).await.unwrap();
    // A lower bound only: the server's timer cannot fire early, however fast the machine.
    assert!(sent.elapsed() >= delay);
    assert_eq!((slow.id(), &slow.content()[..]), (1, &b"slow"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_silent_control_headers() {
    let server = EchoServer::start(any_port()).await.unwrap();
    let c = client(server.local_addr(), 1).await;
    let req = Request::rpc(c.next_id(), Some(SERVICE), Bytes::new()).header(STATUS_HEADER, "7");
    assert_eq!(c.call(&req).await.unwrap().status(), Some(status::TIMEOUT));

    let silent = Request::rpc(c.next_id(), Some(SERVICE), Bytes::new()).header(SILENT_HEADER, "1");
    let err = c
        .call_within(&silent, Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::Timeout { id: 2, .. }), "{err}");
    assert_eq!(c.in_flight(), 0, "a timed-out call leaves nothing behind");
    // The connection is still fine, and a reused id is accepted again.
    let again = Request::rpc(2, Some(SERVICE), Bytes::new());
    assert_eq!(c.call(&again).await.unwrap().id(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_closing_mid_call_fails_every_call_in_flight() {
    let server = EchoServer::start(any_port()).await.unwrap();
    let c = Arc::new(client(server.local_addr(), 100).await);
    let calls: Vec<_> = (0..10)
        .map(|_| {
            let c = c.clone();
            let req =
                Request::rpc(c.next_id(), Some(SERVICE), Bytes::new()).header(SILENT_HEADER, "1");
            tokio::spawn(async move { c.call(&req).await })
        })
        .collect();
    assert!(server.wait_for(LONG, |n| n.requests == 10).await);
    server.close_all_connections();
    for call in calls {
        let err = call.await.unwrap().unwrap_err();
        assert!(
            matches!(err, ClientError::ConnectionLost(CloseReason::PeerClosed)),
            "expected the close to fail the call, got {err}"
        );
    }
    assert_eq!(c.wait_closed(LONG).await, Some(CloseReason::PeerClosed));
    let err = c.rpc(SERVICE, Bytes::new()).await.unwrap_err();
    assert!(matches!(err, ClientError::ConnectionLost(_)), "{err}");
    assert!(
        server
            .wait_for(LONG, |_| !server.connections()[0].open)
            .await
    );
    // The server keeps accepting.
    let c2 = client(server.local_addr(), 1).await;
    c2.rpc(SERVICE, Bytes::new()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bytes_close_the_connection() {
    let server = EchoServer::start(any_port()).await.unwrap();
    let c = client(server.local_addr(), 1).await;
    c.send_raw(Bytes::from_static(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
        .unwrap();
    assert_eq!(c.wait_closed(LONG).await, Some(CloseReason::PeerClosed));
    assert_eq!(server.counters().protocol_errors, 1);
    assert_eq!(server.counters().requests, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_raw_waits_for_a_frame_sent_in_pieces() {
    let server = EchoServer::start(any_port()).await.unwrap();
    let c = client(server.local_addr(), 1).await;
    let frame = Request::rpc(77, Some(SERVICE), &b"split"[..])
        .to_bytes()
        .unwrap();
    let (a, b) = frame.split_at(9);
    let waiter = c.call_raw(Bytes::copy_from_slice(a), 77, LONG);
    let send_rest = async {
        assert!(server.wait_for(LONG, |n| n.connections_accepted == 1).await);
        c.send_raw(Bytes::copy_from_slice(b)).unwrap();
    };
    let (resp, ()) = tokio::join!(waiter, send_rest);
    let resp = resp.unwrap();
    assert_eq!((resp.id(), &resp.content()[..]), (77, &b"split"[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_share_one_connection() {
    let server = EchoServer::start(any_port()).await.unwrap();
    let c = Arc::new(client(server.local_addr(), 9_000_000).await);
    let calls: Vec<_> = (0..500u32)
        .map(|i| {
            let c = c.clone();
            tokio::spawn(async move {
                let id = c.next_id();
                let body = Bytes::from(format!("call {i}"));
                let resp = c
                    .call(&Request::rpc(id, Some(SERVICE), body.clone()))
                    .await?;
                Ok::<_, ClientError>((id, resp, body))
            })
        })
        .collect();
    for call in calls {
        let (id, resp, body) = call.await.unwrap().unwrap();
        assert_eq!(resp.id(), id);
        assert_eq!(resp.content(), body);
    }
    let conns = server.connections();
    assert_eq!(conns.len(), 1);
    let mut ids = conns[0].request_ids.clone();
    ids.sort_unstable();
    assert_eq!(ids, (9_000_000..9_000_500).collect::<Vec<u32>>());
}

/// An echo server on its own runtime, for tests that call the blocking load generator.
fn echo_on_runtime() -> (tokio::runtime::Runtime, EchoServer) {
    echo_on_runtime_with(EchoOptions::default())
}

fn echo_on_runtime_with(options: EchoOptions) -> (tokio::runtime::Runtime, EchoServer) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = rt
        .block_on(EchoServer::start_with(any_port(), options))
        .unwrap();
    (rt, server)
}

fn options(target: SocketAddr, mode: Mode) -> BenchOptions {
    let mut o = BenchOptions::new(target);
    o.mode = mode;
    o.warmup = Duration::ZERO;
    o.duration = Duration::from_secs(30);
    o.timeout = Duration::from_secs(5);
    o
}

#[test]
fn closed_loop_stops_at_the_request_bound_with_every_call_answered() {
    let (_rt, server) = echo_on_runtime();
    let mut o = options(
        server.local_addr(),
        Mode::Closed {
            connections: 2,
            in_flight: 16,
        },
    );
    o.max_requests = Some(3000);
    o.first_id = 40_000;
    let r = bench::run(&o).unwrap();
    assert_eq!((r.sent, r.ok), (3000, 3000), "{r:?}");
    assert_eq!(r.errors.failed_calls() + r.errors.unexpected, 0, "{r:?}");
    assert_eq!(r.latency_us.count, 3000);
    assert!(r.latency_us.p50 > 0.0 && r.latency_us.p50 <= r.latency_us.p99);
    assert!(r.calls_per_sec > 0.0);
    let counters = server.counters();
    assert_eq!(counters.connections_accepted, 2);
    assert_eq!(counters.requests, r.total_sent);
    let conns = server.connections();
    assert!(
        conns.iter().all(|c| c.request_ids[0] == 40_000),
        "first id honoured"
    );
}

#[test]
fn open_loop_sends_on_schedule_and_counts_from_intended_time() {
    let (_rt, server) = echo_on_runtime();
    let mut o = options(
        server.local_addr(),
        Mode::Open {
            connections: 2,
            rate: 2000.0,
        },
    );
    o.warmup = Duration::from_millis(100);
    o.duration = Duration::from_millis(500);
    let r = bench::run(&o).unwrap();
    // 0.5 s at 2,000/s: 1,000 calls scheduled in the window (±1 for float rounding at its edges).
    assert!((999..=1001).contains(&r.sent), "{r:?}");
    assert_eq!(r.ok, r.sent, "{r:?}");
    assert_eq!(r.errors.failed_calls(), 0);
    assert!(r.send_lag_us.is_some());
    assert_eq!(server.counters().requests, r.total_sent);
    assert!(
        (199..=201).contains(&(r.total_sent - r.sent)),
        "warm-up calls: {r:?}"
    );
}

#[test]
fn load_generator_counts_error_statuses_and_timeouts() {
    let (_rt, server) = echo_on_runtime();
    let closed = Mode::Closed {
        connections: 1,
        in_flight: 8,
    };
    let mut o = options(server.local_addr(), closed);
    o.max_requests = Some(200);
    o.extra_headers = vec![(STATUS_HEADER.into(), "4".into())];
    let r = bench::run(&o).unwrap();
    assert_eq!(r.ok, 0);
    assert_eq!(r.errors.status.get(&4), Some(&200), "{r:?}");

    let mut o = options(server.local_addr(), closed);
    o.duration = Duration::from_millis(300);
    o.timeout = Duration::from_millis(200);
    o.extra_headers = vec![(SILENT_HEADER.into(), "1".into())];
    let r = bench::run(&o).unwrap();
    assert_eq!((r.sent, r.ok), (r.errors.timeouts, 0), "{r:?}");
    assert!(
        r.errors.timeouts >= 8,
        "every unanswered call times out: {r:?}"
    );

    let mut o = options(
        server.local_addr(),
        Mode::Open {
            connections: 1,
            rate: 500.0,
        },
    );
    o.duration = Duration::from_millis(200);
    o.timeout = Duration::from_millis(200);
    o.extra_headers = vec![(SILENT_HEADER.into(), "1".into())];
    let r = bench::run(&o).unwrap();
    assert_eq!(r.ok, 0);
    assert_eq!(r.errors.timeouts, r.sent, "{r:?}");
}

#[test]
fn closed_loop_survives_a_server_that_drops_its_connections() {
    // The server drops each connection when its 1,000th request arrives. 2,500 calls then take
    // three connections however fast the machine: each dropped one carries 1,000 to 1,031 calls
    // (its 1,000th is never answered, and at most 32 are in flight when it goes), the third the
    // remaining 438 to 500.
    const DROP_AT: u64 = 1000;
    const CALLS: u64 = 2500;
    const IN_FLIGHT: u64 = 32;
    let (rt, server) = echo_on_runtime_with(EchoOptions {
        close_after_requests: Some(DROP_AT),
        ..EchoOptions::default()
    });
    let mut o = options(
        server.local_addr(),
        Mode::Closed {
            connections: 1,
            in_flight: IN_FLIGHT as usize,
        },
    );
    o.max_requests = Some(CALLS);
    // Every call is answered or lost with its connection; none may be mistaken for a timeout.
    o.timeout = LONG;
    let r = bench::run(&o).unwrap();
    assert_eq!(r.ok + r.errors.connection, CALLS, "{r:?}");
    assert_eq!(r.errors.timeouts + r.errors.unexpected, 0, "{r:?}");
    assert!(
        (2..=2 * IN_FLIGHT).contains(&r.errors.connection),
        "each drop loses 1 to {IN_FLIGHT} calls in flight, and they are counted: {r:?}"
    );
    let counters = server.counters();
    assert_eq!(counters.dropped_connections, 2, "{counters:?}");
    assert_eq!(counters.connections_accepted, 3, "{counters:?}");
    let seen: Vec<u64> = server
        .connections()
        .iter()
        .map(|c| c.request_ids.len() as u64)
        .collect();
    assert_eq!(seen[..2], [DROP_AT, DROP_AT], "{seen:?}");
    assert!(
        seen[2] < DROP_AT,
        "the third connection finishes the run: {seen:?}"
    );
    assert_eq!((r.sent, r.total_sent), (CALLS, CALLS), "{r:?}");
    assert!(rt.block_on(server.wait_for(LONG, |_| {
        let conns = server.connections();
        !conns[0].open && !conns[1].open
    })));
}

#[test]
fn load_generator_refuses_non_loopback_targets() {
    let o = options(
        "192.0.2.1:2045".parse().unwrap(),
        Mode::Closed {
            connections: 1,
            in_flight: 1,
        },
    );
    let err = bench::run(&o).unwrap_err();
    assert!(err.to_string().contains("non-loopback"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_boltbench"))
        .args(["--target", "192.0.2.1:2045", "--duration", "1s"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("refusing"));
}

#[test]
fn echo_and_boltbench_binaries_work_together() {
    let echo = EchoProcess::spawn_with(Path::new(env!("CARGO_BIN_EXE_bolt-echo")), any_port(), &[])
        .unwrap();
    let dir = std::env::temp_dir().join(format!("tools-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let json = dir.join("closed.json");
    let out = Command::new(env!("CARGO_BIN_EXE_boltbench"))
        .arg("--target")
        .arg(echo.addr().to_string())
        .args(["--mode", "closed", "--in-flight", "16", "--warmup", "0s"])
        .args([
            "--duration",
            "30s",
            "--max-requests",
            "1000",
            "--payload",
            "1000",
        ])
        .arg("--json-out")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: BenchReport = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(
        (r.mode.as_str(), r.sent, r.ok, r.payload_size),
        ("closed", 1000, 1000, 1000)
    );

    let out = Command::new(env!("CARGO_BIN_EXE_boltbench"))
        .arg("--target")
        .arg(echo.addr().to_string())
        .args([
            "--mode",
            "open",
            "--rate",
            "1000",
            "--warmup",
            "0s",
            "--duration",
            "200ms",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: BenchReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r.mode, "open");
    assert_eq!(r.ok, r.sent);
    assert!(r.sent >= 199, "{r:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_backend_process_fails_calls_in_flight() {
    let mut echo = tokio::task::spawn_blocking(|| {
        EchoProcess::spawn_with(Path::new(env!("CARGO_BIN_EXE_bolt-echo")), any_port(), &[])
    })
    .await
    .unwrap()
    .unwrap();
    let c = Arc::new(client(echo.addr(), 1).await);
    c.rpc(SERVICE, &b"alive"[..]).await.unwrap();
    let pending = {
        let c = c.clone();
        let req = Request::rpc(c.next_id(), Some(SERVICE), Bytes::new()).header(SILENT_HEADER, "1");
        tokio::spawn(async move { c.call(&req).await })
    };
    // Kill only once the backend has the call: it is in flight, not merely queued here.
    let has_it = wait_for_counters(echo.addr(), LONG, |n| n.requests == 2).await;
    assert!(has_it.unwrap(), "the backend received both calls");
    let status = echo.kill().expect("reaped");
    assert!(!status.success());
    let err = pending.await.unwrap().unwrap_err();
    assert!(matches!(err, ClientError::ConnectionLost(_)), "{err}");
    assert!(c.wait_closed(LONG).await.is_some());
}

// The process harness against the real sidecar binary (`cargo build -p sidecar` and
// `make plugins` first; the error says so when either is missing).

fn plugin_present() {
    let plugin = integration::harness::repo_root().join(integration::harness::DEFAULT_PLUGIN_PATH);
    assert!(
        plugin.is_file(),
        "{} is missing: run `make plugins`",
        plugin.display()
    );
}

#[test]
fn harness_runs_the_sample_topology_through_the_real_sidecar() {
    plugin_present();
    let (rt, server) = echo_on_runtime();
    let client_addr = integration::free_addr().unwrap();
    let server_addr = integration::free_addr().unwrap();
    let config =
        integration::MosnConfig::sample(client_addr, server_addr, server.local_addr()).build();
    let mut sidecar = integration::Sidecar::spawn(config).unwrap();
    assert_eq!(sidecar.listener("clientListener"), Some(client_addr));
    assert_eq!(sidecar.listener("serverListener"), Some(server_addr));

    rt.block_on(async {
        let c = client(client_addr, 3_000_000).await;
        for i in 0..20u32 {
            let body = Bytes::from(format!("through both hops {i}"));
            let resp = c
                .call(&Request::rpc(c.next_id(), Some(SERVICE), body.clone()))
                .await
                .unwrap();
            assert_eq!(resp.id(), 3_000_000 + i);
            assert_eq!(resp.status(), Some(status::SUCCESS));
            assert_eq!(resp.content(), body);
        }
        let ack = c.heartbeat().await.unwrap();
        assert_eq!((ack.cmd_code(), ack.status()), (CMD_HEARTBEAT, Some(0)));
    });
    // The echo server saw the calls on one upstream connection, under the proxy's own ids.
    let conns: Vec<_> = server
        .connections()
        .into_iter()
        .filter(|c| !c.request_ids.is_empty())
        .collect();
    assert_eq!(conns.len(), 1, "{conns:?}");
    assert_eq!(
        conns[0].request_ids.len(),
        20,
        "heartbeats are not forwarded"
    );
    assert!(conns[0].request_ids.iter().all(|id| *id < 3_000_000));

    let status = sidecar.terminate(LONG).unwrap();
    assert!(status.success(), "SIGTERM exits cleanly: {status}");
}

#[test]
fn harness_check_reports_good_and_broken_configs() {
    let good = integration::MosnConfig::sample(
        "127.0.0.1:2045".parse().unwrap(),
        "127.0.0.1:2046".parse().unwrap(),
        "127.0.0.1:12199".parse().unwrap(),
    )
    .build();
    let out = integration::Sidecar::run_check(good.clone()).unwrap();
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);

    let mut broken = good;
    assert!(integration::harness::patch(
        &mut broken,
        "/cluster_manager/clusters/0/name",
        serde_json::json!("")
    ));
    let out = integration::Sidecar::run_check(broken).unwrap();
    assert!(!out.status.success(), "an unnamed cluster is refused");
    assert!(!out.stderr.is_empty() || !out.stdout.is_empty());
}
