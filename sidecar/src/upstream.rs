//! Upstream side: connections to hosts, their request-id tables and per-worker pools.

pub mod connection;
pub mod inflight;
pub mod pool;

pub use connection::{PendingResponse, ResponseResult, UpstreamConn};
pub use pool::{HostPool, Lease, PoolSettings};
