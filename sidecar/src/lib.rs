//! The sidecar: MOSN-format config, listeners, routing, multiplexed upstream pools,
//! heartbeats, hijack responses and timeouts, on top of the protocol-neutral codec API of
//! `codec-host`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod access_log;
pub mod admin;
pub mod cluster;
pub mod codec_set;
pub mod config;
pub mod context;
pub mod control;
pub mod detect;
pub mod dns;
pub mod downstream;
pub mod failure;
pub mod filter;
pub mod framed;
pub mod health;
pub mod logging;
pub mod overload;
pub mod plan;
pub mod plugin_info;
pub mod plugin_slot;
pub mod proxy;
pub mod reload;
pub mod retry;
pub mod router;
pub mod server;
pub mod stats;
pub mod upstream;
pub mod worker;
pub mod write_queue;
