//! The registry's connector half: link registration, the per-tunnel connector limit, cleanup
//! and the live counters joined in when a connector is read (see [`super::connectors`]).
//!
//! Connector records are in memory on the node that holds their links; nothing here waits on
//! the store: a tunnel and its secret come from the store's in-memory view.
use std::sync::atomic::Ordering;
use std::sync::{MutexGuard, Weak};

use uuid::Uuid;

use super::connectors::{ConnectorTable, LiveLink, Registered};
use super::types::{Cleanup, Connector, ConnectorRegistration, LinkInfo, LiveLoads};
use super::{LinkSlot, MAX_LINKS_PER_CONNECTOR, Registry};
use crate::error::{Error, Result};

impl Registry {
    pub(super) fn table(&self) -> MutexGuard<'_, ConnectorTable> {
        self.connectors.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After every change to the connector table: the gauge, and (with etcd) this node's
    /// links for presence.
    pub(super) fn update_connector_gauge(&self, table: &ConnectorTable) {
        self.metrics
            .connectors
            .set(i64::try_from(table.total()).unwrap_or(i64::MAX));
        self.storage.links_changed(table);
    }

    /// Cleans a tunnel's connectors up (all, or only `connector`): a connector is kept, or with
    /// `disconnect` has its links closed at once (its record goes with its last link, so the
    /// connector limit holds throughout; the connector may reconnect, as it would after a
    /// network failure). Every record here has a live link: a link's server unregisters it when
    /// the link ends, and the record goes with its last link, so there is no stale record to
    /// remove (a node that dies takes its records with it; see the module doc of
    /// `connectors.rs`).
    pub fn cleanup(
        &self,
        id_or_name: &str,
        connector: Option<Uuid>,
        disconnect: bool,
    ) -> Result<Cleanup> {
        let tunnel = self.find(id_or_name)?;
        let table = self.table();
        let mut done = Cleanup::default();
        for id in table.ids_of_tunnel(tunnel.id, connector) {
            if disconnect {
                table.revoke(id);
                done.disconnected.push(id);
            } else {
                done.kept.push(id);
            }
        }
        self.update_connector_gauge(&table);
        Ok(done)
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

    /// Registers one live link of a connector (the first link registers the connector).
    /// Enforces the per-tunnel connector limit: over it, the error's message is meant for the
    /// connector, e.g. `tunnel web has reached its limit of 100 connectors`. The caller has
    /// verified the registration proof. Also enforces the connector's link bound
    /// (`slot.ha_connections`, at most [`MAX_LINKS_PER_CONNECTOR`]; a link index must be below
    /// it and below the count the connector's first link declared) and, when the index
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
        let link = LiveLink {
            id,
            replaced: slot.replaced,
            revoked: slot.revoked,
        };
        if let Some(old) = table.set_live_link(connector, index, link) {
            old.trigger();
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

    /// Whether a tunnel has a connector that is not in `exclude` (admitted, whether or not its
    /// links are live on a worker yet).
    pub fn has_connector_besides(&self, tunnel_id: Uuid, exclude: &[Uuid]) -> bool {
        self.table().any_besides(tunnel_id, exclude)
    }
}
