//! Top-level `limits`: what one peer may cost and what the process as a whole protects
//! (this sidecar's extension; MOSN has no equivalent section). Every field is optional; the
//! defaults are sized for a sidecar beside one application.

use std::ops::RangeInclusive;
use std::time::Duration;

use super::error::{invalid, ConfigError, Invalid, Warnings};
use super::json::Obj;

/// A frame whose first byte arrived must be complete within this time.
pub const DEFAULT_FRAME_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// A connection is not read while more than this waits to be written to its peer…
pub const DEFAULT_WRITE_HIGH_WATER: usize = 1 << 20;
/// …and is read again once at most this does.
pub const DEFAULT_WRITE_LOW_WATER: usize = 256 << 10;
/// Requests in flight per downstream connection before it is not read any more.
pub const DEFAULT_MAX_REQUESTS_PER_CONNECTION: usize = 1024;
/// Bytes buffered for peers across the process before the overload manager acts.
pub const DEFAULT_MAX_BUFFERED_BYTES: usize = 256 << 20;
/// Downstream connections open at once.
pub const DEFAULT_MAX_DOWNSTREAM_CONNECTIONS: usize = 10_000;
/// Plugin instance replacements (after traps) allowed per plugin per minute, per worker.
pub const DEFAULT_MAX_PLUGIN_RESTARTS_PER_MINUTE: u32 = 60;

/// The validated `limits` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// `frame_read_timeout`.
    pub frame_read_timeout: Duration,
    /// `write_high_water_bytes`.
    pub write_high_water: usize,
    /// `write_low_water_bytes` (≤ the high-water mark).
    pub write_low_water: usize,
    /// `max_requests_per_connection`.
    pub max_requests_per_connection: usize,
    /// `max_buffered_bytes`.
    pub max_buffered_bytes: usize,
    /// `max_downstream_connections`.
    pub max_downstream_connections: usize,
    /// `max_plugin_restarts_per_minute`.
    pub max_plugin_restarts_per_minute: u32,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            frame_read_timeout: DEFAULT_FRAME_READ_TIMEOUT,
            write_high_water: DEFAULT_WRITE_HIGH_WATER,
            write_low_water: DEFAULT_WRITE_LOW_WATER,
            max_requests_per_connection: DEFAULT_MAX_REQUESTS_PER_CONNECTION,
            max_buffered_bytes: DEFAULT_MAX_BUFFERED_BYTES,
            max_downstream_connections: DEFAULT_MAX_DOWNSTREAM_CONNECTIONS,
            max_plugin_restarts_per_minute: DEFAULT_MAX_PLUGIN_RESTARTS_PER_MINUTE,
        }
    }
}

/// Parses the top-level `limits` object of `root` (absent: every default).
pub(crate) fn parse_limits(
    root: &mut Obj<'_>,
    warnings: &mut Warnings,
) -> Result<LimitsConfig, ConfigError> {
    let mut l = LimitsConfig::default();
    let Some(mut o) = root.obj("limits")? else {
        return Ok(l);
    };
    if let Some(d) = o.duration("frame_read_timeout")? {
        if d < Duration::from_millis(100) {
            return Err(invalid(
                o.child("frame_read_timeout"),
                Invalid::OutOfRange {
                    value: super::format_go_duration(d),
                    range: "at least 100ms",
                },
            ));
        }
        l.frame_read_timeout = d;
    }
    if let Some(n) = sized(
        &mut o,
        "write_high_water_bytes",
        4096..=1 << 30,
        "4096..=1073741824",
    )? {
        l.write_high_water = n;
    }
    if let Some(n) = sized(
        &mut o,
        "write_low_water_bytes",
        0..=1 << 30,
        "0..=1073741824",
    )? {
        l.write_low_water = n;
    }
    if l.write_low_water > l.write_high_water {
        return Err(invalid(
            o.child("write_low_water_bytes"),
            Invalid::OutOfRange {
                value: l.write_low_water.to_string(),
                range: "at most write_high_water_bytes",
            },
        ));
    }
    if let Some(n) = sized(
        &mut o,
        "max_requests_per_connection",
        1..=1 << 20,
        "1..=1048576",
    )? {
        l.max_requests_per_connection = n;
    }
    if let Some(n) = sized(
        &mut o,
        "max_buffered_bytes",
        1 << 20..=1 << 40,
        "1048576..=1099511627776",
    )? {
        l.max_buffered_bytes = n;
    }
    if let Some(n) = sized(
        &mut o,
        "max_downstream_connections",
        1..=1 << 24,
        "1..=16777216",
    )? {
        l.max_downstream_connections = n;
    }
    if let Some(n) = sized(
        &mut o,
        "max_plugin_restarts_per_minute",
        1..=1 << 20,
        "1..=1048576",
    )? {
        l.max_plugin_restarts_per_minute = n as u32;
    }
    o.finish(warnings);
    Ok(l)
}

/// A whole number in `range` under `key` (JSON number), if set.
fn sized(
    o: &mut Obj<'_>,
    key: &str,
    range: RangeInclusive<usize>,
    text: &'static str,
) -> Result<Option<usize>, ConfigError> {
    let Some(n) = o.i64(key)? else {
        return Ok(None);
    };
    usize::try_from(n)
        .ok()
        .filter(|n| range.contains(n))
        .map(Some)
        .ok_or_else(|| {
            invalid(
                o.child(key),
                Invalid::OutOfRange {
                    value: n.to_string(),
                    range: text,
                },
            )
        })
}
