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

/// Runs `f` on this thread, counted from zero; returns its result and the most it held
/// at once. A count already running on the thread (a rule call) goes on around it, `f`'s
/// allocations included, as if it had never stopped.
pub(crate) fn measure<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let (outer, live_before, peak_before) = (COUNTING.get(), LIVE.get(), PEAK.get());
    start();
    let out = f();
    let (held_at_most, held_after) = (stop(), LIVE.get());
    COUNTING.set(outer);
    if outer {
        LIVE.set(live_before + held_after);
        PEAK.set(peak_before.max(live_before + held_at_most));
    } else {
        LIVE.set(live_before);
        PEAK.set(peak_before);
    }
    (out, usize::try_from(held_at_most).unwrap_or(0))
}

/// The most the running (or last) call on this thread held at once.
pub fn peak() -> isize {
    PEAK.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A build measured inside a rule call is counted by the call too: the call's peak
    /// holds what it held before plus the build's peak, and what the build kept stays on
    /// the call's count.
    #[test]
    fn a_measure_inside_a_counted_call_is_counted_by_the_call() {
        start();
        let before = vec![0u8; 10_000];
        let (kept, held) = measure(|| {
            let transient = vec![1u8; 50_000];
            drop(transient);
            vec![2u8; 3_000]
        });
        let (peak, live) = (stop(), live());
        assert!((50_000..60_000).contains(&held), "measured {held}");
        assert!(peak >= 60_000, "the call's peak {peak} misses the build's");
        assert!(
            live >= 13_000,
            "the call's count {live} lost what the build kept"
        );
        drop((before, kept));
        let (_, alone) = measure(|| vec![3u8; 4_000]);
        assert!((4_000..5_000).contains(&alone), "measured {alone}");
        assert_eq!(
            peak,
            super::peak(),
            "a measure outside a call leaves the last call's peak"
        );
    }
}
