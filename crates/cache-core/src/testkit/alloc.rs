//! [`CountingAllocator`]: a global allocator that counts live heap bytes, for the examples that
//! measure a tier's RAM per entry.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering},
};

/// Live bytes allocated through [`CountingAllocator`] and not yet freed.
static LIVE: AtomicUsize = AtomicUsize::new(0);

/// The system allocator, counting the bytes it holds for Rust code (not what C or C++ code
/// such as RocksDB allocates through `malloc`).
///
/// Install it in a measuring binary and read [`CountingAllocator::live_bytes`] around the work:
///
/// ```standalone_crate
/// use cache_core::testkit::CountingAllocator;
///
/// #[global_allocator]
/// static GLOBAL: CountingAllocator = CountingAllocator;
///
/// let before = CountingAllocator::live_bytes();
/// let block = vec![0u8; 1 << 20];
/// assert!(CountingAllocator::live_bytes() >= before + block.len());
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAllocator;

impl CountingAllocator {
    /// Bytes currently allocated through this allocator (in the whole process, every thread).
    pub fn live_bytes() -> usize {
        LIVE.load(Ordering::Relaxed)
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and only
// counts sizes on the side.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded as received.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded as received.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            LIVE.fetch_add(new_size, Ordering::Relaxed);
        }
        p
    }
}
