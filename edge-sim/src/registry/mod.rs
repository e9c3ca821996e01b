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
//! ingress works from a [`RouteTable`] snapshot, refreshed when [`Registry::routes_version`]
//! changes (a change by this node or, with etcd, by another). The snapshot also carries the
//! tunnels' own load-balancing policies, so a policy change reaches the workers the same way.
//!
//! Connector records here are control plane (registration, label, weight, draining); the live
//! counters (open streams, requests) sit in the data plane's atomics and are joined in through
//! [`LiveLoads`] when a connector is read ([`links`]).
mod connectors;
mod etcd;
mod links;
mod route_table;
mod sqlite;
mod storage;
mod store;
mod types;
mod view;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Duration;

use time::OffsetDateTime;
use uuid::Uuid;

pub use route_table::{RouteTable, normalize_hostname, validate_tunnel_name};
pub(crate) use storage::{ViewCell, tunnel_name};
pub use types::{
    Cleanup, Connector, ConnectorRegistration, DnsRoute, LinkInfo, LiveLoad, LiveLoads,
    RouteChange, TcpPorts, TcpRoute, Tunnel, TunnelSecret, edge_summary,
};
pub(crate) use view::View;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::settings::LbPolicy;
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
        storage.on_remote_change(revoke_deleted_tunnels(
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

    /// Creates a tunnel with a fresh ID and secret. The secret is returned only here.
    pub fn create_tunnel(&self, name: &str) -> Result<(Tunnel, TunnelSecret)> {
        validate_tunnel_name(name)?;
        let now = OffsetDateTime::now_utc();
        let tunnel = Tunnel {
            id: Uuid::new_v4(),
            name: name.to_owned(),
            created: now.replace_nanosecond(0).unwrap_or(now),
            lb_policy: None,
        };
        let secret = TunnelSecret::generate();
        let _writes = self.writes();
        if self.view().find(name).is_some() {
            return Err(Error::TunnelExists(name.to_owned()));
        }
        self.storage.create_tunnel(&tunnel, &secret)?;
        self.metrics.tunnels_created.inc();
        self.update_tunnel_gauge();
        Ok((tunnel, secret))
    }

    /// Every tunnel, oldest first.
    pub fn tunnels(&self) -> Result<Vec<Tunnel>> {
        Ok(self.view().tunnels())
    }

    /// A tunnel by ID or name.
    pub fn tunnel(&self, id_or_name: &str) -> Result<Tunnel> {
        self.find(id_or_name)
    }

    /// A tunnel's secret, for verifying registration proofs (from memory: never waits on the
    /// database).
    pub fn tunnel_secret(&self, tunnel_id: Uuid) -> Result<TunnelSecret> {
        self.view()
            .secret(tunnel_id)
            .cloned()
            .ok_or_else(|| Error::TunnelNotFound(tunnel_id.to_string()))
    }

    /// Deletes a tunnel and its routes. Refuses while connectors are connected unless `force`,
    /// which also closes their links at once and drops their records: the tunnel's credentials
    /// stop working the moment it is gone (a reconnecting connector is refused as an unknown
    /// tunnel), and its TCP route ports stop listening.
    pub fn delete_tunnel(&self, id_or_name: &str, force: bool) -> Result<Tunnel> {
        let _writes = self.writes();
        let tunnel = self.find(id_or_name)?;
        let count = self.table().count(tunnel.id);
        if count > 0 && !force {
            return Err(Error::TunnelHasConnectors {
                name: tunnel.name,
                count,
            });
        }
        let ports: Vec<u16> = self
            .view()
            .tcp_routes()
            .iter()
            .filter(|r| r.tunnel_id == tunnel.id)
            .map(|r| r.port)
            .collect();
        // The connector table is not locked across the store's write (which may wait on etcd):
        // a link admitted meanwhile found the tunnel in the view and is revoked below with the
        // others; one that comes after the write finds no tunnel and is refused.
        self.storage.delete_tunnel(&tunnel)?;
        let mut table = self.table();
        for id in table.ids_of_tunnel(tunnel.id, None) {
            table.revoke(id);
            table.remove(id);
        }
        self.update_connector_gauge(&table);
        drop(table);
        for port in ports {
            self.close_tcp_port(port);
        }
        self.metrics.tunnels_deleted.inc();
        self.update_tunnel_gauge();
        Ok(tunnel)
    }

    /// Routes a hostname (lowercased; `*.example.com` allowed) to a tunnel. The same route
    /// again changes nothing ([`RouteChange::Exists`]); a hostname routed to another tunnel is
    /// [`Error::DnsRouteExists`] unless `overwrite`, which moves it ([`RouteChange::Replaced`]).
    pub fn route_dns(&self, id_or_name: &str, hostname: &str) -> Result<DnsRoute> {
        self.route_dns_with(id_or_name, hostname, false)
            .map(|(route, _)| route)
    }

    /// [`Registry::route_dns`], saying what changed and with `overwrite`.
    pub fn route_dns_with(
        &self,
        id_or_name: &str,
        hostname: &str,
        overwrite: bool,
    ) -> Result<(DnsRoute, RouteChange)> {
        let hostname = normalize_hostname(hostname)?;
        let _writes = self.writes();
        let tunnel = self.find(id_or_name)?;
        let existing = self
            .view()
            .dns_routes()
            .iter()
            .find(|r| r.hostname == hostname)
            .cloned();
        let route = DnsRoute {
            hostname: hostname.clone(),
            tunnel_id: tunnel.id,
            tunnel_name: tunnel.name.clone(),
        };
        let change = match existing {
            Some(r) if r.tunnel_id == tunnel.id => return Ok((r, RouteChange::Exists)),
            Some(r) if !overwrite => {
                return Err(Error::DnsRouteExists {
                    hostname,
                    tunnel: r.tunnel_name,
                });
            }
            Some(_) => {
                self.storage.move_dns_route(&route)?;
                RouteChange::Replaced
            }
            None => {
                self.storage.add_dns_route(&route)?;
                RouteChange::Added
            }
        };
        Ok((route, change))
    }

    /// Routes a public TCP port (1..=65535) to a tunnel ([`Registry::route_tcp_with`]).
    pub fn route_tcp(&self, id_or_name: &str, port: u16) -> Result<TcpRoute> {
        self.route_tcp_with(id_or_name, port)
            .map(|(route, _)| route)
    }

    /// Routes a public TCP port (1..=65535) to a tunnel. The route is stored only once the data
    /// plane listens on the port ([`TcpPorts::open`]): a port held by another process, or by
    /// another listener of this edge, is [`Error::TcpPortUnavailable`] and nothing is stored.
    /// The same route again changes nothing; a port routed to another tunnel is
    /// [`Error::TcpRouteExists`].
    pub fn route_tcp_with(&self, id_or_name: &str, port: u16) -> Result<(TcpRoute, RouteChange)> {
        if port == 0 {
            return Err(Error::Invalid("tcp port must be 1 to 65535".into()));
        }
        let _writes = self.writes();
        let tunnel = self.find(id_or_name)?;
        let existing = self
            .view()
            .tcp_routes()
            .iter()
            .find(|r| r.port == port)
            .cloned();
        match existing {
            Some(r) if r.tunnel_id == tunnel.id => return Ok((r, RouteChange::Exists)),
            Some(r) => {
                return Err(Error::TcpRouteExists {
                    port,
                    tunnel: r.tunnel_name,
                });
            }
            None => {}
        }
        if let Some(ports) = self.tcp_ports.get().and_then(Weak::upgrade) {
            ports
                .open(port)
                .map_err(|reason| Error::TcpPortUnavailable { port, reason })?;
        }
        let route = TcpRoute {
            port,
            tunnel_id: tunnel.id,
            tunnel_name: tunnel.name.clone(),
        };
        if let Err(e) = self.storage.add_tcp_route(&route) {
            self.close_tcp_port(port);
            return Err(e);
        }
        Ok((route, RouteChange::Added))
    }

    /// Removes the DNS route of `hostname`; returns it.
    pub fn delete_dns_route(&self, hostname: &str) -> Result<DnsRoute> {
        let hostname = normalize_hostname(hostname)?;
        let _writes = self.writes();
        let route = self
            .view()
            .dns_routes()
            .iter()
            .find(|r| r.hostname == hostname)
            .cloned()
            .ok_or_else(|| Error::RouteNotFound(format!("hostname {hostname}")))?;
        self.storage.delete_dns_route(&hostname)?;
        Ok(route)
    }

    /// Removes the TCP route of `port` and stops listening on it; returns it.
    pub fn delete_tcp_route(&self, port: u16) -> Result<TcpRoute> {
        let _writes = self.writes();
        let route = self
            .view()
            .tcp_routes()
            .iter()
            .find(|r| r.port == port)
            .cloned()
            .ok_or_else(|| Error::RouteNotFound(format!("tcp port {port}")))?;
        self.storage.delete_tcp_route(port)?;
        self.close_tcp_port(port);
        Ok(route)
    }

    fn close_tcp_port(&self, port: u16) {
        if let Some(ports) = self.tcp_ports.get().and_then(Weak::upgrade) {
            ports.close(port);
        }
    }

    /// Connects the data plane's TCP-route listeners (see [`TcpPorts`]); the first call wins.
    pub fn set_tcp_ports(&self, ports: Weak<dyn TcpPorts>) {
        let _ = self.tcp_ports.set(ports);
    }

    /// Sets (or with `None` clears) a tunnel's load-balancing policy; returns the tunnel. The
    /// workers pick it up with their next route-table refresh.
    pub fn set_lb_policy(&self, id_or_name: &str, policy: Option<LbPolicy>) -> Result<Tunnel> {
        let _writes = self.writes();
        let mut tunnel = self.find(id_or_name)?;
        self.storage.set_lb_policy(&tunnel, policy)?;
        tunnel.lb_policy = policy;
        Ok(tunnel)
    }

    /// Every DNS route, by hostname.
    pub fn dns_routes(&self) -> Result<Vec<DnsRoute>> {
        Ok(self.view().dns_routes().to_vec())
    }

    /// Every TCP route, by port.
    pub fn tcp_routes(&self) -> Result<Vec<TcpRoute>> {
        Ok(self.view().tcp_routes().to_vec())
    }

    /// Bumped on every change of the store's view (a route added, a tunnel deleted, a policy
    /// set; by this node or, with etcd, by another).
    pub fn routes_version(&self) -> u64 {
        self.storage.version()
    }

    /// A snapshot of all routes for the request path (from memory).
    pub fn route_table(&self) -> Result<RouteTable> {
        Ok(self.view().route_table())
    }
}

/// The hook that closes, on this node, the links of a tunnel that another node deleted: its
/// credentials stop working everywhere, as they do on the node that deleted it.
fn revoke_deleted_tunnels(
    connectors: Arc<Mutex<ConnectorTable>>,
    metrics: Arc<Metrics>,
) -> storage::ViewHook {
    Box::new(move |view| {
        let mut table = connectors.lock().unwrap_or_else(|p| p.into_inner());
        let mut revoked = 0usize;
        for tunnel in table.tunnels() {
            if view.secret(tunnel).is_some() {
                continue;
            }
            for id in table.ids_of_tunnel(tunnel, None) {
                table.revoke(id);
                table.remove(id);
                revoked += 1;
            }
        }
        if revoked > 0 {
            tracing::info!(
                revoked,
                "connectors of a tunnel deleted on another node closed"
            );
            metrics
                .connectors
                .set(i64::try_from(table.total()).unwrap_or(i64::MAX));
        }
    })
}

#[cfg(test)]
mod tests;
