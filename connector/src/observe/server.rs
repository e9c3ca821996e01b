//! The metrics server behind `--metrics ADDR`: `GET /ready`, `GET /healthcheck` and
//! `GET /metrics` on one small std thread (`tiny_http`), off the io_uring workers, answering
//! from the shared [`Observer`].
//!
//! `/ready` answers `200` with
//! `{"status":200,"readyConnections":N,"connectorId":"..","draining":false}` while at least one
//! link is registered and the drain has not started, else the same body with `503`.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use super::Observer;
use crate::error::{Error, Result};

/// A running metrics server; stops when dropped.
pub struct MetricsServer {
    addr: SocketAddr,
    server: Arc<tiny_http::Server>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for MetricsServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

/// One answer: status, content type and body.
#[derive(Debug, PartialEq, Eq)]
struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl MetricsServer {
    /// Binds `addr` (`host:port`, port 0 allowed), logs
    /// `metrics server listening metrics=IP:PORT` and serves on a thread of its own.
    pub fn start(addr: &str, observer: Arc<Observer>) -> Result<MetricsServer> {
        let fail = |source: crate::error::Cause| Error::MetricsServer {
            addr: addr.to_owned(),
            source,
        };
        let listener = TcpListener::bind(addr).map_err(|e| fail(e.into()))?;
        let local = listener.local_addr().map_err(|e| fail(e.into()))?;
        let server = tiny_http::Server::from_listener(listener, None).map_err(fail)?;
        let server = Arc::new(server);
        let thread = {
            let server = server.clone();
            std::thread::Builder::new()
                .name("ringtun-metrics".into())
                .spawn(move || serve(&server, &observer))
                .map_err(|e| fail(format!("cannot start its thread: {e}").into()))?
        };
        tracing::info!(metrics = %local, "metrics server listening");
        Ok(MetricsServer {
            addr: local,
            server,
            thread: Some(thread),
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("metrics server thread panicked");
        }
    }
}

fn serve(server: &tiny_http::Server, observer: &Observer) {
    for request in server.incoming_requests() {
        let reply = route(request.method(), request.url(), observer);
        let mut response =
            tiny_http::Response::from_string(reply.body).with_status_code(reply.status);
        if let Ok(h) = tiny_http::Header::from_bytes("Content-Type", reply.content_type) {
            response = response.with_header(h);
        }
        if let Err(e) = request.respond(response) {
            tracing::debug!(error = %e, "metrics server: cannot send a response");
        }
    }
}

fn route(method: &tiny_http::Method, url: &str, observer: &Observer) -> Reply {
    let path = url.split('?').next().unwrap_or(url);
    if !matches!(method, tiny_http::Method::Get | tiny_http::Method::Head) {
        return Reply {
            status: 405,
            content_type: "text/plain; charset=utf-8",
            body: "only GET is served here\n".to_owned(),
        };
    }
    match path {
        "/ready" => ready(observer),
        "/healthcheck" => Reply {
            status: 200,
            content_type: "text/plain; charset=utf-8",
            body: "OK\n".to_owned(),
        },
        "/metrics" => Reply {
            status: 200,
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body: observer.encode(),
        },
        _ => Reply {
            status: 404,
            content_type: "text/plain; charset=utf-8",
            body: "not found: try /ready, /healthcheck or /metrics\n".to_owned(),
        },
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
        let r = route(&tiny_http::Method::Get, "/ready", &o);
        assert_eq!(r.status, 503);
        o.link_up("dfw");
        let r = route(&tiny_http::Method::Get, "/ready", &o);
        assert_eq!(r.status, 200);
        let v: serde_json::Value =
            serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {}", r.body));
        assert_eq!(
            v,
            serde_json::json!({"status":200,"readyConnections":1,"connectorId":"c1","draining":false})
        );
        o.set_draining();
        let r = route(&tiny_http::Method::Get, "/ready?x=1", &o);
        assert_eq!(r.status, 503);
        assert!(r.body.contains("\"draining\":true"), "{}", r.body);
    }

    #[test]
    fn serves_over_a_real_socket_and_reports_bind_errors() {
        use std::io::{Read, Write};
        let o = Arc::new(Observer::new("c1"));
        let server =
            MetricsServer::start("127.0.0.1:0", o.clone()).unwrap_or_else(|e| panic!("{e}"));
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
        let e = MetricsServer::start(&taken, o).err();
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
        assert_eq!(route(&tiny_http::Method::Get, "/nope", &o).status, 404);
        assert_eq!(route(&tiny_http::Method::Post, "/ready", &o).status, 405);
        assert_eq!(
            route(&tiny_http::Method::Get, "/healthcheck", &o).body,
            "OK\n"
        );
    }
}
