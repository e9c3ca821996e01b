//! The load of one connector, shared by every worker: an `Arc` of atomics the request path
//! only loads and bumps (relaxed), never locks.
//!
//! `outstanding` counts the streams the edge has open to the connector on all workers,
//! `requests` the streams opened to it since it connected; `links` counts its live links per
//! worker (which says where its streams can be opened) and `home_links` those of them in the
//! public data center (`same-dc-first`). `served` is what the policies rotate on: the choices
//! made for it plus the base it joined with (see [`super::policy::fair_base`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use super::policy::Replica;
use crate::registry::LiveLoad;

/// What load balancing knows about one connector, shared by all workers.
#[derive(Debug)]
pub struct ConnectorLoad {
    /// The connector's ID.
    pub id: Uuid,
    /// Its tunnel.
    pub tunnel: Uuid,
    weight: u64,
    standby: bool,
    outstanding: AtomicUsize,
    requests: AtomicU64,
    /// Choices made for it, plus the base it joined with (see the module doc).
    served: AtomicU64,
    draining: AtomicBool,
    links: Box<[AtomicUsize]>,
    home_links: Box<[AtomicUsize]>,
    /// Live links per link index (control plane only: link up, down and GOAWAY).
    by_index: Mutex<HashMap<u8, usize>>,
}

impl ConnectorLoad {
    /// A connector with no links yet, for `workers` workers, weight 1, not standby.
    pub fn new(id: Uuid, tunnel: Uuid, workers: usize) -> ConnectorLoad {
        let per_worker = || (0..workers.max(1)).map(|_| AtomicUsize::new(0)).collect();
        ConnectorLoad {
            id,
            tunnel,
            weight: 1,
            standby: false,
            outstanding: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            served: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            links: per_worker(),
            home_links: per_worker(),
            by_index: Mutex::new(HashMap::new()),
        }
    }

    /// With load-balancing weight `weight` (0 is taken as 1).
    pub fn with_weight(mut self, weight: u16) -> ConnectorLoad {
        self.weight = u64::from(weight.max(1));
        self
    }

    /// Starting from `base` choices (the tunnel's fair share so far, see the module doc).
    pub fn with_served_base(self, base: u64) -> ConnectorLoad {
        self.served.store(base, Ordering::Relaxed);
        self
    }

    /// Choices made for it plus its base: what `p2c` ties and `round-robin` compare.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// As a standby replica (or not).
    pub fn with_standby(mut self, standby: bool) -> ConnectorLoad {
        self.standby = standby;
        self
    }

    /// Its load-balancing weight (at least 1).
    pub fn weight(&self) -> u64 {
        self.weight
    }

    /// Whether it is a standby replica.
    pub fn is_standby(&self) -> bool {
        self.standby
    }

    /// Streams open to this connector now, across workers.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Streams opened to it since it connected.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Whether it takes no new streams.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Marks it as draining: from now on no worker opens a stream to it.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Its live counters, for the admin API.
    pub fn live(&self) -> LiveLoad {
        LiveLoad {
            active_streams: self.outstanding(),
            requests: self.requests(),
            draining: self.is_draining(),
        }
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

    /// Live links in the public data center on `worker`.
    pub fn home_links_on(&self, worker: usize) -> usize {
        self.home_links
            .get(worker)
            .map_or(0, |l| l.load(Ordering::Acquire))
    }

    /// Live links in the public data center on all workers.
    pub fn total_home_links(&self) -> usize {
        self.home_links
            .iter()
            .map(|l| l.load(Ordering::Acquire))
            .sum()
    }

    /// A link came up on `worker`; `home` when it is in the public data center.
    pub(crate) fn link_up(&self, worker: usize, home: bool) {
        if let Some(l) = self.links.get(worker) {
            l.fetch_add(1, Ordering::AcqRel);
        }
        if home && let Some(l) = self.home_links.get(worker) {
            l.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A link went down on `worker` (`home` as given to [`ConnectorLoad::link_up`]).
    pub(crate) fn link_down(&self, worker: usize, home: bool) {
        if home && let Some(l) = self.home_links.get(worker) {
            l.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(l) = self.links.get(worker) {
            l.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn indexes(&self) -> std::sync::MutexGuard<'_, HashMap<u8, usize>> {
        self.by_index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A link with index `index` came up (anywhere).
    pub(crate) fn index_up(&self, index: u8) {
        *self.indexes().entry(index).or_insert(0) += 1;
    }

    /// A link with index `index` went down.
    pub(crate) fn index_down(&self, index: u8) {
        let mut m = self.indexes();
        if let Some(n) = m.get_mut(&index) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&index);
            }
        }
    }

    /// Live links with index `index`: more than one while a link is being replaced.
    pub fn links_with_index(&self, index: u8) -> usize {
        self.indexes().get(&index).copied().unwrap_or(0)
    }

    /// Counts one stream opened to it, outstanding until the guard drops.
    pub fn start_stream(self: &Arc<Self>) -> StreamGuard {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        StreamGuard(Arc::clone(self))
    }
}

/// One outstanding stream of a connector; dropping it ends the count.
#[derive(Debug)]
pub struct StreamGuard(Arc<ConnectorLoad>);

impl StreamGuard {
    /// The connector the stream went to.
    pub fn connector(&self) -> uuid::Uuid {
        self.0.id
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Replica for ConnectorLoad {
    fn id(&self) -> Uuid {
        self.id
    }

    fn weight(&self) -> u64 {
        self.weight
    }

    fn is_standby(&self) -> bool {
        self.standby
    }

    fn is_draining(&self) -> bool {
        ConnectorLoad::is_draining(self)
    }

    fn outstanding(&self) -> usize {
        ConnectorLoad::outstanding(self)
    }

    fn served(&self) -> u64 {
        ConnectorLoad::served(self)
    }

    fn count_choice(&self) {
        self.served.fetch_add(1, Ordering::Relaxed);
    }

    fn uncount_choice(&self) {
        // Only ever after a `count_choice`; never below zero.
        let _ = self
            .served
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |s| s.checked_sub(1));
    }

    fn links_at(&self, worker: usize, home_only: bool) -> usize {
        if home_only {
            self.home_links_on(worker)
        } else {
            ConnectorLoad::links_on(self, worker)
        }
    }

    fn live_links(&self, home_only: bool) -> usize {
        if home_only {
            self.total_home_links()
        } else {
            ConnectorLoad::total_links(self)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guards_and_link_counts() {
        let l: Vec<Arc<ConnectorLoad>> = (0..2)
            .map(|_| Arc::new(ConnectorLoad::new(Uuid::new_v4(), Uuid::nil(), 2)))
            .collect();
        let g = l[0].start_stream();
        assert_eq!(l[0].outstanding(), 1);
        drop(g);
        assert_eq!(l[0].outstanding(), 0);
        assert_eq!(l[0].requests(), 1);
        l[1].link_up(1, true);
        l[1].link_up(0, false);
        assert_eq!(l[1].links_on(1), 1);
        assert_eq!(l[1].total_links(), 2);
        assert_eq!(l[1].home_links_on(1), 1);
        assert_eq!(l[1].total_home_links(), 1);
        l[1].link_down(1, true);
        assert_eq!(l[1].total_home_links(), 0);
        assert_eq!(l[1].total_links(), 1);
        l[0].index_up(2);
        l[0].index_up(2);
        assert_eq!(l[0].links_with_index(2), 2);
        l[0].index_down(2);
        assert_eq!(l[0].links_with_index(2), 1);
        l[0].index_down(2);
        l[0].index_down(2);
        assert_eq!(l[0].links_with_index(2), 0);
        assert!(!l[0].is_draining());
        l[0].set_draining();
        assert!(l[0].live().draining);
    }

    #[test]
    fn a_choice_given_back_never_goes_below_zero() {
        let c = ConnectorLoad::new(Uuid::new_v4(), Uuid::nil(), 1);
        c.count_choice();
        c.uncount_choice();
        c.uncount_choice();
        assert_eq!(c.served(), 0);
    }
}
