//! The admin API of the real `sidecar` binary: MOSN's endpoints with their shapes and status
//! codes, `/metrics` whose counters and histogram counts match the traffic sent (forwarded,
//! hijacked for no route, timed out), the log level changed at run time, and an admin server
//! that neither holds fds for unfinished requests nor spins when the process is out of fds.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use integration::bench::procstat;
use integration::client::{BoltClient, ClientOptions};
use integration::echo::{EchoServer, SILENT_HEADER};
use integration::harness::eventually;
use integration::harness::{
    admin_get, admin_request, free_addr, ListenerSpec, MosnConfig, Sidecar, SidecarOptions,
};
use integration::wire::Request;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SERVICE: &str = "com.alipay.test.TestService:1.0";
const SUCCESS: u16 = 0;
const WAIT: Duration = Duration::from_secs(30);

struct Proxy {
    sidecar: Sidecar,
    listen: SocketAddr,
    admin: SocketAddr,
    _app: EchoServer,
}

/// One listener (`egress`) routing only [`SERVICE`] to the echo app with a 300 ms timeout.
async fn proxy() -> Proxy {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let listen = free_addr().unwrap();
    let admin = free_addr().unwrap();
    let cfg = MosnConfig::single_hop(listen, vec![app.local_addr()])
        .admin(admin)
        .edit_listener("listener", |l: ListenerSpec| {
            l.match_headers(vec![json!({"name": "service", "value": SERVICE})])
                .route_timeout("300ms")
        })
        .build();
    Proxy {
        sidecar: Sidecar::spawn(cfg).expect("sidecar starts"),
        listen,
        admin,
        _app: app,
    }
}

async fn client(addr: SocketAddr) -> BoltClient {
    BoltClient::connect_with(
        addr,
        ClientOptions {
            call_timeout: Duration::from_secs(20),
            ..ClientOptions::default()
        },
    )
    .await
    .expect("connect")
}

/// The value of the sample `name{labels}` (labels as written, e.g. `listener="listener"`).
fn sample(text: &str, name: &str, labels: &str) -> Option<f64> {
    let key = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
}

async fn metrics(admin: SocketAddr) -> String {
    let a = admin_request(admin, "GET", "/metrics", "").await.unwrap();
    assert_eq!(a.status, 200);
    assert!(
        a.header("content-type")
            .is_some_and(|t| t.starts_with("application/openmetrics-text")),
        "{:?}",
        a.headers
    );
    a.body
}

const FORWARDED: usize = 20;
const NO_ROUTE: usize = 5;
const TIMED_OUT: usize = 3;

/// Sends the test's traffic: forwarded calls, calls no route matches, calls the app never
/// answers (the sidecar answers them at the route timeout).
async fn send_traffic(listen: SocketAddr) {
    let c = client(listen).await;
    for _ in 0..FORWARDED {
        let r = c.rpc(SERVICE, "hello").await.unwrap();
        assert_eq!(r.status(), Some(SUCCESS));
    }
    for _ in 0..NO_ROUTE {
        let r = c.rpc("com.example.Unrouted:1.0", "x").await.unwrap();
        assert_ne!(r.status(), Some(SUCCESS), "no route: hijacked");
    }
    for _ in 0..TIMED_OUT {
        let req = Request::rpc(c.next_id(), Some(SERVICE), &b"x"[..]).header(SILENT_HEADER, "1");
        let r = c.call(&req).await.unwrap();
        assert_ne!(r.status(), Some(SUCCESS), "timed out: hijacked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_what_the_traffic_did() {
    let p = proxy().await;
    send_traffic(p.listen).await;
    let total = (FORWARDED + NO_ROUTE + TIMED_OUT) as f64;
    // Outcomes are recorded as the responses are written: wait for the last one.
    let text = eventually(
        WAIT,
        async || metrics(p.admin).await,
        |t| {
            sample(
                t,
                "sidecar_downstream_request_duration_seconds_count",
                "listener=\"listener\"",
            ) == Some(total)
        },
    )
    .await;
    let l = "listener=\"listener\"";
    let c = "cluster=\"upstreamCluster\"";
    let get = |name: &str, labels: &str| {
        sample(&text, name, labels)
            .unwrap_or_else(|| panic!("no sample {name}{{{labels}}}\n{text}"))
    };
    assert_eq!(get("sidecar_downstream_request_total", l), total);
    assert_eq!(get("sidecar_downstream_request_active", l), 0.0);
    assert_eq!(
        get("sidecar_downstream_response_forwarded_total", l),
        FORWARDED as f64
    );
    assert_eq!(
        get("sidecar_downstream_hijacked_total", l),
        (NO_ROUTE + TIMED_OUT) as f64
    );
    assert_eq!(
        get("sidecar_downstream_request_404_total", l),
        NO_ROUTE as f64
    );
    assert_eq!(
        get("sidecar_downstream_request_504_total", l),
        TIMED_OUT as f64
    );
    assert_eq!(get("sidecar_downstream_reset_total", l), 0.0);
    assert_eq!(
        get(
            "sidecar_downstream_response_status_total",
            &format!("{l},status=\"0\"")
        ),
        FORWARDED as f64,
        "forwarded responses by the app's status (0: success)"
    );
    // The client's connection (and the harness's readiness probes).
    assert!(get("sidecar_downstream_connection_total", l) >= 1.0);
    assert_eq!(
        get("sidecar_downstream_request_duration_seconds_count", l),
        total
    );
    assert_eq!(
        get(
            "sidecar_downstream_request_duration_seconds_bucket",
            &format!("le=\"+Inf\",{l}")
        ),
        total
    );
    // The timed-out calls waited at least the 300 ms route timeout.
    let under_250ms = get(
        "sidecar_downstream_request_duration_seconds_bucket",
        &format!("le=\"0.25\",{l}"),
    );
    assert_eq!(under_250ms, (FORWARDED + NO_ROUTE) as f64, "{text}");
    // Upstream: the routed calls reached the app; only answered tries are timed.
    assert_eq!(
        get("sidecar_upstream_request_total", c),
        (FORWARDED + TIMED_OUT) as f64
    );
    assert_eq!(
        get("sidecar_upstream_request_timeout_total", c),
        TIMED_OUT as f64
    );
    assert_eq!(
        get("sidecar_upstream_response_received_total", c),
        FORWARDED as f64
    );
    assert_eq!(
        get("sidecar_upstream_request_duration_seconds_count", c),
        FORWARDED as f64
    );
    let host = format!("{c},host=\"{}\"", p._app.local_addr());
    assert_eq!(
        get("sidecar_upstream_host_request_total", &host),
        (FORWARDED + TIMED_OUT) as f64
    );
    // The JSON stats agree with the exposition (both merge the same shards).
    let stats = admin_get(p.admin, "/api/v1/stats").await.unwrap();
    let global = &stats["downstream"]["downstream.proxy.global"];
    assert_eq!(global["request_total"], json!(total as u64));
    assert_eq!(
        stats["downstream"]["downstream.proxy.listener"]["hijacked"],
        json!((NO_ROUTE + TIMED_OUT) as u64)
    );
    assert_eq!(
        stats["upstream"][format!("upstream.host.upstreamCluster.{}", p._app.local_addr())]
            ["response_received"],
        json!(FORWARDED as u64)
    );
    assert!(text.ends_with("# EOF\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_answers_with_its_shape_and_status() {
    let p = proxy().await;
    let a = p.admin;
    let req = |m: &'static str, path: &'static str, body: &'static str| async move {
        admin_request(a, m, path, body).await.unwrap()
    };
    // Unknown path, wrong method, bad bodies.
    assert_eq!(req("GET", "/api/v1/nope", "").await.status, 404);
    let wrong = req("POST", "/api/v1/stats", "").await;
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.header("allow"), Some("GET"));
    assert_eq!(req("GET", "/api/v1/update_loglevel", "").await.status, 405);
    let bad = req("POST", "/api/v1/update_loglevel", "{not json").await;
    assert_eq!(bad.status, 400);
    assert!(bad.body.contains("bad body"), "{}", bad.body);
    let level = req("POST", "/api/v1/update_loglevel", r#"{"log_level":"LOUD"}"#).await;
    assert_eq!(level.status, 400);
    assert!(level.body.contains("LOUD"), "{}", level.body);
    let path = req(
        "POST",
        "/api/v1/update_loglevel",
        r#"{"log_path":"/elsewhere.log","log_level":"DEBUG"}"#,
    )
    .await;
    assert_eq!(path.status, 400);
    // MOSN's shapes.
    let states = req("GET", "/api/v1/states", "").await;
    assert_eq!(states.status, 200);
    assert_eq!(
        states.body,
        format!("pid={}&state=6\n", p.sidecar.pid()),
        "Running"
    );
    let version: Value =
        serde_json::from_str(&req("GET", "/api/v1/version", "").await.body).unwrap();
    assert!(version["version"].is_string());
    let glob = req("GET", "/api/v1/stats_glob", "").await;
    assert_eq!(glob.status, 200);
    assert!(
        glob.body.lines().any(|l| l == "request_total:0"),
        "{}",
        glob.body
    );
    let upstream: Value =
        serde_json::from_str(&req("GET", "/api/v1/stats?key=upstream", "").await.body).unwrap();
    assert!(upstream["upstream.cluster.upstreamCluster"]["request_total"].is_u64());
    assert_eq!(req("GET", "/api/v1/stats?key=nope", "").await.status, 404);
    let dump: Value =
        serde_json::from_str(&req("GET", "/api/v1/config_dump", "").await.body).unwrap();
    assert!(dump["servers"][0]["listeners"].is_array());
    let listener = req("GET", "/api/v1/config_dump?listener=listener", "").await;
    assert_eq!(listener.status, 200);
    assert!(listener.body.contains(&p.listen.port().to_string()));
    let clusters: Value =
        serde_json::from_str(&req("GET", "/api/v1/config_dump?allclusters", "").await.body)
            .unwrap();
    assert!(clusters["upstreamCluster"].is_object(), "{clusters}");
    assert_eq!(
        req("GET", "/api/v1/config_dump?cluster=nope", "")
            .await
            .status,
        404
    );
    assert_eq!(req("GET", "/api/v1/config_dump?a&b", "").await.status, 400);
    // Plugins: what runs, and a reload of the same file (a new generation, same hash).
    let plugins: Value =
        serde_json::from_str(&req("GET", "/api/v1/plugins", "").await.body).unwrap();
    let bolt = &plugins["plugins"][0];
    assert_eq!(bolt["kind"], "wasm", "{plugins}");
    assert_eq!(bolt["abi_version"], "proxy_abi_mosn_version_0_2_0");
    assert_eq!(bolt["generation"], 0);
    assert_eq!(req("GET", "/api/v1/plugins/reload", "").await.status, 405);
    let reload = req("POST", "/api/v1/plugins/reload", "").await;
    assert_eq!(reload.status, 200, "{}", reload.body);
    let report: Value = serde_json::from_str(&reload.body).unwrap();
    assert_eq!(report["plugins"][0]["outcome"], "reloaded", "{report}");
    assert_eq!(
        report["plugins"][0]["md5"], report["plugins"][0]["previous_md5"],
        "the same file"
    );
    let plugins: Value =
        serde_json::from_str(&req("GET", "/api/v1/plugins", "").await.body).unwrap();
    assert_eq!(plugins["plugins"][0]["generation"], 1, "{plugins}");
    // The log level, changed at run time: a debug line appears only after the change.
    let log_path = p.sidecar.log_path().to_owned();
    let get_level = || async {
        serde_json::from_str::<Value>(&req("GET", "/api/v1/get_loglevel", "").await.body).unwrap()
    };
    assert_eq!(get_level().await["stdout"], "INFO");
    let debug_lines = || {
        std::fs::read_to_string(&log_path)
            .unwrap()
            .lines()
            .filter(|l| l.contains("DEBUG"))
            .count()
    };
    let c = client(p.listen).await;
    c.rpc("com.example.Unrouted:1.0", "x").await.unwrap();
    assert_eq!(debug_lines(), 0, "INFO hides debug lines");
    let up = req(
        "POST",
        "/api/v1/update_loglevel",
        r#"{"log_path":"stdout","log_level":"DEBUG"}"#,
    )
    .await;
    assert_eq!(up.status, 200, "{}", up.body);
    assert_eq!(up.body, "update logger success\n");
    assert_eq!(get_level().await["stdout"], "DEBUG");
    // A hijack logs at DEBUG ("answering on the server's behalf").
    c.rpc("com.example.Unrouted:1.0", "x").await.unwrap();
    let seen = eventually(WAIT, async || debug_lines(), |n| *n > 0).await;
    assert!(seen > 0, "DEBUG lines appear after the change");
}

/// Connections that never finish their request are closed at the header deadline and at
/// most [`MAX_ADMIN_CONNECTIONS`] are held at once; a complete request is still answered.
const MAX_ADMIN_CONNECTIONS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unfinished_admin_requests_neither_hold_fds_nor_block_the_api() {
    let p = proxy().await;
    let fds = || {
        std::fs::read_dir(format!("/proc/{}/fd", p.sidecar.pid()))
            .unwrap()
            .count()
    };
    // The harness waited for the admin API: every worker is up, the fd count is settled.
    let baseline = fds();
    let mut stalled = Vec::new();
    for _ in 0..3 * MAX_ADMIN_CONNECTIONS {
        let mut s = TcpStream::connect(p.admin).await.unwrap();
        s.write_all(b"GET /api/v1/stats HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
        stalled.push(s);
    }
    // The admin thread accepts at most its cap; the rest wait in the kernel's backlog.
    let held = eventually(
        WAIT,
        async || fds(),
        |n| *n >= baseline + MAX_ADMIN_CONNECTIONS,
    )
    .await;
    assert!(
        held <= baseline + MAX_ADMIN_CONNECTIONS + 1,
        "{held} fds with {} stalled admin connections (baseline {baseline})",
        stalled.len()
    );
    // A real request is answered once the header deadline closed stalled ones.
    let stats = admin_request(p.admin, "GET", "/api/v1/stats", "")
        .await
        .unwrap();
    assert_eq!(stats.status, 200);
    // Every stalled connection is closed by the sidecar (EOF), none answered.
    for mut s in stalled {
        let mut buf = Vec::new();
        let read = tokio::time::timeout(WAIT, s.read_to_end(&mut buf)).await;
        assert!(read.is_ok(), "a stalled admin connection stays open");
        assert!(
            !String::from_utf8_lossy(&buf).contains(" 200 "),
            "stalled request answered"
        );
    }
    let after = eventually(WAIT, async || fds(), |n| *n <= baseline).await;
    assert!(after <= baseline, "fds back to {baseline}: {after}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_fds_the_admin_accept_loop_backs_off() {
    const MAX_FDS: u64 = 128;
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let listen = free_addr().unwrap();
    let admin = free_addr().unwrap();
    let cfg = MosnConfig::single_hop(listen, vec![app.local_addr()])
        .admin(admin)
        .build();
    let options = SidecarOptions {
        max_open_files: Some(MAX_FDS),
        ..SidecarOptions::default()
    };
    let sidecar = Sidecar::spawn_with(cfg, &options).expect("sidecar starts");
    let pid = sidecar.pid();
    let fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .count() as u64
    };
    // Use up the process's fds with idle client connections (each accepted one holds one).
    let mut clients = Vec::new();
    for _ in 0..MAX_FDS + 16 {
        clients.push(TcpStream::connect(listen).await.unwrap());
    }
    let full = eventually(WAIT, async || fds(), |n| *n >= MAX_FDS).await;
    assert!(
        full >= MAX_FDS,
        "the sidecar holds every fd it may open: {full}"
    );
    let log = sidecar.log_path().to_owned();
    let warnings = || {
        std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .filter(|l| l.contains("admin accept failed"))
            .count()
    };
    let before = procstat::sample(pid).unwrap().cpu_ticks;
    let waiting = TcpStream::connect(admin).await.unwrap();
    // The admin loop meets EMFILE and backs off (10, 20, 40, 80 ms, …): five warnings
    // arrive within a few hundred ms; a loop spinning on the error would have written
    // thousands by the time a poll sees the fifth.
    let seen = eventually(WAIT, async || warnings(), |n| *n >= 5).await;
    assert!(seen >= 5, "accept errors are logged");
    assert!(
        seen < 50,
        "{seen} accept warnings: the loop spins instead of backing off"
    );
    let spent = procstat::sample(pid).unwrap().cpu_ticks - before;
    assert!(spent < 100, "{spent} CPU ticks while out of fds");
    // fds back: the waiting admin connection is accepted and a request is answered.
    drop(clients);
    drop(waiting);
    let answered = eventually(
        WAIT,
        async || admin_request(admin, "GET", "/api/v1/states", "").await.ok(),
        |a| a.as_ref().is_some_and(|a| a.status == 200),
    )
    .await;
    assert!(answered.is_some_and(|a| a.status == 200));
}

/// A real Prometheus server (Debian's `prometheus`, started here on loopback) scrapes
/// `/metrics` and answers a query for a sidecar series with the traffic's count.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_the_sidecar() {
    let p = proxy().await;
    send_traffic(p.listen).await;
    let total = FORWARDED + NO_ROUTE + TIMED_OUT;
    let dir = std::env::temp_dir().join(format!("sidecar-prometheus-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: sidecar\n    \
             static_configs:\n      - targets: ['{}']\n",
            p.admin
        ),
    )
    .unwrap();
    let web = free_addr().unwrap();
    let mut prometheus = std::process::Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("prometheus.log")).unwrap())
        .spawn()
        .expect("the prometheus binary runs (tools/services.sh install installs it)");
    let query = "/api/v1/query?query=sum(sidecar_downstream_request_total)";
    let start = Instant::now();
    let mut last = Value::Null;
    while start.elapsed() < 2 * WAIT {
        if let Ok(a) = admin_request(web, "GET", query, "").await {
            last = serde_json::from_str(&a.body).unwrap_or(Value::Null);
            if last["data"]["result"][0]["value"][1] == json!(total.to_string()) {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        last["data"]["result"][0]["value"][1],
        json!(total.to_string()),
        "Prometheus answered {last}; its log:\n{log}"
    );
}
