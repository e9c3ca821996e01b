//! Replica choice: per-connector load shared across workers, and the policies.
//!
//! A [`ConnectorLoad`] is shared by every worker as an `Arc` of atomics: the request path only
//! loads and bumps them (relaxed), never locks. `outstanding` counts the streams the edge has
//! open to the connector on all workers; `links` counts its live links per worker, which says
//! where its streams can be opened.

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use uuid::Uuid;

use crate::settings::LbPolicy;

/// What load balancing knows about one connector, shared by all workers.
#[derive(Debug)]
pub struct ConnectorLoad {
    /// The connector's ID.
    pub id: Uuid,
    /// Its tunnel.
    pub tunnel: Uuid,
    outstanding: AtomicUsize,
    draining: AtomicBool,
    links: Box<[AtomicUsize]>,
}

impl ConnectorLoad {
    /// A connector with no links yet, for `workers` workers.
    pub fn new(id: Uuid, tunnel: Uuid, workers: usize) -> ConnectorLoad {
        ConnectorLoad {
            id,
            tunnel,
            outstanding: AtomicUsize::new(0),
            draining: AtomicBool::new(false),
            links: (0..workers.max(1)).map(|_| AtomicUsize::new(0)).collect(),
        }
    }

    /// Streams open to this connector now, across workers.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Whether it takes no new streams.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Marks it as draining.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Live links on `worker`.
    pub fn links_on(&self, worker: usize) -> usize {
        self.links
            .get(worker)
            .map_or(0, |l| l.load(Ordering::Acquire))
    }

    /// Live links on all workers.
    pub fn total_links(&self) -> usize {
        self.links.iter().map(|l| l.load(Ordering::Acquire)).sum()
    }

    pub(crate) fn link_up(&self, worker: usize) {
        if let Some(l) = self.links.get(worker) {
            l.fetch_add(1, Ordering::AcqRel);
        }
    }

    pub(crate) fn link_down(&self, worker: usize) {
        if let Some(l) = self.links.get(worker) {
            l.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Counts one stream as outstanding until the guard drops.
    pub fn start_stream(self: &Arc<Self>) -> StreamGuard {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        StreamGuard(Arc::clone(self))
    }
}

/// One outstanding stream of a connector; dropping it ends the count.
#[derive(Debug)]
pub struct StreamGuard(Arc<ConnectorLoad>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Chooses one of `candidates` (non-empty for a `Some`) by `policy`. `rr` is the worker's
/// round-robin counter.
pub fn choose<'a>(
    policy: LbPolicy,
    candidates: &[&'a Arc<ConnectorLoad>],
    rr: &Cell<usize>,
) -> Option<&'a Arc<ConnectorLoad>> {
    let n = candidates.len();
    if n <= 1 {
        return candidates.first().copied();
    }
    let i = match policy {
        LbPolicy::Random => rand::random_range(0..n),
        LbPolicy::RoundRobin => {
            let i = rr.get();
            rr.set(i.wrapping_add(1));
            i % n
        }
        LbPolicy::P2c => {
            let a = rand::random_range(0..n);
            let mut b = rand::random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            let (la, lb) = (candidates[a].outstanding(), candidates[b].outstanding());
            if la < lb {
                a
            } else if lb < la {
                b
            } else if rand::random::<bool>() {
                a
            } else {
                b
            }
        }
    };
    candidates.get(i).copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loads(n: usize) -> Vec<Arc<ConnectorLoad>> {
        (0..n)
            .map(|_| Arc::new(ConnectorLoad::new(Uuid::new_v4(), Uuid::nil(), 2)))
            .collect()
    }

    #[test]
    fn p2c_avoids_the_busier_of_two() {
        let l = loads(2);
        let _busy: Vec<StreamGuard> = (0..5).map(|_| l[0].start_stream()).collect();
        let c: Vec<&Arc<ConnectorLoad>> = l.iter().collect();
        let rr = Cell::new(0);
        for _ in 0..50 {
            let pick = choose(LbPolicy::P2c, &c, &rr).map(|p| p.id);
            assert_eq!(pick, Some(l[1].id));
        }
    }

    #[test]
    fn round_robin_takes_turns_and_guards_count() {
        let l = loads(3);
        let c: Vec<&Arc<ConnectorLoad>> = l.iter().collect();
        let rr = Cell::new(0);
        let picks: Vec<Uuid> = (0..6)
            .filter_map(|_| choose(LbPolicy::RoundRobin, &c, &rr).map(|p| p.id))
            .collect();
        assert_eq!(picks[0..3], picks[3..6]);
        let g = l[0].start_stream();
        assert_eq!(l[0].outstanding(), 1);
        drop(g);
        assert_eq!(l[0].outstanding(), 0);
        l[1].link_up(1);
        assert_eq!(l[1].links_on(1), 1);
        assert_eq!(l[1].total_links(), 1);
        assert_eq!(l[1].links_on(0), 0);
    }
}
