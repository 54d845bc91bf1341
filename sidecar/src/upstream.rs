//! Upstream side: connections to hosts, their request-id tables and waiters, keepalive, and
//! per-worker pools.

pub mod connection;
pub mod deadlines;
pub mod inflight;
pub mod keepalive;
pub mod pool;
pub mod waiters;

pub use connection::UpstreamConn;
pub use pool::{HostPool, Lease, OwnedSlot, PoolSettings};
pub use waiters::{PendingResponse, ResponseResult};
