//! The admin API: HTTP/1.1 + JSON on loopback, bearer-token protected.
//!
//! It runs on its own std thread with `tiny_http`: the admin API is control plane (a CLI call
//! now and then), so a small synchronous server keeps it off the io_uring workers and out of the
//! data path's way. Routes live in [`handler`], free of IO.
//!
//! | route | success | body |
//! |---|---|---|
//! | `POST /tunnels` `{"name"}` | 201 | `{id, name, created, secret}` (secret: base64, only here) |
//! | `GET /tunnels` | 200 | `[{id, name, created, connectors, connections}]` |
//! | `GET /tunnels/{id-or-name}` | 200 | `{id, name, created, connections, connectors: [connector]}` |
//! | `DELETE /tunnels/{id-or-name}[?force=true]` | 200 | `{id, name, deleted: true}` |
//! | `POST /tunnels/{id-or-name}/cleanup[?connector_id=]` | 200 | `{id, name, removed_connectors}` |
//! | `GET /tunnels/{id-or-name}/connectors` | 200 | `[connector]` |
//! | `PUT /tunnels/{id-or-name}/lb` `{"policy": name or null}` | 200 | tunnel (with `lb_policy`) |
//! | `POST /routes/dns` `{"tunnel","hostname"}` | 201 | `{hostname, tunnel_id, tunnel_name}` |
//! | `POST /routes/tcp` `{"tunnel","port"}` | 201 | `{port, tunnel_id, tunnel_name}` |
//! | `GET /routes` | 200 | `{dns: [..], tcp: [..]}` |
//! | `GET /discovery` | 200 | `{data_centers: [{name, servers}], ca_pem}` (no token; bound addresses) |
//! | `GET /metrics` | 200 | Prometheus text |
//! | `POST /faults/servers/{ip:port}/down\|up` | 200 | `{servers, data_centers}` (404: unknown server) |
//! | `POST /faults/data-centers/{name}/down\|up` | 200 | `{servers, data_centers}` (404: unknown data center) |
//! | `GET /faults` | 200 | `{servers: ["127.0.1.1:7844"], data_centers: ["dfw"]}` |
//!
//! A connector is `{id, tunnel_id, created, arch, version, origin_ip, links: [{index,
//! data_center, server}], draining, edge, label, weight, standby, state, active_streams,
//! requests}` with `edge` like `2xdfw, 2xmci` and `state` `ready` or `draining`; a tunnel has
//! `lb_policy` (`p2c`, `round-robin`, `random`, `same-dc-first` or `null`). Errors are
//! `{"error": "..."}` with 400 (bad input), 401 (token), 404, 405, 409 (conflict) or 500.
pub mod handler;

use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

pub use handler::{AdminContext, Reply, handle};

use crate::error::{Error, Result};

/// Largest request body the admin API reads.
const MAX_BODY: u64 = 64 * 1024;

/// A running admin API server; stops when dropped.
pub struct AdminServer {
    addr: SocketAddr,
    thread: ServerThread,
}

/// A tiny_http server answering on a thread of its own (the admin API, the metrics server):
/// binds `addr` with a clear error, and stopping or dropping it unblocks the server and joins
/// the thread.
pub(crate) struct ServerThread {
    what: &'static str,
    server: Arc<tiny_http::Server>,
    thread: Option<JoinHandle<()>>,
}

impl ServerThread {
    /// Binds `addr` and runs `serve` on a thread named `name`; returns the bound address too.
    pub(crate) fn start(
        what: &'static str,
        name: &str,
        addr: SocketAddr,
        serve: impl FnOnce(&tiny_http::Server) + Send + 'static,
    ) -> Result<(ServerThread, SocketAddr)> {
        let bind_err = |reason: String| Error::Bind { what, addr, reason };
        let listener = bind(what, addr)?;
        let local = listener.local_addr().map_err(|e| bind_err(e.to_string()))?;
        let server = Arc::new(
            tiny_http::Server::from_listener(listener, None)
                .map_err(|e| bind_err(e.to_string()))?,
        );
        let thread = {
            let server = Arc::clone(&server);
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || serve(&server))
                .map_err(|e| bind_err(format!("cannot start its thread: {e}")))?
        };
        let t = ServerThread {
            what,
            server,
            thread: Some(thread),
        };
        Ok((t, local))
    }

    /// Stops accepting and joins the thread (again: nothing).
    pub(crate) fn stop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!(server = self.what, "server thread panicked");
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        self.stop();
    }
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

impl std::fmt::Debug for AdminServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl AdminServer {
    /// Binds `addr` and serves the admin API on a new thread.
    pub fn start(addr: SocketAddr, ctx: AdminContext) -> Result<AdminServer> {
        let (thread, local) = ServerThread::start("admin API", "admin-api", addr, move |server| {
            serve(server, &ctx)
        })?;
        Ok(AdminServer {
            addr: local,
            thread,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and joins the thread.
    pub fn stop(mut self) {
        self.thread.stop();
    }
}

fn serve(server: &tiny_http::Server, ctx: &AdminContext) {
    for mut request in server.incoming_requests() {
        let method = request.method().as_str().to_owned();
        let url = request.url().to_owned();
        let authorization = request
            .headers()
            .iter()
            .find(|h| h.field.equiv("Authorization"))
            .map(|h| h.value.as_str().to_owned());
        let mut body = Vec::new();
        let reply = match request
            .as_reader()
            .take(MAX_BODY + 1)
            .read_to_end(&mut body)
        {
            Ok(_) if body.len() as u64 > MAX_BODY => Reply {
                status: 413,
                content_type: "application/json",
                body: r#"{"error":"request body over 64 KiB"}"#.to_owned(),
            },
            Ok(_) => handle(ctx, &method, &url, authorization.as_deref(), &body),
            Err(e) => {
                tracing::debug!(error = %e, "admin API: cannot read request body");
                continue;
            }
        };
        ctx.registry.metrics().admin_request(&method, reply.status);
        tracing::debug!(%method, %url, status = reply.status, "admin request");
        let mut response =
            tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
        if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", reply.content_type) {
            response = response.with_header(h);
        }
        if reply.status == 401
            && let Ok(h) = tiny_http::Header::from_bytes("WWW-Authenticate", "Bearer")
        {
            response = response.with_header(h);
        }
        if let Err(e) = request.respond(response) {
            tracing::debug!(error = %e, "admin API: cannot send response");
        }
    }
}
