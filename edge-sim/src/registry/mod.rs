//! The registry: tunnels, routes and connectors.
//!
//! Tunnels (ID, unique name, secret, created) and routes (hostname → tunnel, public TCP port →
//! tunnel) are durable and sit behind one [`storage::Storage`] trait with two implementations:
//! SQLite at `<state>/registry.db` (one edge, the default; [`Registry::open`]) and etcd (several
//! edge nodes sharing one etcd, `--etcd`; [`Registry::open_etcd`], see `docs/cluster.md`).
//! Connectors are ephemeral and live in memory on the node that holds their links: a restarted
//! edge has none until they reconnect.
//!
//! # Thread-safety
//! The registry is control plane: admin requests and link registrations, a few per second at
//! most. Every read of tunnels, secrets and routes is served from the store's in-memory view
//! ([`view`]), so a link registration on a data-plane worker never waits on SQLite or etcd.
//! Only writes (the admin API's threads) reach the store, one at a time per node (the `writes`
//! lock); a store that cannot answer in bounded time fails the write with a retryable error
//! (503 from the admin API): a locked database after `--registry-busy-timeout-ms`, an
//! unreachable etcd after `--etcd-timeout-ms`. Locks are always taken in the order writes,
//! connectors, store, so they cannot deadlock; the connector table's lock is never held while
//! waiting on etcd. Nothing on the per-request path may call into the registry: the public
//! side works from a [`RouteTable`] snapshot, refreshed when [`Registry::routes_version`]
//! changes (a change by this node or, with etcd, by another). The snapshot also carries the
//! tunnels' own load-balancing policies, so a policy change reaches the workers the same way.
//!
//! Connector records here are control plane (registration, label, weight, draining); the live
//! counters (open streams, requests) sit in the data plane's atomics and are joined in through
//! [`LiveLoads`] when a connector is read ([`links`]).
//!
//! # Layout
//! - this file: the [`Registry`] type, opening it on SQLite or etcd, and the cluster accessors;
//! - `tunnels.rs`: tunnels and their policies; `routes.rs`: DNS and TCP routes, the route table;
//! - `links.rs`: connectors' links, the connector limit, cleanup; `connectors.rs`: their table;
//! - `storage.rs`, `sqlite.rs`, `etcd.rs`, `store.rs`, `view.rs`: the durable records and their
//!   in-memory view; `route_table.rs`, `types.rs`: what the registry hands out.
mod connectors;
mod etcd;
mod links;
mod route_table;
mod routes;
mod sqlite;
mod storage;
mod store;
mod tunnels;
mod types;
mod view;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

pub use route_table::{RouteTable, normalize_hostname, validate_tunnel_name};
pub(crate) use storage::{ViewCell, tunnel_name};
pub use types::{
    Cleanup, Connector, ConnectorRegistration, DnsRoute, LinkInfo, LiveLoad, LiveLoads,
    RouteChange, TcpPorts, TcpRoute, Tunnel, TunnelSecret, edge_summary,
};
pub(crate) use types::{new_secret, secret_base64};
pub(crate) use view::View;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use connectors::ConnectorTable;
use storage::Storage;

/// How long a registry write waits for a database that another connection holds locked
/// (`--registry-busy-timeout-ms`).
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(2);

/// Most links one connector may hold (its `--ha-connections` is 1 to this).
pub const MAX_LINKS_PER_CONNECTOR: u8 = ringtun_core::handshake::MAX_HA_CONNECTIONS;

/// What a live link brings to [`Registry::register_link`] besides its record.
#[derive(Debug, Clone)]
pub struct LinkSlot {
    /// How many links the connector says it runs (its `--ha-connections`).
    pub ha_connections: u8,
    /// Triggered when a newer link of the same connector takes this link's index.
    pub replaced: ringtun_core::rt::Shutdown,
    /// Triggered when the link must close at once: its tunnel was deleted, or its connector
    /// disconnected by a cleanup.
    pub revoked: ringtun_core::rt::Shutdown,
}

impl Default for LinkSlot {
    fn default() -> Self {
        LinkSlot {
            ha_connections: MAX_LINKS_PER_CONNECTOR,
            replaced: ringtun_core::rt::Shutdown::new(),
            revoked: ringtun_core::rt::Shutdown::new(),
        }
    }
}

/// The edge's registry. Share it as `Arc<Registry>`.
#[derive(Debug)]
pub struct Registry {
    storage: Box<dyn Storage>,
    /// Serialises this node's writes (a check in the view, then the store's write).
    writes: Mutex<()>,
    connectors: Arc<Mutex<ConnectorTable>>,
    connector_limit: usize,
    link_ids: AtomicU64,
    metrics: Arc<Metrics>,
    live: OnceLock<Weak<dyn LiveLoads>>,
    tcp_ports: OnceLock<Weak<dyn TcpPorts>>,
}

impl Registry {
    /// Opens (creating and migrating if needed) the registry database at `path`.
    pub fn open(path: &Path, connector_limit: usize, metrics: Arc<Metrics>) -> Result<Registry> {
        Registry::open_with(path, connector_limit, metrics, DEFAULT_BUSY_TIMEOUT)
    }

    /// [`Registry::open`] with a write's busy wait bounded by `busy_timeout`.
    pub fn open_with(
        path: &Path,
        connector_limit: usize,
        metrics: Arc<Metrics>,
        busy_timeout: Duration,
    ) -> Result<Registry> {
        let storage = sqlite::Sqlite::open(path, busy_timeout)?;
        Ok(Registry::with_storage(
            Box::new(storage),
            connector_limit,
            metrics,
        ))
    }

    /// A registry whose durable records live in etcd (see [`crate::cluster`]): it starts the
    /// cluster thread and returns once the first full view is loaded, or fails after
    /// `etcd.timeout` when etcd cannot be reached.
    pub fn open_etcd(
        etcd: &crate::cluster::EtcdSettings,
        connector_limit: usize,
        metrics: Arc<Metrics>,
    ) -> Result<Registry> {
        let storage = etcd::Etcd::start(etcd, Arc::clone(&metrics))?;
        Ok(Registry::with_storage(
            Box::new(storage),
            connector_limit,
            metrics,
        ))
    }

    fn with_storage(
        storage: Box<dyn Storage>,
        connector_limit: usize,
        metrics: Arc<Metrics>,
    ) -> Registry {
        let connectors = Arc::new(Mutex::new(ConnectorTable::default()));
        storage.on_remote_change(tunnels::revoke_deleted_tunnels(
            Arc::clone(&connectors),
            Arc::clone(&metrics),
        ));
        let registry = Registry {
            storage,
            writes: Mutex::new(()),
            connectors,
            connector_limit,
            link_ids: AtomicU64::new(0),
            metrics,
            live: OnceLock::new(),
            tcp_ports: OnceLock::new(),
        };
        registry.update_tunnel_gauge();
        registry
    }

    /// Announces this node to the other nodes (with etcd: `nodes/{node}`, under its lease;
    /// nothing with SQLite). `record` is JSON.
    pub fn announce_node(&self, record: String) {
        self.storage.announce_node(record);
    }

    /// This node stops, its links drained: with etcd its presence lease is revoked, so the
    /// other nodes see its record and links vanish at once instead of after the lease's TTL
    /// (waits, bounded by the etcd call timeout); nothing without etcd.
    pub fn leave_cluster(&self) {
        self.storage.leave();
    }

    /// This node's ID in the cluster (with etcd; new at every start), as in `nodes/{id}`.
    pub fn node_id(&self) -> Option<&str> {
        self.storage.node_id()
    }

    /// Every node and live link of the cluster, as this node's watch last saw them (with etcd;
    /// `None` with SQLite).
    pub fn cluster_presence(&self) -> Option<Arc<crate::cluster::ClusterPresence>> {
        self.storage.presence()
    }

    /// The cluster CA of peer links (with etcd; `None` with SQLite).
    pub fn cluster_ca(&self) -> Option<crate::cluster::ClusterCa> {
        self.storage.cluster_ca()
    }

    /// The metrics the registry counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The per-tunnel connector limit.
    pub fn connector_limit(&self) -> usize {
        self.connector_limit
    }

    /// This node's write lock. A panic while holding it leaves nothing half done (the store's
    /// write either happened or not), so a poisoned lock is still usable.
    fn writes(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The store's current view (never waits on the store).
    fn view(&self) -> Arc<View> {
        self.storage.view()
    }

    fn update_tunnel_gauge(&self) {
        self.metrics
            .tunnels
            .set(i64::try_from(self.view().tunnel_count()).unwrap_or(i64::MAX));
    }

    fn find(&self, id_or_name: &str) -> Result<Tunnel> {
        self.view()
            .find(id_or_name)
            .cloned()
            .ok_or_else(|| Error::TunnelNotFound(id_or_name.to_owned()))
    }
}

#[cfg(test)]
mod tests;
