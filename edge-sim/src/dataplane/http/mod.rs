//! The public HTTP/1.1 side: parse, route by `Host`, choose a replica, one stream per
//! request, stream the bodies both ways, keep the client connection alive.
//!
//! The connection is plain TCP (`--public-http`) or TLS (`--public-https` when ALPN chose
//! `http/1.1` or the client offered none; `dataplane/h2/tls.rs`): everything here is generic
//! over [`ClientIo`](super::client_io::ClientIo), monomorphised for each, so the plaintext path
//! does what it did before. `X-Forwarded-Proto` says which (`http` or `https`).
//!
//! A fresh plaintext connection whose first bytes are the HTTP/2 connection preface (h2c with
//! prior knowledge) is served by `dataplane/h2` instead (`starts_h2`, the only HTTP/2 hook
//! here).
//!
//! # Tasks per connection
//! One task serves the connection. While a request body is forwarded, a second task owns the
//! read half (and the receive buffer) and gives them back when the body ends, so the response
//! can flow while the body still uploads without ever dropping an in-flight read. After a `101`
//! (upgrade) the same split carries raw bytes both ways until either side ends.
//!
//! # Retries
//! A request goes to another replica (at most [`MAX_ATTEMPTS`](crate::dataplane::retry::MAX_ATTEMPTS) tries, counted in
//! `ringtun_edge_retries_total{reason}`) when the connector or the mux refused its stream
//! before processing (`reason="refused"`), or when it is idempotent (GET, HEAD, OPTIONS, TRACE,
//! PUT, DELETE) without a body and its link died before any response byte
//! (`reason="link_lost"`). To make the first case work with bodies, a body of at most
//! [`RETRY_BODY_LIMIT`] (Content-Length, or chunked ending within it) is read whole before the
//! stream opens and resent on a retry; a bigger one streams and a refusal of it is a 502 saying
//! so. When the next replica only has links on another worker, the request (head, buffered body
//! and what followed) is handed to that worker; over TLS the session goes with the socket
//! (`TlsStream::into_parts`, as a moving link's does).
//!
//! # Slow clients and capacity
//! Every connection is its own task, so a stalled client blocks nobody else. A watchdog task
//! per connection closes it when a request head (or the next one, on keep-alive) has not
//! arrived within [`HEAD_TIMEOUT`], when a request body stalls (no bytes) for
//! `--request-body-timeout` (default 60 s) or falls below `--request-body-min-rate`, when a
//! write to the client makes no progress for `--client-write-timeout`, or when an upgraded
//! connection is idle for `--upgrade-idle-timeout`. A connection holds a place in its client
//! IP's count (`--max-connections-per-ip`; beyond it: 503 and close) and each request's stream
//! a place in its tunnel's count (`--tunnel-stream-limit`; beyond it: 503). See
//! `docs/limits.md`.
//!
//! # Layout
//! - this file: accepting, the keep-alive loop, error answers, closing.
//! - `request`: one request from head to response: routing, attempts, the body/response split.
//! - `dataplane/retry.rs` (shared with HTTP/2): the retry and hand-off decision (sans-IO);
//!   `dataplane/open.rs`: one attempt at opening the stream on one replica.
//! - `body`: reading a small body whole, pumping a big one.
//! - `respond`: writing the response (or the `101` and the raw pipe).
//! - `host_label`: the per-hostname request counters.
//!
//! The deadlines (slow clients, writes, idle pipes) are watched by `dataplane/watchdog.rs`.
//!
//! # Not yet
//! A request body that the origin stops reading after answering keeps the connection until the
//! stream ends.

mod body;
pub(crate) mod host_label;
mod request;
mod respond;

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};
use uuid::Uuid;

use bytes::{Bytes, BytesMut};
use compio::io::AsyncReadExt;
use compio::net::{TcpListener, TcpStream};
use ringtun_core::http::io::{IDLE_CHUNK, read_more, read_request_head, write_bufs};
use ringtun_core::http::{HeadLimits, HttpError, NO_CONNECTOR_DETAIL, error_response, response_of};
use ringtun_core::tls::TlsStream;

pub use super::watchdog::HEAD_TIMEOUT;
pub use body::RETRY_BODY_LIMIT;

use super::client_io::ClientIo;
use super::limits::ClientSlot;
use super::link_server::Moving;
use super::watchdog::{ReadKind, Watch, watchdog};
use super::worker::Worker;

/// Accepts public HTTP connections on this worker's socket.
pub(crate) async fn accept_loop(w: Rc<Worker>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((s, peer)) => {
                let _ = s.set_nodelay(true);
                let Some(slot) = w.client_slot(peer) else {
                    compio::runtime::spawn(refuse(s)).detach();
                    continue;
                };
                let watch = watch_conn(&w, &s, peer, false);
                let conn = Accepted {
                    sock: s.clone(),
                    peer,
                    watch,
                    slot: Some(slot),
                };
                let w = Rc::clone(&w);
                compio::runtime::spawn(serve(w, s, conn, BytesMut::new(), 0, None)).detach();
            }
            Err(_) if w.plane.is_draining() => return,
            Err(e) => {
                tracing::warn!(error = %e, "public HTTP accept failed");
                compio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Answers a connection over its client IP's limit with 503 and closes it.
async fn refuse(mut s: TcpStream) {
    let detail = "too many connections from this client address";
    let (h, b) = error_response(503, detail, true);
    // The socket buffer of a fresh connection takes the small answer at once.
    let _ = write_bufs(&mut s, vec![h.to_bytes(), b]).await;
    let _ = socket2::SockRef::from(&s).shutdown(std::net::Shutdown::Write);
    let mut buf = BytesMut::new();
    // Read what the client sent, briefly, so the close does not reset the answer away. The
    // read may be dropped by the timeout: the connection is being discarded.
    let _ = compio::time::timeout(Duration::from_secs(1), read_more(&mut s, &mut buf)).await;
}

/// A public connection's deadlines, watched from now on by a watchdog task of its own that
/// shuts `sock` down when one passes (`dataplane/watchdog.rs`). `handshake`: a TLS handshake
/// is to come, under `--public-tls-handshake-timeout`.
pub(crate) fn watch_conn(
    w: &Worker,
    sock: &TcpStream,
    peer: SocketAddr,
    handshake: bool,
) -> Rc<Watch> {
    let limits = &w.plane.limits;
    let watch = Rc::new(Watch::new(limits.client_write_timeout));
    let mut tick = watch.shortest(&[w.plane.request_body_timeout, limits.upgrade_idle_timeout]);
    if handshake {
        tick = tick.min(w.plane.h2.tls_handshake_timeout);
    }
    let tick = tick / 4;
    let metrics = Arc::clone(w.plane.registry.metrics());
    let dog = watchdog(Rc::clone(&watch), sock.clone(), tick, peer, metrics);
    compio::runtime::spawn(dog).detach();
    watch
}

/// Serves a public HTTP connection that another worker handed over (`socket`, with its TLS
/// session if it has one; `buf`: what was read from it already).
pub(crate) fn take_over(
    w: Rc<Worker>,
    socket: Moving,
    peer: SocketAddr,
    buf: BytesMut,
    hops: u8,
    slot: Option<ClientSlot>,
    chosen: Option<Uuid>,
) {
    match socket {
        Moving::Plain(socket) => match TcpStream::from_std(socket) {
            Ok(s) => {
                let watch = watch_conn(&w, &s, peer, false);
                let conn = Accepted {
                    sock: s.clone(),
                    peer,
                    watch,
                    slot,
                };
                compio::runtime::spawn(serve(w, s, conn, buf, hops, chosen)).detach();
            }
            Err(e) => tracing::warn!(error = %e, "cannot register a handed-off socket"),
        },
        Moving::Tls(parts) => match TlsStream::from_parts(*parts) {
            Ok(tls) => {
                let sock = tls.socket().clone();
                let watch = watch_conn(&w, &sock, peer, false);
                let conn = Accepted {
                    sock,
                    peer,
                    watch,
                    slot,
                };
                compio::runtime::spawn(serve(w, tls, conn, buf, hops, chosen)).detach();
            }
            Err(e) => tracing::warn!(error = %e, "cannot register a handed-off TLS connection"),
        },
    }
}

/// A public connection as accepted (or taken over from another worker), before HTTP.
pub(crate) struct Accepted {
    /// The TCP socket (under TLS, if any): what the watchdog and a closing shut down.
    pub(crate) sock: TcpStream,
    pub(crate) peer: SocketAddr,
    /// Its deadlines ([`watch_conn`]).
    pub(crate) watch: Rc<Watch>,
    /// Its place in its client IP's count.
    pub(crate) slot: Option<ClientSlot>,
}

/// What the connection does after a request.
pub(crate) enum Next {
    KeepAlive,
    Close,
    HandedOff,
}

/// One public connection's stream halves and state, over plain TCP or TLS ([`ClientIo`]).
pub(crate) struct Conn<S: ClientIo> {
    watch: Rc<Watch>,
    /// The TCP socket (under TLS, if any).
    stream: TcpStream,
    /// The reading half; lent to the body pump while a body streams, and gone after a raw
    /// pipe or a TLS hand-off.
    rd: Option<S::Rd>,
    /// The writing half; gone after a raw pipe or a TLS hand-off.
    wr: Option<S::Wr>,
    buf: BytesMut,
    peer: SocketAddr,
    /// How many times the connection moved between workers (at most `dataplane::retry::MAX_HOPS`).
    hops: u8,
    /// The connection's place in its client IP's count (moves with a hand-off).
    slot: Option<ClientSlot>,
    /// The connector the worker that handed this connection over chose for its first request.
    chosen: Option<Uuid>,
}

/// The error of an operation on a half the connection no longer has.
fn gone() -> HttpError {
    HttpError::Io(std::io::ErrorKind::NotConnected.into())
}

impl<S: ClientIo> Conn<S> {
    /// Writes to the client under `--client-write-timeout`.
    async fn write(&mut self, bufs: Vec<Bytes>) -> Result<Vec<Bytes>, HttpError> {
        let Some(wr) = self.wr.as_mut() else {
            return Err(gone());
        };
        self.watch.start_write();
        let r = write_bufs(wr, bufs).await;
        self.watch.stop_write();
        r
    }
}

/// Serves one public connection over `io` (fresh with `hops` 0, or handed off by another
/// worker with `buf` holding what was read already).
pub(crate) async fn serve<S: ClientIo>(
    w: Rc<Worker>,
    io: S,
    conn: Accepted,
    buf: BytesMut,
    hops: u8,
    chosen: Option<Uuid>,
) {
    let Accepted {
        sock,
        peer,
        watch,
        slot,
    } = conn;
    let (rd, wr) = io.into_halves();
    let mut c = Conn::<S> {
        watch: Rc::clone(&watch),
        rd: Some(rd),
        wr: Some(wr),
        stream: sock,
        buf,
        peer,
        hops,
        slot,
        chosen,
    };
    // A fresh plaintext connection may open with the HTTP/2 preface (h2c with prior knowledge).
    if S::SNIFF_H2 && c.hops == 0 && starts_h2(&mut c).await {
        let Conn {
            stream,
            buf,
            peer,
            slot,
            ..
        } = c;
        super::h2::serve(w, stream, peer, buf, watch, slot, "http").await;
        return;
    }
    let limits = HeadLimits::default();
    let metrics = Arc::clone(w.plane.registry.metrics());
    // A handed-off connection's first request was counted by the worker that read it.
    let mut counted = c.hops > 0;
    // The read half is always back here between requests (a body pump returns it).
    while let Some(rd) = c.rd.as_mut() {
        watch.start(HEAD_TIMEOUT, ReadKind::Head);
        let head = read_request_head(rd, &mut c.buf, &limits).await;
        watch.stop();
        let head = match head {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => {
                if !matches!(e, HttpError::Io(_) | HttpError::IncompleteHead { .. }) {
                    w.plane.registry.metrics().public_error("bad_request");
                    let (h, b) = response_of(&e);
                    let _ = c.write(vec![h.to_bytes(), b]).await;
                }
                break;
            }
        };
        let count = !std::mem::take(&mut counted);
        if count {
            metrics.public_requests.inc();
        }
        let started = Instant::now();
        // Boxed: the request's state machine is large, and inline it would be part of every
        // connection's task for its whole life, idle keep-alive waits included. One allocation
        // per request instead keeps an idle connection small.
        let next = Box::pin(request::handle(&w, &mut c, head, count)).await;
        if !matches!(next, Next::HandedOff) {
            metrics.request_duration.observe(started.elapsed());
        }
        match next {
            Next::KeepAlive => continue,
            Next::Close => break,
            Next::HandedOff => {
                watch.finish();
                return;
            }
        }
    }
    watch.finish();
    // Boxed for the same reason as `handle`: only a closing connection needs its state.
    Box::pin(linger_close(c)).await;
}

/// Reads a fresh connection's first bytes until they tell the HTTP/2 preface from an HTTP/1.1
/// request (`h2::sniff`: a request line differs at its first or second byte, so HTTP/1.1
/// costs no extra read). The bytes stay in `c.buf` for whichever protocol reads on. The first
/// read takes a small buffer, as an idle HTTP/1.1 connection's does
/// (`ringtun_core::http::io::IDLE_CHUNK`).
async fn starts_h2<S: ClientIo>(c: &mut Conn<S>) -> bool {
    loop {
        match super::h2::sniff(&c.buf) {
            super::h2::Sniff::H2 => return true,
            super::h2::Sniff::Http1 => return false,
            super::h2::Sniff::NeedMore => {}
        }
        let Some(rd) = c.rd.as_mut() else {
            return false;
        };
        if c.buf.capacity() - c.buf.len() < IDLE_CHUNK / 2 {
            c.buf.reserve(IDLE_CHUNK);
        }
        c.watch.start(HEAD_TIMEOUT, ReadKind::Head);
        let compio::BufResult(r, b) = rd.append(std::mem::take(&mut c.buf)).await;
        c.watch.stop();
        c.buf = b;
        // The end or an error: the HTTP/1.1 loop sees it on its own read.
        if !matches!(r, Ok(n) if n > 0) {
            return false;
        }
    }
}

/// Closes after a final response without resetting it away: stop sending (over TLS with
/// `close_notify`), then read (and discard) what the client still sends, briefly. The read
/// may be dropped by the timeout: the connection is being discarded anyway.
async fn linger_close<S: ClientIo>(mut c: Conn<S>) {
    let _ = compio::time::timeout(Duration::from_secs(1), async {
        match c.wr.as_mut() {
            Some(wr) => S::close_write(wr, &c.stream).await,
            None => {
                let _ = socket2::SockRef::from(&c.stream).shutdown(std::net::Shutdown::Write);
            }
        }
        let Some(rd) = c.rd.as_mut() else { return };
        let mut total = 0usize;
        while total < 1 << 20 {
            c.buf.clear();
            match read_more(rd, &mut c.buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

/// 503: the tunnel has no live connector this request could go to.
async fn no_connector<S: ClientIo>(w: &Worker, c: &mut Conn<S>, close: bool) -> Next {
    reply_error(w, c, "no_connector", 503, NO_CONNECTOR_DETAIL, close).await
}

/// Answers with an error page (`cause` counts it in `public_errors_total`).
async fn reply_error<S: ClientIo>(
    w: &Worker,
    c: &mut Conn<S>,
    cause: &str,
    status: u16,
    detail: &str,
    close: bool,
) -> Next {
    w.plane.registry.metrics().public_error(cause);
    let (h, b) = error_response(status, detail, close);
    match c.write(vec![h.to_bytes(), b]).await {
        Ok(_) if !close => Next::KeepAlive,
        _ => Next::Close,
    }
}
