//! What a benchmark reads of its own memory: the live heap bytes its allocator counts, and the
//! resident set size. The allocator is the `capstan` binary's (mimalloc, see `host/src/main.rs`),
//! which the benchmarks stand for; a benchmark installs it with
//! `#[global_allocator] static ALLOCATOR: memory::Counting = memory::Counting;`.
//!
//! Live bytes read memory free of the allocator's retention, which blurs an RSS delta. Counting
//! is on from the start; a benchmark whose timed work should not share the counter across threads
//! turns it off once it has read what it needs.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use mimalloc::MiMalloc;

/// Mimalloc, counting live heap bytes while counting is on.
pub struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(true);
/// Live bytes, wrapping: only differences between two reads mean something.
static LIVE: AtomicUsize = AtomicUsize::new(0);

fn grew(bytes: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_add(bytes, Ordering::Relaxed);
    }
}

fn shrank(bytes: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        LIVE.fetch_sub(bytes, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to mimalloc unchanged; only a counter is updated.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `MiMalloc` shares.
        let p = unsafe { MiMalloc.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { MiMalloc.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator, that is by `MiMalloc`, with `layout`.
        unsafe { MiMalloc.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `dealloc`; `new_size` is valid by the caller's contract.
        let p = unsafe { MiMalloc.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

/// The live heap bytes counted so far (wrapping: subtract an earlier read, with `wrapping_sub`).
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Stops counting; `live_bytes` reads are meaningless after it.
pub fn stop_counting() {
    COUNTING.store(false, Ordering::Relaxed);
}

/// The process's resident set size, from `/proc/self/statm` (0 where there is none).
pub fn rss_bytes() -> u64 {
    rss_bytes_of("self").unwrap_or(0)
}

/// The resident set size of process `pid` (`self` for this one), from `/proc/<pid>/statm`;
/// `None` when it cannot be read.
pub fn rss_bytes_of(pid: &str) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages = statm.split_whitespace().nth(1)?.parse::<u64>().ok()?;
    Some(pages * 4096)
}
