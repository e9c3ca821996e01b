//! The registry's tunnels: created with their secret, listed, deleted (with their routes, and
//! with `force` their connectors' links), and their load-balancing policies; and the hook that
//! revokes, on this node, the links of a tunnel another node deleted.

use std::sync::{Arc, Mutex};

use time::OffsetDateTime;
use uuid::Uuid;

use super::connectors::ConnectorTable;
use super::types::{Tunnel, TunnelSecret};
use super::{Registry, storage, validate_tunnel_name};
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::settings::LbPolicy;

impl Registry {
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
        let secret = crate::registry::new_secret();
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

    /// Sets (or with `None` clears) a tunnel's load-balancing policy; returns the tunnel. The
    /// workers pick it up with their next route-table refresh.
    pub fn set_lb_policy(&self, id_or_name: &str, policy: Option<LbPolicy>) -> Result<Tunnel> {
        let _writes = self.writes();
        let mut tunnel = self.find(id_or_name)?;
        self.storage.set_lb_policy(&tunnel, policy)?;
        tunnel.lb_policy = policy;
        Ok(tunnel)
    }
}

/// The hook that closes, on this node, the links of a tunnel that another node deleted: its
/// credentials stop working everywhere, as they do on the node that deleted it.
pub(super) fn revoke_deleted_tunnels(
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
