//! The in-memory view of the persistent registry: tunnels (with the secrets that registration
//! proofs are checked against) and routes.
//!
//! Every read of tunnels and routes is served from here, so a link registration or a route-table
//! refresh on a data-plane worker never waits on the store (SQLite or etcd, see
//! [`super::storage`]). A change goes into a new copy of the view, which replaces the old one in
//! one step (copy on write: readers hold an `Arc` of a complete view and never see half a
//! change). Adding a record whose key is already there replaces it, so a change applied twice
//! is applied once.
use uuid::Uuid;

use super::route_table::RouteTable;
use super::types::{DnsRoute, TcpRoute, Tunnel, TunnelSecret};
use crate::settings::LbPolicy;

/// Tunnels (oldest first), DNS routes (by hostname) and TCP routes (by port), as stored.
#[derive(Debug, Clone, Default)]
pub(crate) struct View {
    tunnels: Vec<(Tunnel, TunnelSecret)>,
    dns: Vec<DnsRoute>,
    tcp: Vec<TcpRoute>,
}

impl View {
    /// A view of these records (in any order). A route whose tunnel is not among `tunnels` is
    /// left out, as a join in the database would: with a shared store, a route written by one
    /// node while another deleted its tunnel must not route to nothing.
    pub(crate) fn new(
        tunnels: Vec<(Tunnel, TunnelSecret)>,
        dns: Vec<DnsRoute>,
        tcp: Vec<TcpRoute>,
    ) -> View {
        let mut view = View::default();
        for (t, s) in tunnels {
            view.add_tunnel(t, s);
        }
        for r in dns {
            if view.secret(r.tunnel_id).is_some() {
                view.add_dns(r);
            }
        }
        for r in tcp {
            if view.secret(r.tunnel_id).is_some() {
                view.add_tcp(r);
            }
        }
        view
    }

    pub(crate) fn tunnels(&self) -> Vec<Tunnel> {
        self.tunnels.iter().map(|(t, _)| t.clone()).collect()
    }

    pub(crate) fn tunnel_count(&self) -> usize {
        self.tunnels.len()
    }

    /// A tunnel by ID or, failing that, by name .
    pub(crate) fn find(&self, id_or_name: &str) -> Option<&Tunnel> {
        let by_id = Uuid::parse_str(id_or_name)
            .ok()
            .and_then(|id| self.tunnels.iter().find(|(t, _)| t.id == id));
        by_id
            .or_else(|| self.tunnels.iter().find(|(t, _)| t.name == id_or_name))
            .map(|(t, _)| t)
    }

    pub(crate) fn secret(&self, id: Uuid) -> Option<&TunnelSecret> {
        self.tunnels
            .iter()
            .find(|(t, _)| t.id == id)
            .map(|(_, s)| s)
    }

    pub(crate) fn dns_routes(&self) -> &[DnsRoute] {
        &self.dns
    }

    pub(crate) fn tcp_routes(&self) -> &[TcpRoute] {
        &self.tcp
    }

    pub(crate) fn add_tunnel(&mut self, tunnel: Tunnel, secret: TunnelSecret) {
        self.tunnels.retain(|(t, _)| t.id != tunnel.id);
        self.tunnels.push((tunnel, secret));
        self.tunnels
            .sort_by(|(a, _), (b, _)| a.created.cmp(&b.created).then(a.name.cmp(&b.name)));
    }

    /// Removes a tunnel and its routes (the database cascades the same way).
    pub(crate) fn remove_tunnel(&mut self, id: Uuid) {
        self.tunnels.retain(|(t, _)| t.id != id);
        self.dns.retain(|r| r.tunnel_id != id);
        self.tcp.retain(|r| r.tunnel_id != id);
    }

    pub(crate) fn add_dns(&mut self, route: DnsRoute) {
        self.dns.retain(|r| r.hostname != route.hostname);
        self.dns.push(route);
        self.dns.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    }

    pub(crate) fn remove_dns(&mut self, hostname: &str) {
        self.dns.retain(|r| r.hostname != hostname);
    }

    pub(crate) fn remove_tcp(&mut self, port: u16) {
        self.tcp.retain(|r| r.port != port);
    }

    pub(crate) fn add_tcp(&mut self, route: TcpRoute) {
        self.tcp.retain(|r| r.port != route.port);
        self.tcp.push(route);
        self.tcp.sort_by_key(|r| r.port);
    }

    pub(crate) fn set_policy(&mut self, id: Uuid, policy: Option<LbPolicy>) {
        for (t, _) in &mut self.tunnels {
            if t.id == id {
                t.lb_policy = policy;
            }
        }
    }

    /// The request path's snapshot.
    pub(crate) fn route_table(&self) -> RouteTable {
        let mut table = RouteTable::default();
        for r in &self.dns {
            table.add_dns(&r.hostname, r.tunnel_id);
        }
        for r in &self.tcp {
            table.tcp.insert(r.port, r.tunnel_id);
        }
        for (t, _) in &self.tunnels {
            if let Some(p) = t.lb_policy {
                table.policies.insert(t.id, p);
            }
        }
        table
    }
}
