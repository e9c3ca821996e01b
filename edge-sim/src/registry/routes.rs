//! The registry's routes: hostnames and public TCP ports routed to tunnels, and the route table
//! snapshot the data plane works from.

use std::sync::Weak;

use super::types::{DnsRoute, RouteChange, TcpPorts, TcpRoute};
use super::{Registry, RouteTable, normalize_hostname};
use crate::error::{Error, Result};

impl Registry {
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

    pub(super) fn close_tcp_port(&self, port: u16) {
        if let Some(ports) = self.tcp_ports.get().and_then(Weak::upgrade) {
            ports.close(port);
        }
    }

    /// Connects the data plane's TCP-route listeners (see [`TcpPorts`]); the first call wins.
    pub fn set_tcp_ports(&self, ports: Weak<dyn TcpPorts>) {
        let _ = self.tcp_ports.set(ports);
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
