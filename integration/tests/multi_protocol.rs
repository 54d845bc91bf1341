//! Several protocols in one sidecar process: `configs/mosn_rpc_config_multi.json` (with free
//! ports) through the real `sidecar` binary and the real plugins, a Bolt listener pair and a
//! Dubbo listener pair side by side, and `autoListener`, which serves both on one port by
//! detecting each connection's protocol. Peers: the Rust Bolt client and echo server, the
//! real sofa-rpc-node client and server (`integration/peers`), and a
//! real Apache Dubbo 3.3.6 consumer and provider (`integration/peers/dubbo`, `make
//! dubbo-peers`). Nothing here measures time: answers and counters order every step.

mod dubbo_peers;
mod sofa_peers;

use std::fs;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dubbo_peers::{consumer, must, Provider, Run, VERSION};
use integration::client::{BoltClient, ClientOptions};
use integration::echo::EchoServer;
use integration::harness::{admin_get, eventually, find_named, free_port, repo_root};
use integration::wire::Request;
use integration::Sidecar;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SERVICE: &str = "com.alipay.test.TestService:1.0";
const WAIT: Duration = Duration::from_secs(60);

/// One test at a time: each starts a provider JVM, consumer JVMs and the sidecar.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Every listener and backend port of one test.
struct Ports {
    bolt_client: u16,
    bolt_server: u16,
    dubbo_client: u16,
    dubbo_server: u16,
    auto: u16,
    admin: u16,
}

/// The object named `name` in the multi config.
fn named<'a>(v: &'a mut Value, name: &str) -> &'a mut Value {
    find_named(v, name).unwrap_or_else(|| panic!("{name} in the multi config"))
}

/// The shipped multi-protocol config with this test's ports, the Bolt app at `bolt_app`
/// and the Dubbo provider on `dubbo_app`.
fn multi_config(p: &Ports, bolt_app: SocketAddr, dubbo_app: u16) -> Value {
    let path = repo_root().join("configs/mosn_rpc_config_multi.json");
    let mut config: Value = serde_json::from_str(&fs::read_to_string(&path).unwrap()).unwrap();
    for (listener, port) in [
        ("boltClientListener", p.bolt_client),
        ("boltServerListener", p.bolt_server),
        ("dubboClientListener", p.dubbo_client),
        ("dubboServerListener", p.dubbo_server),
        ("autoListener", p.auto),
    ] {
        named(&mut config, listener)["address"] = json!(format!("127.0.0.1:{port}"));
    }
    for (cluster, addr) in [
        ("boltServerCluster", bolt_app.to_string()),
        ("boltClientCluster", format!("127.0.0.1:{}", p.bolt_server)),
        ("dubboServerCluster", format!("127.0.0.1:{dubbo_app}")),
        (
            "dubboClientCluster",
            format!("127.0.0.1:{}", p.dubbo_server),
        ),
    ] {
        named(&mut config, cluster)["hosts"] = json!([{"address": addr}]);
    }
    config["admin"]["address"]["socket_address"]["port_value"] = json!(p.admin);
    config["servers"][0]["processor"] = json!(2);
    config
}

/// A Bolt echo app, a Dubbo provider and the sidecar in front of both.
struct Topology {
    ports: Ports,
    bolt_app: EchoServer,
    _provider: Provider,
    sidecar: Sidecar,
}

/// The sidecar's ports, picked right before it starts (after the peers, whose JVM and node
/// processes open ports of their own meanwhile).
fn sidecar_ports() -> Ports {
    let port = || free_port().expect("a free port");
    Ports {
        bolt_client: port(),
        bolt_server: port(),
        dubbo_client: port(),
        dubbo_server: port(),
        auto: port(),
        admin: port(),
    }
}

async fn topology() -> Topology {
    let dubbo_app = free_port().expect("a free port");
    let provider =
        tokio::task::spawn_blocking(move || must(Provider::start(dubbo_app, "green", None)))
            .await
            .unwrap();
    let bolt_app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let ports = sidecar_ports();
    let config = multi_config(&ports, bolt_app.local_addr(), dubbo_app);
    let sidecar = Sidecar::spawn(config).expect("sidecar starts");
    Topology {
        ports,
        bolt_app,
        _provider: provider,
        sidecar,
    }
}

impl Topology {
    fn admin(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.ports.admin))
    }

    async fn stats(&self) -> Value {
        admin_get(self.admin(), "/api/v1/stats")
            .await
            .expect("stats")
    }
}

/// A Dubbo consumer run against `port`, on a blocking thread.
async fn dubbo(port: u16, args: &'static [&'static str]) -> Run {
    tokio::task::spawn_blocking(move || {
        let mut all = vec!["--version", VERSION];
        all.extend_from_slice(args);
        must(consumer(port, &all))
    })
    .await
    .unwrap()
}

/// `n` Bolt echo calls in flight together on one connection to `addr`; all must succeed
/// with their own bodies.
async fn bolt_calls(addr: SocketAddr, n: usize) {
    let client = BoltClient::connect_with(
        addr,
        ClientOptions {
            call_timeout: WAIT,
            ..ClientOptions::default()
        },
    )
    .await
    .expect("connect");
    let client = std::sync::Arc::new(client);
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..n {
        let client = client.clone();
        calls.spawn(async move {
            let id = client.next_id();
            let body = format!("bolt-{i}");
            let r = client
                .call(&Request::rpc(id, Some(SERVICE), Bytes::from(body.clone())))
                .await
                .expect("a response");
            assert_eq!((r.id(), r.status()), (id, Some(0)));
            assert_eq!(r.content(), body.as_bytes());
        });
    }
    while let Some(done) = calls.join_next().await {
        done.expect("a Bolt call");
    }
}

fn listener(stats: &Value, name: &str) -> Value {
    stats["downstream"][format!("downstream.proxy.{name}")].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bolt_and_dubbo_calls_run_at_the_same_time_through_one_sidecar() {
    let _serial = SERIAL.lock().await;
    let t = topology().await;
    let bolt_addr = SocketAddr::from(([127, 0, 0, 1], t.ports.bolt_client));
    // Both protocols at once: 100 Dubbo calls in flight from the Java consumer while 300
    // Bolt calls are in flight from the Bolt client.
    let dubbo_run = dubbo(
        t.ports.dubbo_client,
        &["--method", "echoAsync", "--arg", "dubbo", "--count", "100"],
    );
    let (run, ()) = tokio::join!(dubbo_run, bolt_calls(bolt_addr, 300));
    assert_eq!((run.ok(), run.failed()), (100, 0), "{:?}", run.summary);
    assert_eq!(
        run.summary["mismatched"], 0,
        "every answer is its own call's"
    );
    assert_eq!(t.bolt_app.seen_requests().len(), 300);
    // Each listener counted its own protocol's requests only; each cluster its own.
    let s = t.stats().await;
    for (name, requests) in [
        ("boltClientListener", 300),
        ("boltServerListener", 300),
        ("dubboClientListener", 100),
        ("dubboServerListener", 100),
        ("autoListener", 0),
    ] {
        assert_eq!(listener(&s, name)["request_total"], requests, "{name}: {s}");
        assert_eq!(listener(&s, name)["connection_decode_error"], 0, "{name}");
    }
    for (cluster, requests) in [
        ("boltServerCluster", 300),
        ("boltClientCluster", 300),
        ("dubboServerCluster", 100),
        ("dubboClientCluster", 100),
    ] {
        assert_eq!(
            s["upstream"][format!("upstream.cluster.{cluster}")]["request_total"],
            requests,
            "{cluster}"
        );
    }
    // config_dump keeps every listener with its own protocol and routes.
    let dump = admin_get(t.admin(), "/api/v1/config_dump?alllisteners")
        .await
        .expect("config_dump");
    let proxy = |l: &str| dump[l]["filter_chains"][0]["filters"][0]["config"].clone();
    assert_eq!(proxy("boltClientListener")["downstream_protocol"], "x-bolt");
    assert_eq!(proxy("dubboClientListener")["downstream_protocol"], "dubbo");
    assert_eq!(
        proxy("dubboClientListener")["router_config_name"],
        "dubbo_client_router"
    );
    assert_eq!(proxy("autoListener")["downstream_protocol"], "Auto");
    assert_eq!(
        proxy("autoListener")["extend_config"]["sub_protocol"],
        "x-bolt,dubbo"
    );
}

/// The detection counters of `autoListener`.
async fn detected(t: &Topology) -> Value {
    t.stats().await["downstream"]["auto_detect.autoListener"].clone()
}

/// Reads one Dubbo frame (16-byte header + body) from `s`.
async fn read_dubbo_frame(s: &mut TcpStream) -> Vec<u8> {
    let mut buf = BytesMut::new();
    loop {
        if buf.len() >= 16 {
            let body = u32::from_be_bytes([buf[12], buf[13], buf[14], buf[15]]) as usize;
            if buf.len() >= 16 + body {
                return buf[..16 + body].to_vec();
            }
        }
        let n = tokio::time::timeout(WAIT, s.read_buf(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed before an answer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_auto_listener_serves_bolt_and_dubbo_on_one_port() {
    let _serial = SERIAL.lock().await;
    let t = topology().await;
    let auto = SocketAddr::from(([127, 0, 0, 1], t.ports.auto));
    let before = detected(&t).await;
    let at = |v: &Value, k: &str| v.pointer(k).and_then(Value::as_u64).unwrap_or(0);

    // Both protocols on the one port at the same time.
    let dubbo_run = dubbo(
        t.ports.auto,
        &["--method", "echoAsync", "--arg", "auto", "--count", "50"],
    );
    let (run, ()) = tokio::join!(dubbo_run, bolt_calls(auto, 200));
    assert_eq!((run.ok(), run.failed()), (50, 0), "{:?}", run.summary);
    assert_eq!(run.summary["mismatched"], 0);

    // A Dubbo request trickled a byte at a time: detected once, answered by the provider.
    let request = fs::read(
        repo_root().join("protocols/dubbo/testdata/dubbo-3.3.6-hessian2/request-echo.bin"),
    )
    .unwrap();
    let mut s = TcpStream::connect(auto).await.unwrap();
    s.set_nodelay(true).unwrap();
    for byte in &request {
        s.write_all(&[*byte]).await.unwrap();
        // Separate segments (input pacing, not synchronisation).
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let answer = read_dubbo_frame(&mut s).await;
    assert_eq!(&answer[..2], &[0xda, 0xbb], "a Dubbo frame");
    assert_eq!(answer[3], 20, "status OK");
    assert_eq!(&answer[4..12], &request[4..12], "the request's own id");
    drop(s);

    // Garbage is closed, logged and counted; the port keeps serving both.
    let mut g = TcpStream::connect(auto).await.unwrap();
    g.write_all(&[0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00])
        .await
        .unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(WAIT, g.read_to_end(&mut rest)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "closed: {closed:?}"
    );

    let now = eventually(
        WAIT,
        || detected(&t),
        |d| at(d, "/no_match") > at(&before, "/no_match"),
    )
    .await;
    // Our Bolt client: one connection; the Dubbo consumer: its connection(s) plus the
    // trickled one; the garbage: one no-match; nothing timed out or failed.
    assert_eq!(
        at(&now, "/detected/x-bolt") - at(&before, "/detected/x-bolt"),
        1,
        "{now}"
    );
    let dubbo_conns = at(&now, "/detected/dubbo") - at(&before, "/detected/dubbo");
    assert!(
        dubbo_conns >= 2,
        "the consumer's and the trickled one: {now}"
    );
    assert_eq!(at(&now, "/no_match") - at(&before, "/no_match"), 1, "{now}");
    assert_eq!(at(&now, "/timeout"), 0, "{now}");
    let log = t.sidecar.log_contents();
    let line = log
        .lines()
        .find(|l| l.contains("no candidate protocol matches its first bytes"))
        .unwrap_or_else(|| panic!("no log line in:\n{log}"));
    assert!(
        line.contains("autoListener") && line.contains("16030100a5010000"),
        "{line}"
    );

    let s = t.stats().await;
    // 200 Bolt + 50 Dubbo + 1 trickled Dubbo request on the auto listener, each forwarded
    // to its own protocol's cluster.
    assert_eq!(listener(&s, "autoListener")["request_total"], 251, "{s}");
    assert_eq!(
        s["upstream"]["upstream.cluster.boltClientCluster"]["request_total"],
        200
    );
    assert_eq!(
        s["upstream"]["upstream.cluster.dubboClientCluster"]["request_total"],
        51
    );
    assert_eq!(t.bolt_app.seen_requests().len(), 200);
    // Every connection the listener accepted ends in exactly one detection outcome (the
    // harness's readiness probes close without a byte: `closed_undecided`).
    let outcomes = [
        "/detected/x-bolt",
        "/detected/dubbo",
        "/no_match",
        "/timeout",
        "/closed_undecided",
    ];
    let balance = || async {
        let s = t.stats().await;
        let accepted = listener(&s, "autoListener")["connection_total"]
            .as_u64()
            .unwrap();
        let d = &s["downstream"]["auto_detect.autoListener"];
        (accepted, outcomes.iter().map(|k| at(d, k)).sum::<u64>())
    };
    let (accepted, ended) = eventually(WAIT, balance, |(a, e)| a == e).await;
    assert_eq!(accepted, ended, "every connection has one outcome");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sofa_rpc_node_and_apache_dubbo_share_one_sidecar() {
    let _serial = SERIAL.lock().await;
    sofa_peers::require_peers();
    let port = || free_port().expect("a free port");
    let (dubbo_app, sofa_app) = (port(), port());
    let _provider =
        tokio::task::spawn_blocking(move || must(Provider::start(dubbo_app, "green", None)))
            .await
            .unwrap();
    // The SOFA server app (sofa-rpc-node) behind the Bolt pair.
    let _sofa_server = tokio::task::spawn_blocking(move || {
        sofa_peers::must(sofa_peers::NodeServer::start(sofa_app, "draft", None))
    })
    .await
    .unwrap();
    let ports = sidecar_ports();
    let config = multi_config(
        &ports,
        SocketAddr::from(([127, 0, 0, 1], sofa_app)),
        dubbo_app,
    );
    let _sidecar = Sidecar::spawn(config).expect("sidecar starts");

    // A sofa-rpc-node client keeps calling through the Bolt pair until told to stop; the
    // Apache Dubbo consumer's whole run happens while it does (progress before and after).
    let bolt_client = ports.bolt_client;
    let mut load = tokio::task::spawn_blocking(move || {
        let mut load = sofa_peers::must(sofa_peers::NodeClient::spawn(
            bolt_client,
            &["load", "120", "--concurrency", "8", "--timeout", "5000"],
        ));
        sofa_peers::must(load.wait_progress(WAIT, "SOFA calls succeeding", |p| {
            p["succeeded"].as_u64() >= Some(100)
        }));
        load
    })
    .await
    .unwrap();
    let run = dubbo(
        ports.dubbo_client,
        &["--method", "echoAsync", "--arg", "dubbo", "--count", "100"],
    )
    .await;
    assert_eq!((run.ok(), run.failed()), (100, 0), "{:?}", run.summary);
    let result = tokio::task::spawn_blocking(move || {
        let before = sofa_peers::must(load.wait_progress(WAIT, "progress", |_| true));
        let seen = before["succeeded"].as_u64().unwrap_or(0);
        sofa_peers::must(
            load.wait_progress(WAIT, "SOFA calls after the Dubbo run", |p| {
                p["succeeded"].as_u64() >= Some(seen + 100)
            }),
        );
        sofa_peers::must(load.stop_load());
        sofa_peers::must(load.finish(WAIT))
    })
    .await
    .unwrap();
    assert!(sofa_peers::ok(&result), "sofa-rpc-node load: {result}");
    assert_eq!(result["errors"], 0, "{result}");
    assert_eq!(result["timeouts"], 0, "{result}");

    // The Auto port serves both real clients too.
    let auto = ports.auto;
    let seq = tokio::task::spawn_blocking(move || {
        sofa_peers::must(sofa_peers::run_client(auto, &["seq", "20"]))
    })
    .await
    .unwrap();
    assert!(
        sofa_peers::ok(&seq),
        "sofa-rpc-node through the Auto port: {seq}"
    );
    let run = dubbo(
        ports.auto,
        &["--method", "echo", "--arg", "auto", "--count", "20"],
    )
    .await;
    assert_eq!((run.ok(), run.failed()), (20, 0), "{:?}", run.summary);
}
