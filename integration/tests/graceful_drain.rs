//! Graceful drain with Bolt GoAway, on the real `sidecar` binary with the real `bolt.wasm`:
//!
//! * downstream: with MOSN's `enable_bolt_goaway` a SIGTERM sends each client connection a
//!   GoAway; this crate's client honours it (no new calls on that connection) and the test's
//!   caller reconnects to another sidecar, while the calls in flight (held by the app until
//!   after the GoAway arrived) are all answered. With the switch off no GoAway is sent;
//! * upstream: an app that sends a GoAway on its connection gets no new requests on it; the
//!   calls in flight there are answered, the next calls go over a new connection.
//!
//! Events are ordered explicitly (held answers, counters, polls bounded by [`WAIT`]); nothing
//! asserts wall-clock speed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use integration::client::{BoltClient, ClientOptions};
use integration::echo::{EchoServer, HOLD_HEADER};
use integration::harness;
use integration::harness::eventually;
use integration::harness::{admin_get, free_addr, MosnConfig, Sidecar};
use integration::wire::Request;
use integration::ClientError;
use serde_json::json;
use tokio::sync::Mutex;

const SERVICE: &str = "com.alipay.test.TestService:1.0";
const SUCCESS: u16 = 0;
/// Frame timeout of held calls: far beyond any step, so only the release answers them.
const HELD_TIMEOUT_MS: i32 = 60_000;
/// Upper bound of every wait; only catches "never".
const WAIT: Duration = Duration::from_secs(20);
/// Calls held by the app while the sidecar drains.
const HELD: usize = 8;

fn options() -> ClientOptions {
    ClientOptions {
        first_id: 2_000_000_000,
        call_timeout: WAIT,
        ..ClientOptions::default()
    }
}

async fn connect(addr: SocketAddr) -> Arc<BoltClient> {
    Arc::new(
        BoltClient::connect_with(addr, options())
            .await
            .expect("connect"),
    )
}

/// `kill -TERM <pid>`: the graceful stop.
fn sigterm(sidecar: &Sidecar) {
    let status = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(sidecar.pid().to_string())
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {}", sidecar.pid());
}

/// A caller over [`BoltClient`] that honours GoAway: once its connection got one (or a
/// call is refused with [`ClientError::GoAway`], i.e. not written), it connects to the next
/// address and sends the call there.
struct Reconnecting {
    addrs: Vec<SocketAddr>,
    current: Mutex<(usize, Arc<BoltClient>)>,
    reconnects: std::sync::atomic::AtomicUsize,
}

impl Reconnecting {
    async fn new(addrs: Vec<SocketAddr>) -> Reconnecting {
        let first = connect(addrs[0]).await;
        Reconnecting {
            addrs,
            current: Mutex::new((0, first)),
            reconnects: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// The connection to use now (a fresh one when the current one got a GoAway).
    async fn client(&self) -> Arc<BoltClient> {
        let mut cur = self.current.lock().await;
        if cur.1.goaway_received() {
            let next = (cur.0 + 1) % self.addrs.len();
            *cur = (next, connect(self.addrs[next]).await);
            self.reconnects
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        cur.1.clone()
    }

    async fn call(&self, request: impl Fn(&BoltClient) -> Request) -> Result<u16, ClientError> {
        loop {
            let client = self.client().await;
            match client.call(&request(&client)).await {
                // Refused unwritten: the GoAway came first; the next round reconnects.
                Err(ClientError::GoAway) => continue,
                other => return other.map(|f| f.status().unwrap_or(u16::MAX)),
            }
        }
    }
}

fn held_request(client: &BoltClient, i: usize) -> Request {
    Request::rpc(client.next_id(), Some(SERVICE), format!("held {i}"))
        .timeout_ms(HELD_TIMEOUT_MS)
        .header(HOLD_HEADER, "1")
}

fn plain_request(client: &BoltClient, what: &str) -> Request {
    Request::rpc(client.next_id(), Some(SERVICE), what.to_owned())
}

/// A downstream counter of listener `listener` from the admin API (0 when absent).
async fn listener_counter(admin: SocketAddr, name: &str) -> Option<u64> {
    let stats = admin_get(admin, "/api/v1/stats").await.ok()?;
    stats["downstream"]["downstream.proxy.listener"][name].as_u64()
}

/// A counter of `upstreamCluster` from the admin API (0 when absent).
async fn cluster_counter(admin: SocketAddr, name: &str) -> u64 {
    harness::cluster_counter(admin, "upstreamCluster", name)
        .await
        .unwrap_or(0)
}

fn sidecar(
    listen: SocketAddr,
    app: SocketAddr,
    admin: SocketAddr,
    goaway: Option<bool>,
) -> Sidecar {
    let mut cfg = MosnConfig::single_hop(listen, vec![app]).admin(admin);
    if let Some(on) = goaway {
        cfg = cfg.edit_listener("listener", |l| {
            l.proxy_field(
                "extend_config",
                json!({"sub_protocol": "x-bolt", "enable_bolt_goaway": on}),
            )
        });
    }
    Sidecar::spawn(cfg.build()).expect("sidecar starts")
}

/// Starts `HELD` calls on `client` and waits until the app holds all of them.
async fn hold_calls(
    app: &EchoServer,
    client: &Arc<BoltClient>,
) -> Vec<tokio::task::JoinHandle<Result<Option<u16>, ClientError>>> {
    let before = app.counters().held;
    let calls = (0..HELD)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call(&held_request(&client, i))
                    .await
                    .map(|r| r.status())
            })
        })
        .collect();
    assert!(
        app.wait_for(WAIT, |c| c.held >= before + HELD as u64).await,
        "every held call reached the app"
    );
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_enable_bolt_goaway_sends_goaway_clients_reconnect_and_no_call_fails() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (listen_a, admin_a) = (free_addr().unwrap(), free_addr().unwrap());
    let (listen_b, admin_b) = (free_addr().unwrap(), free_addr().unwrap());
    let mut a = sidecar(listen_a, app.local_addr(), admin_a, Some(true));
    let _b = sidecar(listen_b, app.local_addr(), admin_b, None);
    let caller = Reconnecting::new(vec![listen_a, listen_b]).await;
    for i in 0..10 {
        let status = caller
            .call(|c| plain_request(c, &format!("before {i}")))
            .await;
        assert_eq!(status.unwrap(), SUCCESS, "call {i} through A");
    }
    let on_a = caller.client().await;
    assert_eq!(on_a.peer_addr(), listen_a);

    // Calls in flight through A, held by the app, when A is told to stop.
    let held = hold_calls(&app, &on_a).await;
    sigterm(&a);
    assert!(on_a.wait_goaway(WAIT).await, "A sent a GoAway on SIGTERM");
    // A is still up: its held calls are in flight.
    let sent = eventually(
        WAIT,
        async || listener_counter(admin_a, "goaway_sent").await,
        |n| *n == Some(1),
    )
    .await;
    assert_eq!(sent, Some(1), "A counted its GoAway");
    assert!(matches!(
        on_a.call(&plain_request(&on_a, "after goaway")).await,
        Err(ClientError::GoAway)
    ));

    // New calls go to B, while A's calls are still held.
    for i in 0..10 {
        let status = caller
            .call(|c| plain_request(c, &format!("after {i}")))
            .await;
        assert_eq!(status.unwrap(), SUCCESS, "call {i} after the GoAway");
    }
    assert_eq!(caller.client().await.peer_addr(), listen_b);
    assert_eq!(
        caller.reconnects.load(std::sync::atomic::Ordering::Relaxed),
        1
    );

    // The held calls are answered through the draining A.
    assert_eq!(app.release_held().await, HELD);
    for (i, h) in held.into_iter().enumerate() {
        let status = tokio::time::timeout(WAIT, h)
            .await
            .expect("held call answered")
            .unwrap();
        assert_eq!(status.unwrap(), Some(SUCCESS), "held call {i}");
    }
    let exit = a.wait_exit(WAIT).expect("A exits after its drain");
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_without_enable_bolt_goaway_drains_without_a_goaway() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (listen, admin) = (free_addr().unwrap(), free_addr().unwrap());
    let mut a = sidecar(listen, app.local_addr(), admin, None);
    let client = connect(listen).await;
    let r = client
        .call(&plain_request(&client, "before"))
        .await
        .unwrap();
    assert_eq!(r.status(), Some(SUCCESS));

    let held = hold_calls(&app, &client).await;
    sigterm(&a);
    let log = eventually(WAIT, async || a.log_contents(), |l| l.contains("stopping")).await;
    assert!(log.contains("stopping"), "A began its graceful stop");

    assert_eq!(app.release_held().await, HELD);
    for (i, h) in held.into_iter().enumerate() {
        let status = tokio::time::timeout(WAIT, h)
            .await
            .expect("held call answered")
            .unwrap();
        assert_eq!(status.unwrap(), Some(SUCCESS), "held call {i}");
    }
    // The drain closes the connection; a GoAway would have come before the close.
    assert!(
        client.wait_closed(WAIT).await.is_some(),
        "A closed the connection"
    );
    assert!(!client.goaway_received(), "no GoAway with the switch off");
    let exit = a.wait_exit(WAIT).expect("A exits after its drain");
    assert!(exit.success(), "{exit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_goaway_drains_that_connection_and_new_calls_use_a_new_one() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (listen, admin) = (free_addr().unwrap(), free_addr().unwrap());
    let _sidecar = sidecar(listen, app.local_addr(), admin, None);
    let client = connect(listen).await;
    for i in 0..5 {
        let r = client
            .call(&plain_request(&client, &format!("before {i}")))
            .await
            .unwrap();
        assert_eq!(r.status(), Some(SUCCESS), "call {i}");
    }
    assert_eq!(app.connections().len(), 1, "one upstream connection");

    // Calls in flight on that connection when the app sends its GoAway.
    let held = hold_calls(&app, &client).await;
    let first_count = app.connections()[0].request_ids.len();
    assert_eq!(app.send_goaway().await, 1);
    let counted = eventually(
        WAIT,
        async || cluster_counter(admin, "upstream_goaway").await,
        |n| *n >= 1,
    )
    .await;
    assert_eq!(counted, 1, "the sidecar counted the upstream's GoAway");

    // The next calls go over a new connection; the draining one gets none.
    for i in 0..10 {
        let r = client
            .call(&plain_request(&client, &format!("after {i}")))
            .await
            .unwrap();
        assert_eq!(r.status(), Some(SUCCESS), "call {i} after the GoAway");
    }
    let conns = app.connections();
    assert_eq!(conns.len(), 2, "a second upstream connection: {conns:?}");
    assert_eq!(
        conns[0].request_ids.len(),
        first_count,
        "nothing new on the draining one"
    );
    assert!(conns[1].request_ids.len() >= 10);

    // The calls in flight on the draining connection are answered, then it closes.
    assert_eq!(app.release_held().await, HELD);
    for (i, h) in held.into_iter().enumerate() {
        let status = tokio::time::timeout(WAIT, h)
            .await
            .expect("held call answered")
            .unwrap();
        assert_eq!(status.unwrap(), Some(SUCCESS), "held call {i}");
    }
    let conns = eventually(WAIT, async || app.connections(), |c| !c[0].open).await;
    assert!(!conns[0].open, "the drained connection was closed");
    assert!(conns[1].open, "the new one stays open");
    for i in 0..5 {
        let r = client
            .call(&plain_request(&client, &format!("later {i}")))
            .await
            .unwrap();
        assert_eq!(r.status(), Some(SUCCESS), "call {i} later");
    }
    assert_eq!(app.connections().len(), 2);
    assert_eq!(cluster_counter(admin, "upstream_goaway").await, 1);
    assert_eq!(
        cluster_counter(admin, "request_retry").await,
        0,
        "nothing needed a retry"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_goaway_on_a_ping_pong_connection_busy_or_idle_retires_it() {
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (listen, admin) = (free_addr().unwrap(), free_addr().unwrap());
    let cfg = MosnConfig::single_hop(listen, vec![app.local_addr()])
        .admin(admin)
        .edit_cluster("upstreamCluster", |c| {
            c.field("pool_mode", json!("ping-pong"))
                .field("circuit_breakers", json!([{"max_connections": 4}]))
        });
    let _sidecar = Sidecar::spawn(cfg.build()).expect("sidecar starts");
    let client = connect(listen).await;

    // Busy: the GoAway arrives while the connection carries a held call.
    let held = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call(&held_request(&client, 0))
                .await
                .map(|r| r.status())
        })
    };
    assert!(app.wait_for(WAIT, |c| c.held == 1).await);
    assert_eq!(app.connections().len(), 1);
    assert_eq!(app.send_goaway().await, 1);
    let counted = eventually(
        WAIT,
        async || cluster_counter(admin, "upstream_goaway").await,
        |n| *n >= 1,
    )
    .await;
    assert_eq!(counted, 1);
    assert_eq!(app.release_held().await, 1);
    let status = tokio::time::timeout(WAIT, held)
        .await
        .expect("answered")
        .unwrap();
    assert_eq!(
        status.unwrap(),
        Some(SUCCESS),
        "the call in flight finished"
    );
    let conns = eventually(WAIT, async || app.connections(), |c| !c[0].open).await;
    assert!(
        !conns[0].open,
        "closed once its call was answered, not put back"
    );
    let r = client.call(&plain_request(&client, "next")).await.unwrap();
    assert_eq!(r.status(), Some(SUCCESS));
    let conns = app.connections();
    assert_eq!(
        conns.len(),
        2,
        "the next call took a new connection: {conns:?}"
    );
    assert_eq!(conns[1].request_ids.len(), 1);

    // Idle: the GoAway arrives while the connection waits in the pool.
    assert_eq!(app.send_goaway().await, 1);
    let counted = eventually(
        WAIT,
        async || cluster_counter(admin, "upstream_goaway").await,
        |n| *n >= 2,
    )
    .await;
    assert_eq!(counted, 2);
    let conns = eventually(WAIT, async || app.connections(), |c| !c[1].open).await;
    assert!(!conns[1].open, "an idle connection closes at its GoAway");
    let r = client
        .call(&plain_request(&client, "after idle"))
        .await
        .unwrap();
    assert_eq!(r.status(), Some(SUCCESS));
    assert_eq!(app.connections().len(), 3);
    assert_eq!(cluster_counter(admin, "request_retry").await, 0);
}
