//! Guest contexts live only as long as a frame needs them, through the real `sidecar` binary
//! with the real Bolt plugin: with 128 calls in flight (held by the app until released), the
//! plugin holds a handful of contexts, not one per call. MOSN's TinyGo plugins spend most of
//! their time collecting garbage when many contexts stay alive; this bound is what keeps
//! them fast.

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration::client::{BoltClient, ClientOptions};
use integration::echo::{EchoServer, HOLD_HEADER};
use integration::harness::{admin_get, free_addr, MosnConfig, Sidecar};
use integration::wire::Request;
use serde_json::Value;

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
