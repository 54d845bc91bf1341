//! `proxy_log` (ABI §4.1): guest log lines go to `tracing` target `wasm_guest`.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use codec_abi::{LogLevel, Status};
use wasmer::FunctionEnvMut;

use super::guest_memory::memory;
use super::host_state::{status, HostState};

/// `proxy_log(level, ptr, len) -> status`: logs the message with the plugin's name and keeps
/// it as the call's possible last words (a trap's explanation). 6 when the message is not
/// inside guest memory.
pub(crate) fn proxy_log(
    mut env: FunctionEnvMut<'_, HostState>,
    level: i32,
    ptr: i32,
    len: i32,
) -> i32 {
    let mut text = Vec::new();
    let read = match memory(&env) {
        Some(mem) => mem.read_into(ptr, len, &mut text),
        None => return status(Status::InvalidMemoryAccess),
    };
    if read.is_err() {
        return status(Status::InvalidMemoryAccess);
    }
    let level = LogLevel::from_raw(level as u32);
    env.data_mut().output.log(level, &text);
    status(Status::Ok)
}
