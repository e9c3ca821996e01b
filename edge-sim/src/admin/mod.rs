//! The admin API: HTTP/1.1 + JSON on loopback, bearer-token protected.
//!
//! It runs on std threads of its own ([`HttpServer`] of `ringtun_core::control`, shared with
//! both binaries' `--metrics` servers): the admin API is control plane (a CLI call now and then), so a small synchronous
//! server keeps it off the io_uring workers and out of the data path's way. Routes live in
//! [`handler`], free of IO. The token is checked on the head, before any body is read
//! ([`handler::check_token`]); every connection has read and write deadlines and the server a
//! connection cap ([`Limits`]), so a stalled or slow client holds only its own
//! connection.
//!
//! | route | success | body |
//! |---|---|---|
//! | `POST /tunnels` `{"name"}` | 201 | `{id, name, created, secret}` (secret: base64, only here) |
//! | `GET /tunnels` | 200 | `[{id, name, created, connectors, connections}]` |
//! | `GET /tunnels/{id-or-name}` | 200 | `{id, name, created, connections, connectors: [connector]}` |
//! | `DELETE /tunnels/{id-or-name}[?force=true]` | 200 | `{id, name, deleted: true}` (with force, the tunnel's links are closed at once) |
//! | `POST /tunnels/{id-or-name}/cleanup[?connector_id=][&disconnect=true]` | 200 | `{id, name, removed_connectors, disconnected_connectors, kept_connectors}` (lists of connector IDs: connectors are kept, or with `disconnect` have their links closed; `removed_connectors` is always empty, as every record has a live link) |
//! | `GET /tunnels/{id-or-name}/connectors` | 200 | `[connector]` |
//! | `PUT /tunnels/{id-or-name}/lb` `{"policy": name or null}` | 200 | tunnel (with `lb_policy`) |
//! | `POST /routes/dns` `{"tunnel","hostname"[,"overwrite"]}` | 201 (new), 200 (`existed` or `replaced`) | `{hostname, tunnel_id, tunnel_name, existed, replaced}` (409: routed to another tunnel without `overwrite`) |
//! | `POST /routes/tcp` `{"tunnel","port"}` | 201 (new), 200 (`existed`) | `{port, tunnel_id, tunnel_name, existed, replaced}` (409: routed to another tunnel, or the edge cannot listen on the port) |
//! | `DELETE /routes/dns/{hostname}` | 200 | the removed route (404: none) |
//! | `DELETE /routes/tcp/{port}` | 200 | the removed route; the port stops listening (404: none) |
//! | `GET /routes` | 200 | `{dns: [..], tcp: [..]}` |
//! | `GET /discovery` | 200 | `{data_centers: [{name, servers}], ca_pem}` (no token; bound addresses); with `--etcd` every live node's, plus `node`, `nodes` and per data center `nodes: [{id, servers}]` (see `discovery`) |
//! | `GET /metrics` | 200 | Prometheus text |
//! | `POST /faults/servers/{ip:port}/down\|up` | 200 | `{servers, data_centers}` (404: unknown server) |
//! | `POST /faults/data-centers/{name}/down\|up` | 200 | `{servers, data_centers}` (404: unknown data center) |
//! | `GET /faults` | 200 | `{servers: ["127.0.1.1:7844"], data_centers: ["dfw"]}` |
//!
//! A connector is `{id, tunnel_id, created, arch, version, origin_ip, links: [{index,
//! data_center, server[, node]}], draining, edge, label, weight, standby, state, active_streams,
//! requests}` with `edge` like `2xdfw, 2xmci` and `state` `ready` or `draining`; a tunnel has
//! `lb_policy` (`p2c`, `round-robin`, `random`, `same-dc-first` or `null`). Errors are
//! `{"error": "..."}` with 400 (bad input), 401 (token), 404, 405, 409 (conflict) or 500, 503
//! when the registry's store cannot answer in time (a database locked by another process; with
//! `--etcd`, an unreachable etcd or a lost quorum: reads still answer, from the last view), and
//! from the server at a limit ([`Limits`]) 408, 413, 431 or 503.
mod connectors;
mod discovery;
pub mod handler;
mod status;

use std::net::{SocketAddr, TcpListener};

pub(crate) use discovery::record_data_centers;
pub use handler::{AdminContext, Reply, handle};
pub use ringtun_core::control::Limits;
use ringtun_core::control::{Head, HttpServer, Rejection, Service};
pub use status::status_of;

use crate::error::{Error, Result};

/// A running admin API server; stops when dropped.
pub struct AdminServer {
    server: HttpServer,
}

/// Binds a TCP listener with a clear error ("admin API: cannot bind ...: address in use").
pub fn bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener> {
    TcpListener::bind(addr).map_err(|e| Error::Bind {
        what,
        addr,
        reason: match e.kind() {
            std::io::ErrorKind::AddrInUse => "address in use".to_owned(),
            std::io::ErrorKind::AddrNotAvailable => "address not available".to_owned(),
            std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
            _ => e.to_string(),
        },
    })
}

/// Binds `addr` (errors worded by [`bind`]) and serves `service` there under `limits`.
pub(crate) fn start_server(
    what: &'static str,
    server: &'static str,
    addr: SocketAddr,
    limits: Limits,
    service: impl Service,
) -> Result<HttpServer> {
    HttpServer::start(bind(what, addr)?, server, limits, service).map_err(|e| Error::Bind {
        what,
        addr,
        reason: format!("cannot start its thread: {e}"),
    })
}

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl AdminServer {
    /// Binds `addr` and serves the admin API under `limits` on threads of its own.
    pub fn start(addr: SocketAddr, limits: Limits, ctx: AdminContext) -> Result<AdminServer> {
        let server = start_server("admin API", "admin", addr, limits, Admin(ctx))?;
        Ok(AdminServer { server })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Stops accepting and closes the listener.
    pub fn stop(mut self) {
        self.server.stop();
    }
}

/// The admin routes as a [`Service`]: the token on the head, then [`handle`].
struct Admin(AdminContext);

impl Service for Admin {
    fn before_body(&self, head: &Head) -> Option<Reply> {
        handler::check_token(
            &self.0,
            &head.method,
            &head.target,
            head.authorization.as_deref(),
        )
    }

    fn serve(&self, head: &Head, body: &[u8]) -> Reply {
        handle(
            &self.0,
            &head.method,
            &head.target,
            head.authorization.as_deref(),
            body,
        )
    }

    fn answered(&self, head: &Head, status: u16) {
        self.0
            .registry
            .metrics()
            .admin_request(&head.method, status);
        tracing::debug!(method = %head.method, url = %head.target, status, "admin request");
    }

    fn rejected(&self, reason: Rejection) {
        self.0
            .registry
            .metrics()
            .control_rejected("admin", reason.as_str());
    }
}
