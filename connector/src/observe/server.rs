//! The metrics server behind `--metrics ADDR`: `GET /ready`, `GET /healthcheck` and
//! `GET /metrics`, answering from the shared [`Observer`] (its [`Probes`]) on
//! `ringtun_core::control`'s [`MetricsServer`] (std threads, off the io_uring workers; the
//! edge's metrics server is the same one, with the edge's probes). A client has [`Limits`] (flags `--metrics-timeout`,
//! `--metrics-max-connections`, `--metrics-max-head-bytes`, `--metrics-max-body-bytes`); one
//! that hits them is answered 408, 413, 431 or 503 and counted in
//! `ringtun_metrics_rejected_total{reason}`.
//!
//! `/ready` answers `200` with
//! `{"status":200,"readyConnections":N,"connectorId":"..","draining":false}` while at least one
//! link is registered and the drain has not started, else the same body with `503`.

use std::net::TcpListener;
use std::sync::Arc;

use ringtun_core::control::{Limits, MetricsServer, Probes, Rejection};

use super::Observer;
use crate::error::{Error, Result};

/// Binds `addr` (`host:port`, port 0 allowed), logs `metrics server listening metrics=IP:PORT`
/// and serves the observer's probes under `limits` on threads of its own; the server stops when
/// dropped.
pub fn start(
    addr: &str,
    limits: Limits,
    observer: Arc<Observer>,
) -> Result<MetricsServer<Observer>> {
    let fail = |source: crate::error::Cause| Error::MetricsServer {
        addr: addr.to_owned(),
        source,
    };
    let listener = TcpListener::bind(addr).map_err(|e| fail(e.into()))?;
    let server = MetricsServer::start(listener, limits, observer)
        .map_err(|e| fail(format!("cannot start its thread: {e}").into()))?;
    tracing::info!(metrics = %server.local_addr(), "metrics server listening");
    Ok(server)
}

impl Probes for Observer {
    /// Ready while at least one link is registered and the drain has not started.
    fn ready(&self) -> (bool, String) {
        let ready = self.is_ready();
        let body = serde_json::json!({
            "status": if ready { 200 } else { 503 },
            "readyConnections": self.ready_links(),
            "connectorId": self.connector_id(),
            "draining": self.is_draining(),
        });
        (ready, body.to_string())
    }

    fn metrics(&self) -> (&'static str, String) {
        (
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            self.encode(),
        )
    }

    fn rejected(&self, reason: Rejection) {
        self.metrics_rejected(reason.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringtun_core::control::{Reply, answer};

    fn route(method: &str, target: &str, observer: &Observer) -> Reply {
        answer(observer, method, target)
    }

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
        let server =
            start("127.0.0.1:0", Limits::default(), o.clone()).unwrap_or_else(|e| panic!("{e}"));
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
        let e = start(&taken, Limits::default(), o).err();
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
        let server = start("127.0.0.1:0", limits, o.clone()).unwrap_or_else(|e| panic!("{e}"));
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
