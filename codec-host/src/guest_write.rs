//! Copying host bytes into guest memory with a plain `memcpy`: the crate's one `unsafe`
//! block.
//!
//! wasmer's `MemoryView::write` copies through volatile loads and stores, so that a host
//! write stays defined while another thread runs guest code on a *shared* memory. Here that
//! never happens, and the volatile copy of each decode's input cost about 4% of the Wasm
//! path's CPU (a few hundred bytes per frame at a fraction of `memcpy`'s speed).

use wasmer::MemoryView;

/// Writes `data` at `offset` of the guest memory seen by `view`; `false` (nothing written)
/// when the range is not inside it.
///
/// The caller holds the store mutably (`view` borrows it), so no guest code runs while the
/// copy does, and nothing resizes the memory.
pub(crate) fn write(view: &MemoryView<'_>, offset: u64, data: &[u8]) -> bool {
    let Ok(start) = usize::try_from(offset) else {
        return false;
    };
    let Some(end) = start.checked_add(data.len()) else {
        return false;
    };
    #[allow(unsafe_code)]
    // SAFETY: `data_unchecked_mut` requires that, while the slice lives, the memory is
    // accessed only through it. It lives for this statement alone; `view` borrows the store,
    // so no guest function runs (on this thread or another: an instance and its memory
    // belong to one worker thread, and a plugin cannot import a memory that another instance
    // exports, see `shape::check_imports`), and nothing grows the memory meanwhile. `data`
    // is host memory, so the ranges cannot overlap.
    let memory = unsafe { view.data_unchecked_mut() };
    match memory.get_mut(start..end) {
        Some(dst) => {
            dst.copy_from_slice(data);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use wasmer::{Memory, MemoryType, Store};

    use super::*;

    #[test]
    fn writes_inside_the_memory_and_refuses_what_does_not_fit() {
        let mut store = Store::default();
        let memory = Memory::new(&mut store, MemoryType::new(1, None, false)).expect("memory");
        let view = memory.view(&store);
        let page = view.data_size();
        assert!(write(&view, 100, b"frame"));
        let mut back = [0u8; 5];
        view.read(100, &mut back).expect("read");
        assert_eq!(&back, b"frame");
        assert!(write(&view, page - 5, b"edge!"), "up to the last byte");
        assert!(!write(&view, page - 4, b"edge!"), "one past the end");
        assert!(!write(&view, u64::MAX, b"x"), "offset overflow");
        let mut edge = [0u8; 5];
        view.read(page - 5, &mut edge).expect("read");
        assert_eq!(&edge, b"edge!", "a refused write changes nothing");
    }
}
