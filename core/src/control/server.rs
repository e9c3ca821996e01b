//! [`HttpServer`]: the small HTTP/1.1 server of the control plane (the edge's admin API, the
//! edge's and the connector's `--metrics` servers), on std threads, off the data-plane workers.
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
//! is left). Heads and bodies are parsed by [`crate::http`], the parser of the public request
//! path (httparse, strict framing), with their own caps here.
//!
//! A [`Service`] sees each request's head before any body byte is read and may answer at once:
//! the admin API checks its bearer token there, so an unauthorized client gets 401 without its
//! body being read, and its connection is closed.
//!
//! When a client hits a limit, the answer says so (503, 408, 431, 413), the connection closes,
//! [`Service::rejected`] counts it (the edge's `ringtun_edge_control_rejected_total{server,
//! reason}`, the connector's `ringtun_metrics_rejected_total{reason}`), and at most one warning
//! per [`LOG_INTERVAL`] and server is logged.
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::Reply;
use crate::http::{
    BodyDecoder, BodyFraming, BodyLimits, DecodeStep, Fault, HeadLimits, HttpError, RequestHead,
    expects_continue, parse_request, reason_phrase, request_framing, status_of,
};

/// Default [`Limits::timeout`], seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// Default [`Limits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Default [`Limits::max_head_bytes`].
pub const DEFAULT_MAX_HEAD_BYTES: usize = 16 * 1024;
/// Default [`Limits::max_body_bytes`].
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// At most one warning per this interval and server when clients hit a limit.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Header fields a control request may have.
const MAX_HEADERS: usize = 64;
/// Bytes read from a socket at a time.
const READ_CHUNK: usize = 4096;

/// What a client of a control server may use. Each server applies them on its own (the edge's
/// flags `--admin-timeout`, `--admin-max-connections`, `--admin-max-head-bytes`,
/// `--admin-max-body-bytes`; the connector's `--metrics-timeout`, `--metrics-max-connections`,
/// `--metrics-max-head-bytes`, `--metrics-max-body-bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to send the whole request, head and body, from the accept; and again to take the
    /// response. Past it: 408 (or a plain close when nothing arrived) and the connection closes.
    pub timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// The largest request head (request line and header fields); larger: 431.
    pub max_head_bytes: usize,
    /// The largest request body; larger: 413, refused from `Content-Length` before it is read.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl Limits {
    /// The limits from optional settings (seconds, count, bytes, bytes); `None` keeps the
    /// default. Check them with [`Limits::validate`].
    pub fn from_options(
        timeout_secs: Option<u64>,
        max_connections: Option<usize>,
        max_head_bytes: Option<usize>,
        max_body_bytes: Option<usize>,
    ) -> Limits {
        let d = Limits::default();
        Limits {
            timeout: timeout_secs.map_or(d.timeout, Duration::from_secs),
            max_connections: max_connections.unwrap_or(d.max_connections),
            max_head_bytes: max_head_bytes.unwrap_or(d.max_head_bytes),
            max_body_bytes: max_body_bytes.unwrap_or(d.max_body_bytes),
        }
    }

    /// A clear message naming the setting (`prefix` is the flags' prefix, like `admin`) when a
    /// limit makes no sense.
    pub fn validate(&self, prefix: &str) -> std::result::Result<(), String> {
        if self.timeout.is_zero() {
            return Err(format!("{prefix}-timeout must be at least 1 second"));
        }
        if self.max_connections == 0 {
            return Err(format!("{prefix}-max-connections must be at least 1"));
        }
        if self.max_head_bytes < 1024 {
            return Err(format!("{prefix}-max-head-bytes must be at least 1024"));
        }
        Ok(())
    }
}

/// Why a connection was refused or cut short: the `reason` label of the servers' rejection
/// counters (see [`Service::rejected`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Over [`Limits::max_connections`]: 503.
    Connections,
    /// The head did not arrive within [`Limits::timeout`]: 408, or a close when nothing came.
    HeadTimeout,
    /// The body did not arrive within [`Limits::timeout`]: 408.
    BodyTimeout,
    /// The response was not taken within [`Limits::timeout`]: the connection is closed.
    WriteTimeout,
    /// The head is over [`Limits::max_head_bytes`] or has too many fields: 431.
    HeadTooLarge,
    /// The body is over [`Limits::max_body_bytes`]: 413.
    BodyTooLarge,
    /// The head or the body framing is not valid HTTP/1.1: 400.
    BadRequest,
}

impl Rejection {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Connections => "connections",
            Rejection::HeadTimeout => "head_timeout",
            Rejection::BodyTimeout => "body_timeout",
            Rejection::WriteTimeout => "write_timeout",
            Rejection::HeadTooLarge => "head_too_large",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::BadRequest => "bad_request",
        }
    }
}

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

    /// Called for every connection refused or cut short at a limit, on the thread that saw it:
    /// count it here.
    fn rejected(&self, _reason: Rejection) {}
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
struct Shared {
    /// `admin` or `metrics`: the log field and thread names.
    server: &'static str,
    limits: Limits,
    /// [`Service::rejected`] of the server's service.
    on_reject: Box<dyn Fn(Rejection) + Send + Sync>,
    /// Connections being served now.
    active: AtomicUsize,
    stopping: AtomicBool,
    log: LogLimiter,
}

impl Shared {
    /// Counts a rejection and logs it (at most once per [`LOG_INTERVAL`]).
    fn reject(&self, reason: Rejection, peer: SocketAddr) {
        (self.on_reject)(reason);
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
    /// Serves `service` on `listener` (bound by the caller, who words its own bind errors)
    /// under `limits`; `server` names it in logs and thread names. Fails only when a thread
    /// cannot be started.
    pub fn start(
        listener: TcpListener,
        server: &'static str,
        limits: Limits,
        service: impl Service,
    ) -> std::io::Result<HttpServer> {
        let listener = Arc::new(listener);
        let local = listener.local_addr()?;
        let service = Arc::new(service);
        let on_reject: Box<dyn Fn(Rejection) + Send + Sync> = {
            let service = Arc::clone(&service);
            Box::new(move |reason| service.rejected(reason))
        };
        let shared = Arc::new(Shared {
            server,
            limits,
            on_reject,
            active: AtomicUsize::new(0),
            stopping: AtomicBool::new(false),
            log: LogLimiter::new(LOG_INTERVAL),
        });
        let acceptor = {
            let (shared, listener) = (Arc::clone(&shared), Arc::clone(&listener));
            std::thread::Builder::new()
                .name(format!("{server}-accept"))
                .spawn(move || accept_loop(&listener, &shared, &service))?
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

/// Answers 503 on the acceptor thread without reading or waiting: the socket is fresh, so the
/// short answer fits its send buffer; if not, the client just sees the close.
fn refuse(stream: TcpStream, max: usize) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let reply = Reply::error(
        503,
        format!("too many connections (at most {max} at once); retry later"),
    );
    let mut stream = stream;
    let _ = stream.write(&response_bytes(&reply, false, "Retry-After: 1\r\n"));
    close(stream);
}

/// Closes after the answer: shuts the sending side, then discards what already arrived (without
/// waiting), so the close does not turn into a reset that could destroy the answer in flight.
fn close(mut stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    if stream.set_nonblocking(true).is_ok() {
        let mut sink = [0u8; READ_CHUNK];
        for _ in 0..16 {
            match stream.read(&mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
}

/// The serialized response: `Connection: close` always, `WWW-Authenticate` with a 401
/// (RFC 9110 §11.6.1), then `extra` (whole header lines); no body for HEAD.
fn response_bytes(reply: &Reply, head_only: bool, extra: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reason_phrase(reply.status),
        reply.content_type,
        reply.body.len()
    );
    if reply.status == 401 {
        out.push_str("WWW-Authenticate: Bearer\r\n");
    }
    out.push_str(extra);
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(reply.body.as_bytes());
    }
    out
}

/// How reading a head or a body ended early.
enum ReadError {
    /// The deadline passed.
    Timeout,
    /// The client closed or the socket failed.
    Closed,
    /// The bytes are not a valid head or body, or are over a limit.
    Invalid(HttpError),
}

/// One accepted connection and its single request.
struct Connection<'a> {
    stream: TcpStream,
    peer: SocketAddr,
    shared: &'a Shared,
    /// When the whole request must be in.
    deadline: Instant,
    buf: BytesMut,
}

impl<'a> Connection<'a> {
    fn new(stream: TcpStream, peer: SocketAddr, shared: &'a Shared) -> Connection<'a> {
        Connection {
            stream,
            peer,
            shared,
            deadline: Instant::now() + shared.limits.timeout,
            buf: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    fn serve<S: Service>(mut self, service: &S) {
        let _ = self.stream.set_nodelay(true);
        let request = match self.read_head() {
            Ok(request) => request,
            Err(ReadError::Closed) => return,
            Err(ReadError::Timeout) => {
                self.shared.reject(Rejection::HeadTimeout, self.peer);
                // A connection that never sent a byte is just closed.
                if !self.buf.is_empty() {
                    self.finish(&timeout_reply("request head"), false);
                }
                return;
            }
            Err(ReadError::Invalid(e)) => {
                let reason = match status_of(&e) {
                    431 => Rejection::HeadTooLarge,
                    _ => Rejection::BadRequest,
                };
                self.shared.reject(reason, self.peer);
                self.finish(&Reply::error(status_of(&e), e.to_string()), false);
                return;
            }
        };
        let head = Head {
            method: String::from_utf8_lossy(&request.method).into_owned(),
            target: String::from_utf8_lossy(&request.target).into_owned(),
            authorization: request
                .headers
                .get("authorization")
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned),
        };
        let reply = match service.before_body(&head) {
            Some(reply) => reply,
            None => match self.read_body(&request) {
                Ok(body) => service.serve(&head, &body),
                Err(Some(reply)) => reply,
                // The client left: nobody to answer.
                Err(None) => return,
            },
        };
        service.answered(&head, reply.status);
        self.finish(&reply, request.is_head());
    }

    /// Reads until a head is complete.
    fn read_head(&mut self) -> std::result::Result<RequestHead, ReadError> {
        let limits = HeadLimits {
            max_head_bytes: self.shared.limits.max_head_bytes,
            max_headers: MAX_HEADERS,
        };
        loop {
            if let Some(head) = parse_request(&mut self.buf, &limits).map_err(ReadError::Invalid)? {
                return Ok(head);
            }
            self.read_more()?;
        }
    }

    /// Reads the body as its framing says, up to [`Limits::max_body_bytes`]. An error is the
    /// answer to send instead (its rejection counted), or `None` when the client left.
    fn read_body(&mut self, head: &RequestHead) -> std::result::Result<Vec<u8>, Option<Reply>> {
        let max = self.shared.limits.max_body_bytes;
        let too_large = || Reply::error(413, format!("request body over {}", size(max)));
        let framing = request_framing(head).map_err(|e| self.invalid(e))?;
        if let BodyFraming::Length(n) = framing
            && n > max as u64
        {
            self.shared.reject(Rejection::BodyTooLarge, self.peer);
            return Err(Some(too_large()));
        }
        if !framing.is_empty() && expects_continue(head) {
            self.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .map_err(|_| None)?;
        }
        let mut decoder = BodyDecoder::new(framing, BodyLimits::default(), Fault::Client);
        let mut body = Vec::new();
        loop {
            match decoder.decode(&mut self.buf).map_err(|e| self.invalid(e))? {
                DecodeStep::Data(data) => {
                    if body.len() + data.len() > max {
                        self.shared.reject(Rejection::BodyTooLarge, self.peer);
                        return Err(Some(too_large()));
                    }
                    body.extend_from_slice(&data);
                }
                DecodeStep::End => return Ok(body),
                DecodeStep::NeedMore => match self.read_more() {
                    Ok(()) => {}
                    Err(ReadError::Timeout) => {
                        self.shared.reject(Rejection::BodyTimeout, self.peer);
                        return Err(Some(timeout_reply("request body")));
                    }
                    Err(ReadError::Invalid(e)) => return Err(self.invalid(e)),
                    Err(ReadError::Closed) => return Err(None),
                },
            }
        }
    }

    /// The 400 answer to an invalid body or framing, counted.
    fn invalid(&self, e: HttpError) -> Option<Reply> {
        self.shared.reject(Rejection::BadRequest, self.peer);
        Some(Reply::error(400, e.to_string()))
    }

    /// One read into the buffer, within what is left of the deadline.
    fn read_more(&mut self) -> std::result::Result<(), ReadError> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::Timeout);
            }
            if self.stream.set_read_timeout(Some(left)).is_err() {
                return Err(ReadError::Closed);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The loop re-checks the deadline (a timed-out read says WouldBlock on Linux).
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return Err(ReadError::Closed),
            }
        }
    }

    /// Writes all of `bytes` within [`Limits::timeout`] in total: the timeout is re-armed with
    /// what is left before each write, so a client that reads a byte now and then cannot
    /// stretch it.
    fn write_all(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        let deadline = Instant::now() + self.shared.limits.timeout;
        while !bytes.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ErrorKind::TimedOut.into());
            }
            self.stream.set_write_timeout(Some(left))?;
            match self.stream.write(bytes) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends the answer and closes.
    fn finish(mut self, reply: &Reply, head_only: bool) {
        match self.write_all(&response_bytes(reply, head_only, "")) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                self.shared.reject(Rejection::WriteTimeout, self.peer);
            }
            Err(e) => {
                tracing::debug!(server = self.shared.server, peer = %self.peer, error = %e, "control server: cannot send the response");
            }
        }
        close(self.stream);
    }
}

fn timeout_reply(what: &str) -> Reply {
    Reply::error(408, format!("{what} not received in time"))
}

/// `64 KiB` or `1000 bytes`.
fn size(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
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
        assert!(l.validate("admin").is_ok());
        assert_eq!(
            Limits::from_options(Some(0), None, None, None).validate("admin"),
            Err("admin-timeout must be at least 1 second".to_owned())
        );
        assert_eq!(
            Limits::from_options(None, Some(0), None, None).validate("metrics"),
            Err("metrics-max-connections must be at least 1".to_owned())
        );
        assert!(
            Limits::from_options(None, None, Some(100), None)
                .validate("admin")
                .is_err()
        );
        assert_eq!(size(64 * 1024), "64 KiB");
        assert_eq!(size(1000), "1000 bytes");
    }
}
