//! The registry: tunnels, routes and connectors.
//!
//! Tunnels (ID, unique name, secret, created) and routes (hostname → tunnel, public TCP port →
//! tunnel) persist in SQLite at `<state>/registry.db` and survive restarts. Connectors are
//! ephemeral and live in memory only: a restarted edge has none until they reconnect.
//!
//! # Thread-safety
//! The registry is control plane: admin requests and link registrations, a few per second at
//! most. Every read of tunnels, secrets and routes is served from an in-memory [`view`] that
//! is loaded at start and replaced after each successful write, so a link registration on a
//! data-plane worker never waits on SQLite. Only writes (the admin API's thread) take the
//! SQLite connection's `Mutex`, and a write to a database that another process holds locked
//! waits at most the busy timeout (`--registry-busy-timeout-ms`), then fails with
//! [`Error::RegistryBusy`] (503 from the admin API). Locks are always taken in the order
//! database, connectors, view, so they cannot deadlock; the view's lock is held only to swap
//! or clone an `Arc`. Nothing on the per-request path may call into the registry: the public
//! ingress works from a [`RouteTable`] snapshot, refreshed when [`Registry::routes_version`]
//! changes. The snapshot also carries the tunnels' own load-balancing policies, so a policy
//! change reaches the workers the same way.
//!
//! Connector records here are control plane (registration, label, weight, draining); the live
//! counters (open streams, requests) sit in the data plane's atomics and are joined in through
//! [`LiveLoads`] when a connector is read.
mod connectors;
mod route_table;
mod store;
mod types;
mod view;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock, Weak};
use std::time::Duration;

use uuid::Uuid;

pub use route_table::{RouteTable, normalize_hostname, validate_tunnel_name};
pub use types::{
    Cleanup, Connector, ConnectorRegistration, DnsRoute, LinkInfo, LiveLoad, LiveLoads,
    RouteChange, TcpPorts, TcpRoute, Tunnel, TunnelSecret, edge_summary,
};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::settings::LbPolicy;
use connectors::{ConnectorTable, LiveLink, Registered};
use store::Store;
use view::View;

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
    db: Mutex<Store>,
    view: RwLock<Arc<View>>,
    connectors: Mutex<ConnectorTable>,
    connector_limit: usize,
    routes_version: AtomicU64,
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
        let store = Store::open(path, busy_timeout)?;
        let view = View::load(&store)?;
        metrics
            .tunnels
            .set(i64::try_from(view.tunnel_count()).unwrap_or(i64::MAX));
        Ok(Registry {
            db: Mutex::new(store),
            view: RwLock::new(Arc::new(view)),
            connectors: Mutex::new(ConnectorTable::default()),
            connector_limit,
            routes_version: AtomicU64::new(0),
            link_ids: AtomicU64::new(0),
            metrics,
            live: OnceLock::new(),
            tcp_ports: OnceLock::new(),
        })
    }

    /// The metrics the registry counts into.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The per-tunnel connector limit.
    pub fn connector_limit(&self) -> usize {
        self.connector_limit
    }

    // A panic while holding a lock leaves plain data behind (no invariant spans a panic point
    // inside these sections), so a poisoned lock is still usable.
    fn db(&self) -> MutexGuard<'_, Store> {
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current view (one `Arc` clone under a lock held for no longer than that).
    fn view(&self) -> Arc<View> {
        Arc::clone(&self.view.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Applies `change` to a copy of the view and publishes it. Call it with the database lock
    /// held, after the database write succeeded.
    fn update_view(&self, change: impl FnOnce(&mut View)) {
        let mut slot = self.view.write().unwrap_or_else(|p| p.into_inner());
        let mut next = View::clone(&slot);
        change(&mut next);
        *slot = Arc::new(next);
    }

    fn find(&self, id_or_name: &str) -> Result<Tunnel> {
        self.view()
            .find(id_or_name)
            .cloned()
            .ok_or_else(|| Error::TunnelNotFound(id_or_name.to_owned()))
    }

    fn table(&self) -> MutexGuard<'_, ConnectorTable> {
        self.connectors.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn update_connector_gauge(&self, table: &ConnectorTable) {
        self.metrics
            .connectors
            .set(i64::try_from(table.total()).unwrap_or(i64::MAX));
    }

    /// Creates a tunnel with a fresh ID and secret. The secret is returned only here.
    pub fn create_tunnel(&self, name: &str) -> Result<(Tunnel, TunnelSecret)> {
        validate_tunnel_name(name)?;
        let db = self.db();
        let created = db.create_tunnel(name)?;
        self.update_view(|v| v.add_tunnel(created.0.clone(), created.1.clone()));
        self.metrics.tunnels_created.inc();
        self.metrics.tunnels.inc();
        Ok(created)
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
        let db = self.db();
        let tunnel = self.find(id_or_name)?;
        let mut table = self.table();
        let count = table.count(tunnel.id);
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
        db.delete_tunnel(tunnel.id)?;
        self.update_view(|v| v.remove_tunnel(tunnel.id));
        for id in table.ids_of_tunnel(tunnel.id, None) {
            table.revoke(id);
            table.remove(id);
        }
        self.update_connector_gauge(&table);
        for port in ports {
            self.close_tcp_port(port);
        }
        self.metrics.tunnels_deleted.inc();
        self.metrics.tunnels.dec();
        self.routes_version.fetch_add(1, Ordering::Release);
        Ok(tunnel)
    }

    /// Cleans a tunnel's connector records up (all, or only `connector`): a record without a
    /// live link is removed; a connector with live links is kept, or with `disconnect` has its
    /// links closed at once (its record goes with its last link, so the connector limit holds
    /// throughout; the connector may reconnect, as it would after a network failure).
    pub fn cleanup(
        &self,
        id_or_name: &str,
        connector: Option<Uuid>,
        disconnect: bool,
    ) -> Result<Cleanup> {
        let tunnel = self.find(id_or_name)?;
        let mut table = self.table();
        let mut done = Cleanup::default();
        for id in table.ids_of_tunnel(tunnel.id, connector) {
            if !table.has_live_link(id) {
                table.remove(id);
                done.removed.push(id);
            } else if disconnect {
                table.revoke(id);
                done.disconnected.push(id);
            } else {
                done.kept.push(id);
            }
        }
        self.update_connector_gauge(&table);
        Ok(done)
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
        let db = self.db();
        let tunnel = self.find(id_or_name)?;
        let existing = self
            .view()
            .dns_routes()
            .iter()
            .find(|r| r.hostname == hostname)
            .cloned();
        let (route, change) = match existing {
            Some(r) if r.tunnel_id == tunnel.id => return Ok((r, RouteChange::Exists)),
            Some(r) if !overwrite => {
                return Err(Error::DnsRouteExists {
                    hostname,
                    tunnel: r.tunnel_name,
                });
            }
            Some(_) => (
                db.move_dns_route(&tunnel, &hostname)?,
                RouteChange::Replaced,
            ),
            None => (db.add_dns_route(&tunnel, &hostname)?, RouteChange::Added),
        };
        self.update_view(|v| {
            v.remove_dns(&route.hostname);
            v.add_dns(route.clone());
        });
        self.routes_version.fetch_add(1, Ordering::Release);
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
        let db = self.db();
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
        let route = match db.add_tcp_route(&tunnel, port) {
            Ok(route) => route,
            Err(e) => {
                self.close_tcp_port(port);
                return Err(e);
            }
        };
        self.update_view(|v| v.add_tcp(route.clone()));
        self.routes_version.fetch_add(1, Ordering::Release);
        Ok((route, RouteChange::Added))
    }

    /// Removes the DNS route of `hostname`; returns it.
    pub fn delete_dns_route(&self, hostname: &str) -> Result<DnsRoute> {
        let hostname = normalize_hostname(hostname)?;
        let db = self.db();
        let route = self
            .view()
            .dns_routes()
            .iter()
            .find(|r| r.hostname == hostname)
            .cloned()
            .ok_or_else(|| Error::RouteNotFound(format!("hostname {hostname}")))?;
        db.delete_dns_route(&hostname)?;
        self.update_view(|v| v.remove_dns(&hostname));
        self.routes_version.fetch_add(1, Ordering::Release);
        Ok(route)
    }

    /// Removes the TCP route of `port` and stops listening on it; returns it.
    pub fn delete_tcp_route(&self, port: u16) -> Result<TcpRoute> {
        let db = self.db();
        let route = self
            .view()
            .tcp_routes()
            .iter()
            .find(|r| r.port == port)
            .cloned()
            .ok_or_else(|| Error::RouteNotFound(format!("tcp port {port}")))?;
        db.delete_tcp_route(port)?;
        self.update_view(|v| v.remove_tcp(port));
        self.routes_version.fetch_add(1, Ordering::Release);
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
        let db = self.db();
        let mut tunnel = self.find(id_or_name)?;
        db.set_lb_policy(tunnel.id, policy)?;
        self.update_view(|v| v.set_policy(tunnel.id, policy));
        tunnel.lb_policy = policy;
        self.routes_version.fetch_add(1, Ordering::Release);
        Ok(tunnel)
    }

    /// Connects the data plane's live counters (see [`LiveLoads`]); the first call wins.
    pub fn set_live_loads(&self, live: Weak<dyn LiveLoads>) {
        let _ = self.live.set(live);
    }

    /// Fills in a connector's live counters (and draining, which the data plane may learn
    /// first) from the data plane.
    fn join_live(&self, mut c: Connector) -> Connector {
        if let Some(live) = self
            .live
            .get()
            .and_then(Weak::upgrade)
            .and_then(|l| l.live_load(c.id))
        {
            c.active_streams = live.active_streams;
            c.requests = live.requests;
            c.draining |= live.draining;
        }
        c
    }

    /// Every DNS route, by hostname.
    pub fn dns_routes(&self) -> Result<Vec<DnsRoute>> {
        Ok(self.view().dns_routes().to_vec())
    }

    /// Every TCP route, by port.
    pub fn tcp_routes(&self) -> Result<Vec<TcpRoute>> {
        Ok(self.view().tcp_routes().to_vec())
    }

    /// Bumped on every route change (route added, tunnel deleted).
    pub fn routes_version(&self) -> u64 {
        self.routes_version.load(Ordering::Acquire)
    }

    /// A snapshot of all routes for the request path (from memory).
    pub fn route_table(&self) -> Result<RouteTable> {
        Ok(self.view().route_table())
    }

    /// Registers one link of a connector (the first link registers the connector). Enforces the
    /// per-tunnel connector limit: over it, the error's message is meant for the connector,
    /// e.g. `tunnel web has reached its limit of 100 connectors`. The caller has verified the
    /// registration proof.
    pub fn register_connector(
        &self,
        tunnel_id: Uuid,
        registration: ConnectorRegistration,
        link: LinkInfo,
    ) -> Result<()> {
        self.admit(tunnel_id, registration, link, None).map(|_| ())
    }

    /// [`Registry::register_connector`] for a live link: also enforces the connector's link
    /// bound (`slot.ha_connections`, at most [`MAX_LINKS_PER_CONNECTOR`]; a link index must be
    /// below it and below the count the connector's first link declared) and, when the index
    /// already has a link, triggers that link's `slot.replaced` signal (its link server then
    /// drains it) before this one takes the index. Returns the link's ID for
    /// [`Registry::unregister_link_id`]. A refused index is counted as
    /// [`Limit::ConnectorLinks`](crate::limit::Limit::ConnectorLinks).
    pub fn register_link(
        &self,
        tunnel_id: Uuid,
        registration: ConnectorRegistration,
        link: LinkInfo,
        slot: LinkSlot,
    ) -> Result<u64> {
        self.admit(tunnel_id, registration, link, Some(slot))
    }

    /// Registers a link; `slot` is `None` for a record without a live link (which a cleanup
    /// may remove).
    fn admit(
        &self,
        tunnel_id: Uuid,
        registration: ConnectorRegistration,
        link: LinkInfo,
        live: Option<LinkSlot>,
    ) -> Result<u64> {
        let connector = registration.connector_id;
        // The tunnel is looked up with the table locked, so a deletion (which takes the table
        // lock too) either comes first and refuses this link, or comes after and revokes it.
        let mut table = self.table();
        let tunnel = match self.find(&tunnel_id.to_string()) {
            Ok(t) => t,
            Err(e) => {
                self.metrics.connectors_rejected.inc();
                return Err(e);
            }
        };
        let slot = live.clone().unwrap_or_default();
        let declared = match table.get(connector) {
            Some(c) if c.tunnel_id != tunnel.id => {
                self.metrics.connectors_rejected.inc();
                return Err(Error::ConnectorConflict(connector.to_string()));
            }
            Some(_) => table.declared_links(connector),
            None if table.count(tunnel.id) >= self.connector_limit => {
                self.metrics.connectors_rejected.inc();
                return Err(Error::ConnectorLimit {
                    tunnel: tunnel.name,
                    limit: self.connector_limit,
                });
            }
            None => None,
        };
        let allowed = declared
            .unwrap_or(slot.ha_connections)
            .min(slot.ha_connections);
        if slot.ha_connections == 0
            || slot.ha_connections > MAX_LINKS_PER_CONNECTOR
            || link.index >= allowed
        {
            self.metrics.connectors_rejected.inc();
            self.metrics
                .limits
                .hit(crate::limit::Limit::ConnectorLinks, &connector);
            return Err(Error::LinkLimit {
                index: link.index,
                declared: slot.ha_connections,
                allowed: allowed.min(MAX_LINKS_PER_CONNECTOR),
            });
        }
        let index = link.index;
        if table.add_link(tunnel.id, registration, link) == Registered::NewConnector {
            self.metrics.connectors_registered.inc();
            table.set_declared_links(connector, slot.ha_connections);
        }
        let id = self.link_ids.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(slot) = live {
            let link = LiveLink {
                id,
                replaced: slot.replaced,
                revoked: slot.revoked,
            };
            if let Some(old) = table.set_live_link(connector, index, link) {
                old.trigger();
            }
        }
        self.update_connector_gauge(&table);
        Ok(id)
    }

    /// Unregisters link `link_index` of a connector if it is still the link `id` (a link that
    /// was replaced under the same index leaves its successor's record alone). Returns whether
    /// the connector went away.
    pub fn unregister_link_id(&self, connector_id: Uuid, link_index: u8, id: u64) -> bool {
        let mut table = self.table();
        let gone = table.remove_live_link(connector_id, link_index, id);
        self.update_connector_gauge(&table);
        gone
    }

    /// Unregisters link `link_index` of a connector if its record is the one on `server` (a
    /// link replaced under the same index on another server keeps its new record). Returns
    /// whether the connector went away.
    pub fn unregister_link_at(
        &self,
        connector_id: Uuid,
        link_index: u8,
        server: std::net::SocketAddr,
    ) -> bool {
        let mut table = self.table();
        let gone = table.remove_link_at(connector_id, link_index, server);
        self.update_connector_gauge(&table);
        gone
    }

    /// Marks a connector as draining (it gets no new streams). Returns whether it was known.
    pub fn set_draining(&self, connector_id: Uuid) -> bool {
        self.table().set_draining(connector_id)
    }

    /// A connector by ID, with its live counters.
    pub fn connector(&self, connector_id: Uuid) -> Option<Connector> {
        let c = self.table().get(connector_id).cloned();
        c.map(|c| self.join_live(c))
    }

    /// A tunnel's connectors, oldest first, with their live counters.
    pub fn connectors(&self, tunnel_id: Uuid) -> Vec<Connector> {
        // The table's lock is released before the data plane's counters are read.
        let list = self.table().of_tunnel(tunnel_id);
        list.into_iter().map(|c| self.join_live(c)).collect()
    }

    /// How many connectors a tunnel has.
    pub fn connector_count(&self, tunnel_id: Uuid) -> usize {
        self.table().count(tunnel_id)
    }
}

#[cfg(test)]
mod tests;
