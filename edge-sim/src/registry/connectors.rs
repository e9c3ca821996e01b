//! The ephemeral half of the registry: connected connectors, in memory.
//!
//! A record exists only with a live link: a link's record is added when its server registers
//! it (with the signals that server waits on) and removed when that server unregisters it, and
//! a connector's record goes with its last link. Nothing here is stored, so a node that dies,
//! even by `kill -9`, leaves no record behind: with SQLite the table dies with the process;
//! with etcd this node's links are announced only as presence under its lease, which etcd
//! drops after the lease's TTL (and at once on a graceful stop).
use std::collections::HashMap;

use ringtun_core::rt::Shutdown;
use time::OffsetDateTime;
use uuid::Uuid;

use super::types::{Connector, ConnectorRegistration, LinkInfo};

/// Connectors by ID, with what their live links need: the link count each connector declared
/// at its first link, and per link index the live link's ID and its signals.
#[derive(Debug, Default)]
pub(crate) struct ConnectorTable {
    by_id: HashMap<Uuid, Connector>,
    declared: HashMap<Uuid, u8>,
    live: HashMap<(Uuid, u8), LiveLink>,
}

/// A live link's record: its ID and the signals its link server waits on.
#[derive(Debug)]
pub(crate) struct LiveLink {
    pub(crate) id: u64,
    /// A newer link of the same connector took the index: drain this one.
    pub(crate) replaced: Shutdown,
    /// The tunnel was deleted or the connector cleaned up: close the link at once.
    pub(crate) revoked: Shutdown,
}

/// What registering a link did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Registered {
    /// A new connector (its first link).
    NewConnector,
    /// Another link of a known connector.
    NewLink,
}

impl ConnectorTable {
    pub(crate) fn count(&self, tunnel: Uuid) -> usize {
        self.by_id
            .values()
            .filter(|c| c.tunnel_id == tunnel)
            .count()
    }

    /// Whether `tunnel` has a connector that is not in `exclude`.
    pub(crate) fn any_besides(&self, tunnel: Uuid, exclude: &[Uuid]) -> bool {
        self.by_id
            .values()
            .any(|c| c.tunnel_id == tunnel && !exclude.contains(&c.id))
    }

    pub(crate) fn total(&self) -> usize {
        self.by_id.len()
    }

    pub(crate) fn get(&self, id: Uuid) -> Option<&Connector> {
        self.by_id.get(&id)
    }

    pub(crate) fn of_tunnel(&self, tunnel: Uuid) -> Vec<Connector> {
        let mut list: Vec<_> = self
            .by_id
            .values()
            .filter(|c| c.tunnel_id == tunnel)
            .cloned()
            .collect();
        list.sort_by(|a, b| a.created.cmp(&b.created).then(a.id.cmp(&b.id)));
        list
    }

    /// Adds a link; the caller has checked the tunnel and, for a new connector, the limit.
    pub(crate) fn add_link(
        &mut self,
        tunnel: Uuid,
        reg: ConnectorRegistration,
        link: LinkInfo,
    ) -> Registered {
        match self.by_id.get_mut(&reg.connector_id) {
            Some(c) => {
                // A link that reconnects under the same index replaces its old record.
                c.links.retain(|l| l.index != link.index);
                c.links.push(link);
                c.links.sort_by_key(|l| l.index);
                Registered::NewLink
            }
            None => {
                let now = OffsetDateTime::now_utc();
                self.by_id.insert(
                    reg.connector_id,
                    Connector {
                        id: reg.connector_id,
                        tunnel_id: tunnel,
                        created: now.replace_nanosecond(0).unwrap_or(now),
                        arch: reg.arch,
                        version: reg.version,
                        origin_ip: reg.origin_ip,
                        links: vec![link],
                        draining: false,
                        label: reg.label,
                        weight: reg.weight.max(1),
                        standby: reg.standby,
                        active_streams: 0,
                        requests: 0,
                    },
                );
                Registered::NewConnector
            }
        }
    }

    /// The link count the connector declared at its first link, if it is known.
    pub(crate) fn declared_links(&self, connector: Uuid) -> Option<u8> {
        self.declared.get(&connector).copied()
    }

    pub(crate) fn set_declared_links(&mut self, connector: Uuid, n: u8) {
        self.declared.insert(connector, n);
    }

    /// Makes `link` the live one at `index`; returns the "replaced" signal of the link it
    /// replaces.
    pub(crate) fn set_live_link(
        &mut self,
        connector: Uuid,
        index: u8,
        link: LiveLink,
    ) -> Option<Shutdown> {
        self.live
            .insert((connector, index), link)
            .map(|old| old.replaced)
    }

    /// Closes every live link of the connector (their link servers close them at once and
    /// then unregister them, which removes the record with the last one).
    pub(crate) fn revoke(&self, connector: Uuid) {
        for ((c, _), link) in &self.live {
            if *c == connector {
                link.revoked.trigger();
            }
        }
    }

    /// Removes link `index` if it is still link `id`; returns whether the connector is gone.
    pub(crate) fn remove_live_link(&mut self, connector: Uuid, index: u8, id: u64) -> bool {
        match self.live.get(&(connector, index)) {
            Some(live) if live.id == id => self.remove_link(connector, index),
            _ => false,
        }
    }

    /// Removes one link; returns whether the connector is gone (it had no other link).
    pub(crate) fn remove_link(&mut self, connector: Uuid, index: u8) -> bool {
        let Some(c) = self.by_id.get_mut(&connector) else {
            return false;
        };
        c.links.retain(|l| l.index != index);
        self.live.remove(&(connector, index));
        if c.links.is_empty() {
            self.forget(connector);
            true
        } else {
            false
        }
    }

    fn forget(&mut self, connector: Uuid) {
        self.by_id.remove(&connector);
        self.declared.remove(&connector);
        self.live.retain(|(c, _), _| *c != connector);
    }

    pub(crate) fn set_draining(&mut self, connector: Uuid) -> bool {
        match self.by_id.get_mut(&connector) {
            Some(c) => {
                c.draining = true;
                true
            }
            None => false,
        }
    }

    /// Every link record here, as presence announces them: (tunnel, `{connector}.{index}`) →
    /// JSON [`crate::cluster::LinkRecord`].
    pub(crate) fn presence_links(&self) -> std::collections::BTreeMap<(Uuid, String), String> {
        let mut out = std::collections::BTreeMap::new();
        for c in self.by_id.values() {
            let created = c
                .created
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default();
            for l in &c.links {
                let record = crate::cluster::LinkRecord {
                    data_center: l.data_center.clone(),
                    server: l.server.to_string(),
                    created: created.clone(),
                    arch: c.arch.clone(),
                    version: c.version.clone(),
                    origin_ip: c.origin_ip.to_string(),
                    label: c.label.clone(),
                    weight: c.weight,
                    standby: c.standby,
                };
                let Ok(value) = serde_json::to_string(&record) else {
                    continue;
                };
                out.insert((c.tunnel_id, format!("{}.{}", c.id, l.index)), value);
            }
        }
        out
    }

    /// The tunnels that have connectors here.
    pub(crate) fn tunnels(&self) -> std::collections::HashSet<Uuid> {
        self.by_id.values().map(|c| c.tunnel_id).collect()
    }

    /// The tunnel's connectors (all, or the one given), oldest first.
    pub(crate) fn ids_of_tunnel(&self, tunnel: Uuid, only: Option<Uuid>) -> Vec<Uuid> {
        self.of_tunnel(tunnel)
            .into_iter()
            .filter(|c| only.is_none_or(|id| id == c.id))
            .map(|c| c.id)
            .collect()
    }

    /// Removes a connector's record (its links, if any, are revoked first by the caller).
    pub(crate) fn remove(&mut self, connector: Uuid) {
        self.forget(connector);
    }
}
