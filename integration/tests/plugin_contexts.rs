//! Guest contexts live only as long as a frame needs them, through the real `sidecar` binary
//! with the real Bolt plugin: with 128 calls in flight (held by the app until released), the
//! plugin holds a handful of contexts, not one per call. MOSN's TinyGo plugins spend most of
//! their time collecting garbage when many contexts stay alive; this bound is what keeps
//! them fast.

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration::client::{BoltClient, ClientOptions};
use integration::echo::{EchoServer, HOLD_HEADER};
use integration::harness::{admin_get, free_addr, patch, MosnConfig, Sidecar};
use integration::wire::Request;
use serde_json::{json, Value};

const SERVICE: &str = "com.alipay.test.TestService:1.0";
const IN_FLIGHT: usize = 128;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_plugin_contexts_stay_bounded_with_128_calls_in_flight() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let listen = free_addr().unwrap();
    let admin = free_addr().unwrap();
    let cfg = MosnConfig::single_hop(listen, vec![app.local_addr()])
        .admin(admin)
        .build();
    let _sidecar = Sidecar::spawn(cfg).expect("sidecar starts");
    let client = Arc::new(
        BoltClient::connect_with(
            listen,
            ClientOptions {
                first_id: 2_000_000_000,
                call_timeout: Duration::from_secs(60),
                ..ClientOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    // One call first, so the upstream connection exists: requests waiting for a connection
    // to be made keep their contexts until they are encoded.
    let warm = client
        .call(&Request::rpc(client.next_id(), Some(SERVICE), "warm-up"))
        .await
        .unwrap();
    assert_eq!(warm.status(), Some(0));
    let mut calls = tokio::task::JoinSet::new();
    for i in 0..IN_FLIGHT {
        let client = client.clone();
        calls.spawn(async move {
            let req = Request::rpc(client.next_id(), Some(SERVICE), format!("held-{i}"))
                .timeout_ms(60_000)
                .header(HOLD_HEADER, "1");
            client.call(&req).await
        });
    }
    assert!(
        app.wait_for(Duration::from_secs(20), |c| c.held == IN_FLIGHT as u64)
            .await,
        "the app holds every call"
    );
    // The workers publish their codecs' counters a few times a second: wait until they
    // show every request decoded.
    let codec = |v: &Value| v["codec"]["codec.x-bolt"].clone();
    let start = Instant::now();
    let stats = loop {
        let v = codec(&admin_get(admin, "/api/v1/stats").await.unwrap());
        if v["contexts_created"].as_u64().unwrap_or(0) > IN_FLIGHT as u64
            || start.elapsed() > Duration::from_secs(20)
        {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("with {IN_FLIGHT} calls in flight: {stats}");
    assert!(stats["contexts_created"].as_u64().unwrap() >= IN_FLIGHT as u64);
    // Per worker: the next decode's spare, and frames between their decode and encode.
    // One connection decodes 16 frames per batch and yields to their tasks before the next;
    // measured 16-23 at once (a batch, and a few of the previous one whose tasks had not
    // reached their encode yet). Three batches is the bound, with room for a loaded
    // machine's different read sizes; kept for the round trip, it would be 128.
    let live_max = stats["contexts_live_max"].as_u64().unwrap();
    assert!(
        live_max <= 48,
        "{live_max} contexts alive at once on one worker"
    );
    assert!(stats["contexts_live"].as_u64().unwrap() <= 8);

    assert_eq!(app.release_held().await, IN_FLIGHT);
    while let Some(r) = calls.join_next().await {
        let frame = r.unwrap().expect("answered");
        assert_eq!(frame.status(), Some(0));
    }
}

/// The per-instance context counters of the one worker's x-bolt codec.
async fn per_instance(admin: std::net::SocketAddr) -> Vec<Value> {
    let v = admin_get(admin, "/api/v1/stats").await.unwrap();
    v["codec"]["codec.x-bolt"]["workers"][0]["per_instance"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Waits (bounded) until the published counters satisfy `done`.
async fn published(admin: std::net::SocketAddr, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let v = per_instance(admin).await;
        if done(&v) || start.elapsed() > Duration::from_secs(20) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A new client connection to `listen` after 20 successful calls on it (kept open by the
/// caller, so its instance stays taken).
async fn calls_on_a_new_connection(listen: std::net::SocketAddr, tag: &str) -> BoltClient {
    let client = BoltClient::connect(listen).await.unwrap();
    for i in 0..20 {
        let req = Request::rpc(client.next_id(), Some(SERVICE), format!("{tag}-{i}"));
        assert_eq!(client.call(&req).await.unwrap().status(), Some(0));
    }
    client
}

fn created(instance: &Value) -> u64 {
    instance["contexts_created"].as_u64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instance_num_gives_each_connection_one_of_a_workers_instances() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let listen = free_addr().unwrap();
    let admin = free_addr().unwrap();
    // One worker running three instances of the plugin.
    let mut cfg = MosnConfig::single_hop(listen, vec![app.local_addr()])
        .admin(admin)
        .instance_num(3)
        .build();
    assert!(patch(&mut cfg, "/servers/0/processor", json!(1)));
    let _sidecar = Sidecar::spawn(cfg).expect("sidecar starts");
    let plugins = admin_get(admin, "/api/v1/plugins").await.unwrap();
    assert_eq!(
        plugins["plugins"][0]["instances_per_worker"], 3,
        "{plugins}"
    );

    // Round robin, one instance per connection for its life: a downstream connection and
    // the upstream connection its first request opens use two instances; the third decodes
    // nothing. (The harness's readiness probe is a connection too: it takes a turn and
    // decodes nothing, so which two are used depends on it; how many does not.)
    let used = |v: &[Value]| v.iter().filter(|i| created(i) > 0).count();
    let _first = calls_on_a_new_connection(listen, "a").await;
    let counts = published(admin, |v| v.len() == 3 && used(v) >= 2).await;
    eprintln!("one connection: {counts:?}");
    assert_eq!(counts.len(), 3, "three instances on the worker");
    assert_eq!(used(&counts), 2, "one instance downstream, one upstream");

    // The next downstream connection gets the unused one.
    let _second = calls_on_a_new_connection(listen, "b").await;
    let counts = published(admin, |v| used(v) == 3).await;
    eprintln!("two connections: {counts:?}");
    assert_eq!(
        used(&counts),
        3,
        "the second connection decoded on the third instance"
    );
    let stats = admin_get(admin, "/api/v1/stats").await.unwrap();
    assert_eq!(stats["codec"]["codec.x-bolt"]["instances"], 3);
}
