//! Guest memory handed across the ABI: wasi-libc's `malloc`/`free`, the same heap the Rust
//! standard library allocates from on `wasm32-wasip1`.
//!
//! The host calls `malloc` (exported from the plugin by its build script: `--export=malloc`)
//! to place codec inputs and import results in guest memory; the SDK owns those blocks and
//! frees them once a call is done. wasi-libc's `malloc(0)` returns a valid pointer.

unsafe extern "C" {
    fn malloc(size: usize) -> *mut u8;
    fn free(ptr: *mut u8);
}

/// Allocates `size` bytes for the host (`proxy_on_memory_allocate`); null when memory is
/// exhausted.
pub(crate) fn allocate(size: usize) -> *mut u8 {
    // SAFETY: libc `malloc` has no preconditions; the caller (the host) owns the result until
    // it hands it back as a codec input.
    unsafe { malloc(size) }
}

/// Frees a block obtained from [`allocate`] (or the exported `malloc`); null is ignored.
///
/// # Safety
/// `ptr` is null or came from this module's `malloc` and was not freed yet; nothing uses it
/// afterwards.
pub(crate) unsafe fn release(ptr: *mut u8) {
    if !ptr.is_null() {
        // SAFETY: guaranteed by the caller (see above).
        unsafe { free(ptr) }
    }
}
