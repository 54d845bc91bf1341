//! Test and benchmark tooling for the Bolt sidecar: an independent Bolt v1 framing, a fast echo
//! server, a multiplexing client, a process harness for the real sidecar binary, and the load
//! generator behind `boltbench` and `benchrun`.
//!
//! Nothing here links the sidecar or any Wasm engine: the sidecar is always run as a process.
//!
//! Tools:
//! * `bolt-echo --listen 127.0.0.1:12199` ([`echo`]): prints `listening on <addr>` when ready.
//! * `boltbench --target 127.0.0.1:2045 [--mode closed --in-flight 64 | --mode open --rate
//!   2000] --duration 10s [--json-out FILE]` ([`mod@bench`]): JSON report of calls/s, latency
//!   percentiles and errors; loopback targets only.
//! * `benchrun [--rounds 3 --duration 5s --out bench-results]`: the `make bench` suite (needs
//!   `target/release/sidecar`, release `boltbench`/`bolt-echo` and the Bolt plugin).
//!
//! Tests: `cargo test -p integration` (unit tests, then `tests/tools.rs` for the tools and the
//! end-to-end suites that run the real sidecar).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod bench;
pub mod blackhole;
pub mod client;
pub mod dubbo_wire;
pub mod echo;
pub mod error;
pub mod harness;
pub mod process;
pub mod relay;
pub mod wire;

pub use client::{BoltClient, ClientOptions};
pub use echo::{EchoOptions, EchoServer};
pub use error::{BenchError, ClientError, CloseReason, HarnessError, WireError};
pub use harness::{free_addr, free_port, mosn_config, EchoProcess, MosnConfig, Sidecar};
