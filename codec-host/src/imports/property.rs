//! `proxy_get_property` / `proxy_set_property` (ABI §4.1): a codec host exposes no
//! properties.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use codec_abi::Status;
use wasmer::FunctionEnvMut;

use super::guest_memory::memory;
use super::host_state::{status, HostState};

/// `proxy_get_property(path_ptr, path_len, ret_ptr_slot, ret_len_slot) -> status`: 1
/// (NotFound) for every path; MOSN answers "" and then calls malloc(0), which traps TinyGo
/// guests (§8.8). 6 when the pointers are outside memory.
pub(crate) fn proxy_get_property(
    env: FunctionEnvMut<'_, HostState>,
    path_ptr: i32,
    path_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> i32 {
    let Some(mem) = memory(&env) else {
        return status(Status::InvalidMemoryAccess);
    };
    let ok = mem.check(path_ptr, path_len).is_ok()
        && mem.check(ret_ptr, 4).is_ok()
        && mem.check(ret_len, 4).is_ok();
    if ok {
        status(Status::NotFound)
    } else {
        status(Status::InvalidMemoryAccess)
    }
}

/// `proxy_set_property(path_ptr, path_len, val_ptr, val_len) -> status`: 12
/// (Unimplemented), as MOSN.
pub(crate) fn proxy_set_property(
    _path_ptr: i32,
    _path_len: i32,
    _val_ptr: i32,
    _val_len: i32,
) -> i32 {
    status(Status::Unimplemented)
}
