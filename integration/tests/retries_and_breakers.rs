//! Retries on response statuses (`retry_policy.status_codes`), the `max_pending_requests` and
//! `max_retries` circuit breakers, and the `tcp` pool mode, through the real `sidecar` binary.
//! Every step is ordered by counts (answers the app holds until released, counters polled with
//! a bounded `eventually`), never by timing.

use std::net::SocketAddr;
use std::time::Duration;

use integration::client::BoltClient;
use integration::echo::{EchoOptions, EchoServer, HOLD_HEADER};
use integration::harness::{cluster_counter, counted_client, eventually};
use integration::harness::{free_addr, ClusterSpec, MosnConfig, Sidecar};
use integration::wire::Request;
use serde_json::{json, Value};

const SERVICE: &str = "com.alipay.test.TestService:1.0";
const CLUSTER: &str = "upstreamCluster";
const SUCCESS: u16 = 0;
const SERVER_EXCEPTION: u16 = 2;
const SERVER_THREADPOOL_BUSY: u16 = 4;
/// Frame timeout of calls the app holds: only the release decides when they are answered.
const HELD_TIMEOUT_MS: i32 = 60_000;
/// Bound on every wait for an event.
const WAIT: Duration = Duration::from_secs(30);

/// A sidecar (admin on) in front of `hosts`.
struct Proxy {
    _sidecar: Sidecar,
    listen: SocketAddr,
    admin: SocketAddr,
}

/// Which codec the sidecar runs.
#[derive(Debug, Clone, Copy)]
enum Codec {
    Wasm,
    Native,
}

fn proxy(
    hosts: Vec<SocketAddr>,
    codec: Codec,
    retry_policy: Option<Value>,
    edit: impl FnOnce(ClusterSpec) -> ClusterSpec,
) -> Proxy {
    let listen = free_addr().unwrap();
    let admin = free_addr().unwrap();
    let mut cfg = MosnConfig::single_hop(listen, hosts)
        .admin(admin)
        .edit_cluster(CLUSTER, |c| {
            edit(c.field("lb_type", json!("LB_ROUNDROBIN")))
        });
    if let Some(policy) = retry_policy {
        cfg = cfg.edit_listener("listener", |l| l.route_field("retry_policy", policy));
    }
    if let Codec::Native = codec {
        cfg = cfg.native();
    }
    Proxy {
        _sidecar: Sidecar::spawn(cfg.build()).expect("sidecar starts"),
        listen,
        admin,
    }
}

impl Proxy {
    /// Counter `key` of `upstream.cluster.<cluster>`.
    async fn cluster(&self, key: &str) -> u64 {
        cluster_counter(self.admin, CLUSTER, key)
            .await
            .unwrap_or_else(|| panic!("no cluster counter {key}"))
    }

    async fn client(&self) -> BoltClient {
        counted_client(self.listen).await
    }
}

async fn echo() -> EchoServer {
    EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap()
}

/// A host that answers every request at once with `status`.
async fn failing(status: u16) -> EchoServer {
    EchoServer::start_with(
        "127.0.0.1:0".parse().unwrap(),
        EchoOptions {
            fail_with_status: Some(status),
            ..EchoOptions::default()
        },
    )
    .await
    .unwrap()
}

fn held(client: &BoltClient, content: &str) -> Request {
    Request::rpc(client.next_id(), Some(SERVICE), content.to_owned())
        .timeout_ms(HELD_TIMEOUT_MS)
        .header(HOLD_HEADER, "1")
}

async fn a_busy_host_is_retried_on_the_other_host(codec: Codec) {
    let busy = failing(SERVER_THREADPOOL_BUSY).await;
    let good = echo().await;
    let p = proxy(
        vec![busy.local_addr(), good.local_addr()],
        codec,
        Some(json!({"retry_on": true, "status_codes": [503]})),
        |c| c,
    );
    let client = p.client().await;
    const CALLS: u64 = 20;
    for i in 0..CALLS {
        let r = client.rpc(SERVICE, format!("call-{i}")).await.unwrap();
        assert_eq!(
            r.status(),
            Some(SUCCESS),
            "{codec:?} call {i}: no failed call"
        );
        assert_eq!(r.content(), format!("call-{i}").as_bytes());
    }
    assert_eq!(
        good.counters().requests,
        CALLS,
        "every call reached the good host"
    );
    let busy_tries = busy.counters().requests;
    assert!(
        busy_tries >= 1,
        "round robin sends some first tries to the busy host"
    );
    assert_eq!(busy_tries, p.cluster("request_retry_on_status").await);
    assert_eq!(busy_tries, p.cluster("request_retry").await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_host_is_retried_on_the_other_host_with_the_wasm_codec() {
    a_busy_host_is_retried_on_the_other_host(Codec::Wasm).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_host_is_retried_on_the_other_host_with_the_native_codec() {
    a_busy_host_is_retried_on_the_other_host(Codec::Native).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_attempt_relays_the_response_and_unlisted_statuses_are_not_retried() {
    let busy = failing(SERVER_THREADPOOL_BUSY).await;
    let p = proxy(
        vec![busy.local_addr()],
        Codec::Wasm,
        Some(json!({"retry_on": true, "status_codes": [503]})),
        |c| c,
    );
    let client = p.client().await;
    let r = client.rpc(SERVICE, "relayed").await.unwrap();
    assert_eq!(r.status(), Some(SERVER_THREADPOOL_BUSY));
    assert_eq!(
        r.content(),
        &b"relayed"[..],
        "the host's own response, not a hijack"
    );
    assert_eq!(busy.counters().requests, 3, "MOSN's 3 attempts");
    assert_eq!(p.cluster("request_retry_on_status").await, 2);

    // SERVER_EXCEPTION maps to 500, which is not listed.
    let broken = failing(SERVER_EXCEPTION).await;
    let p = proxy(
        vec![broken.local_addr()],
        Codec::Wasm,
        Some(json!({"retry_on": true, "status_codes": [503]})),
        |c| c,
    );
    let client = p.client().await;
    let r = client.rpc(SERVICE, "once").await.unwrap();
    assert_eq!(r.status(), Some(SERVER_EXCEPTION));
    assert_eq!(broken.counters().requests, 1);
    assert_eq!(p.cluster("request_retry").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_pending_requests_refuses_a_request_that_would_wait_beyond_it() {
    let app = echo().await;
    let p = proxy(vec![app.local_addr()], Codec::Wasm, None, |c| {
        c.field("pool_mode", json!("ping-pong")).field(
            "circuit_breakers",
            json!([{"max_connections": 1, "max_pending_requests": 1}]),
        )
    });
    let client = std::sync::Arc::new(p.client().await);
    // The first request holds the pool's only connection.
    let first = {
        let client = client.clone();
        let req = held(&client, "first");
        tokio::spawn(async move { client.call(&req).await.expect("answered").status() })
    };
    assert!(
        app.wait_for(WAIT, |c| c.held == 1).await,
        "{:?}",
        app.counters()
    );
    // The second waits for it: the one pending request allowed.
    let second = {
        let client = client.clone();
        let req =
            Request::rpc(client.next_id(), Some(SERVICE), "second").timeout_ms(HELD_TIMEOUT_MS);
        tokio::spawn(async move { client.call(&req).await.expect("answered").status() })
    };
    let pending = eventually(
        WAIT,
        async || p.cluster("request_pending").await,
        |n| *n == 1,
    )
    .await;
    assert_eq!(pending, 1);
    // The third would wait too: refused at once.
    let third = client.rpc(SERVICE, "third").await.unwrap();
    assert_eq!(third.status(), Some(SERVER_THREADPOOL_BUSY));
    assert_eq!(p.cluster("request_max_pending_overflow").await, 1);
    assert_eq!(p.cluster("request_pending_overflow").await, 1);
    assert_eq!(
        app.counters().requests,
        1,
        "nothing else reached the app yet"
    );

    assert_eq!(app.release_held().await, 1);
    assert_eq!(first.await.unwrap(), Some(SUCCESS));
    assert_eq!(second.await.unwrap(), Some(SUCCESS));
    assert_eq!(app.counters().requests, 2);
    assert_eq!(p.cluster("request_pending").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_retries_bounds_the_retries_running_at_once() {
    let busy = failing(SERVER_THREADPOOL_BUSY).await;
    let good = echo().await;
    let p = proxy(
        vec![busy.local_addr(), good.local_addr()],
        Codec::Wasm,
        Some(json!({"retry_on": true, "status_codes": [503]})),
        |c| c.field("circuit_breakers", json!([{"max_retries": 1}])),
    );
    let client = std::sync::Arc::new(p.client().await);
    // Held calls until one of them is a retry (busy host first, then held at the good one):
    // that retry holds the cluster's only retry slot. Round robin alternates, so at most a
    // few calls are needed.
    let mut calls = Vec::new();
    for i in 0..6 {
        let req = held(&client, &format!("held-{i}"));
        let c = client.clone();
        calls.push(tokio::spawn(async move {
            c.call(&req).await.expect("answered").status()
        }));
        let n = calls.len() as u64;
        assert!(
            good.wait_for(WAIT, |c| c.held == n).await,
            "{:?}",
            good.counters()
        );
        if p.cluster("request_retry").await == 1 {
            break;
        }
    }
    assert_eq!(p.cluster("request_retry").await, 1, "one retry is running");
    // While it runs, a call whose first try lands on the busy host is not retried: the
    // busy host's answer is relayed.
    let mut relayed = 0;
    for i in 0..6 {
        let r = client.rpc(SERVICE, format!("now-{i}")).await.unwrap();
        match r.status() {
            Some(SUCCESS) => {}
            Some(SERVER_THREADPOOL_BUSY) => {
                assert_eq!(r.content(), format!("now-{i}").as_bytes());
                relayed += 1;
            }
            other => panic!("unexpected status {other:?}"),
        }
    }
    assert!(
        relayed >= 1,
        "round robin sent some calls to the busy host first"
    );
    assert_eq!(p.cluster("request_retry_overflow").await, relayed);
    assert_eq!(p.cluster("request_retry").await, 1, "no other retry ran");

    // Released, the held retry finishes and frees its slot: retries run again.
    let held_calls = calls.len();
    assert_eq!(good.release_held().await, held_calls);
    for c in calls {
        assert_eq!(c.await.unwrap(), Some(SUCCESS));
    }
    for i in 0..6 {
        let r = client.rpc(SERVICE, format!("after-{i}")).await.unwrap();
        assert_eq!(r.status(), Some(SUCCESS), "after release, call {i}");
    }
    assert!(p.cluster("request_retry").await > 1);
    assert_eq!(p.cluster("request_retry_overflow").await, relayed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_pool_mode_gives_each_downstream_its_own_upstream_connection() {
    let app = echo().await;
    let p = proxy(vec![app.local_addr()], Codec::Wasm, None, |c| {
        c.field("pool_mode", json!("tcp"))
    });
    // Client k sends k + 1 calls, two of them in flight at once when k > 0, so each
    // upstream connection is recognised by its request count.
    let mut clients = Vec::new();
    for k in 0..3usize {
        let client = std::sync::Arc::new(p.client().await);
        let mut pending = Vec::new();
        for i in 0..=k {
            let req = held(&client, &format!("c{k}-{i}"));
            let c = client.clone();
            pending.push(tokio::spawn(async move {
                c.call(&req).await.expect("answered").status()
            }));
        }
        let want = (1..=k as u64 + 1).sum::<u64>();
        assert!(
            app.wait_for(WAIT, |c| c.held == want).await,
            "{:?}",
            app.counters()
        );
        clients.push((client, pending));
    }
    let mut counts: Vec<usize> = app
        .connections()
        .iter()
        .map(|c| c.request_ids.len())
        .collect();
    counts.sort_unstable();
    assert_eq!(
        counts,
        [1, 2, 3],
        "one upstream connection per downstream connection"
    );
    assert_eq!(app.release_held().await, 6);
    for (_, pending) in &mut clients {
        for call in pending.drain(..) {
            assert_eq!(call.await.unwrap(), Some(SUCCESS));
        }
    }
    // More calls reuse each downstream's own connection.
    for (client, _) in &clients {
        let r = client.rpc(SERVICE, "again").await.unwrap();
        assert_eq!(r.status(), Some(SUCCESS));
    }
    assert_eq!(app.connections().len(), 3, "no connection was added");

    // Closing a downstream closes its upstream connection, and only that one.
    let open_by_count = |app: &EchoServer| {
        let mut v: Vec<(usize, bool)> = app
            .connections()
            .iter()
            .map(|c| (c.request_ids.len(), c.open))
            .collect();
        v.sort_unstable();
        v
    };
    clients[1].0.close();
    let state = eventually(
        WAIT,
        async || open_by_count(&app),
        |v| v.iter().any(|c| !c.1),
    )
    .await;
    assert_eq!(state, [(2, true), (3, false), (4, true)]);
    for (client, _) in &clients {
        client.close();
    }
    let state = eventually(
        WAIT,
        async || open_by_count(&app),
        |v| v.iter().all(|c| !c.1),
    )
    .await;
    assert_eq!(state, [(2, false), (3, false), (4, false)]);
}
