//! HTTP streams: decode the request head from OPEN metadata, match the ingress rules, and answer
//! from the rule's service.
//!
//! Rules match the host and path the edge routed on, as the metadata carries them (normalised,
//! `docs/routing.md`), never a `Host` field; the origin gets that same host in `Host` (unless the
//! rule sets `httpHostHeader`) and that same target in its request line.
//!
//! Towards an `http://`, `https://`, `unix:` or `unix+tls:` origin, one exchange uses two tasks
//! on the origin socket: a *sender* writes the head and streams the request body from the link
//! stream (re-framed: Content-Length when known, else chunked; with `disableChunkedEncoding` a
//! chunked body is first read whole, see `unchunk`), while this task reads the response head,
//! replies, and streams the decoded response body back. The connection goes back to the worker's pool only when both
//! halves completed cleanly and keep-alive allows.
//!
//! `Expect: 100-continue` is removed towards the origin: the body is streamed as it comes, the
//! edge speaks to the client. A `101 Switching Protocols` answer to an upgrade request turns the
//! stream into raw bytes both ways (WebSocket).
//!
//! Once the request is on its way, the origin has the connector's origin response timeout to
//! send a response head, else the answer is 504. The bound is kept by a timer task that shuts
//! the connection down, which ends the read in flight instead of dropping it.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use prometheus_client::metrics::counter::Counter;
use ringtun_core::http::io::{read_body_chunk, read_response_head, write_bufs};
use ringtun_core::http::{
    BodyDecoder, BodyEncoder, BodyFraming, BodyLimits, CONNECTOR_ID_HEADER, Fault, HeadLimits,
    HttpError, ReplyError, ReplyErrorKind, RequestHead, ResponseHead, Version, decode_request_meta,
    encode_reply_error, encode_response_meta, is_upgrade_request, origin_timeout_detail,
    override_host, remove_hop_by_hop, response_framing, response_keep_alive, set_connector_id,
    set_framing_headers, target_path,
};
use ringtun_core::link::Stream;
use ringtun_core::mux::ErrorCode;

use super::ProxyCtx;
use super::conn::{ConnWriter, Dial, OriginConn, open};
use super::pipe::{socket_to_stream, stream_to_socket};
use super::pool::{OriginTarget, PoolKey};
use super::unchunk;
use crate::config::OriginRequest;
use crate::ingress::{RuleMatch, Service};
use crate::observe::{Direction, ErrorCause, WorkerMetrics};

/// The page `hello_world` serves.
const HELLO: &str = "Hello from ringtun! This is the built-in hello_world service.\n";

/// How long a finished response waits for the request body's end before giving up on reusing
/// the origin connection.
const SENDER_GRACE: Duration = Duration::from_secs(1);

/// Serves one HTTP stream, counting it (and its duration) under the rule it matched.
pub async fn serve(meta: Bytes, stream: Rc<Stream>, ctx: &ProxyCtx) {
    let started = Instant::now();
    let (mut head, extra) = match decode_request_meta(meta) {
        Ok(x) => x,
        Err(e) => {
            tracing::debug!(error = %e, "invalid request metadata from the edge");
            stream.reset(ErrorCode::PROTOCOL_ERROR);
            return;
        }
    };
    let host = extra.host.as_str();
    // ASCII: the decoder accepts only a normalised target.
    let path = String::from_utf8_lossy(target_path(&head.target));
    let rules = ctx.ingress.load();
    let m = rules.match_request(host, &path);
    tracing::debug!(host, %path, rule = m.number(), "request matched");
    // What the origin gets is what was matched, whatever `Host` the client sent.
    override_host(&mut head.headers, extra.host.clone());
    let index = m.index;
    ctx.metrics.request(&rules, index);
    answer(head, extra.body, &stream, m, ctx).await;
    ctx.metrics.observe(&rules, index, started.elapsed());
}

/// Answers a request matched to `m` from its rule's service.
async fn answer(
    head: RequestHead,
    body: BodyFraming,
    stream: &Rc<Stream>,
    m: RuleMatch<'_>,
    ctx: &ProxyCtx,
) {
    let rule = m.rule;
    match &rule.service {
        Service::Http(_) | Service::Unix { .. } => {
            let svc = &rule.service;
            proxy(head, body, stream.clone(), svc, &rule.origin_request, ctx).await;
        }
        Service::HttpStatus(n) => {
            drain(stream).await;
            let mut res = ResponseHead::new(*n);
            res.headers.append("Content-Length", "0");
            if stream
                .reply(encode_response_meta(&res, BodyFraming::Length(0)))
                .is_ok()
            {
                let _ = stream.finish();
            }
        }
        Service::HelloWorld => {
            drain(stream).await;
            let mut res = ResponseHead::new(200);
            res.headers
                .append("Content-Type", "text/plain; charset=utf-8");
            res.headers
                .append("Content-Length", HELLO.len().to_string());
            let framing = BodyFraming::Length(HELLO.len() as u64);
            if stream.reply(encode_response_meta(&res, framing)).is_ok()
                && !head.is_head()
                && stream
                    .write(Bytes::from_static(HELLO.as_bytes()))
                    .await
                    .is_err()
            {
                return;
            }
            let _ = stream.finish();
        }
        Service::Tcp(t) => {
            drain(stream).await;
            reply_error(
                stream,
                &ctx.metrics,
                ReplyErrorKind::OriginInvalid,
                format!("rule {} serves TCP ({}), not HTTP", m.number(), t.authority),
            );
        }
    }
}

/// Reads the request body to its end and drops it (services that answer without it).
async fn drain(stream: &Stream) {
    while let Ok(Some(_)) = stream.read().await {}
}

fn reply_error(stream: &Stream, metrics: &WorkerMetrics, kind: ReplyErrorKind, message: String) {
    reply_error_as(stream, metrics, kind, ErrorCause::from(kind), message);
}

/// [`reply_error`] counted under a cause of its own (a timeout with its own label).
fn reply_error_as(
    stream: &Stream,
    metrics: &WorkerMetrics,
    kind: ReplyErrorKind,
    cause: ErrorCause,
    message: String,
) {
    tracing::debug!(?kind, %message, "answering with an error");
    metrics.error(cause);
    if stream
        .reply(encode_reply_error(&ReplyError { kind, message }))
        .is_ok()
    {
        let _ = stream.finish();
    }
}

/// Why an exchange with the origin failed before a reply was sent.
enum Failed {
    /// The reply is this error.
    Reply(ReplyErrorKind, String),
    /// A reused idle connection turned out closed before anything could be answered; a request
    /// without a body may go again on a fresh connection.
    Stale,
}

/// Proxies to an HTTP origin: `http://`, `https://`, `unix:` or `unix+tls:`.
async fn proxy(
    mut head: RequestHead,
    mut body: BodyFraming,
    stream: Rc<Stream>,
    svc: &Service,
    or: &OriginRequest,
    ctx: &ProxyCtx,
) {
    // The routed host (set in `serve`): the default TLS server name of a Unix socket origin.
    let host = head
        .headers
        .get("host")
        .and_then(|h| std::str::from_utf8(h).ok());
    let (key, authority) = match PoolKey::for_service(svc, or, host.unwrap_or("")) {
        Ok(k) => k,
        Err(e) => {
            drain(&stream).await;
            reply_error(&stream, &ctx.metrics, ReplyErrorKind::OriginInvalid, e);
            return;
        }
    };
    let dial = match &key.target {
        OriginTarget::Tcp { host, port } => match ctx.resolver.addr(host, *port).await {
            Ok(a) => Dial::Tcp(a),
            Err(why) => {
                drain(&stream).await;
                reply_error(
                    &stream,
                    &ctx.metrics,
                    ReplyErrorKind::OriginRefused,
                    format!("origin {authority} does not resolve: {why}"),
                );
                return;
            }
        },
        OriginTarget::Unix(path) => Dial::Unix(path),
    };
    // `disableChunkedEncoding`: a chunked body is read whole (up to a limit) and sent with a
    // Content-Length; a body of known length is sent as it is.
    let mut buffered = Vec::new();
    if or.disable_chunked_encoding && body == BodyFraming::Chunked {
        match unchunk::buffer(&stream, or.buffered_body_limit, &ctx.metrics).await {
            Some((chunks, len)) => {
                buffered = chunks;
                body = BodyFraming::Length(len);
            }
            None => return,
        }
    }
    let upgrade = is_upgrade_request(&head);
    remove_hop_by_hop(&mut head.headers, upgrade);
    head.headers.remove("expect");
    set_connector_id(
        &mut head.headers,
        CONNECTOR_ID_HEADER,
        ctx.connector_id.clone(),
    );
    // `Host` is the routed host (set in `serve`), or the rule's `httpHostHeader`.
    if let Some(h) = &or.http_host_header {
        override_host(&mut head.headers, h.clone());
    }
    set_framing_headers(&mut head.headers, body);
    head.version = Version::Http11;
    let head_bytes = head.to_bytes();
    let method = head.method.clone();
    let origin = Origin {
        dial,
        key: &key,
        authority: &authority,
    };
    // A request without a body may be sent twice: once on a reused connection that turns out
    // closed, then on a fresh one.
    let mut allow_reuse = true;
    loop {
        let pooled = if allow_reuse {
            ctx.pool.take(&key, or.keep_alive_timeout)
        } else {
            None
        };
        let reused = pooled.is_some();
        let conn = match pooled {
            Some(c) => c,
            None => match open(origin.dial, key.tls.as_ref(), &authority, or).await {
                Ok(c) => c,
                Err(e) => {
                    if let OriginTarget::Tcp { host, .. } = &key.target {
                        ctx.resolver.connect_failed(host);
                    }
                    drain(&stream).await;
                    reply_error_as(&stream, &ctx.metrics, e.kind, e.cause, e.message);
                    return;
                }
            },
        };
        let outcome = exchange(
            conn,
            &origin,
            head_bytes.clone(),
            &method,
            body,
            buffered.clone(),
            upgrade,
            reused,
            &stream,
            or,
            ctx,
        )
        .await;
        match outcome {
            Ok(()) => return,
            Err(Failed::Stale) => {
                tracing::debug!(origin = %authority, "pooled origin connection was closed; retrying on a new one");
                allow_reuse = false;
            }
            Err(Failed::Reply(kind, msg)) => {
                drain(&stream).await;
                reply_error(&stream, &ctx.metrics, kind, msg);
                return;
            }
        }
    }
}

/// Where one request goes.
struct Origin<'a> {
    /// The resolved address or the socket path.
    dial: Dial<'a>,
    /// The pool key (target and TLS settings).
    key: &'a PoolKey,
    /// The origin as messages show it (`host[:port]`, `unix:/path`).
    authority: &'a str,
}

/// How far the sender got, for the reader and the response timer.
#[derive(Debug, Default)]
struct Sending {
    /// The request body ended cleanly.
    done: Cell<bool>,
    /// Writes completed so far: while the request body still flows, the origin is not late.
    writes: Cell<u64>,
}

/// Sends the head and streams the request body, recording progress in `sending`. Gives the
/// write half back for reuse.
async fn send_request(
    mut w: ConnWriter,
    head: Bytes,
    body: BodyFraming,
    buffered: Vec<Bytes>,
    stream: Rc<Stream>,
    sending: Rc<Sending>,
    sent: Counter,
) -> (ConnWriter, Result<(), HttpError>) {
    let res = send_request_on(&mut w, head, body, buffered, &stream, &sending, &sent).await;
    (w, res)
}

/// Writes the head, then the body: first `buffered` (a body read whole before, see
/// [`unchunk`]), then what the stream still brings.
async fn send_request_on(
    w: &mut ConnWriter,
    head: Bytes,
    body: BodyFraming,
    buffered: Vec<Bytes>,
    stream: &Stream,
    sending: &Sending,
    sent: &Counter,
) -> Result<(), HttpError> {
    let mut out = write_bufs(w, vec![head]).await?;
    if !body.is_empty() {
        let mut enc = BodyEncoder::new(body);
        for chunk in buffered {
            sent.inc_by(chunk.len() as u64);
            enc.encode(chunk, &mut out)?;
        }
        loop {
            match stream.read().await {
                Ok(Some(chunk)) => {
                    sent.inc_by(chunk.len() as u64);
                    enc.encode(chunk, &mut out)?;
                    out = write_bufs(w, out).await?;
                    sending.writes.set(sending.writes.get() + 1);
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::debug!(error = %e, "request body stream failed");
                    return Err(HttpError::Io(std::io::Error::other(e.to_string())));
                }
            }
        }
        enc.finish(&mut out)?;
        write_bufs(w, out).await?;
    }
    sending.done.set(true);
    Ok(())
}

/// One request/response exchange on `conn`. Errors before the reply come back to the caller;
/// after the reply, failures reset the stream.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    conn: OriginConn,
    origin: &Origin<'_>,
    head: Bytes,
    method: &[u8],
    body: BodyFraming,
    buffered: Vec<Bytes>,
    upgrade: bool,
    reused: bool,
    stream: &Rc<Stream>,
    or: &OriginRequest,
    ctx: &ProxyCtx,
) -> Result<(), Failed> {
    let addr = origin.authority;
    let OriginConn {
        reader: mut r,
        writer,
        closer,
    } = conn;
    let sending = Rc::new(Sending::default());
    let sender = compio::runtime::spawn(send_request(
        writer,
        head,
        body,
        buffered,
        stream.clone(),
        sending.clone(),
        ctx.metrics.counter(Direction::ToOrigin),
    ));
    // The response timeout: a whole period without a response head and without request body
    // progress shuts the connection down, which ends the head read below.
    let timed_out = Rc::new(Cell::new(false));
    let timer = {
        let closer = closer.clone();
        let timed_out = timed_out.clone();
        let sending = sending.clone();
        let limit = ctx.origin_response_timeout;
        compio::runtime::spawn(async move {
            let mut seen = sending.writes.get();
            loop {
                compio::time::sleep(limit).await;
                let now = sending.writes.get();
                if now == seen {
                    break;
                }
                seen = now;
            }
            timed_out.set(true);
            let _ = closer.shutdown();
        })
    };
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let limits = HeadLimits::default();
    let head_res = loop {
        match read_response_head(&mut r, &mut buf, &limits).await {
            Ok(h) if h.is_informational() && h.status != 101 => continue,
            other => break other,
        }
    };
    drop(timer);
    let mut res = match head_res {
        Ok(h) => h,
        Err(_) if timed_out.get() => {
            drop(sender);
            tracing::info!(origin = %addr, "origin sent no response head in time");
            return Err(Failed::Reply(
                ReplyErrorKind::OriginTimeout,
                origin_timeout_detail(addr),
            ));
        }
        // A reused connection that fails before a single response byte was most likely
        // closed by the origin while idle; nothing of the request was consumed.
        Err(HttpError::IncompleteHead { received: 0, .. } | HttpError::Io(_))
            if reused && body.is_empty() && buf.is_empty() =>
        {
            drop(sender);
            return Err(Failed::Stale);
        }
        Err(e) => {
            drop(sender);
            return Err(Failed::Reply(
                ReplyErrorKind::OriginInvalid,
                format!("invalid response from origin {addr}: {e}"),
            ));
        }
    };
    if res.status == 101 {
        if !upgrade {
            drop(sender);
            return Err(Failed::Reply(
                ReplyErrorKind::OriginInvalid,
                format!("origin {addr} switched protocols without an upgrade request"),
            ));
        }
        // The sender wrote only the head (an upgrade request has no body).
        let Ok((mut w, _)) = sender.await else {
            return Ok(());
        };
        remove_hop_by_hop(&mut res.headers, true);
        if stream
            .reply(encode_response_meta(&res, BodyFraming::Empty))
            .is_err()
        {
            return Ok(());
        }
        tracing::debug!(origin = %addr, "upgraded; piping raw bytes");
        let first = buf.split().freeze();
        let s2 = stream.clone();
        let sent = ctx.metrics.counter(Direction::ToOrigin);
        let up = compio::runtime::spawn(async move { stream_to_socket(&s2, &mut w, &sent).await });
        let received = ctx.metrics.counter(Direction::FromOrigin);
        socket_to_stream(&mut r, stream, first, &received).await;
        let _ = up.await;
        return Ok(());
    }
    let framing = match response_framing(&res, method) {
        Ok(f) => f,
        Err(e) => {
            drop(sender);
            return Err(Failed::Reply(
                ReplyErrorKind::OriginInvalid,
                format!("invalid response from origin {addr}: {e}"),
            ));
        }
    };
    // Read before the hop-by-hop fields (Connection among them) are stripped for the edge.
    let keep_alive = response_keep_alive(&res, framing);
    remove_hop_by_hop(&mut res.headers, false);
    if stream.reply(encode_response_meta(&res, framing)).is_err() {
        return Ok(());
    }
    let mut dec = BodyDecoder::new(framing, BodyLimits::default(), Fault::Origin);
    loop {
        match read_body_chunk(&mut r, &mut buf, &mut dec).await {
            Ok(Some(chunk)) => {
                ctx.metrics.bytes(Direction::FromOrigin, chunk.len());
                if let Err(e) = stream.write(chunk).await {
                    tracing::debug!(error = %e, "stream failed while sending the response body");
                    ctx.metrics.error(ErrorCause::StreamReset);
                    return Ok(());
                }
            }
            Ok(None) => break,
            Err(e) => {
                tracing::info!(origin = %addr, error = %e, "origin response body failed");
                ctx.metrics.error(ErrorCause::StreamReset);
                stream.reset(ErrorCode::INTERNAL_ERROR);
                return Ok(());
            }
        }
    }
    if stream.finish().is_err() {
        return Ok(());
    }
    // The request body usually ended before the response did; give it a moment otherwise.
    let writer = if sending.done.get() {
        match sender.await {
            Ok((w, Ok(()))) => Some(w),
            _ => None,
        }
    } else {
        match compio::time::timeout(SENDER_GRACE, sender).await {
            Ok(Ok((w, Ok(())))) => Some(w),
            _ => None,
        }
    };
    if body.is_empty() {
        // No body was read by the sender: consume the stream's FIN.
        drain(stream).await;
    }
    if let Some(writer) = writer
        && buf.is_empty()
        && keep_alive
    {
        let conn = OriginConn {
            reader: r,
            writer,
            closer,
        };
        ctx.pool.put(origin.key, conn, or.keep_alive_connections);
    }
    Ok(())
}
