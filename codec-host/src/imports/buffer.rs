//! `proxy_get_buffer_bytes` / `proxy_set_buffer_bytes` (ABI §4.1): the configuration buffers
//! the guest reads during start-up, and the codec results it reports.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use codec_abi::{BufferType, Status};
use wasmer::FunctionEnvMut;

use super::guest_memory::{clip, return_to_guest, GuestMemory};
use super::host_state::{status, HostAbort, HostState};

/// `proxy_get_buffer_bytes(type, start, max_size, ret_ptr_slot, ret_len_slot) -> status`:
/// bytes `[start, start + max_size)` of the VM (6) or plugin (7) configuration, clipped to the
/// buffer's end, handed over through the guest's malloc (§4). Other types: 1 (NotFound).
pub(crate) fn proxy_get_buffer_bytes(
    mut env: FunctionEnvMut<'_, HostState>,
    buf_type: i32,
    start: i32,
    max_size: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32, HostAbort> {
    let state = env.data();
    let buffer = match BufferType::from_raw(buf_type as u32) {
        Some(BufferType::VmConfiguration) => state.vm_config.clone(),
        Some(BufferType::PluginConfiguration) => state.plugin_config.clone(),
        _ => return Ok(status(Status::NotFound)),
    };
    let part = clip(buffer.len(), start, max_size);
    Ok(
        match return_to_guest(&mut env, &buffer[part], ret_ptr, ret_len)? {
            Ok(()) => status(Status::Ok),
            Err(_) => status(Status::InvalidMemoryAccess),
        },
    )
}

/// `proxy_set_buffer_bytes(type, start, size, data_ptr, data_len) -> status`: for 13 (decode
/// result, §5.4) and 14 (encode result, §5.5) keeps a copy of `[data_ptr, data_ptr +
/// data_len)` as the current call's result (the Go SDK passes start 0 and size = data_len; a
/// later report in the same call replaces an earlier one). Other types: 1.
pub(crate) fn proxy_set_buffer_bytes(
    mut env: FunctionEnvMut<'_, HostState>,
    buf_type: i32,
    _start: i32,
    _size: i32,
    data_ptr: i32,
    data_len: i32,
) -> i32 {
    let kind = buf_type as u32;
    if !matches!(
        BufferType::from_raw(kind),
        Some(BufferType::DecodeData | BufferType::EncodeData)
    ) {
        return status(Status::NotFound);
    }
    let (state, store) = env.data_and_store_mut();
    let Some(mem) = state.memory.as_ref() else {
        return status(Status::InvalidMemoryAccess);
    };
    let mem = GuestMemory::new(mem.view(&store));
    match mem.read_into(data_ptr, data_len, &mut state.result.bytes) {
        Ok(()) => {
            state.result.kind = Some(kind);
            status(Status::Ok)
        }
        Err(_) => {
            state.result.clear();
            status(Status::InvalidMemoryAccess)
        }
    }
}
