//! The `--metrics ADDR` server: `/ready`, `/healthcheck` and `/metrics` for orchestrators and
//! Prometheus, without the admin token.
//!
//! Like the admin API it runs on std threads of its own (`ringtun_core::control`'s
//! [`HttpServer`], with the same [`Limits`]), off the data-plane workers: probes and scrapes come now and then, and must
//! answer even when the workers are busy, or when another client stalls.
//!
//! | route | answer |
//! |---|---|
//! | `GET /ready` | `200 {"status":200,"ready":true}` once every listener is bound and serving; `503` before that and while shutting down |
//! | `GET /healthcheck` | `200 OK` while the process runs |
//! | `GET /metrics` | the same Prometheus text as the admin API's `/metrics` |
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ringtun_core::control::{Head, HttpServer, Limits, Rejection, Reply, Service};

use crate::error::Result;
use crate::registry::Registry;

/// A running metrics server; stops when dropped.
pub struct EdgeMetricsServer {
    ready: Arc<AtomicBool>,
    server: HttpServer,
}

impl std::fmt::Debug for EdgeMetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeMetricsServer")
            .field("addr", &self.local_addr())
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl EdgeMetricsServer {
    /// Binds `addr` and serves under the default [`Limits`]; `/ready` says 503 until
    /// [`EdgeMetricsServer::set_ready`].
    pub fn start(addr: SocketAddr, registry: Arc<Registry>) -> Result<EdgeMetricsServer> {
        EdgeMetricsServer::start_with_limits(addr, Limits::default(), registry)
    }

    /// [`EdgeMetricsServer::start`] under `limits`.
    pub fn start_with_limits(
        addr: SocketAddr,
        limits: Limits,
        registry: Arc<Registry>,
    ) -> Result<EdgeMetricsServer> {
        let ready = Arc::new(AtomicBool::new(false));
        let service = Probes {
            registry,
            ready: Arc::clone(&ready),
        };
        let server =
            crate::admin::start_server("metrics server", "metrics", addr, limits, service)?;
        Ok(EdgeMetricsServer { ready, server })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Sets what `/ready` answers.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// What `/ready` answers now.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Stops accepting and closes the listener.
    pub fn stop(mut self) {
        self.server.stop();
    }
}

/// One answer: status, content type, body.
fn route(method: &str, url: &str, registry: &Registry, ready: bool) -> (u16, &'static str, String) {
    const JSON: &str = "application/json";
    const TEXT: &str = "text/plain; charset=utf-8";
    let path = url.split_once('?').map_or(url, |(p, _)| p);
    if method != "GET" && method != "HEAD" {
        return (405, TEXT, format!("method {method} not allowed\n"));
    }
    match path {
        "/ready" => {
            let status = if ready { 200 } else { 503 };
            (
                status,
                JSON,
                format!(r#"{{"status":{status},"ready":{ready}}}"#),
            )
        }
        "/healthcheck" => (200, TEXT, "OK\n".to_owned()),
        "/metrics" => (
            200,
            crate::metrics::CONTENT_TYPE,
            crate::metrics::scrape(registry),
        ),
        _ => (
            404,
            TEXT,
            format!("no such route {path}; try /ready, /healthcheck or /metrics\n"),
        ),
    }
}

/// The probe routes as a [`Service`]: no token, no body.
struct Probes {
    registry: Arc<Registry>,
    ready: Arc<AtomicBool>,
}

impl Service for Probes {
    fn before_body(&self, _head: &Head) -> Option<Reply> {
        None
    }

    fn serve(&self, head: &Head, _body: &[u8]) -> Reply {
        let ready = self.ready.load(Ordering::Acquire);
        let (status, content_type, body) = route(&head.method, &head.target, &self.registry, ready);
        Reply {
            status,
            content_type,
            body,
        }
    }

    fn rejected(&self, reason: Rejection) {
        self.registry
            .metrics()
            .control_rejected("metrics", reason.as_str());
    }
}
