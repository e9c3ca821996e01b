//! The `--metrics ADDR` server: `/ready`, `/healthcheck` and `/metrics` for orchestrators and
//! Prometheus, without the admin token.
//!
//! Like the admin API it runs on its own std thread with `tiny_http`, off the data-plane
//! workers: probes and scrapes come now and then, and must answer even when the workers are
//! busy.
//!
//! | route | answer |
//! |---|---|
//! | `GET /ready` | `200 {"status":200,"ready":true}` once every listener is bound and serving; `503` before that and while shutting down |
//! | `GET /healthcheck` | `200 OK` while the process runs |
//! | `GET /metrics` | the same Prometheus text as the admin API's `/metrics` |
use crate::admin::ServerThread;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::Result;
use crate::registry::Registry;

/// A running metrics server; stops when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
    thread: ServerThread,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Binds `addr` and serves on a new thread; `/ready` says 503 until [`MetricsServer::set_ready`].
    pub fn start(addr: SocketAddr, registry: Arc<Registry>) -> Result<MetricsServer> {
        let ready = Arc::new(AtomicBool::new(false));
        let (thread, local) = {
            let ready = Arc::clone(&ready);
            ServerThread::start("metrics server", "metrics", addr, move |server| {
                serve(server, &registry, &ready)
            })?
        };
        Ok(MetricsServer {
            addr: local,
            ready,
            thread,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets what `/ready` answers.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// What `/ready` answers now.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Stops accepting and joins the thread.
    pub fn stop(mut self) {
        self.thread.stop();
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

fn serve(server: &tiny_http::Server, registry: &Registry, ready: &AtomicBool) {
    for request in server.incoming_requests() {
        let (status, content_type, body) = route(
            request.method().as_str(),
            request.url(),
            registry,
            ready.load(Ordering::Acquire),
        );
        let mut response = tiny_http::Response::from_string(body).with_status_code(status);
        if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", content_type) {
            response = response.with_header(h);
        }
        if let Err(e) = request.respond(response) {
            tracing::debug!(error = %e, "metrics server: cannot send response");
        }
    }
}
