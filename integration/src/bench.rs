//! The load generator behind `boltbench` (closed and open loop, coordinated-omission corrected)
//! and the pieces `benchrun` builds its report from.

pub mod closed;
pub mod open;
pub mod options;
pub mod plot;
pub mod procstat;
pub mod record;
pub mod suite;
pub mod table;
pub mod topology;

pub use options::{parse_duration, BenchOptions, Mode};
pub use record::{BenchReport, ErrorCounts, LatencySummary};

use bytes::Bytes;

use crate::error::BenchError;
use crate::wire::Request;

/// Runs one load-generator pass as `options` describe and reports what it measured. Blocks the
/// calling thread (the generator runs on its own threads), so it may be called from anywhere,
/// including inside an async runtime via `spawn_blocking`.
///
/// # Errors
/// [`BenchError`] for bad options, a non-loopback target or a first connection that fails.
/// Failures during the run are counted in the report instead.
pub fn run(options: &BenchOptions) -> Result<BenchReport, BenchError> {
    options.validate()?;
    let template = request_template(options)?;
    match options.mode {
        Mode::Closed {
            connections,
            in_flight,
        } => closed::run(options, template, connections, in_flight),
        Mode::Open { connections, rate } => open::run(options, template, connections, rate),
    }
}

/// The request every call sends, with its id patched in per call: an RPC request carrying the
/// `service` header (then any extra headers), the frame timeout from the options and
/// `payload_size` bytes of content.
///
/// # Errors
/// [`BenchError::Encode`] when a section is too long for Bolt.
pub fn request_template(options: &BenchOptions) -> Result<Bytes, BenchError> {
    let content: Vec<u8> = (0..options.payload_size)
        .map(|i| b'a' + (i % 26) as u8)
        .collect();
    let timeout_ms = i32::try_from(options.timeout.as_millis()).unwrap_or(i32::MAX);
    let mut request = Request::rpc(0, Some(&options.service), content).timeout_ms(timeout_ms);
    request
        .headers
        .extend(options.extra_headers.iter().cloned());
    request.to_bytes().map_err(BenchError::Encode)
}
