//! Reading one counter of the sidecar's admin API (`/api/v1/stats?key=upstream`), as the
//! tests that order their steps by counters do.

use std::net::SocketAddr;

use serde_json::Value;

use super::sidecar::admin_get;

async fn upstream(admin: SocketAddr) -> Value {
    admin_get(admin, "/api/v1/stats?key=upstream")
        .await
        .unwrap_or_else(|e| panic!("admin stats at {admin}: {e}"))
}

/// Counter `key` of `upstream.cluster.<cluster>`; `None` when the sidecar has no such
/// counter (a misspelt name, or a cluster without it).
pub async fn cluster_counter(admin: SocketAddr, cluster: &str, key: &str) -> Option<u64> {
    upstream(admin).await[format!("upstream.cluster.{cluster}")][key].as_u64()
}

/// Counter `key` of `upstream.host.<cluster>.<host>` (`host` as the stats name it: the
/// address, or `name:port#k` for a `STRICT_DNS` slot); `None` when absent.
pub async fn host_counter(admin: SocketAddr, cluster: &str, host: &str, key: &str) -> Option<u64> {
    upstream(admin).await[format!("upstream.host.{cluster}.{host}")][key].as_u64()
}

/// A Bolt client for tests that count on the sidecar's counters: ids from 1,000,000 (apart
/// from the sidecar's own upstream ids in logs) and a 20 s call timeout (calls held by the
/// app, or waiting on a retry, outlive the default 5 s).
pub async fn counted_client(addr: SocketAddr) -> crate::client::BoltClient {
    crate::client::BoltClient::connect_with(
        addr,
        crate::client::ClientOptions {
            first_id: 1_000_000,
            call_timeout: std::time::Duration::from_secs(20),
            ..crate::client::ClientOptions::default()
        },
    )
    .await
    .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"))
}
