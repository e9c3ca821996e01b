//! `originRequest.http2Origin`: HTTP/2 towards the origin (gRPC among others).
//!
//! The protocol is hyperium's `h2` crate. It is written against tokio's `AsyncRead` and
//! `AsyncWrite` and needs no tokio runtime, so its connection runs as a compio task: the
//! origin connection's halves ([`open`], the same dialling, `connectTimeout`, TLS and
//! `tlsTimeout` as HTTP/1.1) go through compio's `compat` adapters (futures-io) and
//! tokio-util's `compat` into `tokio::io::join`.
//!
//! One connection per origin ([`PoolKey`](super::PoolKey) slot) and worker carries all of that
//! worker's requests to it, as concurrent streams; how many at once is the origin's
//! `SETTINGS_MAX_CONCURRENT_STREAMS` (h2 waits for a free stream; the response timeout covers
//! that wait). When the origin closes the connection or sends GOAWAY, the next request dials a
//! new one; a request without a body that found the connection gone or was refused
//! (`REFUSED_STREAM`) before the origin saw it is sent once more on a new connection.
//!
//! Over TLS only `h2` is offered in ALPN, and an origin that does not agree is answered with a
//! 502 that says so; plain `http://` and `unix:` origins get h2c with prior knowledge.
//!
//! Bodies stream both ways under HTTP/2 flow control: a request body piece is sent only as the
//! origin's window allows, and response window is given back to the origin only once the piece
//! went into the link stream, so nothing is buffered beyond the windows. The request's
//! hop-by-hop fields were removed already (`http.rs`); `Host` becomes `:authority`, and
//! `te: trailers` is sent (the only `TE` HTTP/2 allows; gRPC servers require it). A response of
//! unknown length travels with the REPLY trailers flag (`docs/http-meta.md`), so its trailers
//! (`grpc-status`, `grpc-message`) reach the edge; request trailers (the OPEN flag) go to the
//! origin in a trailers frame.

use std::cell::Cell;
use std::future::poll_fn;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use compio::io::compat::{AsyncReadStream, AsyncWriteStream};
use futures_util::lock::Mutex;
use h2::client::SendRequest;
use h2::{Reason, SendStream};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, Uri};
use prometheus_client::metrics::counter::Counter;
use ringtun_core::http::{
    BodyFraming, Headers, RequestHead, ResponseHead, encode_last_chunk, is_trailer_allowed,
    origin_timeout_detail,
};
use ringtun_core::link::Stream;
use ringtun_core::mux::ErrorCode;
use ringtun_core::tunnel::{
    ReplyError, ReplyErrorKind, encode_reply_error, encode_response_meta_with,
};
use tokio_util::compat::{FuturesAsyncReadCompatExt, FuturesAsyncWriteCompatExt};

use super::ProxyCtx;
use super::body::{TunnelBody, chunk_frame};
use super::conn::{Dial, OpenFailed, OriginConn, OriginTls, Proto, open};
use super::deadline::Sending;
use super::pool::Slot;
use crate::config::OriginRequest;
use crate::observe::{Direction, ErrorCause};

/// How long a finished response waits for the request body's end before the request stream is
/// dropped (reset).
const SENDER_GRACE: Duration = Duration::from_secs(1);

/// The HTTP/2 connection of one pool slot: the live one, if any. The lock is held while a new
/// one is dialled, so concurrent requests wait for it instead of dialling their own.
#[derive(Default)]
pub struct H2Slot {
    conn: Mutex<Option<Live>>,
}

impl std::fmt::Debug for H2Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H2Slot").finish_non_exhaustive()
    }
}

/// A connection: the handle that opens streams, and whether its task still runs.
struct Live {
    send: SendRequest<Bytes>,
    alive: Rc<Cell<bool>>,
}

/// Where one request goes.
pub struct H2Origin<'a> {
    /// The pool slot of the origin (its HTTP/2 connection lives there).
    pub slot: Slot,
    /// Where to dial.
    pub dial: Dial<'a>,
    /// TLS towards it (`https://`, `unix+tls:`).
    pub tls: Option<&'a OriginTls>,
    /// The origin as messages show it.
    pub authority: &'a str,
}

/// How a request ended, for the caller's resolver bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Answered (with a response or an error reply).
    Done,
    /// No connection to the origin could be made (refused or timed out).
    ConnectFailed,
}

/// Why the exchange failed before a reply.
enum Failed {
    /// Reply with this.
    Reply(ReplyErrorKind, ErrorCause, String),
    /// The connection was gone before the origin saw the request: a request without a body
    /// may go again.
    Retry(String),
}

/// Proxies one request to an HTTP/2 origin. `head` had its hop-by-hop fields removed and
/// carries the `Host` the origin gets; `body` is the request body's framing and the OPEN
/// trailers flag.
pub async fn proxy(
    head: RequestHead,
    (framing, trailers_in): (BodyFraming, bool),
    stream: &Rc<Stream>,
    origin: &H2Origin<'_>,
    or: &OriginRequest,
    ctx: &ProxyCtx,
) -> Outcome {
    let scheme = if origin.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let failed = match exchange(
            &head,
            scheme,
            (framing, trailers_in),
            stream,
            origin,
            or,
            ctx,
        )
        .await
        {
            Ok(()) => return Outcome::Done,
            Err(Err(open)) => {
                let connect = !matches!(open.kind, ReplyErrorKind::OriginInvalid);
                fail(stream, ctx, open.kind, open.cause, open.message).await;
                return if connect {
                    Outcome::ConnectFailed
                } else {
                    Outcome::Done
                };
            }
            Err(Ok(f)) => f,
        };
        match failed {
            Failed::Retry(why) if attempt < 2 && framing.is_empty() => {
                tracing::debug!(origin = %origin.authority, %why, "HTTP/2 connection to origin gone; retrying on a new one");
            }
            Failed::Retry(why) => {
                let msg = format!(
                    "HTTP/2 exchange with origin {} failed: {why}",
                    origin.authority
                );
                let kind = ReplyErrorKind::OriginInvalid;
                fail(stream, ctx, kind, ErrorCause::from(kind), msg).await;
                return Outcome::Done;
            }
            Failed::Reply(kind, cause, msg) => {
                fail(stream, ctx, kind, cause, msg).await;
                return Outcome::Done;
            }
        }
    }
}

/// Drains the request body and replies with an error.
async fn fail(
    stream: &Stream,
    ctx: &ProxyCtx,
    kind: ReplyErrorKind,
    cause: ErrorCause,
    msg: String,
) {
    while let Ok(Some(_)) = stream.read().await {}
    tracing::debug!(?kind, %msg, "answering with an error");
    ctx.metrics.error(cause);
    if stream
        .reply(encode_reply_error(&ReplyError { kind, message: msg }))
        .is_ok()
    {
        let _ = stream.finish();
    }
}

/// One attempt: a stream on the origin's connection, the request, the response. The outer
/// error is a connection that could not be opened; the inner one a failure before the reply.
async fn exchange(
    head: &RequestHead,
    scheme: &str,
    (framing, trailers_in): (BodyFraming, bool),
    stream: &Rc<Stream>,
    origin: &H2Origin<'_>,
    or: &OriginRequest,
    ctx: &ProxyCtx,
) -> Result<(), Result<Failed, OpenFailed>> {
    let addr = origin.authority;
    let invalid = |msg: String| {
        let kind = ReplyErrorKind::OriginInvalid;
        Ok(Failed::Reply(kind, ErrorCause::from(kind), msg))
    };
    let timeout = || {
        let kind = ReplyErrorKind::OriginTimeout;
        Ok(Failed::Reply(
            kind,
            ErrorCause::from(kind),
            origin_timeout_detail(addr),
        ))
    };
    let req = request(head, scheme).map_err(|e| {
        invalid(format!(
            "the request cannot be sent to origin {addr} over HTTP/2: {e}"
        ))
    })?;
    let (send, alive) = connection(origin, or, ctx).await.map_err(Err)?;
    let gone = |e: h2::Error| {
        alive.set(false);
        Ok(Failed::Retry(describe(&e, origin)))
    };
    // A free stream (the origin's concurrency limit), within the response timeout.
    let mut send = match compio::time::timeout(ctx.origin_response_timeout, send.ready()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Err(gone(e)),
        Err(_) => return Err(timeout()),
    };
    let (response, tx) = match send.send_request(req, framing.is_empty()) {
        Ok(x) => x,
        Err(e) => return Err(gone(e)),
    };
    let sending = Rc::new(Sending::default());
    let sender = (!framing.is_empty()).then(|| {
        compio::runtime::spawn(send_body(
            stream.clone(),
            tx,
            trailers_in,
            sending.clone(),
            ctx.metrics.counter(Direction::ToOrigin),
        ))
    });
    // The response head, within the response timeout; the clock restarts while the request
    // body still moves.
    let mut response = std::pin::pin!(response);
    let res = loop {
        let before = sending.writes.get();
        match compio::time::timeout(ctx.origin_response_timeout, response.as_mut()).await {
            Ok(r) => break r,
            Err(_) if sending.writes.get() != before => {}
            Err(_) => {
                tracing::info!(origin = %addr, "origin sent no response head in time");
                return Err(timeout());
            }
        }
    };
    let res = match res {
        Ok(r) => r,
        Err(e) if e.reason() == Some(Reason::REFUSED_STREAM) || e.is_go_away() => {
            return Err(gone(e));
        }
        Err(e) => return Err(invalid(describe(&e, origin))),
    };
    let (parts, mut body) = res.into_parts();
    let mut rh = ResponseHead::new(parts.status.as_u16());
    append_fields(&mut rh.headers, &parts.headers);
    let framing_out = if body.is_end_stream() {
        BodyFraming::Empty
    } else if let Some(n) = content_length(&parts.headers) {
        BodyFraming::Length(n)
    } else {
        BodyFraming::Chunked
    };
    // A body of unknown length may end with trailers: the stream carries them.
    let trailers = framing_out == BodyFraming::Chunked;
    if stream
        .reply(encode_response_meta_with(&rh, framing_out, trailers))
        .is_err()
    {
        return Ok(());
    }
    let failed = |why: String| {
        tracing::info!(origin = %addr, %why, "origin response body failed");
        ctx.metrics.error(ErrorCause::StreamReset);
        stream.reset(ErrorCode::INTERNAL_ERROR);
    };
    while let Some(piece) = body.data().await {
        let chunk = match piece {
            Ok(c) => c,
            Err(e) => {
                failed(describe(&e, origin));
                return Ok(());
            }
        };
        let n = chunk.len();
        if n == 0 {
            continue;
        }
        ctx.metrics.bytes(Direction::FromOrigin, n);
        let chunk = if trailers { chunk_frame(chunk) } else { chunk };
        if stream.write(chunk).await.is_err() {
            ctx.metrics.error(ErrorCause::StreamReset);
            return Ok(());
        }
        // Window back to the origin only for what the link stream took.
        let _ = body.flow_control().release_capacity(n);
    }
    if trailers {
        let fields = match body.trailers().await {
            Ok(t) => {
                let mut h = Headers::new();
                if let Some(t) = t {
                    append_fields(&mut h, &t);
                }
                h
            }
            Err(e) => {
                failed(describe(&e, origin));
                return Ok(());
            }
        };
        if stream.write(encode_last_chunk(&fields)).await.is_err() {
            ctx.metrics.error(ErrorCause::StreamReset);
            return Ok(());
        }
    }
    if stream.finish().is_err() {
        return Ok(());
    }
    match sender {
        // The request body usually ended before the response did.
        Some(task) => {
            let _ = compio::time::timeout(SENDER_GRACE, task).await;
        }
        // No body was read: consume the stream's FIN.
        None => while let Ok(Some(_)) = stream.read().await {},
    }
    Ok(())
}

/// An h2 error as the 502 says it, with a hint about h2c for a plain origin that may not
/// speak HTTP/2 at all.
fn describe(e: &h2::Error, origin: &H2Origin<'_>) -> String {
    if origin.tls.is_none() && !(e.is_reset() && e.is_remote()) {
        format!(
            "HTTP/2 with origin {} failed: {e} (http2Origin is set: a plain origin gets h2c with \
             prior knowledge; does it speak HTTP/2 without TLS?)",
            origin.authority
        )
    } else {
        format!("HTTP/2 with origin {} failed: {e}", origin.authority)
    }
}

/// The slot's live connection, or a new one.
async fn connection(
    origin: &H2Origin<'_>,
    or: &OriginRequest,
    ctx: &ProxyCtx,
) -> Result<(SendRequest<Bytes>, Rc<Cell<bool>>), OpenFailed> {
    let slot = ctx.pool.h2(origin.slot);
    let mut held = slot.conn.lock().await;
    if let Some(live) = held.as_ref()
        && live.alive.get()
    {
        return Ok((live.send.clone(), live.alive.clone()));
    }
    *held = None;
    let OriginConn {
        reader,
        writer,
        closer,
    } = open(origin.dial, origin.tls, origin.authority, or, Proto::Http2).await?;
    let io = tokio::io::join(
        Box::pin(AsyncReadStream::new(reader)).compat(),
        Box::pin(AsyncWriteStream::new(writer)).compat_write(),
    );
    let name = origin.authority.to_owned();
    let handshake = h2::client::Builder::new().handshake::<_, Bytes>(io);
    let (send, connection) = match compio::time::timeout(or.tls_timeout, handshake).await {
        Ok(Ok(x)) => x,
        Ok(Err(e)) => {
            let _ = closer.shutdown();
            let kind = ReplyErrorKind::OriginInvalid;
            return Err(OpenFailed {
                kind,
                cause: ErrorCause::from(kind),
                message: format!("HTTP/2 handshake with origin {name} failed: {e}"),
            });
        }
        Err(_) => {
            let _ = closer.shutdown();
            let kind = ReplyErrorKind::OriginTimeout;
            return Err(OpenFailed {
                kind,
                cause: ErrorCause::from(kind),
                message: origin_timeout_detail(&name),
            });
        }
    };
    let alive = Rc::new(Cell::new(true));
    let flag = alive.clone();
    compio::runtime::spawn(async move {
        match connection.await {
            Ok(()) => tracing::debug!(origin = %name, "HTTP/2 connection to origin closed"),
            Err(e) => {
                tracing::info!(origin = %name, error = %e, "HTTP/2 connection to origin failed")
            }
        }
        flag.set(false);
        let _ = closer.shutdown();
    })
    .detach();
    *held = Some(Live {
        send: send.clone(),
        alive: alive.clone(),
    });
    Ok((send, alive))
}

/// The HTTP/2 request for `head`: `Host` as `:authority`, the target as `:path`, the other
/// fields as they are (names lowercased), and `te: trailers`.
fn request(head: &RequestHead, scheme: &str) -> Result<Request<()>, String> {
    let host = head.headers.get("host").ok_or("the request has no Host")?;
    let authority = Authority::from_maybe_shared(host.clone()).map_err(|e| format!("Host: {e}"))?;
    let path = PathAndQuery::from_maybe_shared(head.target.clone())
        .map_err(|e| format!("request target: {e}"))?;
    let uri = Uri::builder()
        .scheme(scheme)
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| e.to_string())?;
    let method = Method::from_bytes(&head.method).map_err(|e| e.to_string())?;
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .body(())
        .map_err(|e| e.to_string())?;
    let fields = req.headers_mut();
    for h in &head.headers {
        if h.is("host") || h.is("te") {
            continue;
        }
        let name = HeaderName::from_bytes(&h.name).map_err(|e| format!("field name: {e}"))?;
        let value = HeaderValue::from_maybe_shared(h.value.clone())
            .map_err(|e| format!("field value: {e}"))?;
        fields.append(name, value);
    }
    fields.insert(http::header::TE, HeaderValue::from_static("trailers"));
    Ok(req)
}

/// Appends HTTP/2 fields to `out` (values trimmed of surrounding whitespace, which the stream
/// metadata does not allow).
fn append_fields(out: &mut Headers, fields: &HeaderMap) {
    for (name, value) in fields {
        let v = value.as_bytes();
        let ws = |b: &u8| *b == b' ' || *b == b'\t';
        let start = v.iter().take_while(|b| ws(b)).count();
        let end = v.len() - v.iter().rev().take_while(|b| ws(b)).count();
        let v = if start < end { &v[start..end] } else { &[][..] };
        out.append(
            Bytes::copy_from_slice(name.as_str().as_bytes()),
            Bytes::copy_from_slice(v),
        );
    }
}

/// The `content-length` of a response, when it has exactly one valid one.
fn content_length(fields: &HeaderMap) -> Option<u64> {
    let mut all = fields.get_all(http::header::CONTENT_LENGTH).iter();
    let v = all.next()?;
    if all.next().is_some() {
        return None;
    }
    std::str::from_utf8(v.as_bytes()).ok()?.parse().ok()
}

/// Streams the request body from the link stream to the origin under flow control, then its
/// trailers (a trailers frame) or the end of the stream.
async fn send_body(
    stream: Rc<Stream>,
    mut tx: SendStream<Bytes>,
    trailers: bool,
    sending: Rc<Sending>,
    sent: Counter,
) {
    let mut body = TunnelBody::new(&stream, trailers);
    loop {
        match body.next().await {
            Ok(Some(chunk)) => {
                sent.inc_by(chunk.len() as u64);
                if let Err(e) = send_data(&mut tx, chunk).await {
                    tracing::debug!(error = %e, "HTTP/2 request body to the origin failed");
                    return;
                }
                sending.writes.set(sending.writes.get() + 1);
            }
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "request body stream failed");
                tx.send_reset(Reason::CANCEL);
                return;
            }
        }
    }
    let mut fields = HeaderMap::new();
    for h in &body.take_trailers() {
        if !is_trailer_allowed(&h.name) {
            continue;
        }
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(&h.name),
            HeaderValue::from_maybe_shared(h.value.clone()),
        ) {
            fields.append(n, v);
        }
    }
    let end = if fields.is_empty() {
        tx.send_data(Bytes::new(), true)
    } else {
        tx.send_trailers(fields)
    };
    if end.is_ok() {
        sending.done.set(true);
    }
}

/// Sends `data` as the origin's flow-control window allows.
async fn send_data(tx: &mut SendStream<Bytes>, mut data: Bytes) -> Result<(), h2::Error> {
    while !data.is_empty() {
        tx.reserve_capacity(data.len());
        let room = match poll_fn(|cx| tx.poll_capacity(cx)).await {
            Some(Ok(n)) => n,
            Some(Err(e)) => return Err(e),
            None => return Err(h2::Error::from(Reason::CANCEL)),
        };
        if room == 0 {
            continue;
        }
        let piece = data.split_to(room.min(data.len()));
        tx.send_data(piece, false)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_host_to_authority_and_ask_for_trailers() {
        let mut head = RequestHead::new("POST", "/pkg.Svc/Call?x=1");
        head.headers.append("Host", "app.test");
        head.headers.append("Content-Type", "application/grpc");
        head.headers.append("TE", "gzip");
        let req = request(&head, "https").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(req.uri().to_string(), "https://app.test/pkg.Svc/Call?x=1");
        assert_eq!(req.method(), Method::POST);
        assert_eq!(
            req.headers().get("content-type").map(HeaderValue::as_bytes),
            Some(&b"application/grpc"[..])
        );
        assert_eq!(req.headers().get_all("te").iter().count(), 1);
        assert_eq!(
            req.headers().get("te").map(HeaderValue::as_bytes),
            Some(&b"trailers"[..])
        );
        assert!(req.headers().get("host").is_none());
    }

    #[test]
    fn response_fields_are_trimmed_and_lengths_parsed() {
        let mut map = HeaderMap::new();
        map.append("x-a", HeaderValue::from_static(" v "));
        map.append("content-length", HeaderValue::from_static("12"));
        let mut h = Headers::new();
        append_fields(&mut h, &map);
        assert_eq!(h.get("x-a").map(|v| &v[..]), Some(&b"v"[..]));
        assert_eq!(content_length(&map), Some(12));
        map.append("content-length", HeaderValue::from_static("12"));
        assert_eq!(content_length(&map), None);
    }
}
