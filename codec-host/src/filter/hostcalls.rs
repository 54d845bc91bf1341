//! The proxy-wasm hostcalls (the `env` namespace of a filter module) and the WASI set shared
//! with codec plugins. Every pointer the guest passes is checked before a byte is touched
//! (as for codecs: `imports::guest_memory`); data handed to the guest goes through its
//! allocator from inside the hostcall. Hostcalls the host does not offer answer 12
//! (Unimplemented); a module importing a name in neither table is refused at load.

use std::net::SocketAddr;

use codec_abi::HeaderMap;
use wasmer::FunctionEnvMut;
use wasmer::Type::{I32, I64};

use super::abi::{buffer_type, map_type, parse_pairs, serialize_pairs, status, MetricKind};
use super::shared::SetError;
use super::state::{FilterState, LocalResponse, StreamEvent};
use crate::imports::guest_memory::{clip, memory, return_to_guest};
use crate::imports::host_state::{HostAbort, HostState};
use crate::imports::table::{with_env, Import, Namespace, Provider};
use crate::imports::{log, time};
use crate::signature::Sig;

/// The answer of every hostcall the host does not implement.
const UNIMPLEMENTED: Provider = Provider::Answer(status::UNIMPLEMENTED);

/// The `env` hostcalls of a filter module.
pub(crate) const FILTER_ENV: Namespace = Namespace {
    modules: &["env"],
    imports: &[
        Import::new(
            "proxy_log",
            Sig(&[I32; 3], &[I32]),
            with_env!(log::proxy_log),
        ),
        Import::new(
            "proxy_get_log_level",
            Sig(&[I32], &[I32]),
            with_env!(proxy_get_log_level),
        ),
        Import::new(
            "proxy_get_current_time_nanoseconds",
            Sig(&[I32], &[I32]),
            with_env!(time::proxy_get_current_time_nanoseconds),
        ),
        Import::new(
            "proxy_set_tick_period_milliseconds",
            Sig(&[I32], &[I32]),
            with_env!(proxy_set_tick_period_milliseconds),
        ),
        Import::new(
            "proxy_get_configuration",
            Sig(&[I32; 2], &[I32]),
            with_env!(proxy_get_configuration),
        ),
        Import::new(
            "proxy_get_buffer_bytes",
            Sig(&[I32; 5], &[I32]),
            with_env!(proxy_get_buffer_bytes),
        ),
        Import::new(
            "proxy_get_buffer_status",
            Sig(&[I32; 3], &[I32]),
            with_env!(proxy_get_buffer_status),
        ),
        Import::new(
            "proxy_set_buffer_bytes",
            Sig(&[I32; 5], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new(
            "proxy_get_header_map_pairs",
            Sig(&[I32; 3], &[I32]),
            with_env!(proxy_get_header_map_pairs),
        ),
        Import::new(
            "proxy_set_header_map_pairs",
            Sig(&[I32; 3], &[I32]),
            with_env!(proxy_set_header_map_pairs),
        ),
        Import::new(
            "proxy_get_header_map_size",
            Sig(&[I32; 2], &[I32]),
            with_env!(proxy_get_header_map_size),
        ),
        Import::new(
            "proxy_get_header_map_value",
            Sig(&[I32; 5], &[I32]),
            with_env!(proxy_get_header_map_value),
        ),
        Import::new(
            "proxy_add_header_map_value",
            Sig(&[I32; 5], &[I32]),
            with_env!(proxy_add_header_map_value),
        ),
        Import::new(
            "proxy_replace_header_map_value",
            Sig(&[I32; 5], &[I32]),
            with_env!(proxy_replace_header_map_value),
        ),
        Import::new(
            "proxy_remove_header_map_value",
            Sig(&[I32; 3], &[I32]),
            with_env!(proxy_remove_header_map_value),
        ),
        Import::new(
            "proxy_get_property",
            Sig(&[I32; 4], &[I32]),
            with_env!(proxy_get_property),
        ),
        Import::new(
            "proxy_set_property",
            Sig(&[I32; 4], &[I32]),
            with_env!(proxy_set_property),
        ),
        Import::new(
            "proxy_get_shared_data",
            Sig(&[I32; 5], &[I32]),
            with_env!(proxy_get_shared_data),
        ),
        Import::new(
            "proxy_set_shared_data",
            Sig(&[I32; 5], &[I32]),
            with_env!(proxy_set_shared_data),
        ),
        Import::new(
            "proxy_register_shared_queue",
            Sig(&[I32; 3], &[I32]),
            with_env!(proxy_register_shared_queue),
        ),
        Import::new(
            "proxy_resolve_shared_queue",
            Sig(&[I32; 5], &[I32]),
            with_env!(proxy_resolve_shared_queue),
        ),
        Import::new(
            "proxy_dequeue_shared_queue",
            Sig(&[I32; 3], &[I32]),
            with_env!(proxy_dequeue_shared_queue),
        ),
        Import::new(
            "proxy_enqueue_shared_queue",
            Sig(&[I32; 3], &[I32]),
            with_env!(proxy_enqueue_shared_queue),
        ),
        Import::new(
            "proxy_continue_stream",
            Sig(&[I32], &[I32]),
            with_env!(proxy_continue_stream),
        ),
        Import::new(
            "proxy_continue_request",
            Sig(&[], &[I32]),
            with_env!(proxy_continue_request),
        ),
        Import::new(
            "proxy_continue_response",
            Sig(&[], &[I32]),
            with_env!(proxy_continue_request),
        ),
        Import::new(
            "proxy_close_stream",
            Sig(&[I32], &[I32]),
            with_env!(proxy_close_stream),
        ),
        Import::new(
            "proxy_send_local_response",
            Sig(&[I32; 8], &[I32]),
            with_env!(proxy_send_local_response),
        ),
        Import::new(
            "proxy_clear_route_cache",
            Sig(&[], &[I32]),
            with_env!(proxy_clear_route_cache),
        ),
        Import::new(
            "proxy_set_effective_context",
            Sig(&[I32], &[I32]),
            with_env!(proxy_set_effective_context),
        ),
        Import::new(
            "proxy_define_metric",
            Sig(&[I32; 4], &[I32]),
            with_env!(proxy_define_metric),
        ),
        Import::new(
            "proxy_increment_metric",
            Sig(&[I32, I64], &[I32]),
            with_env!(proxy_increment_metric),
        ),
        Import::new(
            "proxy_record_metric",
            Sig(&[I32, I64], &[I32]),
            with_env!(proxy_record_metric),
        ),
        Import::new(
            "proxy_get_metric",
            Sig(&[I32; 2], &[I32]),
            with_env!(proxy_get_metric),
        ),
        // Declared by the SDKs, not offered here: answer 12 (Unimplemented).
        Import::new("proxy_done", Sig(&[], &[I32]), UNIMPLEMENTED),
        Import::new("proxy_http_call", Sig(&[I32; 10], &[I32]), UNIMPLEMENTED),
        Import::new(
            "proxy_dispatch_http_call",
            Sig(&[I32; 10], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new("proxy_grpc_call", Sig(&[I32; 12], &[I32]), UNIMPLEMENTED),
        Import::new("proxy_grpc_stream", Sig(&[I32; 9], &[I32]), UNIMPLEMENTED),
        Import::new("proxy_grpc_send", Sig(&[I32; 4], &[I32]), UNIMPLEMENTED),
        Import::new("proxy_grpc_cancel", Sig(&[I32], &[I32]), UNIMPLEMENTED),
        Import::new("proxy_grpc_close", Sig(&[I32], &[I32]), UNIMPLEMENTED),
        Import::new("proxy_get_status", Sig(&[I32; 3], &[I32]), UNIMPLEMENTED),
        Import::new(
            "proxy_call_foreign_function",
            Sig(&[I32; 6], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new("proxy_reset_stream", Sig(&[I32], &[I32]), UNIMPLEMENTED),
        Import::new("proxy_remove_metric", Sig(&[I32], &[I32]), UNIMPLEMENTED),
    ],
};

/// The hostcall or WASI function `module.name` as a filter module may import it.
pub(crate) fn find(module: &str, name: &str) -> Option<&'static Import> {
    FILTER_ENV
        .get(module, name)
        .or_else(|| crate::imports::find_wasi(module, name))
}

/// The filter state of the calling instance (`None` only for a codec instance, which never
/// links these hostcalls).
fn state<'a>(env: &'a mut FunctionEnvMut<'_, HostState>) -> Option<&'a mut FilterState> {
    env.data_mut().filter.as_deref_mut()
}

/// Reads `[ptr, ptr + len)` of guest memory; `None` when outside it.
fn read(env: &FunctionEnvMut<'_, HostState>, ptr: i32, len: i32) -> Option<Vec<u8>> {
    let mem = memory(env)?;
    let mut out = Vec::new();
    mem.read_into(ptr, len, &mut out).ok()?;
    Some(out)
}

/// Writes a u32 LE to the guest slot `ptr`: OK, or 6 outside memory.
fn write_u32(env: &FunctionEnvMut<'_, HostState>, ptr: i32, value: u32) -> i32 {
    match memory(env).map(|m| m.write_u32_le(ptr, value)) {
        Some(Ok(())) => status::OK,
        _ => status::INVALID_MEMORY_ACCESS,
    }
}

/// Hands `bytes` to the guest through its allocator: OK, or 6.
fn give(
    env: &mut FunctionEnvMut<'_, HostState>,
    bytes: &[u8],
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32, HostAbort> {
    Ok(match return_to_guest(env, bytes, ret_ptr, ret_len)? {
        Ok(()) => status::OK,
        Err(_) => status::INVALID_MEMORY_ACCESS,
    })
}

fn proxy_get_log_level(env: FunctionEnvMut<'_, HostState>, ret_ptr: i32) -> i32 {
    use tracing::level_filters::LevelFilter;
    let level = match LevelFilter::current() {
        LevelFilter::TRACE => 0,
        LevelFilter::DEBUG => 1,
        LevelFilter::INFO => 2,
        LevelFilter::WARN => 3,
        LevelFilter::ERROR => 4,
        _ => 5,
    };
    write_u32(&env, ret_ptr, level)
}

fn proxy_set_tick_period_milliseconds(mut env: FunctionEnvMut<'_, HostState>, ms: i32) -> i32 {
    let Some(s) = state(&mut env) else {
        return status::INTERNAL_FAILURE;
    };
    s.tick_period = std::time::Duration::from_millis(u64::from(ms as u32));
    status::OK
}

/// 0.1.0: the plugin configuration, whole.
fn proxy_get_configuration(
    mut env: FunctionEnvMut<'_, HostState>,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32, HostAbort> {
    let config = env.data().plugin_config.clone();
    give(&mut env, &config, ret_ptr, ret_len)
}

/// The bytes of buffer `kind` as the calling context sees it, if it has one.
fn buffer(env: &mut FunctionEnvMut<'_, HostState>, kind: i32) -> Option<bytes::Bytes> {
    match kind {
        buffer_type::VM_CONFIGURATION => Some(bytes::Bytes::copy_from_slice(&env.data().vm_config)),
        buffer_type::PLUGIN_CONFIGURATION => {
            Some(bytes::Bytes::copy_from_slice(&env.data().plugin_config))
        }
        buffer_type::REQUEST_BODY | buffer_type::RESPONSE_BODY => {
            let s = state(env)?;
            match &s.call.body {
                Some((k, b)) if *k == kind && s.effective == s.call.ctx => Some(b.clone()),
                _ => None,
            }
        }
        _ => None,
    }
}

fn proxy_get_buffer_bytes(
    mut env: FunctionEnvMut<'_, HostState>,
    kind: i32,
    start: i32,
    max_size: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32, HostAbort> {
    let Some(buf) = buffer(&mut env, kind) else {
        return Ok(status::NOT_FOUND);
    };
    let part = clip(buf.len(), start, max_size);
    give(&mut env, &buf[part], ret_ptr, ret_len)
}

fn proxy_get_buffer_status(
    mut env: FunctionEnvMut<'_, HostState>,
    kind: i32,
    ret_len: i32,
    ret_flags: i32,
) -> i32 {
    let Some(buf) = buffer(&mut env, kind) else {
        return status::NOT_FOUND;
    };
    match write_u32(&env, ret_len, buf.len() as u32) {
        status::OK => write_u32(&env, ret_flags, 0),
        other => other,
    }
}

/// The header map `kind` of the running callback's stream, with its changed flag; `None`
/// when the effective context is another one or the map is not part of this callback.
fn map(s: &mut FilterState, kind: i32) -> Option<(&mut HeaderMap, &mut bool)> {
    if s.effective != s.call.ctx {
        return None;
    }
    match kind {
        map_type::REQUEST_HEADERS => s
            .call
            .request
            .as_mut()
            .map(|m| (m, &mut s.call.request_changed)),
        map_type::RESPONSE_HEADERS => s
            .call
            .response
            .as_mut()
            .map(|m| (m, &mut s.call.response_changed)),
        _ => None,
    }
}

fn proxy_get_header_map_pairs(
    mut env: FunctionEnvMut<'_, HostState>,
    kind: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32, HostAbort> {
    let Some(s) = state(&mut env) else {
        return Ok(status::INTERNAL_FAILURE);
    };
    let Some((m, _)) = map(s, kind) else {
        return Ok(status::NOT_FOUND);
    };
    let bytes = serialize_pairs(m.iter());
    give(&mut env, &bytes, ret_ptr, ret_len)
}

fn proxy_set_header_map_pairs(
    mut env: FunctionEnvMut<'_, HostState>,
    kind: i32,
    ptr: i32,
    len: i32,
) -> i32 {
    let Some(bytes) = read(&env, ptr, len) else {
        return status::INVALID_MEMORY_ACCESS;
    };
    let Some(pairs) = parse_pairs(&bytes) else {
        return status::BAD_ARGUMENT;
    };
    let Some(s) = state(&mut env) else {
        return status::INTERNAL_FAILURE;
    };
    let Some((m, changed)) = map(s, kind) else {
        return status::NOT_FOUND;
    };
    let mut fresh = HeaderMap::new();
    for (k, v) in pairs {
        fresh.push(k, v);
    }
    *m = fresh;
    *changed = true;
    status::OK
}

fn proxy_get_header_map_size(mut env: FunctionEnvMut<'_, HostState>, kind: i32, ret: i32) -> i32 {
    let Some(s) = state(&mut env) else {
        return status::INTERNAL_FAILURE;
    };
    let Some((m, _)) = map(s, kind) else {
        return status::NOT_FOUND;
    };
    let size = 4 + m.iter().map(|(k, v)| 10 + k.len() + v.len()).sum::<usize>();
    write_u32(&env, ret, size as u32)
}

fn proxy_get_header_map_value(
    mut env: FunctionEnvMut<'_, HostState>,
    kind: i32,
    key_ptr: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32, HostAbort> {
    let Some(key) = read(&env, key_ptr, key_len) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let Some(s) = state(&mut env) else {
        return Ok(status::INTERNAL_FAILURE);
    };
    let Some((m, _)) = map(s, kind) else {
        return Ok(status::NOT_FOUND);
    };
    let Some(value) = m.get(&key).map(<[u8]>::to_vec) else {
        return Ok(status::NOT_FOUND);
    };
    give(&mut env, &value, ret_ptr, ret_len)
}

/// How a header edit changes the map.
#[derive(Clone, Copy)]
enum Edit {
    Add,
    Replace,
}

fn edit(
    mut env: FunctionEnvMut<'_, HostState>,
    how: Edit,
    kind: i32,
    key_ptr: i32,
    key_len: i32,
    val_ptr: i32,
    val_len: i32,
) -> i32 {
    let (Some(key), Some(value)) = (read(&env, key_ptr, key_len), read(&env, val_ptr, val_len))
    else {
        return status::INVALID_MEMORY_ACCESS;
    };
    let Some(s) = state(&mut env) else {
        return status::INTERNAL_FAILURE;
    };
    let Some((m, changed)) = map(s, kind) else {
        return status::NOT_FOUND;
    };
    match how {
        Edit::Add => m.push(key, value),
        Edit::Replace => {
            m.remove(&key);
            m.push(key, value);
        }
    }
    *changed = true;
    status::OK
}

fn proxy_add_header_map_value(
    env: FunctionEnvMut<'_, HostState>,
    kind: i32,
    key_ptr: i32,
    key_len: i32,
    val_ptr: i32,
    val_len: i32,
) -> i32 {
    edit(env, Edit::Add, kind, key_ptr, key_len, val_ptr, val_len)
}

fn proxy_replace_header_map_value(
    env: FunctionEnvMut<'_, HostState>,
    kind: i32,
    key_ptr: i32,
    key_len: i32,
    val_ptr: i32,
    val_len: i32,
) -> i32 {
    edit(env, Edit::Replace, kind, key_ptr, key_len, val_ptr, val_len)
}

fn proxy_remove_header_map_value(
    mut env: FunctionEnvMut<'_, HostState>,
    kind: i32,
    key_ptr: i32,
    key_len: i32,
) -> i32 {
    let Some(key) = read(&env, key_ptr, key_len) else {
        return status::INVALID_MEMORY_ACCESS;
    };
    let Some(s) = state(&mut env) else {
        return status::INTERNAL_FAILURE;
    };
    let Some((m, changed)) = map(s, kind) else {
        return status::NOT_FOUND;
    };
    if m.remove(&key) {
        *changed = true;
    }
    status::OK
}

/// A property of the effective context by its path (parts joined by NUL), as text.
fn property(s: &FilterState, plugin: &str, path: &[u8]) -> Option<Vec<u8>> {
    let addr = |a: Option<SocketAddr>| a.map(|a| a.to_string().into_bytes());
    match path {
        b"plugin_name" => return Some(plugin.as_bytes().to_vec()),
        b"plugin_root_id" => return Some(s.root_id.to_string().into_bytes()),
        b"plugin_vm_id" => return Some(s.vm_id.as_bytes().to_vec()),
        _ => {}
    }
    let stream = s.streams.get(&s.effective)?;
    let info = &stream.info;
    match path {
        b"protocol" | b"request\0protocol" => Some(info.protocol.as_bytes().to_vec()),
        b"listener_name" => Some(info.listener.as_bytes().to_vec()),
        b"cluster_name" => Some(info.cluster.as_bytes().to_vec()),
        b"request\0id" => Some(info.request_id.to_string().into_bytes()),
        b"source\0address" => addr(info.source),
        b"destination\0address" => addr(info.destination),
        b"upstream\0address" => addr(stream.upstream),
        _ => stream
            .custom
            .iter()
            .find(|(k, _)| k.as_slice() == path)
            .map(|(_, v)| v.clone()),
    }
}

fn proxy_get_property(
    mut env: FunctionEnvMut<'_, HostState>,
    path_ptr: i32,
    path_len: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32, HostAbort> {
    let Some(path) = read(&env, path_ptr, path_len) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let plugin = env.data().output.plugin().to_owned();
    let Some(s) = state(&mut env) else {
        return Ok(status::INTERNAL_FAILURE);
    };
    let Some(value) = property(s, &plugin, &path) else {
        return Ok(status::NOT_FOUND);
    };
    give(&mut env, &value, ret_ptr, ret_len)
}

fn proxy_set_property(
    mut env: FunctionEnvMut<'_, HostState>,
    path_ptr: i32,
    path_len: i32,
    val_ptr: i32,
    val_len: i32,
) -> i32 {
    let (Some(path), Some(value)) = (read(&env, path_ptr, path_len), read(&env, val_ptr, val_len))
    else {
        return status::INVALID_MEMORY_ACCESS;
    };
    let Some(s) = state(&mut env) else {
        return status::INTERNAL_FAILURE;
    };
    let effective = s.effective;
    let Some(stream) = s.streams.get_mut(&effective) else {
        return status::NOT_FOUND;
    };
    // At most 64 properties per call, each kept as given.
    if let Some((_, v)) = stream.custom.iter_mut().find(|(k, _)| *k == path) {
        *v = value;
    } else if stream.custom.len() < 64 {
        stream.custom.push((path, value));
    } else {
        return status::INTERNAL_FAILURE;
    }
    status::OK
}

fn proxy_get_shared_data(
    mut env: FunctionEnvMut<'_, HostState>,
    key_ptr: i32,
    key_len: i32,
    ret_ptr: i32,
    ret_len: i32,
    ret_cas: i32,
) -> Result<i32, HostAbort> {
    let Some(key) = read(&env, key_ptr, key_len) else {
        return Ok(status::INVALID_MEMORY_ACCESS);
    };
    let Some(s) = state(&mut env) else {
        return Ok(status::INTERNAL_FAILURE);
    };
    let Some((value, cas)) = s.shared.get(&key) else {
        return Ok(status::NOT_FOUND);
    };
    if memory(&env).is_none_or(|m| m.check(ret_cas, 4).is_err()) {
        return Ok(status::INVALID_MEMORY_ACCESS);
    }
    match give(&mut env, &value, ret_ptr, ret_len)? {
        status::OK => Ok(write_u32(&env, ret_cas, cas)),
        other => Ok(other),
    }
}

fn proxy_set_shared_data(
    mut env: FunctionEnvMut<'_, HostState>,
    key_ptr: i32,
    key_len: i32,
    val_ptr: i32,
    val_len: i32,
    cas: i32,
) -> i32 {
    let (Some(key), Some(value)) = (read(&env, key_ptr, key_len), read(&env, val_ptr, val_len))
    else {
        return status::INVALID_MEMORY_ACCESS;
    };
    let Some(s) = state(&mut env) else {
        return status::INTERNAL_FAILURE;
    };
    match s.shared.set(&key, &value, cas as u32) {
        Ok(()) => status::OK,
        Err(SetError::CasMismatch) => status::CAS_MISMATCH,
        Err(SetError::Full) => status::INTERNAL_FAILURE,
    }
}

fn proxy_register_shared_queue(
    mut env: FunctionEnvMut<'_, HostState>,
    name_ptr: i32,
    name_len: i32,
    ret_id: i32,
) -> i32 {
    let Some(name) = read(&env, name_ptr, name_len) else {
        return status::INVALID_MEMORY_ACCESS;
    };
    let Some(s) = state(&mut env) else {
        return status::INTERNAL_FAILURE;
    };
    match s.shared.register_queue(&name, s.queue_waker.clone()) {
        Some(id) => write_u32(&env, ret_id, id),
        None => status::INTERNAL_FAILURE,
    }
}

fn proxy_resolve_shared_queue(
    mut env: FunctionEnvMut<'_, HostState>,
    vm_ptr: i32,
    vm_len: i32,
    name_ptr: i32,
    name_len: i32,
    ret_id: i32,
) -> i32 {
    let (Some(vm), Some(name)) = (read(&env, vm_ptr, vm_len), read(&env, name_ptr, name_len))
    else {
        return status::INVALID_MEMORY_ACCESS;
    };
    let Some(s) = state(&mut env) else {
        return status::INTERNAL_FAILURE;
    };
    // Queues are the plugin's own: another VM id has none here.
    if !vm.is_empty() && vm != s.vm_id.as_bytes() {
        return status::NOT_FOUND;
    }
    match s.shared.resolve_queue(&name) {
        Some(id) => write_u32(&env, ret_id, id),
        None => status::NOT_FOUND,
    }
}

fn proxy_dequeue_shared_queue(
    mut env: FunctionEnvMut<'_, HostState>,
    id: i32,
    ret_ptr: i32,
    ret_len: i32,
) -> Result<i32, HostAbort> {
    let Some(s) = state(&mut env) else {
        return Ok(status::INTERNAL_FAILURE);
    };
    match s.shared.dequeue(id as u32) {
        Err(()) => Ok(status::NOT_FOUND),
        Ok(None) => Ok(status::EMPTY),
        Ok(Some(item)) => give(&mut env, &item, ret_ptr, ret_len),
    }
}

fn proxy_enqueue_shared_queue(
    mut env: FunctionEnvMut<'_, HostState>,
    id: i32,
    val_ptr: i32,
    val_len: i32,
) -> i32 {
    let Some(value) = read(&env, val_ptr, val_len) else {
        return status::INVALID_MEMORY_ACCESS;
    };
    let Some(s) = state(&mut env) else {
        return status::INTERNAL_FAILURE;
    };
    match s.shared.enqueue(id as u32, &value) {
        Ok(()) => status::OK,
        Err(false) => status::NOT_FOUND,
        Err(true) => status::INTERNAL_FAILURE,
    }
}

/// Records `event` for the effective context, if it is a live stream.
fn stream_event(
    env: &mut FunctionEnvMut<'_, HostState>,
    event: impl FnOnce(u32) -> StreamEvent,
) -> i32 {
    let Some(s) = state(env) else {
        return status::INTERNAL_FAILURE;
    };
    if !s.streams.contains_key(&s.effective) {
        return status::NOT_FOUND;
    }
    let e = event(s.effective);
    s.events.push(e);
    status::OK
}

fn proxy_continue_stream(mut env: FunctionEnvMut<'_, HostState>, kind: i32) -> i32 {
    use super::abi::stream_type;
    if kind != stream_type::REQUEST && kind != stream_type::RESPONSE {
        return status::BAD_ARGUMENT;
    }
    stream_event(&mut env, |context| StreamEvent::Continue { context })
}

/// 0.1.0 `proxy_continue_request` / `proxy_continue_response`.
fn proxy_continue_request(mut env: FunctionEnvMut<'_, HostState>) -> i32 {
    stream_event(&mut env, |context| StreamEvent::Continue { context })
}

fn proxy_close_stream(mut env: FunctionEnvMut<'_, HostState>, _kind: i32) -> i32 {
    stream_event(&mut env, |context| StreamEvent::Close { context })
}

#[allow(clippy::too_many_arguments)]
fn proxy_send_local_response(
    mut env: FunctionEnvMut<'_, HostState>,
    status_code: i32,
    details_ptr: i32,
    details_len: i32,
    body_ptr: i32,
    body_len: i32,
    headers_ptr: i32,
    headers_len: i32,
    _grpc_status: i32,
) -> i32 {
    let (Some(details), Some(body), Some(headers)) = (
        read(&env, details_ptr, details_len),
        read(&env, body_ptr, body_len),
        read(&env, headers_ptr, headers_len),
    ) else {
        return status::INVALID_MEMORY_ACCESS;
    };
    let Some(headers) = parse_pairs(&headers) else {
        return status::BAD_ARGUMENT;
    };
    let response = LocalResponse {
        status: status_code as u32,
        details,
        body,
        headers,
    };
    stream_event(&mut env, |context| StreamEvent::LocalResponse {
        context,
        response,
    })
}

/// The route is chosen before filters run; there is nothing to clear.
fn proxy_clear_route_cache(_env: FunctionEnvMut<'_, HostState>) -> i32 {
    status::OK
}

fn proxy_set_effective_context(mut env: FunctionEnvMut<'_, HostState>, ctx: i32) -> i32 {
    let Some(s) = state(&mut env) else {
        return status::INTERNAL_FAILURE;
    };
    let ctx = ctx as u32;
    if ctx != s.root_id && !s.streams.contains_key(&ctx) {
        return status::BAD_ARGUMENT;
    }
    s.effective = ctx;
    status::OK
}

fn proxy_define_metric(
    mut env: FunctionEnvMut<'_, HostState>,
    kind: i32,
    name_ptr: i32,
    name_len: i32,
    ret_id: i32,
) -> i32 {
    let Some(kind) = MetricKind::from_raw(kind) else {
        return status::BAD_ARGUMENT;
    };
    let Some(name) = read(&env, name_ptr, name_len) else {
        return status::INVALID_MEMORY_ACCESS;
    };
    let Ok(name) = String::from_utf8(name) else {
        return status::BAD_ARGUMENT;
    };
    let Some(s) = state(&mut env) else {
        return status::INTERNAL_FAILURE;
    };
    match s.shared.metrics().define(kind, &name) {
        Some(id) => write_u32(&env, ret_id, id),
        None => status::BAD_ARGUMENT,
    }
}

fn proxy_increment_metric(mut env: FunctionEnvMut<'_, HostState>, id: i32, offset: i64) -> i32 {
    let Some(s) = state(&mut env) else {
        return status::INTERNAL_FAILURE;
    };
    if s.shared.metrics().increment(id as u32, offset) {
        status::OK
    } else {
        status::NOT_FOUND
    }
}

fn proxy_record_metric(mut env: FunctionEnvMut<'_, HostState>, id: i32, value: i64) -> i32 {
    let Some(s) = state(&mut env) else {
        return status::INTERNAL_FAILURE;
    };
    if s.shared.metrics().record(id as u32, value as u64) {
        status::OK
    } else {
        status::NOT_FOUND
    }
}

fn proxy_get_metric(mut env: FunctionEnvMut<'_, HostState>, id: i32, ret: i32) -> i32 {
    let Some(s) = state(&mut env) else {
        return status::INTERNAL_FAILURE;
    };
    let Some(v) = s.shared.metrics().value(id as u32) else {
        return status::NOT_FOUND;
    };
    match memory(&env).map(|m| m.write_u64_le(ret, v)) {
        Some(Ok(())) => status::OK,
        _ => status::INVALID_MEMORY_ACCESS,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use wasmer::{FunctionEnv, Store};

    use super::*;

    #[test]
    fn every_hostcall_has_its_rows_signature_and_a_unique_name() {
        let mut store = Store::default();
        let env = FunctionEnv::new(
            &mut store,
            HostState::new("f".into(), Vec::new().into(), Vec::new().into()),
        );
        let mut seen = HashSet::new();
        for import in FILTER_ENV.imports {
            assert!(seen.insert(import.name), "{} twice", import.name);
            let f = import.function(&mut store, &env);
            assert_eq!(f.ty(&store), import.sig.function_type(), "{}", import.name);
        }
    }

    #[test]
    fn filters_see_wasi_and_hostcalls_but_not_codec_calls() {
        assert!(find("env", "proxy_send_local_response").is_some());
        assert!(find("wasi_snapshot_preview1", "fd_write").is_some());
        assert!(find("env", "proxy_decode_buffer_bytes").is_none());
        assert!(find("env", "proxy_no_such_hostcall").is_none());
    }
}
