//! The load table: every live connector's [`ConnectorLoad`], by connector, shared by the
//! workers.
//!
//! The set of connectors is control-plane state behind a `Mutex` with an atomic version: a
//! connector is added with its first link anywhere and removed with its last, and each change
//! moves the version. A worker checks the version per request (one atomic load) and takes the
//! lock only to refresh its snapshot ([`LoadTable::by_tunnel`]) when connectors came or went;
//! the counters themselves are the loads' atomics, read without the lock.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

use super::load::ConnectorLoad;
use super::policy::fair_base;
use crate::registry::{LiveLoad, LiveLoads};

/// The connectors per tunnel, as one worker's snapshot holds them.
pub(crate) type ByTunnel = HashMap<Uuid, Vec<Arc<ConnectorLoad>>>;

/// Every live connector's load, for `workers` workers.
#[derive(Debug)]
pub(crate) struct LoadTable {
    workers: usize,
    version: AtomicU64,
    conns: Mutex<HashMap<Uuid, Arc<ConnectorLoad>>>,
}

impl LoadTable {
    /// An empty table.
    pub(crate) fn new(workers: usize) -> LoadTable {
        LoadTable {
            workers,
            version: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        }
    }

    fn conns(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<ConnectorLoad>>> {
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The connector's load record, created on its first link anywhere (with the weight and
    /// standby flag of that registration, and its tunnel's fair share of `served` so far).
    pub(crate) fn connector(
        &self,
        tunnel: Uuid,
        connector: Uuid,
        weight: u16,
        standby: bool,
    ) -> Arc<ConnectorLoad> {
        let mut conns = self.conns();
        if let Some(c) = conns.get(&connector) {
            return Arc::clone(c);
        }
        let base = fair_base(
            conns
                .values()
                .filter(|c| c.tunnel == tunnel)
                .map(|c| (c.served(), c.weight())),
            weight,
        );
        self.version.fetch_add(1, Ordering::AcqRel);
        let load = Arc::new(
            ConnectorLoad::new(connector, tunnel, self.workers)
                .with_weight(weight)
                .with_standby(standby)
                .with_served_base(base),
        );
        conns.insert(connector, Arc::clone(&load));
        load
    }

    /// Forgets the connector when its last link (on any worker) is gone.
    pub(crate) fn link_gone(&self, load: &Arc<ConnectorLoad>) {
        if load.total_links() > 0 {
            return;
        }
        let mut conns = self.conns();
        if let Some(cur) = conns.get(&load.id)
            && Arc::ptr_eq(cur, load)
            && load.total_links() == 0
        {
            conns.remove(&load.id);
            self.version.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Moves whenever a connector appears or goes away.
    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Connectors per tunnel (takes the lock).
    pub(crate) fn by_tunnel(&self) -> ByTunnel {
        let mut out = ByTunnel::new();
        for c in self.conns().values() {
            out.entry(c.tunnel).or_default().push(Arc::clone(c));
        }
        out
    }

    /// Streams in flight and live links, over every connector (takes the lock).
    pub(crate) fn in_flight(&self) -> (usize, usize) {
        self.conns().values().fold((0, 0), |(streams, links), c| {
            (streams + c.outstanding(), links + c.total_links())
        })
    }

    /// Marks every connector draining, so no worker opens a new stream to it.
    pub(crate) fn stop_new_streams(&self) {
        for c in self.conns().values() {
            c.set_draining();
        }
    }
}

impl LiveLoads for LoadTable {
    fn live_load(&self, connector: Uuid) -> Option<LiveLoad> {
        self.conns().get(&connector).map(|c| c.live())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connector_lives_from_its_first_link_to_its_last() {
        let t = LoadTable::new(2);
        let (tunnel, id) = (Uuid::new_v4(), Uuid::new_v4());
        let v = t.version();
        let load = t.connector(tunnel, id, 2, true);
        assert!(t.version() > v, "workers must see the newcomer");
        assert_eq!((load.weight(), load.is_standby()), (2, true));
        // A second link of the same connector shares the record.
        assert!(Arc::ptr_eq(&load, &t.connector(tunnel, id, 1, false)));
        load.link_up(0, false);
        load.link_up(1, true);
        t.link_gone(&load);
        assert_eq!(t.by_tunnel()[&tunnel].len(), 1, "links are left");
        assert_eq!(t.in_flight(), (0, 2));
        load.link_down(0, false);
        load.link_down(1, true);
        let v = t.version();
        t.link_gone(&load);
        assert!(t.version() > v);
        assert!(t.by_tunnel().is_empty());
        assert!(t.live_load(id).is_none());
    }

    #[test]
    fn a_newcomer_starts_at_its_tunnels_fair_share() {
        let t = LoadTable::new(1);
        let tunnel = Uuid::new_v4();
        let old = t.connector(tunnel, Uuid::new_v4(), 1, false);
        for _ in 0..40 {
            super::super::Replica::count_choice(&*old);
        }
        // Another tunnel's connectors do not count.
        let other = t.connector(Uuid::new_v4(), Uuid::new_v4(), 1, false);
        assert_eq!(other.served(), 0);
        assert_eq!(t.connector(tunnel, Uuid::new_v4(), 3, false).served(), 120);
        t.stop_new_streams();
        assert!(old.is_draining() && other.is_draining());
    }
}
