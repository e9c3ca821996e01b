//! Ingress rules that can be replaced while the connector runs (hot reload, SIGHUP).
//!
//! [`LiveRules`] is the one shared, replaceable copy: a mutex-guarded `Arc<IngressRules>` and a
//! generation counter bumped on every [`LiveRules::store`]. Each worker reads through its own
//! [`WorkerRules`], which caches the current rules as an `Rc`: on the request path a stream
//! costs one atomic load (the generation) and a non-atomic `Rc` clone; the mutex is taken only
//! by the first stream of a worker after a reload. A stream keeps the rules it started with to
//! its end, so a reload never changes where an open stream goes.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::IngressRules;

/// The shared, replaceable ingress rules. Cloning gives another handle to the same rules.
#[derive(Debug, Clone)]
pub struct LiveRules {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    generation: AtomicU64,
    rules: Mutex<Arc<IngressRules>>,
}

impl LiveRules {
    /// Starts with `rules`.
    pub fn new(rules: IngressRules) -> LiveRules {
        LiveRules {
            inner: Arc::new(Inner {
                generation: AtomicU64::new(0),
                rules: Mutex::new(Arc::new(rules)),
            }),
        }
    }

    /// Replaces the rules; streams that start afterwards, on any worker, use the new ones.
    pub fn store(&self, rules: IngressRules) {
        let mut current = self
            .inner
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *current = Arc::new(rules);
        // Bumped under the lock, so a reader that sees the new generation and then takes the
        // lock finds the new rules.
        self.inner.generation.fetch_add(1, Ordering::Release);
    }

    /// The current rules and their generation.
    fn snapshot(&self) -> (u64, Arc<IngressRules>) {
        let current = self
            .inner
            .rules
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        (
            self.inner.generation.load(Ordering::Acquire),
            Arc::clone(&current),
        )
    }

    /// The current rules (takes the lock; for the reload path and tests, not per request).
    pub fn current(&self) -> Arc<IngressRules> {
        self.snapshot().1
    }

    /// How many times the rules were replaced.
    pub fn generation(&self) -> u64 {
        self.inner.generation.load(Ordering::Acquire)
    }

    /// A per-worker reader of these rules.
    pub fn for_worker(&self) -> WorkerRules {
        let (generation, rules) = self.snapshot();
        WorkerRules {
            live: self.clone(),
            cached: RefCell::new((generation, Rc::new(rules))),
        }
    }
}

/// The rules as one stream holds them. The `Rc` around the `Arc` is on purpose: cloning it per
/// stream touches no counter shared with other cores.
#[allow(clippy::redundant_allocation)]
pub type StreamRules = Rc<Arc<IngressRules>>;

/// One worker's view of [`LiveRules`] (not `Send`: it lives in the worker's proxy context).
#[derive(Debug)]
pub struct WorkerRules {
    live: LiveRules,
    cached: RefCell<(u64, StreamRules)>,
}

impl WorkerRules {
    /// The rules a new stream should use: the cached ones unless a reload happened since.
    pub fn load(&self) -> StreamRules {
        let generation = self.live.inner.generation.load(Ordering::Acquire);
        let mut cached = self.cached.borrow_mut();
        if cached.0 != generation {
            let (g, rules) = self.live.snapshot();
            *cached = (g, Rc::new(rules));
        }
        Rc::clone(&cached.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OriginRequest;

    fn rules(url: &str) -> IngressRules {
        IngressRules::from_url(url, &OriginRequest::default()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn service(r: &IngressRules) -> String {
        r.match_request("x", "/").rule.service.to_string()
    }

    #[test]
    fn workers_see_a_store_and_old_snapshots_stay() {
        let live = LiveRules::new(rules("http://localhost:1"));
        let w = live.for_worker();
        let before = w.load();
        assert_eq!(service(&before), "http://localhost:1");
        live.store(rules("http://localhost:2"));
        assert_eq!(live.generation(), 1);
        // A stream that started before the reload keeps its rules.
        assert_eq!(service(&before), "http://localhost:1");
        assert_eq!(service(&w.load()), "http://localhost:2");
        assert_eq!(service(&live.current()), "http://localhost:2");
        // A worker created later starts at the current rules.
        assert_eq!(service(&live.for_worker().load()), "http://localhost:2");
    }

    #[test]
    fn stores_from_another_thread_reach_the_worker() {
        let live = LiveRules::new(rules("http://localhost:1"));
        let w = live.for_worker();
        let other = live.clone();
        std::thread::spawn(move || other.store(rules("http://localhost:3")))
            .join()
            .unwrap_or_else(|_| panic!("store thread panicked"));
        assert_eq!(service(&w.load()), "http://localhost:3");
    }
}
