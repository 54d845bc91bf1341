//! The sidecar: MOSN-format config, listeners, routing, multiplexed upstream pools,
//! heartbeats, hijack responses and timeouts, on top of the protocol-neutral codec API of
//! `codec-host`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
