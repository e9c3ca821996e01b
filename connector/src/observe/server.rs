//! The metrics server behind `--metrics ADDR`: `GET /ready`, `GET /healthcheck` and
//! `GET /metrics`, answering from the shared [`Observer`] on `ringtun_core::control`'s
//! [`HttpServer`] (std threads, off the io_uring workers; the edge's admin API and metrics
//! server run on the same one). A client has [`Limits`] (flags `--metrics-timeout`,
//! `--metrics-max-connections`, `--metrics-max-head-bytes`, `--metrics-max-body-bytes`); one
//! that hits them is answered 408, 413, 431 or 503 and counted in
//! `ringtun_metrics_rejected_total{reason}`.
//!
//! `/ready` answers `200` with
//! `{"status":200,"readyConnections":N,"connectorId":"..","draining":false}` while at least one
//! link is registered and the drain has not started, else the same body with `503`.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use ringtun_core::control::{Head, HttpServer, Limits, Rejection, Reply, Service};

use super::Observer;
use crate::error::{Error, Result};

/// A running metrics server; stops when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    server: HttpServer,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl MetricsServer {
    /// Binds `addr` (`host:port`, port 0 allowed), logs
    /// `metrics server listening metrics=IP:PORT` and serves under `limits` on threads of its
    /// own.
    pub fn start(addr: &str, limits: Limits, observer: Arc<Observer>) -> Result<MetricsServer> {
        let fail = |source: crate::error::Cause| Error::MetricsServer {
            addr: addr.to_owned(),
            source,
        };
        let listener = TcpListener::bind(addr).map_err(|e| fail(e.into()))?;
        let local = listener.local_addr().map_err(|e| fail(e.into()))?;
        let server = HttpServer::start(listener, "metrics", limits, Probes(observer))
            .map_err(|e| fail(format!("cannot start its thread: {e}").into()))?;
        tracing::info!(metrics = %local, "metrics server listening");
        Ok(MetricsServer {
            addr: local,
            server,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.stop();
    }
}

/// The probe routes as a [`Service`]: no token, no body.
struct Probes(Arc<Observer>);

impl Service for Probes {
    fn before_body(&self, _head: &Head) -> Option<Reply> {
        None
    }

    fn serve(&self, head: &Head, _body: &[u8]) -> Reply {
        route(&head.method, &head.target, &self.0)
    }

    fn rejected(&self, reason: Rejection) {
        self.0.metrics_rejected(reason.as_str());
    }
}

fn route(method: &str, url: &str, observer: &Observer) -> Reply {
    let path = url.split('?').next().unwrap_or(url);
    if !matches!(method, "GET" | "HEAD") {
        return Reply::text(405, "only GET is served here\n");
    }
    match path {
        "/ready" => ready(observer),
        "/healthcheck" => Reply::text(200, "OK\n"),
        "/metrics" => Reply {
            status: 200,
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body: observer.encode(),
        },
        _ => Reply::text(404, "not found: try /ready, /healthcheck or /metrics\n"),
    }
}

/// The `/ready` answer.
fn ready(observer: &Observer) -> Reply {
    let status = if observer.is_ready() { 200 } else { 503 };
    let body = serde_json::json!({
        "status": status,
        "readyConnections": observer.ready_links(),
        "connectorId": observer.connector_id(),
        "draining": observer.is_draining(),
    });
    Reply {
        status,
        content_type: "application/json",
        body: body.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reports_links_and_draining() {
        let o = Observer::new("c1");
        let r = route("GET", "/ready", &o);
        assert_eq!(r.status, 503);
        o.link_up("dfw");
        let r = route("GET", "/ready", &o);
        assert_eq!(r.status, 200);
        let v: serde_json::Value =
            serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
        assert_eq!(
            v,
            serde_json::json!({"status":200,"readyConnections":1,"connectorId":"c1","draining":false})
        );
        o.set_draining();
        let r = route("GET", "/ready?x=1", &o);
        assert_eq!(r.status, 503);
        assert!(r.body.contains("\"draining\":true"), "{}", r.body);
    }

    #[test]
    fn serves_over_a_real_socket_and_reports_bind_errors() {
        use std::io::{Read, Write};
        let o = Arc::new(Observer::new("c1"));
        let server = MetricsServer::start("127.0.0.1:0", Limits::default(), o.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = server.local_addr();
        let get = |path: &str| {
            let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
            let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(req.as_bytes())
                .unwrap_or_else(|e| panic!("{e}"));
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap_or_else(|e| panic!("{e}"));
            out
        };
        let r = get("/healthcheck");
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.ends_with("\r\n\r\nOK\n"), "{r}");
        let r = get("/metrics");
        assert!(r.contains("ringtun_ready_links 0"), "{r}");
        let r = get("/ready");
        assert!(r.starts_with("HTTP/1.1 503"), "{r}");
        // The port is taken now: a second server on it fails with the address in the message.
        let taken = addr.to_string();
        let e = MetricsServer::start(&taken, Limits::default(), o).err();
        let text = e.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.contains(&taken) && text.contains("--metrics"),
            "{text}"
        );
        drop(server);
    }

    #[test]
    fn other_paths_and_methods_are_refused() {
        let o = Observer::new("c1");
        assert_eq!(route("GET", "/nope", &o).status, 404);
        assert_eq!(route("POST", "/ready", &o).status, 405);
        assert_eq!(route("GET", "/healthcheck", &o).body, "OK\n");
    }

    #[test]
    fn a_client_that_stalls_gets_408_and_is_counted() {
        use std::io::{Read, Write};
        let o = Arc::new(Observer::new("c1"));
        let limits = Limits {
            timeout: std::time::Duration::from_secs(1),
            ..Limits::default()
        };
        let server = MetricsServer::start("127.0.0.1:0", limits, o.clone())
            .unwrap_or_else(|e| panic!("{e}"));
        let mut s =
            std::net::TcpStream::connect(server.local_addr()).unwrap_or_else(|e| panic!("{e}"));
        // Half a head, then nothing: the server must not wait for the rest for ever.
        s.write_all(b"GET /ready HTTP/1.1\r\n")
            .unwrap_or_else(|e| panic!("{e}"));
        s.set_read_timeout(Some(std::time::Duration::from_secs(60)))
            .unwrap_or_else(|e| panic!("{e}"));
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 408"), "{out}");
        assert!(
            o.encode()
                .contains("ringtun_metrics_rejected_total{reason=\"head_timeout\"} 1"),
            "{}",
            o.encode()
        );
        assert!(
            Limits {
                max_connections: 0,
                ..Limits::default()
            }
            .validate("--metrics")
            .is_err()
        );
    }
}
