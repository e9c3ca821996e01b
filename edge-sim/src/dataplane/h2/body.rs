//! The bodies of one HTTP/2 request stream, under HTTP/2 flow control both ways:
//! - request DATA goes to the tunnel stream, and its bytes are released to the client's window
//!   only once the tunnel stream took them (so the edge holds at most a stream window of
//!   request body per stream; the connection window bounds the sum);
//! - response pieces go to the client only into the window it granted, with at most
//!   `--h2-stream-window` bytes queued in `h2` per stream (`max_send_buffer_size`).
//!
//! A request body that stalls past its deadline (`--request-body-timeout`,
//! `--request-body-min-rate`), or a response that waits `--client-write-timeout` for window,
//! resets the stream (and the tunnel stream with it).

use std::future::poll_fn;
use std::pin::pin;
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::{Either, select};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use ringtun_core::http::{BodyFraming, ResponseHead, error_response};
use ringtun_core::mux::ErrorCode;
use ringtun_core::tunnel::{ResponseMeta, decode_response_meta};

use super::ConnState;
use super::head::response_head;
use super::request::Opened;
use super::trailers::{ChunkedIn, ChunkedOut, to_header_map, to_headers};
use crate::dataplane::bridge::TunnelStream;
use crate::dataplane::http::RETRY_BODY_LIMIT;
use crate::dataplane::retry::Failure;
use crate::dataplane::watchdog::BodyPace;
use crate::dataplane::worker::Worker;
use crate::limit::Limit;

/// A request body as far as it was read before the stream opened.
pub(crate) enum ReqBody {
    /// The whole body (at most [`RETRY_BODY_LIMIT`] bytes): it can be resent. With the
    /// trailers the client sent after it (then the chunks are the body chunk-encoded with
    /// them, for a stream with the trailers flag).
    Buffered(Vec<Bytes>, bool),
    /// Too big to buffer: this much was read; the rest streams once the stream is open.
    Streamed(Vec<Bytes>),
}

/// The deadlines of a body starting now.
fn body_pace(w: &Worker) -> BodyPace {
    BodyPace::new(
        Instant::now(),
        w.plane.request_body_timeout,
        w.plane.limits.request_body_min_rate,
    )
}

/// The next DATA of `body` within the body's deadline: `Ok(None)` at its end, `Err` with the
/// failure when it stalled or the client reset it (counted here).
async fn next_data(
    w: &Worker,
    conn: &ConnState,
    body: &mut RecvStream,
    pace: &mut BodyPace,
) -> Result<Option<Bytes>, Failure> {
    let now = Instant::now();
    let wait = pace.deadline(now).saturating_duration_since(now);
    // Dropping `data()` on the timeout is safe: it is a poll of `h2`'s buffers, not an IO.
    match compio::time::timeout(wait, body.data()).await {
        Err(_) => {
            let metrics = w.plane.registry.metrics();
            metrics.limits.hit(Limit::RequestBodyTimeout, &conn.peer);
            metrics.public_error("body_timeout");
            Err(Failure {
                status: 408,
                cause: "body_timeout",
                detail: "the request body stalled".to_owned(),
            })
        }
        Ok(None) => Ok(None),
        Ok(Some(Ok(data))) => {
            pace.add(data.len());
            w.plane
                .registry
                .metrics()
                .bytes_in
                .inc_by(data.len() as u64);
            Ok(Some(data))
        }
        Ok(Some(Err(e))) => {
            if e.is_reset() && e.is_remote() {
                conn.client_reset(Instant::now());
            }
            Err(Failure {
                status: 400,
                cause: "bad_request",
                detail: format!("the request body failed: {e}"),
            })
        }
    }
}

/// Reads a request body of at most [`RETRY_BODY_LIMIT`] bytes whole (its window released as it
/// is read: the limit bounds it), so a refused request can be resent; a bigger one streams.
pub(crate) async fn read_small_body(
    w: &Worker,
    conn: &ConnState,
    body: &mut RecvStream,
) -> Result<ReqBody, Failure> {
    let mut chunks = Vec::new();
    let mut total = 0;
    let mut pace = body_pace(w);
    while !body.is_end_stream() {
        match next_data(w, conn, body, &mut pace).await? {
            None => break,
            Some(data) => {
                let n = data.len();
                let _ = body.flow_control().release_capacity(n);
                total += n;
                chunks.push(data);
                if total > RETRY_BODY_LIMIT {
                    return Ok(ReqBody::Streamed(chunks));
                }
            }
        }
    }
    match next_trailers(w, conn, body, &pace).await? {
        Some(t) if !t.is_empty() => {
            let mut enc = ChunkedOut::new();
            let mut wire: Vec<Bytes> = chunks.into_iter().flat_map(|c| enc.piece(c)).collect();
            wire.push(ChunkedOut::end(&to_headers(&t)));
            Ok(ReqBody::Buffered(wire, true))
        }
        _ => Ok(ReqBody::Buffered(chunks, false)),
    }
}

/// The trailers after a request body's DATA, within the body's deadline.
async fn next_trailers(
    w: &Worker,
    conn: &ConnState,
    body: &mut RecvStream,
    pace: &BodyPace,
) -> Result<Option<http::HeaderMap>, Failure> {
    if body.is_end_stream() {
        return Ok(None);
    }
    let now = Instant::now();
    let wait = pace.deadline(now).saturating_duration_since(now);
    match compio::time::timeout(wait, body.trailers()).await {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(e)) => {
            if e.is_reset() && e.is_remote() {
                conn.client_reset(Instant::now());
            }
            Err(Failure {
                status: 400,
                cause: "bad_request",
                detail: format!("the request trailers failed: {e}"),
            })
        }
        Err(_) => {
            let metrics = w.plane.registry.metrics();
            metrics.limits.hit(Limit::RequestBodyTimeout, &conn.peer);
            metrics.public_error("body_timeout");
            Err(Failure {
                status: 408,
                cause: "body_timeout",
                detail: "the request trailers did not come".to_owned(),
            })
        }
    }
}

/// Moves the rest of a request body to the tunnel stream, `prefix` first; FIN at its end.
/// With `chunked` (the stream's trailers flag) the body goes chunk-encoded and ends with the
/// client's trailers. Returns whether the body ended well (else the tunnel stream was reset).
async fn pump_request(
    w: &Worker,
    conn: &ConnState,
    mut body: RecvStream,
    s: &TunnelStream,
    prefix: Vec<Bytes>,
    mut chunked: Option<ChunkedOut>,
) -> bool {
    let mut pace = body_pace(w);
    let mut pending = prefix;
    loop {
        for data in pending.drain(..) {
            let n = data.len();
            let pieces = match &mut chunked {
                Some(enc) => enc.piece(data),
                None => vec![data],
            };
            for p in pieces {
                if s.write(p).await.is_err() {
                    return false;
                }
            }
            // Only now may the client send more: the tunnel stream took these bytes.
            let _ = body.flow_control().release_capacity(n);
        }
        match next_data(w, conn, &mut body, &mut pace).await {
            Ok(Some(data)) => pending.push(data),
            Ok(None) => break,
            Err(f) => {
                tracing::debug!(peer = %conn.peer, detail = %f.detail, "HTTP/2 request body failed");
                s.reset(ErrorCode::CANCEL);
                return false;
            }
        }
    }
    if chunked.is_some() {
        let trailers = match next_trailers(w, conn, &mut body, &pace).await {
            Ok(t) => t.map(|t| to_headers(&t)).unwrap_or_default(),
            Err(_) => {
                s.reset(ErrorCode::CANCEL);
                return false;
            }
        };
        if s.write(ChunkedOut::end(&trailers)).await.is_err() {
            return false;
        }
    }
    s.finish().await.is_ok()
}

/// What to answer a request with.
pub(crate) enum Answer {
    /// A page made here (an error): head and whole body.
    Page(ResponseHead, Bytes),
}

/// Sends a response made here.
pub(crate) async fn answer(
    w: &Worker,
    conn: &ConnState,
    send: &mut SendResponse<Bytes>,
    a: Answer,
) {
    let Answer::Page(head, body) = a;
    let Some(resp) = response_head(head, false) else {
        send.send_reset(Reason::INTERNAL_ERROR);
        return;
    };
    match send.send_response(resp, body.is_empty()) {
        Ok(mut s) if !body.is_empty() => {
            let _ = send_body(w, conn, &mut s, body).await;
            let _ = s.send_data(Bytes::new(), true);
        }
        _ => {}
    }
}

/// Streams the request body (if it streams) while the connector's response goes out.
pub(crate) async fn respond(
    w: &Worker,
    conn: &ConnState,
    mut send: SendResponse<Bytes>,
    body: RecvStream,
    is_head: bool,
    o: Opened,
) {
    let stream = &o.stream;
    let response = pin!(async {
        let meta = match o.reply {
            Some(m) => Ok(m),
            None => stream.reply_meta().await,
        };
        forward_response(w, conn, &mut send, stream, meta, is_head).await;
    });
    match o.rest {
        Some(prefix) => {
            let chunked = o.trailers.then(ChunkedOut::new);
            let pump = pin!(pump_request(w, conn, body, stream, prefix, chunked));
            match select(response, pump).await {
                Either::Left(((), _pump)) => {
                    // The response is complete; a body still uploading is not needed any more
                    // (dropping it resets the client's request direction).
                }
                Either::Right((_, response)) => response.await,
            }
        }
        None => {
            drop(body);
            response.await;
        }
    }
    drop(o.guard);
}

/// Answers from the stream's REPLY and body.
async fn forward_response(
    w: &Worker,
    conn: &ConnState,
    send: &mut SendResponse<Bytes>,
    stream: &TunnelStream,
    meta: Result<Bytes, ringtun_core::link::LinkError>,
    is_head: bool,
) {
    let metrics = w.plane.registry.metrics();
    let page = |status: u16, detail: String| {
        let (h, b) = error_response(status, &detail, false);
        Answer::Page(h, b)
    };
    let (rh, framing, trailers) = match meta.map(decode_response_meta) {
        Ok(Ok(ResponseMeta::Head {
            head,
            body,
            trailers,
        })) => (head, body, trailers),
        Ok(Ok(ResponseMeta::Error(re))) => {
            metrics.public_error("origin");
            let (h, b) = re.to_response(false);
            return answer(w, conn, send, Answer::Page(h, b)).await;
        }
        Ok(Err(e)) => {
            metrics.public_error("connector");
            let a = page(502, format!("the connector sent an invalid reply: {e}"));
            return answer(w, conn, send, a).await;
        }
        Err(e) => {
            metrics.public_error("connector");
            let a = page(502, format!("the connector failed the request: {e}"));
            return answer(w, conn, send, a).await;
        }
    };
    if rh.status < 200 {
        // No upgrade and no interim answer is forwarded over HTTP/2.
        metrics.public_error("connector");
        let a = page(
            502,
            format!("the connector answered {} to an HTTP/2 request", rh.status),
        );
        return answer(w, conn, send, a).await;
    }
    let no_body = is_head || rh.status == 204 || rh.status == 304 || framing == BodyFraming::Empty;
    let Some(resp) = response_head(rh, true) else {
        metrics.public_error("connector");
        let a = page(
            502,
            "the connector sent an invalid response head".to_owned(),
        );
        return answer(w, conn, send, a).await;
    };
    let mut out = match send.send_response(resp, no_body) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(peer = %conn.peer, error = %e, "HTTP/2 response failed");
            return;
        }
    };
    if no_body {
        // Read the stream to its end (as HTTP/1.1 does) so it closes instead of being reset.
        while let Ok(Some(_)) = stream.read().await {}
        return;
    }
    // With the trailers flag the stream carries the body chunked, trailer section included.
    let mut chunked = trailers.then(ChunkedIn::new);
    loop {
        // Wait for a piece of the body, or for the client to reset the stream.
        let next = {
            let read = pin!(stream.read());
            let reset = pin!(poll_fn(|cx| out.poll_reset(cx)));
            match select(read, reset).await {
                Either::Left((r, _)) => r,
                Either::Right((r, _)) => {
                    if r.is_ok() {
                        conn.client_reset(Instant::now());
                    }
                    return;
                }
            }
        };
        match next {
            Ok(Some(data)) => {
                let pieces = match &mut chunked {
                    Some(c) => match c.feed(&data) {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::debug!(error = %e, "chunked response body from the connector is invalid");
                            metrics.public_error("connector");
                            out.send_reset(Reason::INTERNAL_ERROR);
                            return;
                        }
                    },
                    None => vec![data],
                };
                for p in pieces {
                    metrics.bytes_out.inc_by(p.len() as u64);
                    if send_body(w, conn, &mut out, p).await.is_err() {
                        return;
                    }
                }
            }
            Ok(None) => {
                match chunked.map(ChunkedIn::finish) {
                    None => {
                        let _ = out.send_data(Bytes::new(), true);
                    }
                    Some(Some(t)) => {
                        let map = to_header_map(&t);
                        if map.is_empty() {
                            let _ = out.send_data(Bytes::new(), true);
                        } else {
                            let _ = out.send_trailers(map);
                        }
                    }
                    Some(None) => {
                        metrics.public_error("connector");
                        out.send_reset(Reason::INTERNAL_ERROR);
                    }
                }
                return;
            }
            Err(e) => {
                tracing::debug!(error = %e, "response body from the connector failed");
                metrics.public_error("connector");
                out.send_reset(Reason::INTERNAL_ERROR);
                return;
            }
        }
    }
}

/// Sends `data` into the window the client grants, waiting at most `--client-write-timeout`
/// for each grant; `Err` when the stream is gone (reset, counted) or the wait timed out.
async fn send_body(
    w: &Worker,
    conn: &ConnState,
    out: &mut SendStream<Bytes>,
    mut data: Bytes,
) -> Result<(), ()> {
    while !data.is_empty() {
        out.reserve_capacity(data.len());
        let grant = compio::time::timeout(
            w.plane.limits.client_write_timeout,
            poll_fn(|cx| out.poll_capacity(cx)),
        )
        .await;
        match grant {
            Ok(Some(Ok(0))) => continue,
            Ok(Some(Ok(n))) => {
                let piece = data.split_to(n.min(data.len()));
                if out.send_data(piece, false).is_err() {
                    return Err(());
                }
            }
            Ok(Some(Err(e))) => {
                if e.is_reset() && e.is_remote() {
                    conn.client_reset(Instant::now());
                }
                return Err(());
            }
            Ok(None) => return Err(()),
            Err(_) => {
                w.plane
                    .registry
                    .metrics()
                    .limits
                    .hit(Limit::ClientWriteTimeout, &conn.peer);
                out.send_reset(Reason::CANCEL);
                return Err(());
            }
        }
    }
    Ok(())
}
