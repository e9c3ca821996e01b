//! The registry: tunnels, routes and connectors.
//!
//! Tunnels (ID, unique name, secret, created) and routes (hostname → tunnel, public TCP port →
//! tunnel) persist in SQLite at `<state>/registry.db` and survive restarts. Connectors are
//! ephemeral and live in memory only: a restarted edge has none until they reconnect.
//!
//! # Thread-safety
//! The registry is control plane: admin requests and link registrations, a few per second at
//! most. It therefore guards the SQLite connection and the connector table with a `Mutex` each
//! (always taken in that order: database, then connectors, so they cannot deadlock). Nothing on
//! the per-request path may call into it: the public ingress works from a [`RouteTable`]
//! snapshot, refreshed when [`Registry::routes_version`] changes. The snapshot also carries the
//! tunnels' own load-balancing policies, so a policy change reaches the workers the same way.
//!
//! Connector records here are control plane (registration, label, weight, draining); the live
//! counters (open streams, requests) sit in the data plane's atomics and are joined in through
//! [`LiveLoads`] when a connector is read.
mod connectors;
mod route_table;
mod store;
mod types;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};

use uuid::Uuid;

pub use route_table::{RouteTable, normalize_hostname, validate_tunnel_name};
pub use types::{
    Connector, ConnectorRegistration, DnsRoute, LinkInfo, LiveLoad, LiveLoads, TcpRoute, Tunnel,
    TunnelSecret, edge_summary,
};

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::settings::LbPolicy;
use connectors::{ConnectorTable, Registered};
use store::Store;

/// The edge's registry. Share it as `Arc<Registry>`.
#[derive(Debug)]
pub struct Registry {
    db: Mutex<Store>,
    connectors: Mutex<ConnectorTable>,
    connector_limit: usize,
    routes_version: AtomicU64,
    metrics: Arc<Metrics>,
    live: OnceLock<Weak<dyn LiveLoads>>,
}

impl Registry {
    /// Opens (creating and migrating if needed) the registry database at `path`.
    pub fn open(path: &Path, connector_limit: usize, metrics: Arc<Metrics>) -> Result<Registry> {
        let store = Store::open(path)?;
        let tunnels = store.tunnels()?.len();
        metrics
            .tunnels
            .set(i64::try_from(tunnels).unwrap_or(i64::MAX));
        Ok(Registry {
            db: Mutex::new(store),
            connectors: Mutex::new(ConnectorTable::default()),
            connector_limit,
            routes_version: AtomicU64::new(0),
            metrics,
            live: OnceLock::new(),
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
        self.metrics.tunnels_created.inc();
        self.metrics.tunnels.inc();
        Ok(created)
    }

    /// Every tunnel, oldest first.
    pub fn tunnels(&self) -> Result<Vec<Tunnel>> {
        self.db().tunnels()
    }

    /// A tunnel by ID or name.
    pub fn tunnel(&self, id_or_name: &str) -> Result<Tunnel> {
        self.db().find_tunnel(id_or_name)
    }

    /// A tunnel's secret, for verifying registration proofs.
    pub fn tunnel_secret(&self, tunnel_id: Uuid) -> Result<TunnelSecret> {
        self.db().tunnel_secret(tunnel_id)
    }

    /// Deletes a tunnel and its routes. Refuses while connectors are connected unless `force`,
    /// which also drops their records (the link servers then close their links).
    pub fn delete_tunnel(&self, id_or_name: &str, force: bool) -> Result<Tunnel> {
        let db = self.db();
        let tunnel = db.find_tunnel(id_or_name)?;
        let mut table = self.table();
        let count = table.count(tunnel.id);
        if count > 0 && !force {
            return Err(Error::TunnelHasConnectors {
                name: tunnel.name,
                count,
            });
        }
        db.delete_tunnel(tunnel.id)?;
        table.remove_of_tunnel(tunnel.id, None);
        self.update_connector_gauge(&table);
        self.metrics.tunnels_deleted.inc();
        self.metrics.tunnels.dec();
        self.routes_version.fetch_add(1, Ordering::Release);
        Ok(tunnel)
    }

    /// Removes stale connector records of a tunnel (all, or only `connector`); returns the
    /// removed connector IDs.
    pub fn cleanup(&self, id_or_name: &str, connector: Option<Uuid>) -> Result<Vec<Uuid>> {
        let db = self.db();
        let tunnel = db.find_tunnel(id_or_name)?;
        let mut table = self.table();
        let removed = table.remove_of_tunnel(tunnel.id, connector);
        self.update_connector_gauge(&table);
        Ok(removed)
    }

    /// Routes a hostname (lowercased; `*.example.com` allowed) to a tunnel.
    pub fn route_dns(&self, id_or_name: &str, hostname: &str) -> Result<DnsRoute> {
        let hostname = normalize_hostname(hostname)?;
        let db = self.db();
        let tunnel = db.find_tunnel(id_or_name)?;
        let route = db.add_dns_route(&tunnel, &hostname)?;
        self.routes_version.fetch_add(1, Ordering::Release);
        Ok(route)
    }

    /// Routes a public TCP port (1..=65535) to a tunnel.
    pub fn route_tcp(&self, id_or_name: &str, port: u16) -> Result<TcpRoute> {
        if port == 0 {
            return Err(Error::Invalid("tcp port must be 1 to 65535".into()));
        }
        let db = self.db();
        let tunnel = db.find_tunnel(id_or_name)?;
        let route = db.add_tcp_route(&tunnel, port)?;
        self.routes_version.fetch_add(1, Ordering::Release);
        Ok(route)
    }

    /// Sets (or with `None` clears) a tunnel's load-balancing policy; returns the tunnel. The
    /// workers pick it up with their next route-table refresh.
    pub fn set_lb_policy(&self, id_or_name: &str, policy: Option<LbPolicy>) -> Result<Tunnel> {
        let db = self.db();
        let mut tunnel = db.find_tunnel(id_or_name)?;
        db.set_lb_policy(tunnel.id, policy)?;
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
        self.db().dns_routes()
    }

    /// Every TCP route, by port.
    pub fn tcp_routes(&self) -> Result<Vec<TcpRoute>> {
        self.db().tcp_routes()
    }

    /// Bumped on every route change (route added, tunnel deleted).
    pub fn routes_version(&self) -> u64 {
        self.routes_version.load(Ordering::Acquire)
    }

    /// A snapshot of all routes for the request path.
    pub fn route_table(&self) -> Result<RouteTable> {
        let db = self.db();
        let mut table = RouteTable::default();
        for r in db.dns_routes()? {
            table.add_dns(&r.hostname, r.tunnel_id);
        }
        for r in db.tcp_routes()? {
            table.tcp.insert(r.port, r.tunnel_id);
        }
        for t in db.tunnels()? {
            if let Some(p) = t.lb_policy {
                table.policies.insert(t.id, p);
            }
        }
        Ok(table)
    }

    /// Checks a connector's registration proof for `nonce` against the tunnel's secret (see
    /// [`crate::auth`]). Call it before [`Registry::register_connector`]. An unknown tunnel and
    /// a wrong proof are both refused; the secret never leaves the edge.
    pub fn authenticate(
        &self,
        tunnel_id: Uuid,
        connector_id: Uuid,
        nonce: &crate::auth::Nonce,
        proof: &[u8],
    ) -> Result<()> {
        let secret = match self.tunnel_secret(tunnel_id) {
            Ok(secret) => secret,
            Err(e) => {
                self.metrics.connectors_rejected.inc();
                return Err(e);
            }
        };
        if crate::auth::verify_registration_proof(
            &secret.0,
            nonce,
            tunnel_id.as_bytes(),
            connector_id.as_bytes(),
            proof,
        ) {
            Ok(())
        } else {
            self.metrics.connectors_rejected.inc();
            Err(Error::BadProof(tunnel_id.to_string()))
        }
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
        let db = self.db();
        let tunnel = match db.find_tunnel(&tunnel_id.to_string()) {
            Ok(t) => t,
            Err(e) => {
                self.metrics.connectors_rejected.inc();
                return Err(e);
            }
        };
        let mut table = self.table();
        match table.get(registration.connector_id) {
            Some(c) if c.tunnel_id != tunnel.id => {
                self.metrics.connectors_rejected.inc();
                return Err(Error::ConnectorConflict(
                    registration.connector_id.to_string(),
                ));
            }
            Some(_) => {}
            None if table.count(tunnel.id) >= self.connector_limit => {
                self.metrics.connectors_rejected.inc();
                return Err(Error::ConnectorLimit {
                    tunnel: tunnel.name,
                    limit: self.connector_limit,
                });
            }
            None => {}
        }
        if table.add_link(tunnel.id, registration, link) == Registered::NewConnector {
            self.metrics.connectors_registered.inc();
        }
        self.update_connector_gauge(&table);
        Ok(())
    }

    /// Unregisters one link; the connector goes away with its last link. Returns whether the
    /// connector went away.
    pub fn unregister_link(&self, connector_id: Uuid, link_index: u8) -> bool {
        let mut table = self.table();
        let gone = table.remove_link(connector_id, link_index);
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
