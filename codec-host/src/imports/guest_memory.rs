//! Checked access to guest linear memory: every pointer/length pair from the guest is
//! validated before a byte is touched (ABI §0: ptr/len are offsets/sizes in `memory`).
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use wasmer::{FunctionEnvMut, MemoryView};

use super::host_state::{HostAbort, HostState};

/// A pointer/length pair outside guest memory (the import then returns status 6,
/// InvalidMemoryAccess, or WASI `EFAULT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutOfBounds;

/// Bounds-checked view of the guest's memory for the duration of one host call. Built fresh
/// after every call into the guest: memory may have grown (ABI §4).
pub(crate) struct GuestMemory<'a> {
    view: MemoryView<'a>,
}

impl<'a> GuestMemory<'a> {
    /// Wraps a memory view.
    pub(crate) fn new(view: MemoryView<'a>) -> GuestMemory<'a> {
        GuestMemory { view }
    }

    /// The byte range `[ptr, ptr + len)` as u64 offsets, if it lies inside memory.
    fn range(&self, ptr: i32, len: i32) -> Result<(u64, usize), OutOfBounds> {
        let (ptr, len) = (u64::from(ptr as u32), u64::from(len as u32));
        let end = ptr.checked_add(len).ok_or(OutOfBounds)?;
        if end > self.view.data_size() {
            return Err(OutOfBounds);
        }
        Ok((ptr, usize::try_from(len).map_err(|_| OutOfBounds)?))
    }

    /// Checks that `[ptr, ptr + len)` is inside memory.
    pub(crate) fn check(&self, ptr: i32, len: i32) -> Result<(), OutOfBounds> {
        self.range(ptr, len).map(|_| ())
    }

    /// Replaces the contents of `out` with the guest bytes `[ptr, ptr + len)`.
    pub(crate) fn read_into(
        &self,
        ptr: i32,
        len: i32,
        out: &mut Vec<u8>,
    ) -> Result<(), OutOfBounds> {
        let (at, len) = self.range(ptr, len)?;
        out.clear();
        out.resize(len, 0);
        self.view.read(at, out).map_err(|_| OutOfBounds)
    }

    /// Appends the guest bytes `[ptr, ptr + len)` to `out`.
    pub(crate) fn append_to(
        &self,
        ptr: i32,
        len: i32,
        out: &mut Vec<u8>,
    ) -> Result<(), OutOfBounds> {
        let (at, len) = self.range(ptr, len)?;
        let start = out.len();
        out.resize(start + len, 0);
        self.view
            .read(at, &mut out[start..])
            .map_err(|_| OutOfBounds)
    }

    /// Writes `bytes` at `ptr`.
    pub(crate) fn write(&self, ptr: i32, bytes: &[u8]) -> Result<(), OutOfBounds> {
        let len = i32::try_from(bytes.len()).map_err(|_| OutOfBounds)?;
        let (at, _) = self.range(ptr, len)?;
        self.view.write(at, bytes).map_err(|_| OutOfBounds)
    }

    /// Reads a little-endian u32 at `ptr`.
    pub(crate) fn read_u32_le(&self, ptr: i32) -> Result<u32, OutOfBounds> {
        let (at, _) = self.range(ptr, 4)?;
        let mut b = [0u8; 4];
        self.view.read(at, &mut b).map_err(|_| OutOfBounds)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Writes a little-endian u32 at `ptr` (return slots are LE, ABI §0).
    pub(crate) fn write_u32_le(&self, ptr: i32, value: u32) -> Result<(), OutOfBounds> {
        self.write(ptr, &value.to_le_bytes())
    }

    /// Writes a little-endian u64 at `ptr`.
    pub(crate) fn write_u64_le(&self, ptr: i32, value: u64) -> Result<(), OutOfBounds> {
        self.write(ptr, &value.to_le_bytes())
    }
}

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
