//! Checked access to guest linear memory: every pointer/length pair from the guest is
//! validated before a byte is touched (ABI §0: ptr/len are offsets/sizes in `memory`). The
//! checks are in [`checked`], written against any [`LinearMemory`]; here they get wasmer's
//! memory view.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use wasmer::{FunctionEnvMut, MemoryView};

use super::host_state::{HostAbort, HostState};

mod checked;

pub(crate) use checked::{clip, fill, gather_iovecs, Checked, LinearMemory, OutOfBounds};

impl LinearMemory for MemoryView<'_> {
    fn size(&self) -> u64 {
        self.data_size()
    }

    fn read(&self, at: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        MemoryView::read(self, at, buf).map_err(|_| OutOfBounds)
    }

    fn write(&self, at: u64, bytes: &[u8]) -> Result<(), OutOfBounds> {
        MemoryView::write(self, at, bytes).map_err(|_| OutOfBounds)
    }
}

/// Bounds-checked view of the guest's memory for the duration of one host call. Built fresh
/// after every call into the guest: memory may have grown (ABI §4).
pub(crate) type GuestMemory<'a> = Checked<MemoryView<'a>>;

/// A fresh bounds-checked view of the calling instance's memory, or `None` before the
/// memory export is known (an import called during instantiation).
pub(crate) fn memory<'a>(env: &'a FunctionEnvMut<'_, HostState>) -> Option<GuestMemory<'a>> {
    env.data()
        .memory
        .as_ref()
        .map(|m| GuestMemory::new(m.view(env)))
}

/// Hands `bytes` to the guest the ABI §4 way: the guest's `malloc(n)` is called from inside
/// the import (a nested call), the bytes are copied there, and the pointer and length are
/// written as u32 LE into the two return slots. With `n == 0` malloc is not called (it traps
/// TinyGo guests): the slots get 0 and 0.
///
/// Returns `Ok(Err(OutOfBounds))` when a slot or the allocation lies outside memory (the
/// import then returns status 6), and `Err` when the nested malloc itself failed, which
/// aborts the guest call.
pub(crate) fn return_to_guest(
    env: &mut FunctionEnvMut<'_, HostState>,
    bytes: &[u8],
    ret_ptr: i32,
    ret_len: i32,
) -> Result<Result<(), OutOfBounds>, HostAbort> {
    let Ok(len) = i32::try_from(bytes.len()) else {
        return Ok(Err(OutOfBounds));
    };
    {
        let Some(mem) = memory(env) else {
            return Ok(Err(OutOfBounds));
        };
        // Check both slots before allocating: a bad slot must not cost a guest allocation.
        if mem.check(ret_ptr, 4).is_err() || mem.check(ret_len, 4).is_err() {
            return Ok(Err(OutOfBounds));
        }
        if len == 0 {
            return Ok(mem
                .write_u32_le(ret_ptr, 0)
                .and_then(|()| mem.write_u32_le(ret_len, 0)));
        }
    }
    let Some(malloc) = env.data().malloc.clone() else {
        return Ok(Err(OutOfBounds));
    };
    let ptr = malloc
        .call(env, len as u32)
        .map_err(|e| HostAbort::NestedCall(e.message()))?;
    // ABI §4: memory may have grown inside malloc; take a fresh view.
    let Some(mem) = memory(env) else {
        return Ok(Err(OutOfBounds));
    };
    Ok(mem
        .write(ptr as i32, bytes)
        .and_then(|()| mem.write_u32_le(ret_ptr, ptr))
        .and_then(|()| mem.write_u32_le(ret_len, len as u32)))
}
