//! `STRICT_DNS` clusters through the real `sidecar` binary with the real Bolt Wasm plugin and a
//! name server the test controls ([`DnsServer`]): a name that moves to another address sends
//! new calls there while the old host's connection drains (its call in flight still answered),
//! a failed connect resolves the name again at once (long before the next period), a name
//! with two addresses spreads calls over both, and a name that disappears leaves no hosts
//! until it comes back. The two app servers listen on the same port of two loopback addresses
//! (127.0.0.2 and 127.0.0.3), as two pods behind one service name would. Steps are ordered by
//! events (DNS queries, the sidecar's counters, the apps' counters); every wait is bounded by
//! [`WAIT`]; nothing asserts on speed.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use integration::client::BoltClient;
use integration::dns::DnsServer;
use integration::echo::{EchoServer, HOLD_HEADER};
use integration::harness::{
    cluster_counter, counted_client, eventually, free_addr, MosnConfig, Sidecar,
};
use integration::wire::Request;
use serde_json::json;

const SERVICE: &str = "com.alipay.test.TestService:1.0";
const SUCCESS: u16 = 0;
const CLUSTER: &str = "upstreamCluster";
const NAME: &str = "backend.rpc.test";
const WAIT: Duration = Duration::from_secs(30);
const A: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const B: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);

/// Two app servers on one port: A on 127.0.0.2, B on 127.0.0.3.
async fn two_apps() -> (EchoServer, EchoServer, u16) {
    for _ in 0..20 {
        let a = EchoServer::start(SocketAddr::from((A, 0))).await.unwrap();
        let port = a.local_addr().port();
        if let Ok(b) = EchoServer::start(SocketAddr::from((B, port))).await {
            return (a, b, port);
        }
    }
    panic!("no port free on both 127.0.0.2 and 127.0.0.3");
}

struct Proxy {
    sidecar: Sidecar,
    listen: SocketAddr,
    admin: SocketAddr,
}

/// One sidecar (admin on) in front of `NAME:port`, resolved by `dns` every `refresh`.
fn proxy(dns: &DnsServer, port: u16, refresh: &str) -> Proxy {
    let listen = free_addr().unwrap();
    let admin = free_addr().unwrap();
    let cfg = MosnConfig::single_hop(listen, Vec::new())
        .admin(admin)
        .edit_cluster(CLUSTER, |c| {
            c.field("type", json!("STRICT_DNS"))
                .field("lb_type", json!("LB_ROUNDROBIN"))
                .field("hosts", json!([{"address": format!("{NAME}:{port}")}]))
                .field("dns_refresh_rate", json!(refresh))
                .field(
                    "dns_resolvers",
                    json!({"servers": [dns.addr().to_string()], "timeout": 2, "attempts": 2}),
                )
                .connect_timeout("2s")
        })
        .build();
    Proxy {
        sidecar: Sidecar::spawn(cfg).expect("sidecar starts"),
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

async fn call(client: &BoltClient) -> Option<u16> {
    client.rpc(SERVICE, "ping").await.ok()?.status()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_moves_drains_the_old_host_and_no_call_fails() {
    let (a, b, port) = two_apps().await;
    let dns = DnsServer::start().await.unwrap();
    dns.set(NAME, &[A], 0);
    let p = proxy(&dns, port, "100ms");
    // Resolved before the first request is accepted: one host, and it is A.
    assert!(dns.queries(NAME) >= 1);
    assert_eq!(p.cluster("present_hosts").await, 1);
    let client = Arc::new(p.client().await);
    for _ in 0..10 {
        assert_eq!(call(&client).await, Some(SUCCESS));
    }
    assert_eq!((a.counters().requests, b.counters().requests), (10, 0));

    // One call stays in flight on A while the name moves to B.
    let held = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .call(&Request::rpc(0, Some(SERVICE), &b"held"[..]).header(HOLD_HEADER, "1"))
                .await
        })
    };
    let seen = eventually(WAIT, async || a.counters().held, |n| *n >= 1).await;
    assert_eq!(seen, 1, "the call is held on A");
    let changes = p.cluster("dns_host_changes").await;
    dns.set(NAME, &[B], 0);
    let changed = eventually(
        WAIT,
        async || p.cluster("dns_host_changes").await,
        |n| *n > changes,
    )
    .await;
    assert!(changed > changes, "the sidecar saw the new address");

    // New calls go to B; A gets nothing new.
    for _ in 0..10 {
        assert_eq!(call(&client).await, Some(SUCCESS));
    }
    assert_eq!(b.counters().requests, 10);
    assert_eq!(a.counters().requests, 11, "10 calls and the held one");

    // The held call is still answered by A, then A's connection closes (drained).
    assert_eq!(a.release_held().await, 1);
    let answer = held.await.unwrap().expect("the held call is answered");
    assert_eq!(answer.status(), Some(SUCCESS));
    let open = eventually(
        WAIT,
        async || a.connections().iter().filter(|c| c.open).count(),
        |n| *n == 0,
    )
    .await;
    assert_eq!(open, 0, "the drained connection to A closes");
    assert_eq!(p.cluster("present_hosts").await, 1);
    assert!(p
        .sidecar
        .log_contents()
        .contains("host left (no longer in DNS)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connect_resolves_the_name_again_at_once() {
    let (a, b, port) = two_apps().await;
    let dns = DnsServer::start().await.unwrap();
    dns.set(NAME, &[A], 0);
    // The period is an hour: any resolution after the first is the connect failure's.
    let p = proxy(&dns, port, "3600s");
    let client = p.client().await;
    assert_eq!(call(&client).await, Some(SUCCESS));
    let queries = dns.queries(NAME);
    assert_eq!(p.cluster("dns_resolutions").await, 1);

    // A goes away (its connections close, its port refuses); the name now points to B.
    dns.set(NAME, &[B], 0);
    a.shutdown();
    drop(a);
    let mut failed = 0u64;
    let served = eventually(
        WAIT,
        async || {
            if call(&client).await != Some(SUCCESS) {
                failed += 1;
            }
            b.counters().requests
        },
        |n| *n >= 1,
    )
    .await;
    assert!(served >= 1, "calls reach B after the re-resolution");
    assert!(dns.queries(NAME) > queries, "the name was asked again");
    assert!(p.cluster("dns_resolutions").await >= 2);
    // Calls in the window between A's close and the new answer fail (no other host exists);
    // they are few, and every later call succeeds.
    println!("calls failed before B was resolved: {failed}");
    for _ in 0..10 {
        assert_eq!(call(&client).await, Some(SUCCESS));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_addresses_share_the_calls_and_a_vanished_name_leaves_no_host() {
    let (a, b, port) = two_apps().await;
    let dns = DnsServer::start().await.unwrap();
    dns.set(NAME, &[A, B], 0);
    let p = proxy(&dns, port, "100ms");
    assert_eq!(p.cluster("present_hosts").await, 2);
    let client = p.client().await;
    for _ in 0..20 {
        assert_eq!(call(&client).await, Some(SUCCESS));
    }
    let (na, nb) = (a.counters().requests, b.counters().requests);
    assert_eq!(na + nb, 20);
    assert!(na > 0 && nb > 0, "both addresses serve: {na} / {nb}");

    // NXDOMAIN: both hosts leave; calls are answered by the sidecar (no healthy upstream).
    dns.remove(NAME);
    let present = eventually(WAIT, async || p.cluster("present_hosts").await, |n| *n == 0).await;
    assert_eq!(present, 0);
    let answer = client.rpc(SERVICE, "ping").await.expect("answered");
    assert_ne!(answer.status(), Some(SUCCESS), "{answer:?}");
    assert_eq!(a.counters().requests + b.counters().requests, 20);

    // The name comes back with one address: calls succeed again, on it.
    dns.set(NAME, &[B], 0);
    let present = eventually(WAIT, async || p.cluster("present_hosts").await, |n| *n == 1).await;
    assert_eq!(present, 1);
    for _ in 0..5 {
        assert_eq!(call(&client).await, Some(SUCCESS));
    }
    assert_eq!(b.counters().requests, nb + 5);
}

#[test]
fn check_reports_how_names_are_resolved() {
    let cfg = MosnConfig::single_hop(free_addr().unwrap(), Vec::new())
        .edit_cluster(CLUSTER, |c| {
            c.field("type", json!("STRICT_DNS"))
                .field("hosts", json!([{"address": format!("{NAME}:12200")}]))
                .field("dns_refresh_rate", json!("2s"))
                .field("respect_dns_ttl", json!(true))
                .field(
                    "dns_resolvers",
                    json!({"servers": ["127.0.0.1"], "port": "1053"}),
                )
        })
        .build();
    let out = Sidecar::run_check(cfg).expect("check runs");
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout
            .contains("dns: V4_ONLY via 127.0.0.1:1053 over UDP, every 2s (or TTL + 1s)"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("resolved once"), "{}", out.stdout);
}
