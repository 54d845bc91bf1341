//! The `env` namespace (ABI §4.1, §4.2): the proxy-wasm 0.1.0 set MOSN registers, plus
//! `proxy_continue_stream`/`proxy_close_stream`, which the Go SDK declares. What a codec
//! needs is implemented (configuration buffers, results, log, time; header maps and
//! properties answer "absent"); the rest answers 12 (Unimplemented).
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use codec_abi::Status;
use wasmer::Type::{I32, I64};

use super::table::{plain, with_env, Import, Namespace, Provider};
use super::{buffer, header_map, log, property, time};
use crate::signature::Sig;

/// The answer of every import the host does not implement.
const UNIMPLEMENTED: Provider = Provider::Answer(Status::Unimplemented as i32);

/// The `env` imports.
pub(crate) const ENV: Namespace = Namespace {
    modules: &["env"],
    imports: &[
        // §4.1
        Import::new(
            "proxy_log",
            Sig(&[I32, I32, I32], &[I32]),
            with_env!(log::proxy_log),
        ),
        Import::new(
            "proxy_get_buffer_bytes",
            Sig(&[I32, I32, I32, I32, I32], &[I32]),
            with_env!(buffer::proxy_get_buffer_bytes),
        ),
        Import::new(
            "proxy_set_buffer_bytes",
            Sig(&[I32, I32, I32, I32, I32], &[I32]),
            with_env!(buffer::proxy_set_buffer_bytes),
        ),
        Import::new(
            "proxy_get_header_map_pairs",
            Sig(&[I32, I32, I32], &[I32]),
            with_env!(header_map::proxy_get_header_map_pairs),
        ),
        Import::new(
            "proxy_set_header_map_pairs",
            Sig(&[I32, I32, I32], &[I32]),
            with_env!(header_map::proxy_set_header_map_pairs),
        ),
        Import::new(
            "proxy_get_header_map_value",
            Sig(&[I32, I32, I32, I32, I32], &[I32]),
            with_env!(header_map::proxy_get_header_map_value),
        ),
        Import::new(
            "proxy_add_header_map_value",
            Sig(&[I32, I32, I32, I32, I32], &[I32]),
            with_env!(header_map::proxy_add_header_map_value),
        ),
        Import::new(
            "proxy_replace_header_map_value",
            Sig(&[I32, I32, I32, I32, I32], &[I32]),
            with_env!(header_map::proxy_replace_header_map_value),
        ),
        Import::new(
            "proxy_remove_header_map_value",
            Sig(&[I32, I32, I32], &[I32]),
            with_env!(header_map::proxy_remove_header_map_value),
        ),
        // Declared by the Go SDK but absent from (or stubbed in) MOSN's codec path.
        Import::new("proxy_continue_stream", Sig(&[I32], &[I32]), UNIMPLEMENTED),
        Import::new("proxy_close_stream", Sig(&[I32], &[I32]), UNIMPLEMENTED),
        Import::new(
            "proxy_set_tick_period_milliseconds",
            Sig(&[I32], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new(
            "proxy_get_current_time_nanoseconds",
            Sig(&[I32], &[I32]),
            with_env!(time::proxy_get_current_time_nanoseconds),
        ),
        Import::new(
            "proxy_set_effective_context",
            Sig(&[I32], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new("proxy_done", Sig(&[], &[I32]), UNIMPLEMENTED),
        Import::new(
            "proxy_get_property",
            Sig(&[I32, I32, I32, I32], &[I32]),
            with_env!(property::proxy_get_property),
        ),
        Import::new(
            "proxy_set_property",
            Sig(&[I32, I32, I32, I32], &[I32]),
            plain!(property::proxy_set_property),
        ),
        // §4.2: the rest of MOSN's set.
        Import::new("proxy_resume_downstream", Sig(&[], &[I32]), UNIMPLEMENTED),
        Import::new("proxy_resume_upstream", Sig(&[], &[I32]), UNIMPLEMENTED),
        Import::new("proxy_resume_http_request", Sig(&[], &[I32]), UNIMPLEMENTED),
        Import::new(
            "proxy_resume_http_response",
            Sig(&[], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new(
            "proxy_send_http_response",
            Sig(&[I32; 8], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new("proxy_http_call", Sig(&[I32; 10], &[I32]), UNIMPLEMENTED),
        Import::new(
            "proxy_dispatch_http_call",
            Sig(&[I32; 10], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new(
            "proxy_open_grpc_stream",
            Sig(&[I32; 7], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new(
            "proxy_send_grpc_call_message",
            Sig(&[I32; 4], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new("proxy_cancel_grpc_call", Sig(&[I32], &[I32]), UNIMPLEMENTED),
        Import::new("proxy_close_grpc_call", Sig(&[I32], &[I32]), UNIMPLEMENTED),
        Import::new("proxy_grpc_call", Sig(&[I32; 10], &[I32]), UNIMPLEMENTED),
        Import::new(
            "proxy_dispatch_grpc_call",
            Sig(&[I32; 10], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new("proxy_define_metric", Sig(&[I32; 4], &[I32]), UNIMPLEMENTED),
        Import::new("proxy_remove_metric", Sig(&[I32], &[I32]), UNIMPLEMENTED),
        Import::new(
            "proxy_increment_metric",
            Sig(&[I32, I64], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new(
            "proxy_record_metric",
            Sig(&[I32, I64], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new("proxy_get_metric", Sig(&[I32, I32], &[I32]), UNIMPLEMENTED),
        Import::new(
            "proxy_register_shared_queue",
            Sig(&[I32; 3], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new(
            "proxy_remove_shared_queue",
            Sig(&[I32], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new(
            "proxy_resolve_shared_queue",
            Sig(&[I32; 3], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new(
            "proxy_dequeue_shared_queue",
            Sig(&[I32; 3], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new(
            "proxy_enqueue_shared_queue",
            Sig(&[I32; 3], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new(
            "proxy_get_shared_data",
            Sig(&[I32; 5], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new(
            "proxy_set_shared_data",
            Sig(&[I32; 5], &[I32]),
            UNIMPLEMENTED,
        ),
        Import::new(
            "proxy_call_foreign_function",
            Sig(&[I32; 6], &[I32]),
            UNIMPLEMENTED,
        ),
    ],
};
