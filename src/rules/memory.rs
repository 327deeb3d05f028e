//! How much heap one rule call holds. rhai's size limits bound each value (a string's
//! bytes, an array's elements, a map's entries), but not how many values a call keeps
//! alive at once, nor the keys of a map: within the documented limits one call held about
//! 1 GiB. So berth counts: the process allocator is wrapped, and while a rule call runs on
//! a thread, every allocation and free on that thread moves that call's count; the
//! engine's `on_progress` stops the call once it holds more than [`MAX_CALL_BYTES`].
//!
//! The count is per thread (rule calls do not nest, and one runs on one thread), so calls
//! on other threads and the rest of berth are never charged. One rhai operation allocates
//! at most a few times the string limit before the check runs, which bounds the overshoot.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// The most heap one rule call may hold: the call is stopped past it.
pub const MAX_CALL_BYTES: isize = 256 * 1024 * 1024;

/// The process allocator: `System`, with per-thread counting during rule calls.
pub struct CountingAlloc;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    // `try_with`: the slots have no destructor, but a thread being torn down must never
    // make the allocator panic.
    let counting = COUNTING.try_with(Cell::get).unwrap_or(false);
    if !counting {
        return;
    }
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every method forwards to `System` unchanged; the counting touches only
// thread-local cells and never allocates.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            note(layout.size() as isize);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            note(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let moved = unsafe { System.realloc(ptr, layout, new_size) };
        if !moved.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

/// Starts counting a rule call on this thread from zero.
pub(crate) fn start() {
    LIVE.set(0);
    PEAK.set(0);
    COUNTING.set(true);
}

/// Stops counting; the most the call held at once.
pub(crate) fn stop() -> isize {
    COUNTING.set(false);
    PEAK.get()
}

/// What the running call holds now (frees of memory allocated before it count against
/// it, so this can be below zero).
pub(crate) fn live() -> isize {
    LIVE.get()
}

/// The most the running (or last) call on this thread held at once.
pub fn peak() -> isize {
    PEAK.get()
}
