//! The sidecar: MOSN-format config, listeners, routing, multiplexed upstream pools,
//! heartbeats, hijack responses and timeouts, on top of the protocol-neutral codec API of
//! `codec-host`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cluster;
pub mod config;
pub mod logging;
pub mod router;
