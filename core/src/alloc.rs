//! Heap allocation counting for the binaries: [`CountingAllocator`] forwards every call to
//! [`System`] and counts the calls that take memory, so a process can say how many allocations
//! a request costs (`ringtun_process_allocations_total` on the connector's `/metrics`,
//! `ringtun_edge_process_allocations_total` on the edge's), and a test can hold that number
//! down (`connector/tests/e2e/allocations.rs`).
//!
//! A binary opts in with one line in its `main.rs`:
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOCATOR: ringtun_core::alloc::CountingAllocator = ringtun_core::alloc::CountingAllocator;
//! ```
//!
//! In a process that does not install it (unit tests, a library user's binary), [`allocations`]
//! stays 0.
//!
//! # Cost
//! The request path allocates from every worker at once, so one shared atomic bumped by all of
//! them would bounce its cache line between cores on every `malloc`. Instead each thread gets a
//! counter of its own (a cache-line-sized slot, handed out once per thread from a fixed table):
//! only that thread writes it, so the count is a plain load and store, with no locked
//! instruction. [`allocations`] sums the table when asked (a scrape). Threads beyond the table's
//! size share one more counter with an atomic add; counts are exact either way, and a thread's
//! slot keeps its count after the thread ends.
//!
//! What counts: `alloc`, `alloc_zeroed` and `realloc` (a `Vec` growing is a trip into the
//! allocator too); `dealloc` does not.

// The `GlobalAlloc` trait is unsafe to implement; this module only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Threads with a counter of their own; later threads share [`OVERFLOW`].
const SLOTS: usize = 256;

/// One thread's count, alone on its cache line (128 bytes: the adjacent-line prefetcher pairs
/// lines), so no two threads write the same line.
#[repr(align(128))]
struct Slot(AtomicU64);

static COUNTS: [Slot; SLOTS] = [const { Slot(AtomicU64::new(0)) }; SLOTS];

/// The count of threads started after the first [`SLOTS`] had their slot.
static OVERFLOW: AtomicU64 = AtomicU64::new(0);

/// The next slot to hand out.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

/// This thread's slot, `usize::MAX` until its first allocation.
const UNASSIGNED: usize = usize::MAX;

thread_local! {
    // `const` and without `Drop`: no lazy initialisation and no destructor registration, so
    // reading it allocates nothing and works at any point of the thread's life.
    static MY_SLOT: Cell<usize> = const { Cell::new(UNASSIGNED) };
}

/// Counts one allocation of the calling thread.
#[inline]
fn count() {
    let slot = MY_SLOT
        .try_with(|s| {
            let mut i = s.get();
            if i == UNASSIGNED {
                i = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
                s.set(i);
            }
            i
        })
        .unwrap_or(UNASSIGNED);
    match COUNTS.get(slot) {
        // Slot `slot` was handed to this thread alone, so nothing else writes it between the
        // load and the store: the count is exact without a read-modify-write instruction.
        Some(Slot(n)) => n.store(n.load(Ordering::Relaxed) + 1, Ordering::Relaxed),
        None => {
            OVERFLOW.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Allocations (`alloc`, `alloc_zeroed`, `realloc`) made by this process so far, every thread
/// together; 0 when [`CountingAllocator`] is not the global allocator.
pub fn allocations() -> u64 {
    COUNTS
        .iter()
        .map(|Slot(n)| n.load(Ordering::Relaxed))
        .fold(OVERFLOW.load(Ordering::Relaxed), u64::wrapping_add)
}

/// The system allocator, counting the allocations it makes (see the module doc).
#[derive(Debug, Clone, Copy, Default)]
pub struct CountingAllocator;

// SAFETY: every method forwards to `System` with the caller's arguments unchanged and returns
// its result unchanged, so `System`'s guarantees (the `GlobalAlloc` contract) carry over. The
// counting beside it neither allocates (a `const` thread-local and static atomics) nor panics.
unsafe impl GlobalAlloc for CountingAllocator {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which `System` shares.
        unsafe { System.alloc(layout) }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator, that is from `System`, with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: `ptr` came from `System` with `layout`; the caller upholds the rest.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// [`allocations`] as a Prometheus counter, read when the registry is encoded: register it as
/// `process_allocations` under a binary's prefix (`ringtun_process_allocations_total`).
#[derive(Debug, Clone, Copy, Default)]
pub struct AllocationsMetric;

impl TypedMetric for AllocationsMetric {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for AllocationsMetric {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&allocations(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// The help text of [`AllocationsMetric`], the same in both binaries.
pub const ALLOCATIONS_HELP: &str =
    "Heap allocations (alloc, alloc_zeroed, realloc) made by this process, every thread together";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_per_thread_and_summed() {
        // The test binary does not install the allocator: drive the counting directly.
        let before = allocations();
        count();
        count();
        let threads: Vec<_> = (0..4)
            .map(|_| {
                std::thread::spawn(|| {
                    for _ in 0..1000 {
                        count();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join()
                .unwrap_or_else(|_| panic!("counting thread panicked"));
        }
        // Other tests of this binary may count too, never fewer.
        assert!(allocations() - before >= 4002);
    }

    #[test]
    fn encodes_as_a_counter() {
        let mut registry = prometheus_client::registry::Registry::with_prefix("ringtun");
        registry.register("process_allocations", ALLOCATIONS_HELP, AllocationsMetric);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            text.contains("# TYPE ringtun_process_allocations counter"),
            "{text}"
        );
        assert!(
            text.contains("ringtun_process_allocations_total "),
            "{text}"
        );
    }
}
