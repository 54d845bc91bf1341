//! The header-map imports (ABI §4.1). A codec host serves no header maps (codec data travels
//! in the §5 buffers), so every map is absent: 1 (NotFound), after validating the guest's
//! pointers (6 when they are outside memory).
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use codec_abi::Status;
use wasmer::FunctionEnvMut;

use super::guest_memory::memory;
use super::host_state::{status, HostState};

/// Status for a call whose guest ranges are `ranges` (ptr, len): 6 if any is outside
/// memory, else `otherwise`.
fn checked(env: &FunctionEnvMut<'_, HostState>, ranges: &[(i32, i32)], otherwise: Status) -> i32 {
    let Some(mem) = memory(env) else {
        return status(Status::InvalidMemoryAccess);
    };
    if ranges.iter().any(|&(p, l)| mem.check(p, l).is_err()) {
        return status(Status::InvalidMemoryAccess);
    }
    status(otherwise)
}

/// `proxy_get_header_map_pairs(map_type, ret_ptr_slot, ret_len_slot) -> status`: 1.
pub(crate) fn proxy_get_header_map_pairs(
    env: FunctionEnvMut<'_, HostState>,
    _map_type: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> i32 {
    checked(&env, &[(ret_ptr, 4), (ret_len, 4)], Status::NotFound)
}

/// `proxy_set_header_map_pairs(map_type, ptr, len) -> status`: 1.
pub(crate) fn proxy_set_header_map_pairs(
    env: FunctionEnvMut<'_, HostState>,
    _map_type: i32,
    ptr: i32,
    len: i32,
) -> i32 {
    checked(&env, &[(ptr, len)], Status::NotFound)
}

/// `proxy_get_header_map_value(map_type, key_ptr, key_len, ret_ptr_slot, ret_len_slot) ->
/// status`: 2 (BadArgument) for an empty key, else 1.
pub(crate) fn proxy_get_header_map_value(
    env: FunctionEnvMut<'_, HostState>,
    _map_type: i32,
    key_ptr: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> i32 {
    let answer = if key_len == 0 {
        Status::BadArgument
    } else {
        Status::NotFound
    };
    checked(
        &env,
        &[(key_ptr, key_len), (ret_ptr, 4), (ret_len, 4)],
        answer,
    )
}

/// `proxy_add_header_map_value(map_type, key_ptr, key_len, val_ptr, val_len) -> status`: 1.
pub(crate) fn proxy_add_header_map_value(
    env: FunctionEnvMut<'_, HostState>,
    _map_type: i32,
    key_ptr: i32,
    key_len: i32,
    val_ptr: i32,
    val_len: i32,
) -> i32 {
    checked(
        &env,
        &[(key_ptr, key_len), (val_ptr, val_len)],
        Status::NotFound,
    )
}

/// `proxy_replace_header_map_value(map_type, key_ptr, key_len, val_ptr, val_len) -> status`:
/// 1.
pub(crate) fn proxy_replace_header_map_value(
    env: FunctionEnvMut<'_, HostState>,
    _map_type: i32,
    key_ptr: i32,
    key_len: i32,
    val_ptr: i32,
    val_len: i32,
) -> i32 {
    checked(
        &env,
        &[(key_ptr, key_len), (val_ptr, val_len)],
        Status::NotFound,
    )
}

/// `proxy_remove_header_map_value(map_type, key_ptr, key_len) -> status`: 1.
pub(crate) fn proxy_remove_header_map_value(
    env: FunctionEnvMut<'_, HostState>,
    _map_type: i32,
    key_ptr: i32,
    key_len: i32,
) -> i32 {
    checked(&env, &[(key_ptr, key_len)], Status::NotFound)
}
