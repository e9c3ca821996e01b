//! Metrics that each worker writes in a slot of its own, summed when scraped: [`WorkerCounter`]
//! and [`AtomicHistogram`]. Workers serving requests at once never write the same cache line,
//! so a metric bumped per request or per chunk of bytes costs one uncontended atomic add.
use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

/// Upper bounds (seconds) of the request latency buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How many slots a per-worker metric has: one per core the process may run on (at least 1,
/// at most 64). Threads share slots round-robin beyond that, which stays correct (the slots
/// are atomics) and only shares cache lines again.
fn slot_count() -> usize {
    static SLOTS: OnceLock<usize> = OnceLock::new();
    *SLOTS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
            .clamp(1, 64)
    })
}

/// The calling thread's slot in per-worker metrics: threads take slots in the order they first
/// count, so the workers, started together, get slots of their own.
fn my_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SLOT.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT.fetch_add(1, Ordering::Relaxed) % slot_count());
        }
        s.get()
    })
}

/// One slot of a per-worker metric, alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded<T>(T);

/// A counter that each worker bumps in a slot of its own (no cache line shared between
/// workers), summed when scraped. Encodes as a Prometheus counter. Clones share the counts.
#[derive(Debug, Clone)]
pub struct WorkerCounter(std::sync::Arc<[Padded<AtomicU64>]>);

impl Default for WorkerCounter {
    fn default() -> Self {
        WorkerCounter((0..slot_count()).map(|_| Padded::default()).collect())
    }
}

impl WorkerCounter {
    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        if let Some(slot) = self.0.get(my_slot()) {
            slot.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The total over every worker.
    pub fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for WorkerCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for WorkerCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A histogram of durations whose `observe` is a few relaxed atomic adds in the calling
/// worker's own slot (no lock, no cache line shared between workers), summed when scraped.
/// Clones share the counts.
#[derive(Debug, Clone)]
pub struct AtomicHistogram(std::sync::Arc<[Padded<HistogramCounts>]>);

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram((0..slot_count()).map(|_| Padded::default()).collect())
    }
}

/// The counts of one slot of an [`AtomicHistogram`].
#[derive(Debug, Default)]
pub struct HistogramCounts {
    /// Per bucket (non-cumulative), the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl AtomicHistogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let Some(Padded(c)) = self.0.get(my_slot()) else {
            return;
        };
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        if let Some(b) = c.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        c.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        c.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Durations recorded.
    pub fn count(&self) -> u64 {
        self.0
            .iter()
            .map(|s| s.0.count.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut counts = [0u64; LATENCY_BUCKETS.len() + 1];
        let mut sum_micros = 0u64;
        for Padded(slot) in self.0.iter() {
            for (n, b) in counts.iter_mut().zip(&slot.buckets) {
                *n += b.load(Ordering::Relaxed);
            }
            sum_micros = sum_micros.saturating_add(slot.sum_micros.load(Ordering::Relaxed));
        }
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(counts)
            .collect();
        // The count is the buckets' total, so the encoded histogram is self-consistent.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = sum_micros as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}
