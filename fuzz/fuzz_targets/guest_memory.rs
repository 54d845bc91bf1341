//! The host's checks of guest-controlled pointers and lengths (`codec-host`'s
//! `imports/guest_memory/checked.rs`, compiled here as it is, so wasmer is not built): a
//! sequence of the accesses the ABI imports make (`proxy_log`/`proxy_set_buffer_bytes`
//! reads, return slot writes, `proxy_get_buffer_bytes` clipping, `fd_write` iovec walks,
//! `random_get` fills) with arbitrary `i32` pointers and lengths, against a memory of
//! arbitrary size up to the whole 4 GiB address space.
//!
//! The memory panics on any access the checks let through outside it, and every answer is
//! compared with a model computed in u64 from the ABI's rule (ABI §0: pointers and lengths
//! are unsigned 32-bit offsets and sizes; a range must lie inside memory, it never wraps).

#![no_main]

use std::cell::RefCell;
use std::collections::HashMap;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../codec-host/src/imports/guest_memory/checked.rs"]
mod checked;

use checked::{clip, fill, gather_iovecs, Checked, LinearMemory, OutOfBounds};

const PAGE: u64 = 4096;
const WASM_PAGE: u64 = 65536;
/// Largest read or fill the target really performs (larger in-bounds ones are only
/// checked, so a 4 GiB memory costs no 4 GiB buffers).
const MAX_COPY: u64 = 1 << 16;

/// A sparse memory of `size` bytes (zero until written) that panics on any access outside
/// it: the checks must have refused such an access before it reaches the memory.
struct SparseMemory {
    size: u64,
    pages: RefCell<HashMap<u64, Box<[u8; PAGE as usize]>>>,
}

impl SparseMemory {
    fn new(size: u64) -> Self {
        SparseMemory {
            size,
            pages: RefCell::new(HashMap::new()),
        }
    }

    fn assert_inside(&self, at: u64, len: usize, what: &str) {
        let end = at.checked_add(len as u64);
        assert!(
            end.is_some_and(|end| end <= self.size),
            "{what} of {len} bytes at {at:#x} let through, memory is {:#x} bytes",
            self.size
        );
    }

    /// Copies `[at, at + out.len())` into `out`, a page at a time; no checks.
    fn copy_out(&self, at: u64, out: &mut [u8]) {
        let pages = self.pages.borrow();
        let mut done = 0;
        while done < out.len() {
            let a = at + done as u64;
            let (page, offset) = (a / PAGE, (a % PAGE) as usize);
            let n = (PAGE as usize - offset).min(out.len() - done);
            match pages.get(&page) {
                Some(p) => out[done..done + n].copy_from_slice(&p[offset..offset + n]),
                None => out[done..done + n].fill(0),
            }
            done += n;
        }
    }

    /// The model's view: bytes `[at, at + len)`, no checks.
    fn bytes(&self, at: u64, len: u64) -> Vec<u8> {
        let mut out = vec![0; len as usize];
        self.copy_out(at, &mut out);
        out
    }

    fn u32_le(&self, at: u64) -> u32 {
        let b = self.bytes(at, 4);
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

impl LinearMemory for &SparseMemory {
    fn size(&self) -> u64 {
        self.size
    }

    fn read(&self, at: u64, buf: &mut [u8]) -> Result<(), OutOfBounds> {
        self.assert_inside(at, buf.len(), "read");
        self.copy_out(at, buf);
        Ok(())
    }

    fn write(&self, at: u64, bytes: &[u8]) -> Result<(), OutOfBounds> {
        self.assert_inside(at, bytes.len(), "write");
        let mut pages = self.pages.borrow_mut();
        let mut done = 0;
        while done < bytes.len() {
            let a = at + done as u64;
            let (page, offset) = (a / PAGE, (a % PAGE) as usize);
            let n = (PAGE as usize - offset).min(bytes.len() - done);
            let p = pages
                .entry(page)
                .or_insert_with(|| Box::new([0; PAGE as usize]));
            p[offset..offset + n].copy_from_slice(&bytes[done..done + n]);
            done += n;
        }
        Ok(())
    }
}

#[derive(Arbitrary, Debug)]
enum Size {
    /// Any size in bytes below 64 KiB.
    Bytes(u16),
    /// Wasm pages (as the guest's memory grows).
    Pages(u16),
    /// The whole 32-bit address space (`Limits::MAX_MEMORY_MIB`).
    Full,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Check {
        ptr: i32,
        len: i32,
    },
    ReadInto {
        ptr: i32,
        len: i32,
    },
    AppendTo {
        ptr: i32,
        len: i32,
    },
    Write {
        ptr: i32,
        bytes: Vec<u8>,
    },
    ReadU32 {
        ptr: i32,
    },
    WriteU32 {
        ptr: i32,
        value: u32,
    },
    WriteU64 {
        ptr: i32,
        value: u64,
    },
    Clip {
        buf_len: u16,
        start: i32,
        max_size: i32,
    },
    Gather {
        iovs: i32,
        iovs_len: u8,
        keep_max: u16,
    },
    Fill {
        buf: i32,
        len: i32,
    },
    /// Points an iovec at `[ptr, ptr + len)`: writes `{ptr, len}` at `at` if that is inside.
    Iovec {
        at: i32,
        ptr: i32,
        len: i32,
    },
}

#[derive(Arbitrary, Debug)]
struct Input {
    size: Size,
    ops: Vec<Op>,
}

/// The ABI's rule: `[ptr, ptr + len)` as unsigned 32-bit values lies inside `size` bytes.
fn inside(size: u64, ptr: i32, len: u64) -> bool {
    u64::from(ptr as u32) + len <= size
}

fuzz_target!(|input: Input| {
    let size = match input.size {
        Size::Bytes(n) => u64::from(n),
        Size::Pages(n) => u64::from(n).min(65536) * WASM_PAGE,
        Size::Full => 1 << 32,
    };
    let memory = SparseMemory::new(size);
    let mem = Checked::new(&memory);
    for op in input.ops.into_iter().take(64) {
        run(&memory, &mem, op);
    }
});

fn run(memory: &SparseMemory, mem: &Checked<&SparseMemory>, op: Op) {
    let size = memory.size;
    match op {
        Op::Check { ptr, len } => {
            assert_eq!(
                mem.check(ptr, len).is_ok(),
                inside(size, ptr, u64::from(len as u32))
            );
        }
        Op::ReadInto { ptr, len } | Op::AppendTo { ptr, len }
            if u64::from(len as u32) > MAX_COPY =>
        {
            assert_eq!(
                mem.check(ptr, len).is_ok(),
                inside(size, ptr, u64::from(len as u32))
            );
        }
        Op::ReadInto { ptr, len } => {
            let mut out = vec![7; 3];
            let ok = inside(size, ptr, u64::from(len as u32));
            assert_eq!(mem.read_into(ptr, len, &mut out).is_ok(), ok);
            if ok {
                assert_eq!(
                    out,
                    memory.bytes(u64::from(ptr as u32), u64::from(len as u32))
                );
            }
        }
        Op::AppendTo { ptr, len } => {
            let mut out = vec![7; 3];
            let ok = inside(size, ptr, u64::from(len as u32));
            assert_eq!(mem.append_to(ptr, len, &mut out).is_ok(), ok);
            if ok {
                assert_eq!(out[..3], [7; 3]);
                assert_eq!(
                    out[3..],
                    memory.bytes(u64::from(ptr as u32), u64::from(len as u32))
                );
            }
        }
        Op::Write { ptr, bytes } => {
            let ok = inside(size, ptr, bytes.len() as u64);
            assert_eq!(mem.write(ptr, &bytes).is_ok(), ok);
            if ok {
                assert_eq!(
                    memory.bytes(u64::from(ptr as u32), bytes.len() as u64),
                    bytes
                );
            }
        }
        Op::ReadU32 { ptr } => {
            let want = inside(size, ptr, 4).then(|| memory.u32_le(u64::from(ptr as u32)));
            assert_eq!(mem.read_u32_le(ptr).ok(), want);
        }
        Op::WriteU32 { ptr, value } => {
            let ok = inside(size, ptr, 4);
            assert_eq!(mem.write_u32_le(ptr, value).is_ok(), ok);
            if ok {
                assert_eq!(memory.u32_le(u64::from(ptr as u32)), value);
            }
        }
        Op::WriteU64 { ptr, value } => {
            let ok = inside(size, ptr, 8);
            assert_eq!(mem.write_u64_le(ptr, value).is_ok(), ok);
            if ok {
                assert_eq!(memory.bytes(u64::from(ptr as u32), 8), value.to_le_bytes());
            }
        }
        Op::Clip {
            buf_len,
            start,
            max_size,
        } => {
            let len = usize::from(buf_len);
            let r = clip(len, start, max_size);
            let want_start = u64::from(start as u32).min(len as u64);
            let want_end = (want_start + u64::from(max_size as u32)).min(len as u64);
            assert_eq!((r.start as u64, r.end as u64), (want_start, want_end));
        }
        Op::Gather {
            iovs,
            iovs_len,
            keep_max,
        } => gather(memory, mem, iovs, iovs_len, keep_max),
        Op::Fill { buf, len } => {
            let ok = inside(size, buf, u64::from(len as u32));
            if ok && u64::from(len as u32) > MAX_COPY {
                return;
            }
            let mut next = 0u8;
            let mut calls = 0;
            let source = |chunk: &mut [u8]| {
                assert!(!chunk.is_empty() && chunk.len() <= 256);
                calls += 1;
                for b in chunk {
                    next = next.wrapping_add(1);
                    *b = next;
                }
            };
            assert_eq!(fill(mem, buf, len, source).is_ok(), ok);
            if ok {
                let len = u64::from(len as u32);
                assert_eq!(calls, len.div_ceil(256));
                let want: Vec<u8> = (1..=len).map(|i| i as u8).collect();
                assert_eq!(memory.bytes(u64::from(buf as u32), len), want);
            } else {
                assert_eq!(calls, 0, "nothing is produced for a range outside memory");
            }
        }
        Op::Iovec { at, ptr, len } => {
            if inside(size, at, 8) {
                let mut entry = (ptr as u32).to_le_bytes().to_vec();
                entry.extend_from_slice(&(len as u32).to_le_bytes());
                mem.write(at, &entry).expect("inside");
            }
        }
    }
}

/// `fd_write`'s walk against the model: entry `n` is the 8 bytes at `iovs + 8n` (no
/// wrapping past 4 GiB); every entry and every buffer must be inside memory; the first
/// `keep_max` bytes are kept and the announced lengths add up (saturating).
fn gather(
    memory: &SparseMemory,
    mem: &Checked<&SparseMemory>,
    iovs: i32,
    iovs_len: u8,
    keep_max: u16,
) {
    let size = memory.size;
    let keep_max = usize::from(keep_max);
    let mut want_text = Vec::new();
    let mut want_total: Option<u32> = Some(0);
    for n in 0..u64::from(iovs_len) {
        let at = u64::from(iovs as u32) + 8 * n;
        if at + 8 > size {
            want_total = None;
            break;
        }
        let (ptr, len) = (memory.u32_le(at), memory.u32_le(at + 4));
        if u64::from(ptr) + u64::from(len) > size {
            want_total = None;
            break;
        }
        let keep = (len as usize).min(keep_max.saturating_sub(want_text.len()));
        want_text.extend(memory.bytes(u64::from(ptr), keep as u64));
        want_total = want_total.map(|t| t.saturating_add(len));
    }
    let mut text = Vec::new();
    let got = gather_iovecs(mem, iovs, i32::from(iovs_len), keep_max, &mut text);
    assert_eq!(got.ok(), want_total, "iovs {iovs:#x} x {iovs_len}");
    if want_total.is_some() {
        assert_eq!(text, want_text);
    }
}
