//! [`HttpServer`]: the small HTTP/1.1 server of the control plane (the admin API and the
//! `--metrics` server), on std threads, off the data-plane workers.
//!
//! One acceptor thread, and one thread per connection up to [`Limits::max_connections`], so a
//! client that stalls holds only its own thread; beyond the cap a connection is answered 503 at
//! once by the acceptor, which never reads or waits. Each connection carries one request
//! (`Connection: close`): the control plane sees a CLI call or a scrape now and then, and a
//! connection that cannot idle cannot hold a thread between requests.
//!
//! Every read and write has a deadline: the whole request (head and body) must arrive within
//! [`Limits::timeout`] of the accept, and the response must be taken within that time again
//! (`set_read_timeout` / `set_write_timeout` on the socket, re-armed before each read with what
//! is left). Heads and bodies are parsed by `ringtun_core::http`, the parser of the public
//! request path (httparse, strict framing), with their own caps here.
//!
//! A [`Service`] sees each request's head before any body byte is read and may answer at once:
//! the admin API checks its bearer token there, so an unauthorized client gets 401 without its
//! body being read, and its connection is closed.
//!
//! When a client hits a limit, the answer says so (503, 408, 431, 413), the connection closes,
//! `ringtun_edge_control_rejected_total{server, reason}` counts it, and at most one warning per
//! [`LOG_INTERVAL`] and server is logged.
use std::io::ErrorKind;
use std::net::{Shutdown, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::connection::{Connection, refuse};
use super::handler::Reply;
use crate::error::{Error, Result};
use crate::metrics::Metrics;

pub use super::limits::{
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEAD_BYTES, DEFAULT_TIMEOUT_SECS,
    LOG_INTERVAL, Limits, Rejection,
};

/// Header fields a control request may have.
pub(super) const MAX_HEADERS: usize = 64;
/// Bytes read from a socket at a time.
pub(super) const READ_CHUNK: usize = 4096;

/// What a [`Service`] learns of a request before its body.
#[derive(Debug, Clone)]
pub struct Head {
    /// The method as sent.
    pub method: String,
    /// The request target as sent (`/tunnels?force=true`).
    pub target: String,
    /// The first `Authorization` field, when it is valid UTF-8.
    pub authorization: Option<String>,
}

/// The routes behind an [`HttpServer`].
pub trait Service: Send + Sync + 'static {
    /// Called once the head is in, before any body byte is read: an answer here ends the
    /// exchange, and the body is never read.
    fn before_body(&self, head: &Head) -> Option<Reply>;

    /// Answers a request whose body (at most [`Limits::max_body_bytes`]) is complete.
    fn serve(&self, head: &Head, body: &[u8]) -> Reply;

    /// Called for every answer to a request whose head was parsed (from `before_body`, `serve`,
    /// or the server's own 408, 413 and 400).
    fn answered(&self, _head: &Head, _status: u16) {}
}

/// A server answering on threads of its own; stops when dropped.
pub struct HttpServer {
    shared: Arc<Shared>,
    listener: Option<Arc<TcpListener>>,
    acceptor: Option<JoinHandle<()>>,
    addr: SocketAddr,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("server", &self.shared.server)
            .field("addr", &self.addr)
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

/// What the acceptor and the connection threads share.
pub(super) struct Shared {
    /// `admin` or `metrics`: the metric label and log field.
    pub(super) server: &'static str,
    pub(super) limits: Limits,
    pub(super) metrics: Arc<Metrics>,
    /// Connections being served now.
    pub(super) active: AtomicUsize,
    pub(super) stopping: AtomicBool,
    log: LogLimiter,
}

impl Shared {
    /// Counts a rejection and logs it (at most once per [`LOG_INTERVAL`]).
    pub(super) fn reject(&self, reason: Rejection, peer: SocketAddr) {
        self.metrics.control_rejected(self.server, reason.as_str());
        if reason == Rejection::BadRequest {
            tracing::debug!(server = self.server, %peer, "control server: bad request");
            return;
        }
        if let Some(suppressed) = self.log.allow() {
            tracing::warn!(
                server = self.server,
                reason = reason.as_str(),
                %peer,
                suppressed,
                limits = ?self.limits,
                "control server: client refused at a limit"
            );
        }
    }
}

impl HttpServer {
    /// Binds `addr` (`what` names it in errors, `server` in logs, thread names and metric
    /// labels) and serves `service` under `limits`.
    pub fn start(
        what: &'static str,
        server: &'static str,
        addr: SocketAddr,
        limits: Limits,
        metrics: Arc<Metrics>,
        service: impl Service,
    ) -> Result<HttpServer> {
        let bind_err = |reason: String| Error::Bind { what, addr, reason };
        let listener = Arc::new(super::bind(what, addr)?);
        let local = listener.local_addr().map_err(|e| bind_err(e.to_string()))?;
        let shared = Arc::new(Shared {
            server,
            limits,
            metrics,
            active: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            log: LogLimiter::new(LOG_INTERVAL),
        });
        let acceptor = {
            let (shared, listener) = (Arc::clone(&shared), Arc::clone(&listener));
            let service = Arc::new(service);
            std::thread::Builder::new()
                .name(format!("{server}-accept"))
                .spawn(move || accept_loop(&listener, &shared, &service))
                .map_err(|e| bind_err(format!("cannot start its thread: {e}")))?
        };
        Ok(HttpServer {
            shared,
            listener: Some(listener),
            acceptor: Some(acceptor),
            addr: local,
        })
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, joins the acceptor and closes the listener (again: nothing).
    /// Connections being served finish on their own, within [`Limits::timeout`] twice at most.
    pub fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::Release);
        if let Some(listener) = self.listener.take() {
            // Wakes the blocked accept (Linux answers it with EINVAL) and refuses new clients.
            if let Err(e) = socket2::SockRef::from(&*listener).shutdown(Shutdown::Both) {
                tracing::debug!(server = self.shared.server, error = %e, "cannot shut the listener down");
            }
        }
        if let Some(acceptor) = self.acceptor.take()
            && acceptor.join().is_err()
        {
            tracing::error!(server = self.shared.server, "acceptor thread panicked");
        }
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop<S: Service>(listener: &TcpListener, shared: &Arc<Shared>, service: &Arc<S>) {
    loop {
        let accepted = listener.accept();
        if shared.stopping.load(Ordering::Acquire) {
            return;
        }
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::Interrupted | ErrorKind::ConnectionAborted
                ) =>
            {
                continue;
            }
            Err(e) => {
                // Out of file descriptors, most likely: back off instead of spinning.
                if let Some(suppressed) = shared.log.allow() {
                    tracing::warn!(server = shared.server, error = %e, suppressed, "control server: accept failed");
                }
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if shared.active.fetch_add(1, Ordering::AcqRel) >= shared.limits.max_connections {
            shared.active.fetch_sub(1, Ordering::AcqRel);
            shared.reject(Rejection::Connections, peer);
            refuse(stream, shared.limits.max_connections);
            continue;
        }
        let guard = Active(Arc::clone(shared));
        let service = Arc::clone(service);
        let spawned = std::thread::Builder::new()
            .name(format!("{}-conn", shared.server))
            .spawn(move || {
                let guard = guard;
                Connection::new(stream, peer, &guard.0).serve(&*service);
            });
        // On failure the closure, and so the guard and the stream, are dropped: the count
        // goes back down and the client sees its connection close.
        if let Err(e) = spawned
            && let Some(suppressed) = shared.log.allow()
        {
            tracing::warn!(server = shared.server, error = %e, suppressed, "control server: cannot start a connection thread");
        }
    }
}

/// One connection counted in [`Shared::active`] until dropped.
struct Active(Arc<Shared>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Allows one log line per interval and counts the ones it held back.
#[derive(Debug)]
struct LogLimiter {
    interval: Duration,
    last: Mutex<Option<Instant>>,
    suppressed: AtomicU64,
}

impl LogLimiter {
    fn new(interval: Duration) -> LogLimiter {
        LogLimiter {
            interval,
            last: Mutex::new(None),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines held back since the last one)` when a line may be logged now.
    fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut last = match self.last.lock() {
            Ok(last) => last,
            Err(poisoned) => poisoned.into_inner(),
        };
        match *last {
            Some(t) if now.duration_since(t) < self.interval => {
                self.suppressed.fetch_add(1, Ordering::Relaxed);
                None
            }
            _ => {
                *last = Some(now);
                Some(self.suppressed.swap(0, Ordering::Relaxed))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::connection::{response_bytes, size};
    use super::*;

    #[test]
    fn log_limiter_allows_one_line_per_interval() {
        let l = LogLimiter::new(Duration::from_secs(3600));
        assert_eq!(l.allow(), Some(0));
        assert_eq!(l.allow(), None);
        assert_eq!(l.allow(), None);
        let l0 = LogLimiter::new(Duration::ZERO);
        assert_eq!(l0.allow(), Some(0));
        assert_eq!(l0.allow(), Some(0));
    }

    #[test]
    fn responses_close_and_say_why() {
        let r = Reply::error(401, "nope");
        let text = String::from_utf8(response_bytes(&r, false, "")).unwrap_or_default();
        assert!(text.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{text}");
        assert!(text.contains("\r\nWWW-Authenticate: Bearer\r\n"), "{text}");
        assert!(text.contains("\r\nConnection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n{\"error\":\"nope\"}"), "{text}");
        let head = String::from_utf8(response_bytes(&r, true, "")).unwrap_or_default();
        assert!(
            head.ends_with(
                "Content-Length: 16\r\nConnection: close\r\nWWW-Authenticate: Bearer\r\n\r\n"
            ),
            "{head}"
        );
    }

    #[test]
    fn limits_from_options_and_validation() {
        let l = Limits::from_options(Some(3), None, Some(2048), None);
        assert_eq!(l.timeout, Duration::from_secs(3));
        assert_eq!(l.max_connections, DEFAULT_MAX_CONNECTIONS);
        assert_eq!(l.max_head_bytes, 2048);
        assert_eq!(l.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
        assert!(l.validate().is_ok());
        assert!(
            Limits::from_options(Some(0), None, None, None)
                .validate()
                .is_err()
        );
        assert!(
            Limits::from_options(None, Some(0), None, None)
                .validate()
                .is_err()
        );
        assert!(
            Limits::from_options(None, None, Some(100), None)
                .validate()
                .is_err()
        );
        assert_eq!(size(64 * 1024), "64 KiB");
        assert_eq!(size(1000), "1000 bytes");
    }
}
