//! Protocol auto-detection (`downstream_protocol: "Auto"`) through the real `sidecar` binary
//! with real plugins: `bolt.wasm` (detects through its `rpc_sidecar_check` export) and
//! `misbehave.wasm` (Bolt without `Protocol::check`: detected by a trial decode, as MOSN's
//! TinyGo plugins are), a Rust Bolt echo server behind, real loopback sockets. Several codecs
//! serve listeners side by side in one process. Every connection of an auto-detecting
//! listener ends in exactly one of its `auto_detect.<listener>` counters; tests compare them
//! before and after (the harness's readiness probes connect and close without a byte).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use integration::client::{BoltClient, ClientOptions};
use integration::echo::EchoServer;
use integration::harness::{admin_get, eventually, free_addr, patch, Sidecar};
use integration::harness::{mosn_config, ClusterSpec, ListenerSpec};
use integration::wire::{FrameReader, Request};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SERVICE: &str = "com.alipay.test.TestService:1.0";
const SUCCESS: u16 = 0;
/// The protocol name `misbehave.wasm` serves here: Bolt, without a check export.
const NO_CHECK: &str = "x-bolt-nocheck";
const WAIT: Duration = Duration::from_secs(20);

/// Both plugins, and three codecs: `x-bolt` (bolt.wasm), `x-bolt-nocheck` (misbehave.wasm)
/// and `x-bolt-native` (the built-in native Bolt codec).
fn codecs(cfg: &mut Value) {
    let plugin = |name: &str, file: &str| {
        json!({"plugin_name": name, "vm_config": {"engine": "wasmer",
            "path": format!("target/wasm32-wasip1/plugin/{file}"), "cpu": 100, "mem": 100}})
    };
    let wasm = |plugin: &str, protocol: &str| {
        json!({"type": "wasm", "enable": true,
            "config": {"from_wasm_plugin": plugin, "protocol": protocol, "root_id": 1}})
    };
    assert!(patch(
        cfg,
        "/wasm_global_plugins",
        json!([
            plugin("wasm-bolt", "bolt.wasm"),
            plugin("wasm-misbehave", "misbehave.wasm")
        ])
    ));
    assert!(patch(
        cfg,
        "/third_part_codec",
        json!({"codecs": [
            wasm("wasm-bolt", "x-bolt"),
            wasm("wasm-misbehave", NO_CHECK),
            {"type": "native", "enable": true, "config": {"protocol": "x-bolt-native", "codec": "bolt"}},
        ]})
    ));
}

/// A sidecar in front of `app`: one single-protocol listener per codec (`bolt`, `nocheck`,
/// `native`, each with its own route config and cluster to the app, which settles each
/// cluster's protocol) and `auto`, detecting among `candidates` with `auto_detect`.
struct Topology {
    sidecar: Sidecar,
    admin: SocketAddr,
    auto: SocketAddr,
    single: [(SocketAddr, &'static str); 3],
}

fn topology(app: SocketAddr, candidates: &str, auto_detect: Value) -> Topology {
    let admin = free_addr().unwrap();
    let auto = free_addr().unwrap();
    let names = [
        ("bolt", "x-bolt"),
        ("nocheck", NO_CHECK),
        ("native", "x-bolt-native"),
    ];
    let mut single = Vec::new();
    let mut config = mosn_config().admin(admin);
    for (name, protocol) in names {
        let addr = free_addr().unwrap();
        single.push((addr, name));
        config = config
            .listener(
                ListenerSpec::new(name, addr, &format!("{name}Cluster"))
                    .proxy_field("extend_config", json!({"sub_protocol": protocol})),
            )
            .cluster(ClusterSpec::new(&format!("{name}Cluster"), vec![app]));
    }
    let mut cfg = config
        .listener(
            ListenerSpec::new("auto", auto, "boltCluster")
                .proxy_field("downstream_protocol", json!("Auto"))
                .proxy_field("upstream_protocol", json!("Auto"))
                .proxy_field(
                    "extend_config",
                    json!({"sub_protocol": candidates, "auto_detect": auto_detect}),
                ),
        )
        .build();
    // The auto listener's route config: one route per candidate's cluster; a connection
    // uses the routes whose cluster speaks its protocol.
    assert!(patch(
        &mut cfg,
        "/servers/0/routers/3/virtual_hosts/0/routers",
        json!([
            {"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"cluster_name": "boltCluster"}},
            {"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"cluster_name": "nocheckCluster"}},
            {"match": {"headers": [{"name": "service", "value": ".*"}]}, "route": {"cluster_name": "nativeCluster"}},
        ])
    ));
    codecs(&mut cfg);
    let sidecar = Sidecar::spawn(cfg).expect("sidecar starts");
    Topology {
        sidecar,
        admin,
        auto,
        single: [single[0], single[1], single[2]],
    }
}

fn default_detect() -> Value {
    json!({"max_bytes": 1024, "timeout": "10s"})
}

async fn stats(admin: SocketAddr) -> Value {
    admin_get(admin, "/api/v1/stats").await.expect("stats")
}

async fn detect_counters(admin: SocketAddr) -> Value {
    stats(admin).await["downstream"]["auto_detect.auto"].clone()
}

/// Waits until the auto listener's counters, less `before`, are `want` (keys of `want`
/// only; `detected` compared per protocol).
async fn wait_detect(admin: SocketAddr, before: &Value, want: Value) -> Value {
    let delta = |now: &Value| -> Value {
        let mut out = json!({});
        for (k, v) in want.as_object().unwrap() {
            if k == "detected" {
                for p in v.as_object().unwrap().keys() {
                    out["detected"][p] = json!(
                        now["detected"][p].as_u64().unwrap_or(0)
                            - before["detected"][p].as_u64().unwrap_or(0)
                    );
                }
            } else {
                out[k] = json!(now[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0));
            }
        }
        out
    };
    let now = eventually(WAIT, || detect_counters(admin), |now| delta(now) == want).await;
    assert_eq!(delta(&now), want, "auto_detect counters: {now}");
    now
}

async fn client(addr: SocketAddr) -> BoltClient {
    BoltClient::connect_with(
        addr,
        ClientOptions {
            call_timeout: WAIT,
            ..ClientOptions::default()
        },
    )
    .await
    .expect("connect")
}

async fn echo_call(client: &BoltClient, body: &'static [u8]) {
    let id = client.next_id();
    let r = client
        .call(&Request::rpc(id, Some(SERVICE), Bytes::from_static(body)))
        .await
        .expect("a response");
    assert_eq!((r.id(), r.status()), (id, Some(SUCCESS)));
    assert_eq!(&r.content()[..], body);
}

/// Reads one Bolt frame from `stream`.
async fn read_frame(stream: &mut TcpStream) -> integration::wire::Frame {
    let reader = FrameReader::default();
    let mut buf = BytesMut::new();
    loop {
        if let Some(frame) = reader.next_frame(&mut buf).expect("a Bolt frame") {
            return frame;
        }
        let n = tokio::time::timeout(WAIT, stream.read_buf(&mut buf))
            .await
            .expect("an answer in time")
            .expect("read");
        assert!(n > 0, "closed before an answer");
    }
}

/// Waits until the peer closed `stream` (read returns 0 or the connection is reset).
async fn wait_closed(stream: &mut TcpStream) {
    let mut byte = [0u8; 64];
    match tokio::time::timeout(WAIT, stream.read(&mut byte)).await {
        Ok(Ok(0)) | Ok(Err(_)) => {}
        Ok(Ok(_)) => panic!("unexpected bytes from the sidecar"),
        Err(_) => panic!("not closed in time"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_codec_serves_its_own_listener_and_auto_picks_per_connection() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let t = topology(app.local_addr(), "x-bolt,x-bolt-nocheck", default_detect());
    let before = detect_counters(t.admin).await;
    // Side by side: each single-protocol listener with its own codec, routes and cluster.
    for (addr, _) in t.single {
        echo_call(&client(addr).await, b"single").await;
    }
    // Auto: Bolt bytes match the first candidate, by its check export.
    let c = client(t.auto).await;
    echo_call(&c, b"auto one").await;
    echo_call(&c, b"auto two").await;
    wait_detect(
        t.admin,
        &before,
        json!({"detected": {"x-bolt": 1, (NO_CHECK): 0}, "no_match": 0}),
    )
    .await;
    let s = stats(t.admin).await;
    for (listener, calls) in [("bolt", 1), ("nocheck", 1), ("native", 1), ("auto", 2)] {
        assert_eq!(
            s["downstream"][format!("downstream.proxy.{listener}")]["request_total"],
            calls,
            "{listener}: {s}"
        );
    }
    // The auto connection went to the x-bolt cluster, the only one its routes keep.
    assert_eq!(
        s["upstream"]["upstream.cluster.boltCluster"]["request_total"], 3,
        "{s}"
    );
    assert_eq!(
        s["upstream"]["upstream.cluster.nocheckCluster"]["request_total"], 1,
        "{s}"
    );
    // config_dump keeps the listeners apart, the auto listener with its candidates.
    let dump = admin_get(t.admin, "/api/v1/config_dump?alllisteners")
        .await
        .expect("dump");
    let proxy = |l: &str| dump[l]["filter_chains"][0]["filters"][0]["config"].clone();
    assert_eq!(proxy("bolt")["downstream_protocol"], "x-bolt");
    assert_eq!(proxy("nocheck")["downstream_protocol"], NO_CHECK);
    assert_eq!(proxy("auto")["downstream_protocol"], "Auto");
    assert_eq!(
        proxy("auto")["extend_config"]["sub_protocol"],
        "x-bolt,x-bolt-nocheck"
    );
    drop(t.sidecar);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_first_frame_is_detected_once_and_decoded_whole() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    // The fallback candidate alone (it can only tell once the whole frame is there), then
    // the check candidate (it tells from the first 4 bytes).
    for (candidates, detected) in [("x-bolt-nocheck", NO_CHECK), ("x-bolt", "x-bolt")] {
        let t = topology(app.local_addr(), candidates, default_detect());
        let before = detect_counters(t.admin).await;
        let frame = Request::rpc(7, Some(SERVICE), Bytes::from_static(b"trickled"))
            .to_bytes()
            .unwrap();
        let mut s = TcpStream::connect(t.auto).await.unwrap();
        s.set_nodelay(true).unwrap();
        for byte in frame.iter() {
            s.write_all(&[*byte]).await.unwrap();
            s.flush().await.unwrap();
            // Separate segments (input pacing, not synchronisation).
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let answer = read_frame(&mut s).await;
        assert_eq!((answer.id(), answer.status()), (7, Some(SUCCESS)));
        assert_eq!(&answer.content()[..], b"trickled");
        wait_detect(
            t.admin,
            &before,
            json!({"detected": {(detected): 1}, "no_match": 0, "timeout": 0}),
        )
        .await;
        let req =
            stats(t.admin).await["downstream"]["downstream.proxy.auto"]["request_total"].clone();
        assert_eq!(req, 1, "one request: no byte lost or read twice");
        drop(t.sidecar);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_is_closed_with_a_log_line_and_counted() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let t = topology(app.local_addr(), "x-bolt,x-bolt-nocheck", default_detect());
    let before = detect_counters(t.admin).await;
    let mut s = TcpStream::connect(t.auto).await.unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: sidecar\r\n\r\n")
        .await
        .unwrap();
    wait_closed(&mut s).await;
    wait_detect(
        t.admin,
        &before,
        json!({"detected": {"x-bolt": 0, (NO_CHECK): 0}, "no_match": 1, "timeout": 0}),
    )
    .await;
    let log = t.sidecar.log_contents();
    let line = log
        .lines()
        .find(|l| l.contains("no candidate protocol matches its first bytes"))
        .unwrap_or_else(|| panic!("no log line in:\n{log}"));
    assert!(line.contains("WARN"), "{line}");
    assert!(line.contains("auto"), "names the listener: {line}");
    assert!(
        line.contains(&s.local_addr().unwrap().to_string()),
        "names the peer: {line}"
    );
    assert!(
        line.contains("474554202f20485454502f312e31"),
        "first bytes in hex: {line}"
    );
    // The listener still serves Bolt afterwards.
    echo_call(&client(t.auto).await, b"after garbage").await;
    drop(t.sidecar);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_never_decides_is_closed_at_the_deadline_or_the_cap() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let t = topology(
        app.local_addr(),
        "x-bolt,x-bolt-nocheck",
        json!({"max_bytes": 64, "timeout": "300ms"}),
    );
    let before = detect_counters(t.admin).await;
    // One Bolt byte: both candidates need more, then nothing comes.
    let mut silent = TcpStream::connect(t.auto).await.unwrap();
    silent.write_all(&[0x01]).await.unwrap();
    wait_closed(&mut silent).await;
    let now = wait_detect(t.admin, &before, json!({"timeout": 1, "no_match": 0})).await;
    assert!(t
        .sidecar
        .log_contents()
        .contains("its protocol was not detected in time"));
    // A frame longer than the cap: x-bolt matched from its first bytes all the same.
    let c = client(t.auto).await;
    echo_call(&c, &[b'x'; 200]).await;
    wait_detect(
        t.admin,
        &now,
        json!({"detected": {"x-bolt": 1}, "timeout": 0}),
    )
    .await;
    drop(t.sidecar);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_a_sole_waiting_fallback_candidate_wins() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let t = topology(
        app.local_addr(),
        "x-bolt-nocheck",
        json!({"max_bytes": 64, "timeout": "10s"}),
    );
    let before = detect_counters(t.admin).await;
    // 300 bytes of body: the trial decode still needs more at 64 bytes; the one candidate
    // waiting is chosen and decodes the whole frame from its first byte.
    let c = client(t.auto).await;
    echo_call(&c, &[b'y'; 300]).await;
    wait_detect(
        t.admin,
        &before,
        json!({"detected": {(NO_CHECK): 1}, "no_match": 0}),
    )
    .await;
    drop(t.sidecar);
}
