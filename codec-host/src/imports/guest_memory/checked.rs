//! The bounds checks themselves, apart from wasmer: [`Checked`] validates every guest
//! pointer/length pair against any [`LinearMemory`] before a byte is touched, and the walks
//! the imports make over guest-controlled pointers ([`gather_iovecs`] for `fd_write`,
//! [`fill`] for `random_get`, [`clip`] for `proxy_get_buffer_bytes`) are written against it.
//!
//! This file uses nothing but `std` (no `crate::`, no `super::`), so the fuzz target
//! `fuzz/fuzz_targets/guest_memory.rs` compiles it as it is, against an in-process memory
//! that panics on any access outside it, without building wasmer.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use std::ops::Range;

/// A pointer/length pair outside guest memory (the import then returns status 6,
/// InvalidMemoryAccess, or WASI `EFAULT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OutOfBounds;

/// A guest's linear memory as the checks see it: a size and unchecked-by-us byte access
/// (the implementation may check again; [`Checked`] never relies on it).
pub(crate) trait LinearMemory {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// Copies `buf.len()` bytes at `at` into `buf`.
    fn read(&self, at: u64, buf: &mut [u8]) -> Result<(), OutOfBounds>;
    /// Copies `bytes` to `at`.
    fn write(&self, at: u64, bytes: &[u8]) -> Result<(), OutOfBounds>;
}

/// Bounds-checked access to a guest memory `M`: pointers and lengths are the guest's `i32`s,
/// read as the unsigned 32-bit offsets and sizes they are (ABI §0).
pub(crate) struct Checked<M> {
    mem: M,
}

impl<M: LinearMemory> Checked<M> {
    /// Wraps a memory.
    pub(crate) fn new(mem: M) -> Checked<M> {
        Checked { mem }
    }

    /// The byte range `[ptr, ptr + len)` as u64 offsets, if it lies inside memory.
    fn range(&self, ptr: i32, len: i32) -> Result<(u64, usize), OutOfBounds> {
        let (ptr, len) = (u64::from(ptr as u32), u64::from(len as u32));
        let end = ptr.checked_add(len).ok_or(OutOfBounds)?;
        if end > self.mem.size() {
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
        self.mem.read(at, out)
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
        self.mem.read(at, &mut out[start..])
    }

    /// Writes `bytes` at `ptr`.
    pub(crate) fn write(&self, ptr: i32, bytes: &[u8]) -> Result<(), OutOfBounds> {
        let len = i32::try_from(bytes.len()).map_err(|_| OutOfBounds)?;
        let (at, _) = self.range(ptr, len)?;
        self.mem.write(at, bytes)
    }

    /// Reads a little-endian u32 at `ptr`.
    pub(crate) fn read_u32_le(&self, ptr: i32) -> Result<u32, OutOfBounds> {
        let (at, _) = self.range(ptr, 4)?;
        let mut b = [0u8; 4];
        self.mem.read(at, &mut b)?;
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

/// The part `[start, start + max_size)` of a buffer of `len` bytes that exists: both ends
/// clipped to the buffer's end (`proxy_get_buffer_bytes`, §4.1).
pub(crate) fn clip(len: usize, start: i32, max_size: i32) -> Range<usize> {
    let start = (start as u32 as usize).min(len);
    let end = start.saturating_add(max_size as u32 as usize).min(len);
    start..end
}

/// Walks the `iovs_len` WASI iovecs (`{u32le ptr, u32le len}`, 8 bytes each) at `iovs`, as
/// `fd_write` does: appends the first `keep_max - text.len()` bytes they point to to `text`
/// and returns the total length they announce (saturating). The iovec array and every
/// buffer must lie inside memory, also the bytes not kept; like any range, the array does
/// not wrap past 4 GiB to address 0.
pub(crate) fn gather_iovecs<M: LinearMemory>(
    mem: &Checked<M>,
    iovs: i32,
    iovs_len: i32,
    keep_max: usize,
    text: &mut Vec<u8>,
) -> Result<u32, OutOfBounds> {
    // The whole array first: inside memory, each entry's offsets below fit 32 bits. No
    // iovecs is nothing to write, wherever they point (as writev with iovcnt 0).
    if iovs_len > 0 {
        let array_len = u32::try_from(i64::from(iovs_len) * 8).map_err(|_| OutOfBounds)?;
        mem.check(iovs, array_len as i32)?;
    }
    let mut total: u32 = 0;
    for n in 0..iovs_len {
        let at = iovs.wrapping_add(n.wrapping_mul(8));
        let ptr = mem.read_u32_le(at)?;
        let len = mem.read_u32_le(at.wrapping_add(4))?;
        mem.check(ptr as i32, len as i32)?;
        let keep = (len as usize).min(keep_max.saturating_sub(text.len()));
        if keep > 0 {
            mem.append_to(ptr as i32, keep as i32, text)?;
        }
        total = total.saturating_add(len);
    }
    Ok(total)
}

/// Fills `[buf, buf + len)` with bytes from `source` (`random_get`), at most 256 bytes per
/// call of `source`; nothing is written unless the whole range is inside memory.
pub(crate) fn fill<M: LinearMemory>(
    mem: &Checked<M>,
    buf: i32,
    len: i32,
    mut source: impl FnMut(&mut [u8]),
) -> Result<(), OutOfBounds> {
    mem.check(buf, len)?;
    let mut chunk = [0u8; 256];
    let mut done: u32 = 0;
    while done < len as u32 {
        let n = (len as u32 - done).min(chunk.len() as u32) as usize;
        source(&mut chunk[..n]);
        mem.write(buf.wrapping_add(done as i32), &chunk[..n])?;
        done += n as u32;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;

    /// A memory of any size up to 4 GiB, zero until written, that fails the test on any
    /// access outside it.
    struct Sparse {
        size: u64,
        bytes: RefCell<BTreeMap<u64, u8>>,
    }

    fn memory(size: u64) -> Checked<Sparse> {
        Checked::new(Sparse {
            size,
            bytes: RefCell::default(),
        })
    }

    impl LinearMemory for Sparse {
        fn size(&self) -> u64 {
            self.size
        }
        fn read(&self, at: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
            assert!(
                at + buf.len() as u64 <= self.size,
                "read at {at:#x} let through"
            );
            let bytes = self.bytes.borrow();
            for (i, b) in buf.iter_mut().enumerate() {
                *b = bytes.get(&(at + i as u64)).copied().unwrap_or(0);
            }
            Ok(())
        }
        fn write(&self, at: u64, data: &[u8]) -> Result<(), OutOfBounds> {
            assert!(
                at + data.len() as u64 <= self.size,
                "write at {at:#x} let through"
            );
            let mut bytes = self.bytes.borrow_mut();
            for (i, &b) in data.iter().enumerate() {
                bytes.insert(at + i as u64, b);
            }
            Ok(())
        }
    }

    /// `p` as the guest passes it: the i32 with the same bits.
    fn at(p: u32) -> i32 {
        p as i32
    }

    #[test]
    fn ranges_are_unsigned_and_never_wrap() {
        let mem = memory(65536);
        assert_eq!(mem.check(0, 65536), Ok(()));
        assert_eq!(mem.check(65535, 1), Ok(()));
        assert_eq!(mem.check(65536, 0), Ok(()));
        assert_eq!(mem.check(65536, 1), Err(OutOfBounds));
        assert_eq!(mem.check(-1, 1), Err(OutOfBounds), "0xffffffff, not -1");
        assert_eq!(mem.check(1, -1), Err(OutOfBounds), "a length of 4 GiB - 1");
        let full = memory(1 << 32);
        assert_eq!(full.check(-1, 1), Ok(()));
        assert_eq!(
            full.check(-1, 2),
            Err(OutOfBounds),
            "past 4 GiB, not back to 0"
        );
        assert_eq!(full.read_u32_le(at(0xffff_fffc)), Ok(0));
        assert_eq!(full.read_u32_le(at(0xffff_fffd)), Err(OutOfBounds));
    }

    #[test]
    fn reads_and_writes_touch_only_their_range() {
        let mem = memory(64);
        mem.write(60, &[1, 2, 3, 4]).unwrap();
        assert_eq!(mem.write(61, &[1, 2, 3, 4]), Err(OutOfBounds));
        assert_eq!(mem.read_u32_le(60), Ok(0x0403_0201));
        let mut out = vec![9; 10];
        mem.read_into(62, 2, &mut out).unwrap();
        assert_eq!(out, [3, 4]);
        mem.append_to(60, 1, &mut out).unwrap();
        assert_eq!(out, [3, 4, 1]);
        assert_eq!(mem.append_to(60, 5, &mut out), Err(OutOfBounds));
        assert_eq!(out, [3, 4, 1], "a refused read leaves the output as it was");
        assert_eq!(mem.write_u64_le(57, 1), Err(OutOfBounds));
        mem.write_u64_le(56, u64::MAX).unwrap();
        assert_eq!(mem.read_u32_le(56), Ok(u32::MAX));
    }

    #[test]
    fn clip_keeps_the_part_that_exists() {
        assert_eq!(clip(10, 0, 4), 0..4);
        assert_eq!(clip(10, 8, 4), 8..10);
        assert_eq!(clip(10, 12, 4), 10..10);
        assert_eq!(clip(10, -1, -1), 10..10, "huge start and size, unsigned");
        assert_eq!(clip(10, 3, -1), 3..10);
    }

    #[test]
    fn iovecs_are_gathered_up_to_the_kept_length() {
        let mem = memory(4096);
        mem.write(100, b"hello, world").unwrap();
        for (n, (ptr, len)) in [(100u32, 5u32), (105, 0), (105, 7)].into_iter().enumerate() {
            mem.write_u32_le(at(16 + 8 * n as u32), ptr).unwrap();
            mem.write_u32_le(at(20 + 8 * n as u32), len).unwrap();
        }
        let mut text = Vec::new();
        assert_eq!(gather_iovecs(&mem, 16, 3, 1024, &mut text), Ok(12));
        assert_eq!(text, b"hello, world");
        let mut text = Vec::new();
        assert_eq!(
            gather_iovecs(&mem, 16, 3, 8, &mut text),
            Ok(12),
            "all counted"
        );
        assert_eq!(text, b"hello, w", "only the first 8 kept");
        // A buffer outside memory faults even when none of it would be kept.
        mem.write_u32_le(24, 4090).unwrap();
        mem.write_u32_le(28, 7).unwrap();
        assert_eq!(
            gather_iovecs(&mem, 16, 2, 5, &mut Vec::new()),
            Err(OutOfBounds)
        );
        assert_eq!(
            gather_iovecs(&mem, 4092, 1, 5, &mut Vec::new()),
            Err(OutOfBounds)
        );
        assert_eq!(gather_iovecs(&mem, 16, 0, 5, &mut Vec::new()), Ok(0));
        assert_eq!(gather_iovecs(&mem, -8, 0, 5, &mut Vec::new()), Ok(0));
    }

    /// Fuzz reproducer (guest_memory, minimised): in a 4 GiB memory, 255 iovecs at
    /// 0xffffffcc run past the top of memory. The walk wrapped to address 0 and read the
    /// rest of the array there (all zeros: empty buffers), so fd_write reported success.
    #[test]
    fn an_iovec_array_past_4_gib_faults_instead_of_wrapping_to_0() {
        let full = memory(1 << 32);
        let mut text = Vec::new();
        assert_eq!(
            gather_iovecs(&full, at(0xffff_ffcc), 255, 0, &mut text),
            Err(OutOfBounds)
        );
        // The entry whose length field would be read from address 0.
        assert_eq!(
            gather_iovecs(&full, at(0xffff_fffc), 1, 0, &mut text),
            Err(OutOfBounds)
        );
        // Six entries end exactly at the top: all inside, all empty.
        assert_eq!(
            gather_iovecs(&full, at(0xffff_ffd0), 6, 0, &mut text),
            Ok(0)
        );
    }

    #[test]
    fn fill_writes_all_or_nothing() {
        let mem = memory(1024);
        let mut calls = 0;
        let source = |chunk: &mut [u8]| {
            calls += 1;
            chunk.fill(0xab);
        };
        assert_eq!(fill(&mem, 100, 600, source), Ok(()));
        assert_eq!(calls, 3, "at most 256 bytes a call");
        let mut out = Vec::new();
        mem.read_into(100, 600, &mut out).unwrap();
        assert!(out.iter().all(|&b| b == 0xab));
        assert_eq!(mem.read_u32_le(700), Ok(0));
        let mut called = false;
        assert_eq!(fill(&mem, 1000, 25, |_| called = true), Err(OutOfBounds));
        assert!(!called);
    }
}
