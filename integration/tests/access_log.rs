//! Access logs through the real `sidecar` binary with the real Bolt plugin: one line per
//! call (forwarded, no route, timeout) with its fields, JSON lines, logrotate (rename, then
//! SIGUSR1), every line written at a clean SIGTERM, and bad formats refused by `check`.
//! Waits are bounded polls of the files; nothing depends on how fast the machine is.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use integration::client::{BoltClient, ClientOptions};
use integration::echo::{EchoServer, HOLD_HEADER};
use integration::harness::{admin_get, free_addr, ClusterSpec, ListenerSpec, MosnConfig, Sidecar};
use integration::wire::Request;
use serde_json::{json, Value};

const SERVICE: &str = "com.alipay.test.TestService:1.0";
const SUCCESS: u16 = 0;
const NO_PROCESSOR: u16 = 6;
const TIMEOUT: u16 = 7;
/// Longest wait for lines to reach a file.
const WAIT: Duration = Duration::from_secs(20);

/// Every variable this sidecar knows, `|`-separated.
const FULL_FORMAT: &str = "%start_time%|%request_received_duration%|\
%response_received_duration%|%duration%|%bytes_sent%|%bytes_received%|%protocol%|\
%response_code%|%response_flag%|%upstream_local_address%|%downstream_local_address%|\
%downstream_remote_address%|%upstream_host%|%upstream_cluster%|%request_header_service%|\
%request_header_sofa_head_method_name%|%request_header_sofa_trace_id%";

/// A scratch directory for log files, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("access-log-it-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Scratch(dir)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .map(|s| s.lines().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// Polls `path` until it has `n` lines (bounded by [`WAIT`]); returns them.
async fn lines_eventually(path: &Path, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let lines = read_lines(path);
        if lines.len() >= n || start.elapsed() > WAIT {
            assert_eq!(lines.len(), n, "{}: {lines:#?}", path.display());
            return lines;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn connect(addr: SocketAddr) -> BoltClient {
    BoltClient::connect_with(
        addr,
        ClientOptions {
            first_id: 1_000,
            call_timeout: Duration::from_secs(20),
            ..ClientOptions::default()
        },
    )
    .await
    .expect("connect")
}

fn access_log(path: &Path, format: &str) -> Value {
    json!([{"log_path": path.to_str().expect("utf-8 path"), "log_format": format}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_no_route_and_timed_out_calls_get_one_line_each() {
    let logs = Scratch::new("fields");
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // An app that accepts and reads, and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            conns.push(s);
        }
    });
    let (listen, slow_listen, admin) = (
        free_addr().unwrap(),
        free_addr().unwrap(),
        free_addr().unwrap(),
    );
    let cfg = MosnConfig::single_hop(listen, vec![app.local_addr()])
        .edit_listener("listener", |l| {
            l.listener_field("access_logs", access_log(&logs.path("access.log"), FULL_FORMAT))
        })
        .listener(
            ListenerSpec::new("slowListener", slow_listen, "silentCluster")
                .names("slow_router", "slowHost")
                .listener_field(
                    "access_logs",
                    json!([{"log_path": logs.path("slow.json").to_str().unwrap(),
                            "log_encoding": "json",
                            "log_format": "%response_code% %response_flag% %upstream_host% \
                                %upstream_cluster% %request_header_service% %duration% %bytes_sent%"}]),
                ),
        )
        .cluster(ClusterSpec::new("silentCluster", vec![silent_addr]))
        .admin(admin)
        .build();
    let _sidecar = Sidecar::spawn(cfg).expect("sidecar starts");

    let client = connect(listen).await;
    // Calls one after the other, so the lines come in this order.
    for i in 0..3 {
        let req = Request::rpc(
            client.next_id(),
            Some(SERVICE),
            Bytes::from_static(b"hello"),
        )
        .header("sofa_head_method_name", "echo")
        .header("sofa_trace_id", format!("0a0fe8a8170000000000{i}"));
        let r = client.call(&req).await.expect("answer");
        assert_eq!(r.status(), Some(SUCCESS));
    }
    // No `service` header: no route, answered by the sidecar.
    let r = client
        .call(&Request::rpc(
            client.next_id(),
            None,
            Bytes::from_static(b"x"),
        ))
        .await
        .expect("hijack");
    assert_eq!(r.status(), Some(NO_PROCESSOR));

    let lines = lines_eventually(&logs.path("access.log"), 4).await;
    let upstream_conn = app.connections()[0].peer.to_string();
    for (i, line) in lines[..3].iter().enumerate() {
        let f: Vec<&str> = line.split('|').collect();
        assert_eq!(f.len(), 17, "{line}");
        assert_eq!(f[0].len(), "2024/05/01 12:00:00.000".len(), "{line}");
        for d in &f[1..4] {
            assert!(d.ends_with('s'), "a Go duration: {d} in {line}");
        }
        assert!(f[4].parse::<u64>().unwrap() > 0, "bytes sent: {line}");
        assert!(f[5].parse::<u64>().unwrap() > 0, "bytes received: {line}");
        assert_eq!(f[6], "x-bolt", "{line}");
        assert_eq!(f[7], "0", "Bolt SUCCESS as the upstream sent it: {line}");
        assert_eq!(f[8], "-", "no flag: {line}");
        assert_eq!(
            f[9], upstream_conn,
            "the upstream connection's local address"
        );
        assert_eq!(f[10], listen.to_string());
        assert_eq!(f[11], client.local_addr().to_string());
        assert_eq!(f[12], app.local_addr().to_string());
        assert_eq!(f[13], "upstreamCluster");
        assert_eq!(f[14], SERVICE);
        assert_eq!(f[15], "echo");
        assert_eq!(f[16], format!("0a0fe8a8170000000000{i}"));
    }
    let f: Vec<&str> = lines[3].split('|').collect();
    assert_eq!(
        (f[7], f[8], f[9], f[12], f[13], f[14]),
        ("404", "NoRouteFound", "-", "-", "-", "-"),
        "{}",
        lines[3]
    );
    assert_eq!(f[1], "-", "never sent upstream");
    println!("sample line: {}", lines[0]);

    // The app never answers: the request's 300ms timeout ends it.
    let slow = connect(slow_listen).await;
    let never =
        Request::rpc(slow.next_id(), Some(SERVICE), Bytes::from_static(b"never")).timeout_ms(300);
    let r = slow.call(&never).await.expect("timeout answer");
    assert_eq!(r.status(), Some(TIMEOUT));
    let json_lines = lines_eventually(&logs.path("slow.json"), 1).await;
    let v: Value = serde_json::from_str(&json_lines[0]).expect("a JSON line");
    assert_eq!(v["response_code"], 504);
    assert_eq!(v["response_flag"], "UpstreamRequestTimeout");
    assert_eq!(v["upstream_host"], silent_addr.to_string());
    assert_eq!(v["upstream_cluster"], "silentCluster");
    assert_eq!(v["request_header_service"], SERVICE);
    assert!(v["bytes_sent"].as_u64().unwrap() > 0);
    let took = v["duration"].as_str().unwrap();
    assert!(
        took.ends_with('s') && !took.ends_with("µs") && !took.ends_with("ns"),
        "at least the 300ms timeout: {took}"
    );
    println!("sample JSON line: {}", json_lines[0]);

    // A client that goes away with its call in flight (the app holds the answer): a reset.
    let leaving = connect(listen).await;
    let held_call = Request::rpc(
        leaving.next_id(),
        Some(SERVICE),
        Bytes::from_static(b"held"),
    )
    .timeout_ms(60_000)
    .header(HOLD_HEADER, "1");
    let mut raw = bytes::BytesMut::new();
    held_call.encode(&mut raw).expect("encodes");
    leaving.send_raw(raw.freeze()).expect("sent");
    assert!(
        app.wait_for(WAIT, |c| c.requests == 4).await,
        "the held call reaches the app"
    );
    leaving.close();
    let lines = lines_eventually(&logs.path("access.log"), 5).await;
    let f: Vec<&str> = lines[4].split('|').collect();
    assert_eq!(
        (f[4], f[7], f[8], f[12], f[14]),
        (
            "0",
            "-",
            "DownStreamTermination",
            app.local_addr().to_string().as_str(),
            SERVICE
        ),
        "{}",
        lines[4]
    );
    assert_ne!(f[1], "-", "it was sent upstream: {}", lines[4]);
    assert_eq!(f[2], "-", "no response arrived: {}", lines[4]);

    let stats = admin_get(admin, "/api/v1/stats").await.expect("stats");
    let counters = &stats["downstream"]["access_log.listener"];
    assert_eq!(counters["lines_written"], 5, "{stats}");
    assert_eq!(counters["lines_dropped"], 0);
    assert_eq!(counters["write_errors"], 0);
    assert_eq!(
        stats["downstream"]["access_log.slowListener"]["lines_written"],
        1
    );
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logrotate_renames_then_sigusr1_and_new_lines_go_to_a_new_file() {
    let logs = Scratch::new("rotate");
    let path = logs.path("access.log");
    let rotated = logs.path("access.log.1");
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (listen, admin) = (free_addr().unwrap(), free_addr().unwrap());
    let cfg = MosnConfig::single_hop(listen, vec![app.local_addr()])
        .edit_listener("listener", |l| {
            l.listener_field(
                "access_logs",
                access_log(&path, "%request_header_sofa_trace_id%"),
            )
        })
        .admin(admin)
        .build();
    let mut sidecar = Sidecar::spawn(cfg).expect("sidecar starts");
    let client = connect(listen).await;
    let call = |trace: String| {
        let req = Request::rpc(client.next_id(), Some(SERVICE), Bytes::from_static(b"x"))
            .header("sofa_trace_id", trace);
        let client = &client;
        async move {
            assert_eq!(
                client.call(&req).await.expect("answer").status(),
                Some(SUCCESS)
            );
        }
    };
    for i in 0..3 {
        call(format!("before-{i}")).await;
    }
    assert_eq!(
        lines_eventually(&path, 3).await,
        ["before-0", "before-1", "before-2"]
    );

    std::fs::rename(&path, &rotated).expect("rename");
    sidecar.signal("USR1").expect("SIGUSR1");
    // The reopen creates the new file; wait for it (and the counter) before calling again.
    let start = Instant::now();
    loop {
        let stats = admin_get(admin, "/api/v1/stats").await.expect("stats");
        if stats["downstream"]["access_log.listener"]["reopens"] == 1 && path.exists() {
            break;
        }
        assert!(start.elapsed() < WAIT, "no reopen: {stats}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..2 {
        call(format!("after-{i}")).await;
    }
    assert_eq!(lines_eventually(&path, 2).await, ["after-0", "after-1"]);
    assert_eq!(read_lines(&rotated), ["before-0", "before-1", "before-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_call_has_its_line_after_a_clean_sigterm() {
    const CALLS: usize = 300;
    let logs = Scratch::new("count");
    let path = logs.path("access.log");
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let listen = free_addr().unwrap();
    let cfg = MosnConfig::single_hop(listen, vec![app.local_addr()])
        .edit_listener("listener", |l| {
            l.listener_field(
                "access_logs",
                access_log(&path, "%request_header_sofa_trace_id% %response_code%"),
            )
        })
        .build();
    let mut sidecar = Sidecar::spawn(cfg).expect("sidecar starts");
    // Three connections (both workers), concurrent calls on each.
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(std::sync::Arc::new(connect(listen).await));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..CALLS {
        let client = clients[i % clients.len()].clone();
        tasks.spawn(async move {
            let req = Request::rpc(client.next_id(), Some(SERVICE), Bytes::from_static(b"x"))
                .header("sofa_trace_id", format!("t{i}"));
            client.call(&req).await.expect("answer").status()
        });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.unwrap(), Some(SUCCESS));
    }
    // No wait for the file: the graceful stop must write every line.
    let status = sidecar.terminate(WAIT).expect("exits");
    assert!(status.success(), "{status:?}");
    let lines = read_lines(&path);
    assert_eq!(lines.len(), CALLS, "one line per call");
    let mut traces: Vec<usize> = lines
        .iter()
        .map(|l| {
            let (trace, code) = l.split_once(' ').expect("two fields");
            assert_eq!(code, "0", "{l}");
            trace[1..].parse().expect("trace number")
        })
        .collect();
    traces.sort_unstable();
    assert_eq!(
        traces,
        (0..CALLS).collect::<Vec<_>>(),
        "each call exactly once"
    );
}

#[test]
fn check_refuses_an_unknown_variable_naming_it_and_the_listener() {
    let cfg = MosnConfig::single_hop(free_addr().unwrap(), vec![free_addr().unwrap()])
        .edit_listener("listener", |l| {
            l.listener_field(
                "access_logs",
                json!([{"log_path": "/tmp/never-written.log", "log_format": "%start_time% %upstream_hots%"}]),
            )
        })
        .build();
    let out = Sidecar::run_check(cfg).expect("check runs");
    assert!(!out.status.success());
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("servers[0].listeners[0].access_logs[0].log_format")
            && text.contains("listener \"listener\"")
            && text.contains("%upstream_hots%"),
        "{text}"
    );
    assert!(!Path::new("/tmp/never-written.log").exists());
}
