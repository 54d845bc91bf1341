//! `proxy_get_current_time_nanoseconds` (ABI §4.1).
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use std::time::{SystemTime, UNIX_EPOCH};

use codec_abi::Status;
use wasmer::FunctionEnvMut;

use super::guest_memory::memory;
use super::host_state::{status, HostState};

/// Nanoseconds since the Unix epoch (0 if the clock is before it).
pub(crate) fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `proxy_get_current_time_nanoseconds(ret_ptr) -> status`: writes the wall-clock time as a
/// u64 LE of nanoseconds since the epoch (MOSN writes only a u32 of sub-second nanoseconds, a
/// bug, §8.8). 6 when the slot is outside memory.
pub(crate) fn proxy_get_current_time_nanoseconds(
    env: FunctionEnvMut<'_, HostState>,
    ret_ptr: i32,
) -> i32 {
    let Some(mem) = memory(&env) else {
        return status(Status::InvalidMemoryAccess);
    };
    match mem.write_u64_le(ret_ptr, now_ns()) {
        Ok(()) => status(Status::Ok),
        Err(_) => status(Status::InvalidMemoryAccess),
    }
}
