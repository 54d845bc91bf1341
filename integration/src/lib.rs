//! Test and benchmark tooling for the Bolt sidecar: an independent Bolt v1 framing, a fast echo
//! server, a multiplexing client, a process harness for the real sidecar binary, and the load
//! generator behind `boltbench` and `benchrun`.
//!
//! Nothing here links the sidecar or any Wasm engine: the sidecar is always run as a process.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod client;
pub mod echo;
pub mod error;
pub mod harness;
pub mod wire;

pub use client::{BoltClient, ClientOptions};
pub use echo::{EchoOptions, EchoServer};
pub use error::{BenchError, ClientError, CloseReason, HarnessError, WireError};
pub use harness::{free_addr, free_port, mosn_config, EchoProcess, MosnConfig, Sidecar};
