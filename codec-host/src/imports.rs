//! The `env` host functions a codec plugin imports (ABI §4): one Rust function per import,
//! each validating the guest's pointers through [`guest_memory`] before delegating, and the
//! per-instance host state they share.

pub(crate) mod buffer;
pub(crate) mod guest_memory;
pub(crate) mod header_map;
pub(crate) mod log;
pub(crate) mod property;
pub(crate) mod time;
pub(crate) mod unimplemented;

use std::sync::Arc;

use codec_abi::Status;
use wasmer::{Function, FunctionEnv, Memory, Store, TypedFunction};

use crate::guest_output::GuestOutput;
use crate::shape::{Sig, ValType::I32, ValType::I64};

/// What the `env` imports of one instance work with. Lives in the instance's
/// `FunctionEnv`; the host reaches it between calls through [`crate::engine::Vm`].
pub(crate) struct HostState {
    /// The guest's exported memory (set right after instantiation).
    pub(crate) memory: Option<Memory>,
    /// The guest's allocator export, for data returned by imports (ABI §4).
    pub(crate) malloc: Option<TypedFunction<i32, i32>>,
    /// The VM configuration buffer (type 6): §5.2 pairs.
    pub(crate) vm_config: Arc<[u8]>,
    /// The plugin configuration buffer (type 7): §5.2 pairs.
    pub(crate) plugin_config: Arc<[u8]>,
    /// What the guest reported through `proxy_set_buffer_bytes` during the current call.
    pub(crate) result: CallResult,
    /// The guest's log and stdout/stderr output, and the last words of the current call.
    pub(crate) output: GuestOutput,
}

impl HostState {
    /// State for a new instance of plugin `name`.
    pub(crate) fn new(name: Arc<str>, vm_config: Arc<[u8]>, plugin_config: Arc<[u8]>) -> HostState {
        HostState {
            memory: None,
            malloc: None,
            vm_config,
            plugin_config,
            result: CallResult::default(),
            output: GuestOutput::new(name),
        }
    }
}

/// The codec buffer (13 = decode result, 14 = encode result) reported during one call.
#[derive(Default)]
pub(crate) struct CallResult {
    /// Which buffer type was reported last; `None` when nothing was.
    pub(crate) kind: Option<u32>,
    /// A copy of the reported bytes (the buffer is reused across calls).
    pub(crate) bytes: Vec<u8>,
}

impl CallResult {
    /// Forgets the previous call's report (keeps the allocation).
    pub(crate) fn clear(&mut self) {
        self.kind = None;
        self.bytes.clear();
    }

    /// The bytes reported as buffer type `kind` during this call.
    pub(crate) fn get(&self, kind: u32) -> Option<&[u8]> {
        (self.kind == Some(kind)).then_some(self.bytes.as_slice())
    }
}

/// Why an import aborted the guest call (a Wasm trap raised by the host).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostAbort {
    /// A nested call into the guest (its `malloc`) failed.
    #[error("nested guest call failed: {0}")]
    NestedCall(String),
    /// The guest called WASI `proc_exit`.
    #[error("plugin called proc_exit({0})")]
    Exit(i32),
}

/// Status values as the i32 an import returns.
pub(crate) fn status(s: Status) -> i32 {
    s.raw() as i32
}

/// Name and signature of every `env` import the host provides: the proxy-wasm 0.1.0 set
/// MOSN registers (ABI §4.1, §4.2) plus `proxy_continue_stream`/`proxy_close_stream`, which
/// the Go SDK declares.
pub(crate) const ENV_IMPORTS: &[(&str, Sig)] = &[
    // §4.1
    ("proxy_log", Sig(&[I32, I32, I32], &[I32])),
    (
        "proxy_get_buffer_bytes",
        Sig(&[I32, I32, I32, I32, I32], &[I32]),
    ),
    (
        "proxy_set_buffer_bytes",
        Sig(&[I32, I32, I32, I32, I32], &[I32]),
    ),
    ("proxy_get_header_map_pairs", Sig(&[I32, I32, I32], &[I32])),
    ("proxy_set_header_map_pairs", Sig(&[I32, I32, I32], &[I32])),
    (
        "proxy_get_header_map_value",
        Sig(&[I32, I32, I32, I32, I32], &[I32]),
    ),
    (
        "proxy_add_header_map_value",
        Sig(&[I32, I32, I32, I32, I32], &[I32]),
    ),
    (
        "proxy_replace_header_map_value",
        Sig(&[I32, I32, I32, I32, I32], &[I32]),
    ),
    (
        "proxy_remove_header_map_value",
        Sig(&[I32, I32, I32], &[I32]),
    ),
    ("proxy_continue_stream", Sig(&[I32], &[I32])),
    ("proxy_close_stream", Sig(&[I32], &[I32])),
    ("proxy_set_tick_period_milliseconds", Sig(&[I32], &[I32])),
    ("proxy_get_current_time_nanoseconds", Sig(&[I32], &[I32])),
    ("proxy_set_effective_context", Sig(&[I32], &[I32])),
    ("proxy_done", Sig(&[], &[I32])),
    ("proxy_get_property", Sig(&[I32, I32, I32, I32], &[I32])),
    ("proxy_set_property", Sig(&[I32, I32, I32, I32], &[I32])),
    // §4.2: the rest of MOSN's set, all answering 12 (Unimplemented).
    ("proxy_resume_downstream", Sig(&[], &[I32])),
    ("proxy_resume_upstream", Sig(&[], &[I32])),
    ("proxy_resume_http_request", Sig(&[], &[I32])),
    ("proxy_resume_http_response", Sig(&[], &[I32])),
    ("proxy_send_http_response", Sig(&[I32; 8], &[I32])),
    ("proxy_http_call", Sig(&[I32; 10], &[I32])),
    ("proxy_dispatch_http_call", Sig(&[I32; 10], &[I32])),
    ("proxy_open_grpc_stream", Sig(&[I32; 7], &[I32])),
    ("proxy_send_grpc_call_message", Sig(&[I32; 4], &[I32])),
    ("proxy_cancel_grpc_call", Sig(&[I32], &[I32])),
    ("proxy_close_grpc_call", Sig(&[I32], &[I32])),
    ("proxy_grpc_call", Sig(&[I32; 10], &[I32])),
    ("proxy_dispatch_grpc_call", Sig(&[I32; 10], &[I32])),
    ("proxy_define_metric", Sig(&[I32; 4], &[I32])),
    ("proxy_remove_metric", Sig(&[I32], &[I32])),
    ("proxy_increment_metric", Sig(&[I32, I64], &[I32])),
    ("proxy_record_metric", Sig(&[I32, I64], &[I32])),
    ("proxy_get_metric", Sig(&[I32, I32], &[I32])),
    ("proxy_register_shared_queue", Sig(&[I32; 3], &[I32])),
    ("proxy_remove_shared_queue", Sig(&[I32], &[I32])),
    ("proxy_resolve_shared_queue", Sig(&[I32; 3], &[I32])),
    ("proxy_dequeue_shared_queue", Sig(&[I32; 3], &[I32])),
    ("proxy_enqueue_shared_queue", Sig(&[I32; 3], &[I32])),
    ("proxy_get_shared_data", Sig(&[I32; 5], &[I32])),
    ("proxy_set_shared_data", Sig(&[I32; 5], &[I32])),
    ("proxy_call_foreign_function", Sig(&[I32; 6], &[I32])),
];

/// The host function for `env.name`, or `None` if the host provides no such import. Only
/// the functions a module imports are created.
pub(crate) fn env_import(
    store: &mut Store,
    env: &FunctionEnv<HostState>,
    name: &str,
) -> Option<Function> {
    use unimplemented as u;
    Some(match name {
        "proxy_log" => Function::new_typed_with_env(store, env, log::proxy_log),
        "proxy_get_buffer_bytes" => {
            Function::new_typed_with_env(store, env, buffer::proxy_get_buffer_bytes)
        }
        "proxy_set_buffer_bytes" => {
            Function::new_typed_with_env(store, env, buffer::proxy_set_buffer_bytes)
        }
        "proxy_get_header_map_pairs" => {
            Function::new_typed_with_env(store, env, header_map::proxy_get_header_map_pairs)
        }
        "proxy_set_header_map_pairs" => {
            Function::new_typed_with_env(store, env, header_map::proxy_set_header_map_pairs)
        }
        "proxy_get_header_map_value" => {
            Function::new_typed_with_env(store, env, header_map::proxy_get_header_map_value)
        }
        "proxy_add_header_map_value" => {
            Function::new_typed_with_env(store, env, header_map::proxy_add_header_map_value)
        }
        "proxy_replace_header_map_value" => {
            Function::new_typed_with_env(store, env, header_map::proxy_replace_header_map_value)
        }
        "proxy_remove_header_map_value" => {
            Function::new_typed_with_env(store, env, header_map::proxy_remove_header_map_value)
        }
        "proxy_get_current_time_nanoseconds" => {
            Function::new_typed_with_env(store, env, time::proxy_get_current_time_nanoseconds)
        }
        "proxy_get_property" => {
            Function::new_typed_with_env(store, env, property::proxy_get_property)
        }
        "proxy_set_property" => Function::new_typed(store, property::proxy_set_property),
        // Declared by the SDK but absent from (or stubbed in) MOSN's codec path, and the
        // rest of MOSN's 0.1.0 set (§4.2): 12.
        "proxy_continue_stream"
        | "proxy_close_stream"
        | "proxy_set_tick_period_milliseconds"
        | "proxy_set_effective_context"
        | "proxy_cancel_grpc_call"
        | "proxy_close_grpc_call"
        | "proxy_remove_metric"
        | "proxy_remove_shared_queue" => Function::new_typed(store, u::unimplemented_1),
        "proxy_done"
        | "proxy_resume_downstream"
        | "proxy_resume_upstream"
        | "proxy_resume_http_request"
        | "proxy_resume_http_response" => Function::new_typed(store, u::unimplemented_0),
        "proxy_get_metric" => Function::new_typed(store, u::unimplemented_2),
        "proxy_register_shared_queue"
        | "proxy_resolve_shared_queue"
        | "proxy_dequeue_shared_queue"
        | "proxy_enqueue_shared_queue" => Function::new_typed(store, u::unimplemented_3),
        "proxy_define_metric" | "proxy_send_grpc_call_message" => {
            Function::new_typed(store, u::unimplemented_4)
        }
        "proxy_get_shared_data" | "proxy_set_shared_data" => {
            Function::new_typed(store, u::unimplemented_5)
        }
        "proxy_call_foreign_function" => Function::new_typed(store, u::unimplemented_6),
        "proxy_open_grpc_stream" => Function::new_typed(store, u::unimplemented_7),
        "proxy_send_http_response" => Function::new_typed(store, u::unimplemented_8),
        "proxy_http_call"
        | "proxy_dispatch_http_call"
        | "proxy_grpc_call"
        | "proxy_dispatch_grpc_call" => Function::new_typed(store, u::unimplemented_10),
        "proxy_increment_metric" | "proxy_record_metric" => {
            Function::new_typed(store, u::unimplemented_metric)
        }
        _ => return None,
    })
}
