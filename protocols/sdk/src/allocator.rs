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

thread_local! {
    /// The input buffer the host writes codec inputs into (optional export
    /// `rpc_sidecar_input_buffer`): (pointer, capacity); null until first asked for.
    static INPUT_BUFFER: core::cell::Cell<(*mut u8, usize)> =
        const { core::cell::Cell::new((core::ptr::null_mut(), 0)) };
}

/// The input buffer, grown to hold at least `len` bytes (its capacity at least doubles, so
/// growth is rare); null when memory is exhausted (the host then falls back to `malloc`).
pub(crate) fn input_buffer(len: usize) -> *mut u8 {
    INPUT_BUFFER.with(|b| {
        let (ptr, cap) = b.get();
        if !ptr.is_null() && cap >= len {
            return ptr;
        }
        let want = len.max(cap.saturating_mul(2)).max(4096);
        let fresh = allocate(want);
        if fresh.is_null() {
            return fresh;
        }
        // SAFETY: `ptr` is null or this buffer's previous block, from `allocate`; the host
        // stopped using it (it asks for a new one only between calls).
        unsafe { release(ptr) };
        b.set((fresh, want));
        fresh
    })
}

/// Whether `ptr` is the input buffer (an input the guest must not free).
pub(crate) fn is_input_buffer(ptr: *mut u8) -> bool {
    !ptr.is_null() && INPUT_BUFFER.with(|b| b.get().0 == ptr)
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
