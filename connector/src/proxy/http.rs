//! HTTP streams: decode the request head from OPEN metadata, match the ingress rules, and answer
//! from the rule's service.
//!
//! Rules match the host and path the edge routed on, as the metadata carries them (normalised,
//! `docs/routing.md`), never a `Host` field; the origin gets that same host in `Host` (unless the
//! rule sets `httpHostHeader`) and that same target in its request line.
//!
//! Towards an `http://`, `https://`, `unix:` or `unix+tls:` origin, a request without a body is written by the
//! stream's own task, which then reads the response head, replies, and streams the decoded
//! response body back. A request with a body gets a *sender* task that writes the head and
//! streams the body from the link stream (re-framed: Content-Length when known, else chunked;
//! with `disableChunkedEncoding` a chunked body is first read whole, see `unchunk`) while the
//! stream's task reads the response. The connection goes back to the worker's pool,
//! with its read buffer, only when both directions completed cleanly and keep-alive allows.
//!
//! `Expect: 100-continue` is removed towards the origin: the body is streamed as it comes, the
//! edge speaks to the client. A `101 Switching Protocols` answer to an upgrade request turns the
//! stream into raw bytes both ways (WebSocket).
//!
//! Once the request is on its way, the origin has the connector's origin response timeout to
//! send a response head, else the answer is 504. The bound is kept by the worker's deadline
//! sweep (`deadline.rs`), which shuts the connection down: that ends the read in flight instead
//! of dropping it.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use compio::BufResult;
use compio::io::AsyncWriteExt;
use compio::runtime::JoinHandle;
use prometheus_client::metrics::counter::Counter;
use ringtun_core::http::io::{READ_CHUNK, read_body_chunk, read_response_head, write_bufs};
use ringtun_core::http::{
    BodyDecoder, BodyEncoder, BodyFraming, BodyLimits, CONNECTOR_ID_HEADER, Fault, HeadLimits,
    HttpError, RequestHead, ResponseHead, Version, encode_last_chunk, is_upgrade_request,
    origin_timeout_detail, override_host, remove_hop_by_hop, response_framing, response_keep_alive,
    set_connector_id, set_framing_headers, strip_for_forwarding, target_path,
};
use ringtun_core::link::Stream;
use ringtun_core::mux::ErrorCode;
use ringtun_core::tunnel::{
    ReplyError, ReplyErrorKind, decode_request_meta, encode_reply_error, encode_response_meta,
    encode_response_meta_with,
};

use super::ProxyCtx;
use super::body::{TunnelBody, chunk_frame};
use super::conn::{ConnWriter, Dial, OriginConn, Proto, open};
use super::deadline::Sending;
use super::h2;
use super::pipe::{socket_to_stream, stream_to_socket};
use super::pool::{PoolKey, ReadBuf, Slot};
use super::unchunk;
use crate::config::OriginRequest;
use crate::ingress::{IngressRules, RuleMatch, Service};
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
    let body = ReqBody {
        framing: extra.body,
        trailers: extra.trailers,
    };
    answer(head, body, &stream, &rules, m, ctx).await;
    ctx.metrics.observe(&rules, index, started.elapsed());
}

/// How the request body arrives on the stream (OPEN metadata).
#[derive(Debug, Clone, Copy)]
struct ReqBody {
    /// Its framing.
    framing: BodyFraming,
    /// The stream carries it chunked with its trailer section (`docs/http-meta.md`).
    trailers: bool,
}

/// Answers a request matched to `m` from its rule's service.
async fn answer(
    head: RequestHead,
    body: ReqBody,
    stream: &Rc<Stream>,
    rules: &Arc<IngressRules>,
    m: RuleMatch<'_>,
    ctx: &ProxyCtx,
) {
    let rule = m.rule;
    match &rule.service {
        Service::Http(_) | Service::Unix { .. } => {
            let svc = &rule.service;
            let or = &rule.origin_request;
            // The key is the rule's, found once per rule set; only a `unix+tls:` origin without
            // `originServerName` takes its TLS server name from the request's routed host.
            let keyed = match svc {
                Service::Unix { tls: true, .. } if or.origin_server_name.is_none() => {
                    let host = head
                        .headers
                        .get("host")
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .unwrap_or("");
                    PoolKey::for_service(svc, or, host).map(|(k, _)| ctx.pool.key_slot(k))
                }
                _ => ctx.pool.slot(rules, m.index, || {
                    PoolKey::for_service(svc, or, "").map(|(k, _)| k)
                }),
            };
            match keyed {
                Ok(slot) => proxy(head, body, stream.clone(), svc, or, slot, ctx).await,
                Err(e) => {
                    drain(stream).await;
                    reply_error(stream, &ctx.metrics, ReplyErrorKind::OriginInvalid, e);
                }
            }
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

/// Proxies to an HTTP origin (`http://`, `https://`, `unix:` or `unix+tls:`), whose
/// connections are pooled in `slot`.
async fn proxy(
    mut head: RequestHead,
    req_body: ReqBody,
    stream: Rc<Stream>,
    svc: &Service,
    or: &OriginRequest,
    slot: Slot,
    ctx: &ProxyCtx,
) {
    let unix_name;
    let (dial, authority): (Dial<'_>, &str) = match svc {
        Service::Http(h) => match ctx.resolver.addr(&h.host, h.port).await {
            Ok(a) => (Dial::Tcp(a), &h.authority),
            Err(why) => {
                drain(&stream).await;
                reply_error(
                    &stream,
                    &ctx.metrics,
                    ReplyErrorKind::OriginRefused,
                    format!("origin {} does not resolve: {why}", h.authority),
                );
                return;
            }
        },
        Service::Unix { path, .. } => {
            unix_name = svc.to_string();
            (Dial::Unix(path), &unix_name)
        }
        other => {
            drain(&stream).await;
            reply_error(
                &stream,
                &ctx.metrics,
                ReplyErrorKind::OriginInvalid,
                format!("{other} is not an HTTP origin"),
            );
            return;
        }
    };
    let upgrade = is_upgrade_request(&head);
    strip_for_forwarding(&mut head.headers, upgrade);
    set_connector_id(
        &mut head.headers,
        CONNECTOR_ID_HEADER,
        ctx.connector_id.clone(),
    );
    // `Host` is the routed host (set in `serve`), or the rule's `httpHostHeader`.
    if let Some(h) = &or.http_host_header {
        override_host(&mut head.headers, h.clone());
    }
    if or.http2_origin && !upgrade {
        let tls = ctx.pool.key(slot).tls;
        let origin = h2::H2Origin {
            slot,
            dial,
            tls: tls.as_ref(),
            authority,
        };
        let body = (req_body.framing, req_body.trailers);
        if h2::proxy(head, body, &stream, &origin, or, ctx).await == h2::Outcome::ConnectFailed
            && let Service::Http(h) = svc
        {
            ctx.resolver.connect_failed(&h.host);
        }
        return;
    }
    let ReqBody {
        framing: mut body,
        trailers: mut trailers_in,
    } = req_body;
    // `disableChunkedEncoding`: a chunked body is read whole (up to a limit) and sent with a
    // Content-Length; a body of known length is sent as it is. Its trailer fields have no
    // place then and are dropped.
    let mut buffered = Vec::new();
    if or.disable_chunked_encoding && body == BodyFraming::Chunked {
        match unchunk::buffer(&stream, trailers_in, or.buffered_body_limit, &ctx.metrics).await {
            Some((chunks, len)) => {
                buffered = chunks;
                body = BodyFraming::Length(len);
                trailers_in = false;
            }
            None => return,
        }
    }
    set_framing_headers(&mut head.headers, body);
    head.version = Version::Http11;
    let head_bytes = head.to_bytes();
    let method = head.method.clone();
    let origin = Origin { slot, authority };
    // A request without a body may be sent twice: once on a reused connection that turns out
    // closed, then on a fresh one.
    let mut allow_reuse = true;
    loop {
        let pooled = if allow_reuse {
            ctx.pool.take(slot, or.keep_alive_timeout)
        } else {
            None
        };
        let reused = pooled.is_some();
        let conn = match pooled {
            Some(c) => c,
            None => match open(
                dial,
                ctx.pool.key(slot).tls.as_ref(),
                authority,
                or,
                Proto::Http1,
            )
            .await
            {
                Ok(c) => (c, ReadBuf::default()),
                Err(e) => {
                    if let Service::Http(h) = svc {
                        ctx.resolver.connect_failed(&h.host);
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
            (body, trailers_in),
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
    /// Where its connections are pooled.
    slot: Slot,
    /// The origin as messages show it (`host[:port]`, `unix:/path`).
    authority: &'a str,
}

/// Sends the head and streams the request body, recording progress in `sending`. Gives the
/// write half back for reuse.
async fn send_request(
    mut w: ConnWriter,
    head: Bytes,
    body: (BodyFraming, bool),
    buffered: Vec<Bytes>,
    stream: Rc<Stream>,
    sending: Rc<Sending>,
    sent: Counter,
) -> (ConnWriter, Result<(), HttpError>) {
    let res = send_request_on(&mut w, head, body, buffered, &stream, &sending, &sent).await;
    (w, res)
}

/// Writes the head, then the body: first `buffered` (a body read whole before, see
/// [`unchunk`]), then what the stream still brings, and its trailer fields when the stream
/// carries them (`trailers`; the origin gets them after the last chunk).
async fn send_request_on(
    w: &mut ConnWriter,
    head: Bytes,
    (body, trailers): (BodyFraming, bool),
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
        let mut from = TunnelBody::new(stream, trailers);
        loop {
            match from.next().await {
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
        enc.finish_with_trailers(Some(&from.take_trailers()), &mut out)?;
        write_bufs(w, out).await?;
    }
    sending.done.set(true);
    Ok(())
}

/// The request's writing side: done already (a request without a body, written by the stream's
/// task), or a sender task streaming the body.
enum Sender {
    /// The head was written (or failed to be).
    Done(ConnWriter, Result<(), HttpError>),
    /// The task, and its progress.
    Task(JoinHandle<(ConnWriter, Result<(), HttpError>)>, Rc<Sending>),
}

impl Sender {
    /// Starts sending `head` and the request `body`: inline when there is no body (`sending`
    /// is `None`), else on a task of its own that records its progress in `sending`.
    async fn start(
        mut w: ConnWriter,
        head: Bytes,
        (body, buffered): ((BodyFraming, bool), Vec<Bytes>),
        sending: Option<Rc<Sending>>,
        stream: &Rc<Stream>,
        ctx: &ProxyCtx,
    ) -> Sender {
        let Some(sending) = sending else {
            let BufResult(res, _) = w.write_all(head).await;
            return Sender::Done(w, res.map_err(HttpError::Io));
        };
        let task = compio::runtime::spawn(send_request(
            w,
            head,
            body,
            buffered,
            stream.clone(),
            sending.clone(),
            ctx.metrics.counter(Direction::ToOrigin),
        ));
        Sender::Task(task, sending)
    }

    /// The write half once the head went out, whether or not the write succeeded (an upgrade
    /// request has no body).
    async fn writer(self) -> Option<ConnWriter> {
        match self {
            Sender::Done(w, _) => Some(w),
            Sender::Task(task, _) => task.await.ok().map(|(w, _)| w),
        }
    }

    /// The write half for reuse, if the whole request went out cleanly. The request body usually
    /// ended before the response did; it gets [`SENDER_GRACE`] otherwise.
    async fn finish(self) -> Option<ConnWriter> {
        match self {
            Sender::Done(w, Ok(())) => Some(w),
            Sender::Done(_, Err(_)) => None,
            Sender::Task(task, sending) if sending.done.get() => match task.await {
                Ok((w, Ok(()))) => Some(w),
                _ => None,
            },
            Sender::Task(task, _) => match compio::time::timeout(SENDER_GRACE, task).await {
                Ok(Ok((w, Ok(())))) => Some(w),
                _ => None,
            },
        }
    }
}

/// One request/response exchange on `conn`, reading into `rb`. Errors before the reply come
/// back to the caller; after the reply, failures reset the stream.
#[allow(clippy::too_many_arguments)]
async fn exchange(
    (conn, mut rb): (OriginConn, ReadBuf),
    origin: &Origin<'_>,
    head: Bytes,
    method: &[u8],
    (body, trailers_in): (BodyFraming, bool),
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
    // The response timeout: a whole period without a response head and without request body
    // progress shuts the connection down, which ends the head read below (or a head write the
    // origin does not take).
    let sending = (!body.is_empty()).then(|| Rc::new(Sending::default()));
    let watch = ctx
        .pool
        .deadlines()
        .watch(&closer, ctx.origin_response_timeout, sending.clone());
    let sender = Sender::start(
        writer,
        head,
        ((body, trailers_in), buffered),
        sending,
        stream,
        ctx,
    )
    .await;
    rb.make_room();
    let buf = &mut rb.buf;
    let limits = HeadLimits::default();
    let head_res = loop {
        match read_response_head(&mut r, buf, &limits).await {
            Ok(h) if h.is_informational() && h.status != 101 => continue,
            other => break other,
        }
    };
    let timed_out = watch.fired();
    drop(watch);
    let mut res = match head_res {
        Ok(h) => h,
        Err(_) if timed_out => {
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
        let Some(mut w) = sender.writer().await else {
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
    // Read before the hop-by-hop fields (Connection and Trailer among them) are stripped for
    // the edge. A chunked response that announces trailers carries them over the tunnel.
    let keep_alive = response_keep_alive(&res, framing);
    let trailers = framing == BodyFraming::Chunked && res.headers.contains("trailer");
    remove_hop_by_hop(&mut res.headers, false);
    if stream
        .reply(encode_response_meta_with(&res, framing, trailers))
        .is_err()
    {
        return Ok(());
    }
    let mut dec = BodyDecoder::new(framing, BodyLimits::default(), Fault::Origin);
    let mut received = 0usize;
    loop {
        if rb.buf.is_empty() {
            // Nothing buffered to copy: the room can come from a fresh allocation if need be.
            rb.make_room();
        }
        match read_body_chunk(&mut r, &mut rb.buf, &mut dec).await {
            Ok(Some(chunk)) => {
                received += chunk.len();
                ctx.metrics.bytes(Direction::FromOrigin, chunk.len());
                let chunk = if trailers { chunk_frame(chunk) } else { chunk };
                if let Err(e) = stream.write(chunk).await {
                    tracing::debug!(error = %e, "stream failed while sending the response body");
                    ctx.metrics.error(ErrorCause::StreamReset);
                    return Ok(());
                }
            }
            Ok(None) => {
                if trailers {
                    let last = encode_last_chunk(&dec.take_trailers().unwrap_or_default());
                    if stream.write(last).await.is_err() {
                        ctx.metrics.error(ErrorCause::StreamReset);
                        return Ok(());
                    }
                }
                break;
            }
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
    let writer = sender.finish().await;
    if body.is_empty() {
        // No body was read by the sender: consume the stream's FIN.
        drain(stream).await;
    }
    if received > READ_CHUNK / 2 {
        // Responses this big read into more room from now on.
        rb.grow();
    }
    if let Some(writer) = writer
        && rb.buf.is_empty()
        && keep_alive
    {
        let conn = OriginConn {
            reader: r,
            writer,
            closer,
        };
        ctx.pool
            .put(origin.slot, conn, rb, or.keep_alive_connections);
    }
    Ok(())
}
