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
