//! [`MetricsServer`]: both binaries' `--metrics` server, `GET /ready`, `GET /healthcheck` and
//! `GET /metrics` without a token, on an [`HttpServer`] of its own.
//!
//! The routes and their answers are the same for the edge and the connector; what differs is
//! what they say, which each binary gives as its [`Probes`]: when it is ready (and the JSON
//! that says why) and its Prometheus text. Binding the address, and wording a failure to, is
//! the caller's (as for [`HttpServer::start`]).
//!
//! | route | answer |
//! |---|---|
//! | `GET /ready` | `200` with [`Probes::ready`]'s JSON while ready, else `503` with it |
//! | `GET /healthcheck` | `200 OK` while the process runs |
//! | `GET /metrics` | [`Probes::metrics`] |
//!
//! Any other path is 404, any other method 405 (`HEAD` is answered as `GET`).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use super::{Head, HttpServer, Limits, Rejection, Reply, Service};

/// What a process says on its metrics server.
pub trait Probes: Send + Sync + 'static {
    /// Whether the process is ready for traffic, and the JSON body of `/ready` that says so.
    fn ready(&self) -> (bool, String);

    /// The Prometheus text of `/metrics`, and its content type.
    fn metrics(&self) -> (&'static str, String);

    /// A client was refused or cut short at one of the server's [`Limits`]: count it.
    fn rejected(&self, reason: Rejection);
}

/// A running metrics server answering from `P`; stops when dropped.
pub struct MetricsServer<P> {
    probes: Arc<P>,
    server: HttpServer,
}

impl<P> std::fmt::Debug for MetricsServer<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsServer")
            .field("addr", &self.server.local_addr())
            .finish_non_exhaustive()
    }
}

impl<P: Probes> MetricsServer<P> {
    /// Serves `probes` on `listener` under `limits`, on threads of its own (`metrics` in logs
    /// and thread names). Fails only when a thread cannot be started.
    pub fn start(
        listener: TcpListener,
        limits: Limits,
        probes: Arc<P>,
    ) -> std::io::Result<MetricsServer<P>> {
        let server = HttpServer::start(listener, "metrics", limits, Routes(Arc::clone(&probes)))?;
        Ok(MetricsServer { probes, server })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// What the server answers from.
    pub fn probes(&self) -> &P {
        &self.probes
    }

    /// Stops accepting and closes the listener (as dropping it does).
    pub fn stop(mut self) {
        self.server.stop();
    }
}

/// The metrics server's answer to `method target` from `probes` (what [`MetricsServer`]
/// serves; public so a [`Probes`] can be tested without a socket).
pub fn answer<P: Probes>(probes: &P, method: &str, target: &str) -> Reply {
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if !matches!(method, "GET" | "HEAD") {
        return Reply::text(
            405,
            format!("method {method} not allowed; only GET is served\n"),
        );
    }
    match path {
        "/ready" => {
            let (ready, body) = probes.ready();
            Reply {
                status: if ready { 200 } else { 503 },
                content_type: "application/json",
                body,
            }
        }
        "/healthcheck" => Reply::text(200, "OK\n"),
        "/metrics" => {
            let (content_type, body) = probes.metrics();
            Reply {
                status: 200,
                content_type,
                body,
            }
        }
        _ => Reply::text(
            404,
            format!("no such route {path}; try /ready, /healthcheck or /metrics\n"),
        ),
    }
}

/// The routes as a [`Service`]: no token, no body.
struct Routes<P>(Arc<P>);

impl<P: Probes> Service for Routes<P> {
    fn before_body(&self, _head: &Head) -> Option<Reply> {
        None
    }

    fn serve(&self, head: &Head, _body: &[u8]) -> Reply {
        answer(&*self.0, &head.method, &head.target)
    }

    fn rejected(&self, reason: Rejection) {
        self.0.rejected(reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    #[derive(Default)]
    struct Fixed {
        ready: AtomicBool,
        rejected: AtomicUsize,
    }

    impl Probes for Fixed {
        fn ready(&self) -> (bool, String) {
            let ready = self.ready.load(Ordering::Relaxed);
            (ready, format!(r#"{{"ready":{ready}}}"#))
        }

        fn metrics(&self) -> (&'static str, String) {
            ("text/plain; version=0.0.4", "up 1\n".to_owned())
        }

        fn rejected(&self, _reason: Rejection) {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
    }

    #[test]
    fn routes_answer_from_the_probes() {
        let p = Fixed::default();
        let r = answer(&p, "GET", "/ready");
        assert_eq!((r.status, r.body.as_str()), (503, r#"{"ready":false}"#));
        p.ready.store(true, Ordering::Relaxed);
        assert_eq!(answer(&p, "HEAD", "/ready?x=1").status, 200);
        let r = answer(&p, "GET", "/metrics");
        assert_eq!(
            (r.status, r.content_type),
            (200, "text/plain; version=0.0.4")
        );
        assert_eq!(answer(&p, "GET", "/healthcheck").body, "OK\n");
        assert_eq!(answer(&p, "GET", "/nope").status, 404);
        assert_eq!(answer(&p, "POST", "/ready").status, 405);
    }

    #[test]
    fn serves_over_a_socket_and_stops() {
        use std::io::{Read, Write};
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let server = MetricsServer::start(listener, Limits::default(), Arc::new(Fixed::default()))
            .unwrap_or_else(|e| panic!("{e}"));
        let addr = server.local_addr();
        let mut s = std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("{e}"));
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap_or_else(|e| panic!("{e}"));
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            out.starts_with("HTTP/1.1 200") && out.ends_with("up 1\n"),
            "{out}"
        );
        server.stop();
        assert!(std::net::TcpStream::connect(addr).is_err(), "stopped");
    }
}
