//! Decoding allocates nothing until a whole frame is present (a peer announcing a huge frame
//! costs no memory before it sends it). Counted with a per-thread counting allocator.

mod vectors;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use bolt::Bolt;
use codec_sdk::Protocol;
use vectors::Spec;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations_during(f: impl FnOnce()) -> usize {
    let before = ALLOCATIONS.with(Cell::get);
    f();
    ALLOCATIONS.with(Cell::get) - before
}

#[test]
fn partial_and_oversized_frames_allocate_nothing() {
    let mut bolt = Bolt::default();
    for frame in [
        Spec::request(1).build(),
        Spec::response(1, 0).v2(2, 1).build(),
    ] {
        for cut in 0..frame.len() {
            let n = allocations_during(|| assert_eq!(bolt.decode(&frame[..cut]), Ok(None)));
            assert_eq!(n, 0, "cut {cut}");
        }
        let n = allocations_during(|| assert!(bolt.decode(&frame).unwrap().is_some()));
        assert!(n > 0, "the whole frame is copied");
    }
    // A fixed part announcing 60 MiB of content: need more data, no allocation.
    let mut head = Spec::request(1).build()[..22].to_vec();
    head[18..22].copy_from_slice(&(60u32 << 20).to_be_bytes());
    let n = allocations_during(|| assert_eq!(bolt.decode(&head), Ok(None)));
    assert_eq!(n, 0);
}
