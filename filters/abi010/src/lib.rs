//! `filter-abi010`: a filter for the old ABI `proxy_abi_version_0_1_0`, written without the
//! proxy-wasm crate (which only speaks 0.2.1): plain exports and raw imports.
//!
//! No configuration (the configuration size passed to `proxy_on_configure` is ignored).
//!
//! Behaviour: `proxy_on_request_headers(context_id, num_headers)` (0.1.0 passes no
//! `end_of_stream`) adds the request header `x-abi: 0.1.0` through
//! `proxy_add_header_map_value(0 /* request headers */, ...)` and returns 0 (Continue);
//! `proxy_on_response_headers` returns 0 without touching anything. `proxy_on_vm_start` and
//! `proxy_on_configure` log one line at info level through `proxy_log` and return 1 (success);
//! `proxy_on_done` returns 1 (done, nothing pending).
//!
//! Memory: `malloc` is wasi-libc's allocator, exported by `build.rs`; `proxy_on_memory_allocate`
//! is the same allocator under the 0.2.x name, for hosts that look for that one.

/// `proxy_log` levels (0.1.0 and 0.2.x agree).
const LOG_INFO: i32 = 2;
/// Header map type of the request headers.
const MAP_REQUEST_HEADERS: i32 = 0;
/// `FilterHeadersStatus::Continue`.
const CONTINUE: i32 = 0;

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_log(level: i32, message_data: *const u8, message_size: usize) -> i32;
    fn proxy_add_header_map_value(
        map_type: i32,
        key_data: *const u8,
        key_size: usize,
        value_data: *const u8,
        value_size: usize,
    ) -> i32;
}

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
    fn malloc(size: usize) -> *mut u8;
}

fn log_info(message: &str) {
    // SAFETY: the pointer and length describe a live string.
    unsafe {
        proxy_log(LOG_INFO, message.as_ptr(), message.len());
    }
}

/// Runs the module's static constructors (reactor start function).
#[no_mangle]
pub extern "C" fn _initialize() {
    #[cfg(target_os = "wasi")]
    // SAFETY: called once by the host before any other export, as the reactor ABI requires.
    unsafe {
        __wasm_call_ctors();
    }
}

/// Marks the module as speaking ABI 0.1.0.
#[no_mangle]
pub extern "C" fn proxy_abi_version_0_1_0() {}

/// Allocates `size` bytes of guest memory for the host (the same allocator as `malloc`).
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    #[cfg(target_os = "wasi")]
    // SAFETY: libc malloc of any size; a null result is passed on to the host.
    unsafe {
        malloc(size)
    }
    #[cfg(not(target_os = "wasi"))]
    {
        let _ = size;
        std::ptr::null_mut()
    }
}

/// A root context (`parent_context_id == 0`) or a request's context was created.
#[no_mangle]
pub extern "C" fn proxy_on_context_create(_context_id: u32, _parent_context_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(_root_context_id: u32, _vm_configuration_size: u32) -> u32 {
    log_info("filter-abi010: vm started (ABI 0.1.0)");
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(_root_context_id: u32, _configuration_size: u32) -> u32 {
    log_info("filter-abi010: configured");
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(_context_id: u32, _num_headers: u32) -> u32 {
    let (key, value) = ("x-abi", "0.1.0");
    // SAFETY: the pointers and lengths describe live strings.
    unsafe {
        proxy_add_header_map_value(
            MAP_REQUEST_HEADERS,
            key.as_ptr(),
            key.len(),
            value.as_ptr(),
            value.len(),
        );
    }
    CONTINUE as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_response_headers(_context_id: u32, _num_headers: u32) -> u32 {
    CONTINUE as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_done(_context_id: u32) -> u32 {
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_log(_context_id: u32) {}

#[no_mangle]
pub extern "C" fn proxy_on_delete(_context_id: u32) {}
