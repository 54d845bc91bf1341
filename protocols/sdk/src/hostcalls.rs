//! The host functions a plugin imports (ABI §4.1, plus WASI `fd_write` for panic text), each
//! next to its one safe wrapper, and [`WasmHost`], the dispatcher's [`Host`] inside Wasm.
//!
//! Only what the SDK uses is declared, so a plugin imports `env.proxy_log`,
//! `env.proxy_get_buffer_bytes`, `env.proxy_set_buffer_bytes` and whatever WASI functions
//! the Rust standard library needs. Statuses become `Result`s; no wrapper panics.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use codec_abi::{BufferType, LogLevel};

use crate::allocator;
use crate::host::{Host, HostError};

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_log(level: u32, message_data: *const u8, message_size: usize) -> u32;
}

/// Logs `message` at `level` through the host.
pub(crate) fn log(level: LogLevel, message: &str) -> Result<(), HostError> {
    // SAFETY: `message` is a live, initialised byte range for the duration of the call; the
    // host only reads it.
    let status = unsafe { proxy_log(level as u32, message.as_ptr(), message.len()) };
    check(status)
}

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_get_buffer_bytes(
        buffer_type: u32,
        start: usize,
        max_size: usize,
        return_data: *mut *mut u8,
        return_size: *mut usize,
    ) -> u32;
}

/// Copies up to `max_size` bytes of `buffer` (from offset 0) out of the host.
///
/// The host places the bytes with a nested `malloc` and hands the pointer over (ABI §4); they
/// are copied into a `Vec` and the host's block is freed. A zero-length answer may come as
/// ptr 0 / len 0 (no malloc): that is an empty buffer.
pub(crate) fn get_buffer_bytes(buffer: BufferType, max_size: usize) -> Result<Vec<u8>, HostError> {
    let mut data: *mut u8 = core::ptr::null_mut();
    let mut size: usize = 0;
    // SAFETY: the two return slots are live locals the host writes (u32 LE each, i.e. a
    // wasm32 pointer and usize); nothing else is passed by pointer.
    let status =
        unsafe { proxy_get_buffer_bytes(buffer as u32, 0, max_size, &mut data, &mut size) };
    check(status)?;
    if data.is_null() {
        return if size == 0 {
            Ok(Vec::new())
        } else {
            Err(HostError::BadReturn("null pointer with a non-zero length"))
        };
    }
    let bytes = if size == 0 {
        Vec::new()
    } else {
        // SAFETY: the host obtained `data` from our `malloc(size)` during the call and
        // copied `size` bytes there (ABI §4); we own the block until we free it below.
        unsafe { core::slice::from_raw_parts(data, size) }.to_vec()
    };
    // SAFETY: `data` came from the guest's `malloc` (called by the host inside the import)
    // and is not used after this point.
    unsafe { allocator::release(data) };
    Ok(bytes)
}

#[link(wasm_import_module = "env")]
unsafe extern "C" {
    fn proxy_set_buffer_bytes(
        buffer_type: u32,
        start: usize,
        size: usize,
        data: *const u8,
        data_size: usize,
    ) -> u32;
}

/// Reports `data` as the content of `buffer` (start 0, size = data length, as the Go SDK).
pub(crate) fn set_buffer_bytes(buffer: BufferType, data: &[u8]) -> Result<(), HostError> {
    // SAFETY: `data` is a live byte range for the duration of the call; the host copies it.
    let status =
        unsafe { proxy_set_buffer_bytes(buffer as u32, 0, data.len(), data.as_ptr(), data.len()) };
    check(status)
}

/// One WASI `ciovec`: a byte range to write.
#[repr(C)]
struct Ciovec {
    buf: *const u8,
    buf_len: usize,
}

#[link(wasm_import_module = "wasi_snapshot_preview1")]
unsafe extern "C" {
    fn fd_write(fd: u32, iovs: *const Ciovec, iovs_len: usize, nwritten: *mut usize) -> u32;
}

/// Writes `text` to standard output (the host routes it to its log, ABI §4.3), retrying
/// short writes; gives up on an error or a write of 0 bytes.
pub(crate) fn write_stdout(mut text: &[u8]) -> Result<(), HostError> {
    while !text.is_empty() {
        let iov = Ciovec {
            buf: text.as_ptr(),
            buf_len: text.len(),
        };
        let mut written: usize = 0;
        // SAFETY: `iov` describes `text`, borrowed for the call, and `written` is a live local;
        // the host only reads the bytes and writes `written`.
        let errno = unsafe { fd_write(1, &iov, 1, &mut written) };
        check(errno)?;
        if written == 0 || written > text.len() {
            return Err(HostError::BadReturn("fd_write wrote no bytes"));
        }
        text = &text[written..];
    }
    Ok(())
}

fn check(status: u32) -> Result<(), HostError> {
    match status {
        0 => Ok(()),
        other => Err(HostError::Status(other)),
    }
}

/// The dispatcher's host inside Wasm: the imports above.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct WasmHost;

impl Host for WasmHost {
    fn log(&mut self, level: LogLevel, message: &str) {
        // A failed log line has nowhere else to go.
        let _ = log(level, message);
    }

    fn get_buffer(&mut self, buffer: BufferType, max_size: usize) -> Result<Vec<u8>, HostError> {
        get_buffer_bytes(buffer, max_size)
    }

    fn set_buffer(&mut self, buffer: BufferType, data: &[u8]) -> Result<(), HostError> {
        set_buffer_bytes(buffer, data)
    }
}
