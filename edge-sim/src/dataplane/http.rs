//! The public HTTP/1.1 ingress: parse, route by `Host`, choose a replica, one stream per
//! request, stream the bodies both ways, keep the client connection alive.
//!
//! # Tasks per connection
//! One task serves the connection. While a request body is forwarded, a second task owns the
//! read half (and the receive buffer) and gives them back when the body ends, so the response
//! can flow while the body still uploads without ever dropping an in-flight read. After a `101`
//! (upgrade) the same split carries raw bytes both ways until either side ends.
//!
//! # Retries
//! A request goes to another replica (at most [`MAX_ATTEMPTS`] tries, counted in
//! `ringtun_edge_retries_total{reason}`) when the connector or the mux refused its stream
//! before processing (`reason="refused"`), or when it is idempotent (GET, HEAD, OPTIONS, TRACE,
//! PUT, DELETE) without a body and its link died before any response byte
//! (`reason="link_lost"`). To make the first case work with bodies, a body of at most
//! [`RETRY_BODY_LIMIT`] (Content-Length, or chunked ending within it) is read whole before the
//! stream opens and resent on a retry; a bigger one streams and a refusal of it is a 502 saying
//! so. When the next replica only has links on another worker, the request (head, buffered body
//! and what followed) is handed to that worker.
//!
//! # Slow clients
//! Every connection is its own task, so a stalled client blocks nobody else. A watchdog task
//! per connection closes it when a request head (or the next one, on keep-alive) has not
//! arrived within [`HEAD_TIMEOUT`], or when a request body stalls (no bytes) for
//! `--request-body-timeout` (default 60 s).
//!
//! # Not yet
//! A request body that the origin stops reading after answering keeps the connection until the
//! stream ends.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use compio::BufResult;
use compio::io::AsyncReadExt;
use compio::net::{TcpListener, TcpStream};
use prometheus_client::metrics::counter::Counter;
use ringtun_core::http::io::{
    CONTINUE_RESPONSE, read_body_chunk, read_more, read_request_head, write_bufs,
};
use ringtun_core::http::{
    BodyDecoder, BodyEncoder, BodyFraming, BodyLimits, Fault, HeadLimits, HttpError,
    NO_CONNECTOR_DETAIL, RequestExtra, RequestHead, ResponseMeta, Version, append_forwarded_for,
    decode_response_meta, encode_request_meta, error_response, expects_continue,
    is_upgrade_request, is_websocket_upgrade, no_route_detail, remove_hop_by_hop, request_framing,
    request_keep_alive, set_forwarded_proto, set_framing_headers,
};
use ringtun_core::link::{Link, LinkError, Stream};
use ringtun_core::mux::{ErrorCode, StreamKind};

use super::lb::{ConnectorLoad, StreamGuard};
use super::worker::{HandoffKind, Pick, Worker};
use crate::metrics::Metrics;

/// How many replicas a request is tried on at most (see "Retries").
const MAX_ATTEMPTS: usize = 3;

/// How many times one public connection may move between workers: once for the policy's first
/// choice (a replica with no link on the accepting worker), once more for a retry after a
/// refusal. The bound keeps a connection from bouncing between workers.
pub(crate) const MAX_HOPS: u8 = 2;

/// Accepts public HTTP connections on this worker's socket.
pub(crate) async fn accept_loop(w: Rc<Worker>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((s, peer)) => {
                let _ = s.set_nodelay(true);
                compio::runtime::spawn(serve(Rc::clone(&w), s, peer, BytesMut::new(), 0)).detach();
            }
            Err(_) if w.plane.is_draining() => return,
            Err(e) => {
                tracing::warn!(error = %e, "public HTTP accept failed");
                compio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

enum Next {
    KeepAlive,
    Close,
    HandedOff,
}

struct Conn {
    watch: Rc<ReadWatch>,
    stream: TcpStream,
    rd: TcpStream,
    wr: TcpStream,
    buf: BytesMut,
    peer: SocketAddr,
    /// How many times the connection moved between workers (see [`MAX_HOPS`]).
    hops: u8,
}

/// Serves one public connection (fresh with `hops` 0, or handed off by another worker with
/// `buf` holding what was read already).
pub(crate) async fn serve(
    w: Rc<Worker>,
    stream: TcpStream,
    peer: SocketAddr,
    buf: BytesMut,
    hops: u8,
) {
    let watch = Rc::new(ReadWatch::default());
    let tick = HEAD_TIMEOUT.min(w.plane.request_body_timeout) / 4;
    compio::runtime::spawn(watchdog(Rc::clone(&watch), stream.clone(), tick)).detach();
    let mut c = Conn {
        watch: Rc::clone(&watch),
        rd: stream.clone(),
        wr: stream.clone(),
        stream,
        buf,
        peer,
        hops,
    };
    let limits = HeadLimits::default();
    let metrics = Arc::clone(w.plane.registry.metrics());
    // A handed-off connection's first request was counted by the worker that read it.
    let mut counted = c.hops > 0;
    loop {
        watch.start(HEAD_TIMEOUT);
        let head = read_request_head(&mut c.rd, &mut c.buf, &limits).await;
        watch.stop();
        let head = match head {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => {
                if !matches!(e, HttpError::Io(_) | HttpError::IncompleteHead { .. }) {
                    w.plane.registry.metrics().public_error("bad_request");
                    let (h, b) = e.to_response();
                    let _ = write_bufs(&mut c.wr, vec![h.to_bytes(), b]).await;
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
        // per request instead keeps an idle connection small (issue 6's memory goal).
        let next = Box::pin(handle(&w, &mut c, head, count)).await;
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

/// How long a client may take to send a request head, idle time between keep-alive requests
/// included. A stalled client only holds its own task; this frees its socket too.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// Request bodies up to this size are read whole before a stream opens, so a request refused
/// before processing can be resent to another replica. Bigger ones stream (not retried).
pub const RETRY_BODY_LIMIT: usize = 64 * 1024;

/// The deadline of the client read in flight (a request head, or a piece of a request body),
/// watched by [`watchdog`].
#[derive(Default)]
struct ReadWatch {
    deadline: Cell<Option<Instant>>,
    fired: Cell<bool>,
    done: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl ReadWatch {
    /// A read starts; it may take `limit`.
    fn start(&self, limit: Duration) {
        self.deadline.set(Some(Instant::now() + limit));
    }

    /// The read ended.
    fn stop(&self) {
        self.deadline.set(None);
    }

    /// Whether the watchdog closed the connection because a read took too long.
    fn timed_out(&self) -> bool {
        self.fired.get()
    }

    /// The connection ended: the watchdog drops its socket handle at once (it must not keep
    /// the descriptor open after the connection is done).
    fn finish(&self) {
        self.done.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    async fn wait_done(&self) {
        poll_fn(|cx| {
            if self.done.get() {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Shuts a connection down when a client read has been pending past its deadline (a head
/// within [`HEAD_TIMEOUT`], a piece of a body within `--request-body-timeout`): that completes
/// the read in flight (io_uring rule: never drop it, end it by closing the socket).
async fn watchdog(watch: Rc<ReadWatch>, sock: TcpStream, tick: Duration) {
    loop {
        // A timer raced with a notification: no IO future is dropped here.
        if compio::time::timeout(tick, watch.wait_done()).await.is_ok() {
            return;
        }
        if watch.deadline.get().is_some_and(|d| Instant::now() >= d) {
            tracing::debug!("public client stalled (request head or body); closing");
            watch.fired.set(true);
            let _ = socket2::SockRef::from(&sock).shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

thread_local! {
    /// Per worker: the request counter of each hostname, resolved once (see `metrics`), keyed
    /// by the metrics instance it belongs to (tests run several edges in one process).
    static HOST_COUNTERS: RefCell<(usize, HashMap<String, Counter>)> =
        RefCell::new((0, HashMap::new()));
}

/// Most hostnames one worker caches counters for.
const HOST_CACHE_MAX: usize = 4096;

/// Counts a request for `host` (a `Host` header: lowercased, port dropped) without a lock once
/// the hostname is known on this worker.
fn count_host_request(w: &Worker, host: &str) {
    let metrics = w.plane.registry.metrics();
    let name = host_label(host);
    let id = Arc::as_ptr(metrics) as usize;
    HOST_COUNTERS.with(|cache| {
        let mut cache = cache.borrow_mut();
        if cache.0 != id {
            *cache = (id, HashMap::new());
        }
        if let Some(c) = cache.1.get(name.as_ref()) {
            c.inc();
            return;
        }
        let c = metrics.host_requests(&name);
        c.inc();
        if cache.1.len() < HOST_CACHE_MAX {
            cache.1.insert(name.into_owned(), c);
        }
    });
}

/// `App.Example.com:8080` → `app.example.com`; `[::1]:80` → `[::1]`.
fn host_label(host: &str) -> std::borrow::Cow<'_, str> {
    let bare = if host.starts_with('[') {
        host.find(']').map_or(host, |i| &host[..=i])
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    let bare = bare.trim_end_matches('.');
    if bare.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(bare.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(bare)
    }
}

/// Closes after a final response without resetting it away: stop sending, then read (and
/// discard) what the client still sends, briefly. The read may be dropped by the timeout: the
/// connection is being discarded anyway.
async fn linger_close(mut c: Conn) {
    let _ = socket2::SockRef::from(&c.stream).shutdown(std::net::Shutdown::Write);
    let _ = compio::time::timeout(Duration::from_secs(1), async {
        let mut total = 0usize;
        while total < 1 << 20 {
            c.buf.clear();
            match read_more(&mut c.rd, &mut c.buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

/// 503: the tunnel has no live connector this request could go to.
async fn no_connector(w: &Worker, c: &mut Conn, close: bool) -> Next {
    reply_error(w, c, "no_connector", 503, NO_CONNECTOR_DETAIL, close).await
}

async fn reply_error(
    w: &Worker,
    c: &mut Conn,
    cause: &str,
    status: u16,
    detail: &str,
    close: bool,
) -> Next {
    w.plane.registry.metrics().public_error(cause);
    let (h, b) = error_response(status, detail, close);
    match write_bufs(&mut c.wr, vec![h.to_bytes(), b]).await {
        Ok(_) if !close => Next::KeepAlive,
        _ => Next::Close,
    }
}

/// A request body as far as it was read before a stream was opened for it.
enum ReqBody {
    /// No body.
    Empty,
    /// The whole decoded body (at most [`RETRY_BODY_LIMIT`] bytes): it can be resent.
    Buffered(Vec<Bytes>),
    /// Too big to buffer: `prefix` was read already and the decoder continues with the rest
    /// while the stream is open. `continue_sent`: `100 Continue` went out already.
    Streamed {
        prefix: Vec<Bytes>,
        dec: BodyDecoder,
        continue_sent: bool,
    },
}

impl ReqBody {
    /// Whether nothing of the request was consumed that the request head and the buffered body
    /// cannot replay (for a hand-off to another worker).
    fn replayable(&self) -> bool {
        match self {
            ReqBody::Empty | ReqBody::Buffered(_) => true,
            ReqBody::Streamed {
                prefix,
                continue_sent,
                ..
            } => prefix.is_empty() && !continue_sent,
        }
    }
}

/// Why one attempt did not produce a reply.
enum Attempt {
    /// The connector replied.
    Replied(Stream, StreamGuard, Bytes),
    /// The stream is open; the body still flows (no retry possible any more).
    Streaming(Stream, StreamGuard),
    /// Another replica may take it.
    Retry(RetryReason, LinkError),
    /// It failed for good; the detail goes into the 502.
    Failed(String),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RetryReason {
    /// Refused before processing (`LinkError::is_retry_safe`), or nothing was sent at all.
    Refused,
    /// An idempotent request without a body whose link died before any response byte.
    LinkLost,
}

/// Whether `method` may run twice (RFC 9110 idempotent methods).
fn is_idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

/// The request again as raw bytes, for a hand-off to another worker: the head (with a buffered
/// body's length; `Expect` dropped once `100 Continue` went out), the body, and what followed.
fn replay_bytes(head: &RequestHead, body: &ReqBody, rest: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    match body {
        ReqBody::Buffered(chunks) => {
            let mut h = head.clone();
            h.headers.remove("expect");
            let total: usize = chunks.iter().map(Bytes::len).sum();
            set_framing_headers(&mut h.headers, BodyFraming::Length(total as u64));
            out.extend_from_slice(&h.to_bytes());
            for ch in chunks {
                out.extend_from_slice(ch);
            }
        }
        _ => out.extend_from_slice(&head.to_bytes()),
    }
    out.extend_from_slice(rest);
    out
}

/// Serves one request; `count`: count it in the per-hostname metrics (not yet counted by the
/// worker that handed the connection over).
async fn handle(w: &Rc<Worker>, c: &mut Conn, head: RequestHead, count: bool) -> Next {
    let framing = match request_framing(&head) {
        Ok(f) => f,
        Err(e) => {
            w.plane.registry.metrics().public_error("bad_request");
            let (h, b) = e.to_response();
            let _ = write_bufs(&mut c.wr, vec![h.to_bytes(), b]).await;
            return Next::Close;
        }
    };
    let has_body = !framing.is_empty();
    // An error answered before the body was read leaves the connection out of sync.
    let close_on_error = has_body || !request_keep_alive(&head);
    let Some(host) = head.host().map(|h| String::from_utf8_lossy(h).into_owned()) else {
        return reply_error(
            w,
            c,
            "bad_request",
            400,
            "missing Host header",
            close_on_error,
        )
        .await;
    };
    let Some(tunnel) = w.routes().tunnel_for_host(&host) else {
        return reply_error(
            w,
            c,
            "no_route",
            404,
            &no_route_detail(&host),
            close_on_error,
        )
        .await;
    };
    if count {
        count_host_request(w, &host);
    }
    let upgrade = is_upgrade_request(&head);
    let kind = if is_websocket_upgrade(&head) {
        StreamKind::WebSocket
    } else {
        StreamKind::Http
    };
    let mut fwd = head.clone();
    remove_hop_by_hop(&mut fwd.headers, upgrade);
    fwd.headers.remove("expect");
    append_forwarded_for(&mut fwd.headers, c.peer.ip());
    set_forwarded_proto(&mut fwd.headers, "http");
    let body_framing = match framing {
        BodyFraming::Length(n) if n > 0 => BodyFraming::Length(n),
        BodyFraming::Empty | BodyFraming::Length(_) => BodyFraming::Empty,
        _ => BodyFraming::Chunked,
    };
    let meta = encode_request_meta(
        &fwd,
        &RequestExtra {
            client_ip: Some(c.peer.ip()),
            body: body_framing,
        },
    );

    // Before the body is read: is there a replica at all, and is it on this worker?
    // A fresh connection's first choice runs over every replica (it may move once).
    let mut first = match w.pick_or_wait(tunnel, &[], c.hops == 0).await {
        Pick::Local { link, load } => Some((link, load)),
        // Nothing of the request is consumed yet.
        Pick::Elsewhere(to) if c.hops < MAX_HOPS => {
            let buf = replay_bytes(&head, &ReqBody::Empty, &c.buf);
            let kind = HandoffKind::Http { hops: c.hops + 1 };
            if w.hand_off(to, &c.stream, c.peer, buf, kind) {
                return Next::HandedOff;
            }
            return no_connector(w, c, close_on_error).await;
        }
        Pick::Elsewhere(_) | Pick::NoConnector => {
            return no_connector(w, c, close_on_error).await;
        }
    };
    let body = match read_small_body(w, c, &head, framing).await {
        Ok(b) => b,
        Err(next) => return next,
    };
    if !matches!(body, ReqBody::Empty) {
        // Time passed while the body was read: choose again.
        first = None;
    }

    // Choose a replica and open the stream; unless the body streams, wait for the REPLY here
    // so a refusal (or, for an idempotent request, a lost link) moves to another replica.
    let idempotent = is_idempotent(&head.method) && matches!(body, ReqBody::Empty) && !upgrade;
    let mut exclude = Vec::new();
    let mut last_error: Option<LinkError> = None;
    let (stream, guard, early_reply) = loop {
        let pick = match first.take() {
            Some((link, load)) => Pick::Local { link, load },
            None => {
                // The first choice moves only a fresh connection (one that moved already
                // stays, or it could bounce); a retry after a refusal may move it once more.
                let may_move = body.replayable()
                    && if exclude.is_empty() {
                        c.hops == 0
                    } else {
                        c.hops < MAX_HOPS
                    };
                w.pick_or_wait(tunnel, &exclude, may_move).await
            }
        };
        let (link, load) = match pick {
            Pick::Local { link, load } => (link, load),
            Pick::Elsewhere(to) if c.hops < MAX_HOPS && body.replayable() => {
                let buf = replay_bytes(&head, &body, &c.buf);
                let kind = HandoffKind::Http { hops: c.hops + 1 };
                if w.hand_off(to, &c.stream, c.peer, buf, kind) {
                    return Next::HandedOff;
                }
                return no_connector(w, c, true).await;
            }
            Pick::Elsewhere(_) | Pick::NoConnector => {
                return match &last_error {
                    None => no_connector(w, c, close_on_error).await,
                    Some(e) => {
                        let detail = format!(
                            "no other replica could take the request after: {e} (tried {})",
                            exclude.len()
                        );
                        reply_error(w, c, "connector", 502, &detail, close_on_error).await
                    }
                };
            }
        };
        match attempt(&link, &load, kind, &meta, &body, upgrade, idempotent).await {
            Attempt::Replied(s, g, m) => break (s, g, Some(m)),
            Attempt::Streaming(s, g) => break (s, g, None),
            Attempt::Retry(reason, e) if exclude.len() + 1 < MAX_ATTEMPTS => {
                let metrics = w.plane.registry.metrics();
                match reason {
                    RetryReason::Refused => metrics.retries_refused.inc(),
                    RetryReason::LinkLost => metrics.retries_link_lost.inc(),
                };
                tracing::debug!(connector = %load.id, error = %e, "request not processed; retrying on another replica");
                exclude.push(load.id);
                last_error = Some(e);
            }
            Attempt::Retry(_, e) => {
                let detail = format!(
                    "the connector failed the request: {e} (gave up after {MAX_ATTEMPTS} attempts)"
                );
                return reply_error(w, c, "connector", 502, &detail, close_on_error).await;
            }
            Attempt::Failed(detail) => {
                return reply_error(w, c, "connector", 502, &detail, close_on_error).await;
            }
        }
    };
    let stream = Rc::new(stream);

    // A streamed body flows on its own task, which owns the read half until the body ends.
    let streamed = matches!(body, ReqBody::Streamed { .. });
    let pump = match body {
        ReqBody::Streamed {
            prefix,
            dec,
            continue_sent,
        } => {
            if !continue_sent
                && expects_continue(&head)
                && write_bufs(&mut c.wr, vec![Bytes::from_static(CONTINUE_RESPONSE)])
                    .await
                    .is_err()
            {
                return Next::Close;
            }
            let rd = c.rd.clone();
            let buf = std::mem::take(&mut c.buf);
            let s = Rc::clone(&stream);
            let ctx = PumpCtx {
                watch: Rc::clone(&c.watch),
                timeout: w.plane.request_body_timeout,
                metrics: Arc::clone(w.plane.registry.metrics()),
            };
            Some(compio::runtime::spawn(pump_body(
                rd, buf, dec, s, prefix, ctx,
            )))
        }
        _ => None,
    };
    let meta = match early_reply {
        Some(m) => Ok(m),
        None => stream.reply_meta().await,
    };
    let next = match meta {
        Err(e) if streamed && e.is_retry_safe() => {
            let detail = format!(
                "the connector refused the request before processing it ({e}); it was not retried on another replica because its body is over {} KiB",
                RETRY_BODY_LIMIT / 1024
            );
            reply_error(w, c, "refused_large_body", 502, &detail, true).await
        }
        meta => respond(w, c, &head, &stream, guard, meta, upgrade && !has_body).await,
    };
    if let Some(p) = pump {
        match p.await {
            Ok((buf, ok)) => {
                c.buf = buf;
                if !ok {
                    return Next::Close;
                }
            }
            Err(_) => return Next::Close,
        }
    }
    next
}

/// One try on one replica: open, send a buffered body, wait for the REPLY (a streamed body
/// returns at once with the open stream).
async fn attempt(
    link: &Link,
    load: &Arc<ConnectorLoad>,
    kind: StreamKind,
    meta: &Bytes,
    body: &ReqBody,
    upgrade: bool,
    idempotent: bool,
) -> Attempt {
    let s = match link.open(kind, meta.clone()) {
        Ok(s) => s,
        Err(e) if e.is_retry_safe() => return Attempt::Retry(RetryReason::Refused, e),
        // Nothing was sent: any request may go elsewhere.
        Err(e @ LinkError::Closed { .. }) => return Attempt::Retry(RetryReason::Refused, e),
        Err(e) => {
            return Attempt::Failed(format!("cannot open a stream to the connector: {e}"));
        }
    };
    let guard = load.start_stream();
    let sent = match body {
        ReqBody::Streamed { .. } => return Attempt::Streaming(s, guard),
        // An upgrade keeps the request direction open: after a 101 it carries raw bytes.
        ReqBody::Empty if upgrade => Ok(()),
        ReqBody::Empty => s.finish(),
        ReqBody::Buffered(chunks) => send_all(&s, chunks).await,
    };
    let res = match sent {
        Ok(()) => s.reply_meta().await,
        // A refusal that arrived while the body was sent says so here too.
        Err(e) => Err(s.reply_meta().await.err().unwrap_or(e)),
    };
    match res {
        Ok(m) => Attempt::Replied(s, guard, m),
        Err(e) if e.is_retry_safe() => Attempt::Retry(RetryReason::Refused, e),
        Err(e) if idempotent && (matches!(e, LinkError::Closed { .. }) || link.is_closed()) => {
            Attempt::Retry(RetryReason::LinkLost, e)
        }
        Err(e) => Attempt::Failed(format!("the connector failed the request: {e}")),
    }
}

/// Writes a buffered body and FIN.
async fn send_all(s: &Stream, chunks: &[Bytes]) -> Result<(), LinkError> {
    for ch in chunks {
        s.write(ch.clone()).await?;
    }
    s.finish()
}

/// Reads a request body of at most [`RETRY_BODY_LIMIT`] bytes whole, so it can be resent to
/// another replica; a bigger one is left to stream (with what was read so far).
async fn read_small_body(
    w: &Worker,
    c: &mut Conn,
    head: &RequestHead,
    framing: BodyFraming,
) -> Result<ReqBody, Next> {
    if framing.is_empty() {
        return Ok(ReqBody::Empty);
    }
    let mut dec = BodyDecoder::new(framing, BodyLimits::default(), Fault::Client);
    if matches!(framing, BodyFraming::Length(n) if n > RETRY_BODY_LIMIT as u64) {
        return Ok(ReqBody::Streamed {
            prefix: Vec::new(),
            dec,
            continue_sent: false,
        });
    }
    if expects_continue(head)
        && write_bufs(&mut c.wr, vec![Bytes::from_static(CONTINUE_RESPONSE)])
            .await
            .is_err()
    {
        return Err(Next::Close);
    }
    let metrics = w.plane.registry.metrics();
    let mut chunks = Vec::new();
    let mut total = 0usize;
    loop {
        c.watch.start(w.plane.request_body_timeout);
        let r = read_body_chunk(&mut c.rd, &mut c.buf, &mut dec).await;
        c.watch.stop();
        match r {
            Ok(Some(b)) => {
                total += b.len();
                metrics.bytes_in.inc_by(b.len() as u64);
                chunks.push(b);
                if total > RETRY_BODY_LIMIT {
                    return Ok(ReqBody::Streamed {
                        prefix: chunks,
                        dec,
                        continue_sent: true,
                    });
                }
            }
            Ok(None) => return Ok(ReqBody::Buffered(chunks)),
            Err(e) => {
                tracing::debug!(error = %e, "public request body failed");
                if c.watch.timed_out() {
                    metrics.public_error("body_timeout");
                    return Err(Next::Close);
                }
                if matches!(e, HttpError::Io(_)) {
                    return Err(Next::Close);
                }
                metrics.public_error("bad_request");
                let (h, b) = e.to_response();
                let _ = write_bufs(&mut c.wr, vec![h.to_bytes(), b]).await;
                return Err(Next::Close);
            }
        }
    }
}

/// What the body pump needs besides the stream.
struct PumpCtx {
    watch: Rc<ReadWatch>,
    timeout: Duration,
    metrics: Arc<crate::metrics::Metrics>,
}

/// Moves a request body from the client to the stream (first `prefix`, read already); FIN at
/// its end. Returns the receive buffer (bytes after the body belong to the next request) and
/// whether the body ended well.
async fn pump_body(
    mut rd: TcpStream,
    mut buf: BytesMut,
    mut dec: BodyDecoder,
    s: Rc<Stream>,
    prefix: Vec<Bytes>,
    ctx: PumpCtx,
) -> (BytesMut, bool) {
    for b in prefix {
        if s.write(b).await.is_err() {
            return (buf, false);
        }
    }
    loop {
        ctx.watch.start(ctx.timeout);
        let r = read_body_chunk(&mut rd, &mut buf, &mut dec).await;
        ctx.watch.stop();
        match r {
            Ok(Some(b)) => {
                ctx.metrics.bytes_in.inc_by(b.len() as u64);
                if s.write(b).await.is_err() {
                    return (buf, false);
                }
            }
            Ok(None) => return (buf, s.finish().is_ok()),
            Err(e) => {
                if ctx.watch.timed_out() {
                    ctx.metrics.public_error("body_timeout");
                }
                tracing::debug!(error = %e, "public request body failed");
                s.reset(ErrorCode::CANCEL);
                return (buf, false);
            }
        }
    }
}

async fn respond(
    w: &Worker,
    c: &mut Conn,
    req: &RequestHead,
    stream: &Rc<Stream>,
    guard: StreamGuard,
    meta: Result<Bytes, ringtun_core::link::LinkError>,
    request_open: bool,
) -> Next {
    let keep_client = request_keep_alive(req);
    let meta = match meta {
        Ok(m) => m,
        Err(e) => {
            let detail = format!("the connector failed the request: {e}");
            return reply_error(w, c, "connector", 502, &detail, true).await;
        }
    };
    let (mut rh, rbody) = match decode_response_meta(meta) {
        Ok(ResponseMeta::Head { head, body }) => (head, body),
        Ok(ResponseMeta::Error(re)) => {
            w.plane.registry.metrics().public_error("origin");
            let close = !keep_client;
            let (h, b) = re.to_response(close);
            return match write_bufs(&mut c.wr, vec![h.to_bytes(), b]).await {
                Ok(_) if !close => Next::KeepAlive,
                _ => Next::Close,
            };
        }
        Err(e) => {
            let detail = format!("the connector sent an invalid reply: {e}");
            return reply_error(w, c, "connector", 502, &detail, true).await;
        }
    };
    if rh.status == 101 {
        remove_hop_by_hop(&mut rh.headers, true);
        if write_bufs(&mut c.wr, vec![rh.to_bytes()]).await.is_err() {
            return Next::Close;
        }
        let buf = std::mem::take(&mut c.buf);
        let metrics = Arc::clone(w.plane.registry.metrics());
        pipe(c.stream.clone(), buf, Rc::clone(stream), metrics).await;
        drop(guard);
        return Next::Close;
    }
    if request_open {
        // The upgrade was declined: the request had no body, end its direction.
        let _ = stream.finish();
    }
    let no_body = req.is_head() || rh.is_informational() || rh.status == 204 || rh.status == 304;
    let out = if no_body {
        BodyFraming::Empty
    } else {
        match rbody {
            BodyFraming::Length(n) => BodyFraming::Length(n),
            BodyFraming::Empty => BodyFraming::Length(0),
            _ if req.version == Version::Http11 => BodyFraming::Chunked,
            _ => BodyFraming::CloseDelimited,
        }
    };
    let keep = keep_client && out != BodyFraming::CloseDelimited;
    remove_hop_by_hop(&mut rh.headers, false);
    if !no_body {
        set_framing_headers(&mut rh.headers, out);
    }
    if !keep {
        rh.headers.append(
            Bytes::from_static(b"Connection"),
            Bytes::from_static(b"close"),
        );
    }
    rh.version = Version::Http11;
    let mut enc = BodyEncoder::new(out);
    let mut bufs = vec![rh.to_bytes()];
    loop {
        match stream.read().await {
            Ok(Some(chunk)) if !no_body => {
                w.plane
                    .registry
                    .metrics()
                    .bytes_out
                    .inc_by(chunk.len() as u64);
                if enc.encode(chunk, &mut bufs).is_err() {
                    w.plane.registry.metrics().public_error("connector");
                    return Next::Close;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "response body from the connector failed");
                w.plane.registry.metrics().public_error("connector");
                let _ = write_bufs(&mut c.wr, bufs).await;
                return Next::Close;
            }
        }
        match write_bufs(&mut c.wr, bufs).await {
            Ok(b) => bufs = b,
            Err(_) => return Next::Close,
        }
    }
    if enc.finish(&mut bufs).is_err() {
        let _ = write_bufs(&mut c.wr, bufs).await;
        return Next::Close;
    }
    if write_bufs(&mut c.wr, bufs).await.is_err() {
        return Next::Close;
    }
    drop(guard);
    if keep { Next::KeepAlive } else { Next::Close }
}

/// The most a [`pipe`] socket read asks for.
const PIPE_READ: usize = 64 * 1024;
/// About the most one [`pipe`] socket write carries.
const PIPE_WRITE_BATCH: usize = 256 * 1024;

/// Raw bytes both ways between a client socket and a stream (after `101`, and for TCP
/// routes), with half-close: client EOF → FIN; stream FIN → shutdown(write). A reader task
/// owns the client's read side; it is ended by the client's EOF or by shutting the socket.
pub(crate) async fn pipe(sock: TcpStream, buf: BytesMut, s: Rc<Stream>, metrics: Arc<Metrics>) {
    let up = {
        let mut rd = sock.clone();
        let s = Rc::clone(&s);
        let metrics = Arc::clone(&metrics);
        compio::runtime::spawn(async move {
            let mut buf = buf;
            loop {
                if !buf.is_empty() {
                    let data = buf.split().freeze();
                    metrics.bytes_in.inc_by(data.len() as u64);
                    if s.write(data).await.is_err() {
                        return;
                    }
                }
                // Large reads: a bulk upload costs a syscall and a DATA frame per 64 KiB,
                // not per 16 KiB (`read_more`'s size, made for request heads and bodies).
                if buf.capacity() - buf.len() < PIPE_READ / 4 {
                    buf.reserve(PIPE_READ);
                }
                let BufResult(res, b) = rd.append(std::mem::take(&mut buf)).await;
                buf = b;
                match res {
                    Ok(0) | Err(_) => {
                        let _ = s.finish();
                        return;
                    }
                    Ok(_) => {}
                }
            }
        })
    };
    let mut wr = sock.clone();
    let how = loop {
        // Everything already received goes out in one vectored write.
        match s.read_batch(PIPE_WRITE_BATCH).await {
            Ok(Some(chunks)) => {
                metrics
                    .bytes_out
                    .inc_by(chunks.iter().map(|c| c.len() as u64).sum());
                if write_bufs(&mut wr, chunks).await.is_err() {
                    break std::net::Shutdown::Both;
                }
            }
            Ok(None) => break std::net::Shutdown::Write,
            Err(_) => break std::net::Shutdown::Both,
        }
    };
    let _ = socket2::SockRef::from(&sock).shutdown(how);
    let _ = up.await;
}
