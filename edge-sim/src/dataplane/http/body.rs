//! Request bodies: read a small one whole before the stream opens (so a refused request can be
//! resent), or pump a big one from the client to the open stream on a task of its own.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use compio::io::AsyncRead;
use ringtun_core::http::io::{CONTINUE_RESPONSE, read_body_chunk};
use ringtun_core::http::{
    BodyDecoder, BodyFraming, BodyLimits, Fault, HttpError, RequestHead, expects_continue,
    response_of, set_framing_headers,
};
use ringtun_core::link::Stream;
use ringtun_core::mux::ErrorCode;

use super::{Conn, Next};
use crate::dataplane::client_io::ClientIo;
use crate::dataplane::h2::trailers::ChunkedOut;
use crate::dataplane::watchdog::{BodyPace, ReadKind, Watch};
use crate::dataplane::worker::Worker;
use crate::metrics::Metrics;

/// Request bodies up to this size are read whole before a stream opens, so a request refused
/// before processing can be resent to another replica. Bigger ones stream (not retried).
pub const RETRY_BODY_LIMIT: usize = 64 * 1024;

/// A request body as far as it was read before a stream was opened for it.
pub(crate) enum ReqBody {
    /// No body.
    Empty,
    /// The whole body (at most [`RETRY_BODY_LIMIT`] bytes): it can be resent. With `true` it
    /// is chunk-encoded with the client's trailer section (the stream's trailers flag, see
    /// `docs/http-meta.md`); else decoded.
    Buffered(Vec<Bytes>, bool),
    /// Too big to buffer: `prefix` was read already and the decoder continues with the rest
    /// while the stream is open. `continue_sent`: `100 Continue` went out already. `pace`:
    /// the body's deadlines so far. `trailers`: the stream's trailers flag (the rest goes
    /// chunk-encoded with the client's trailer section; `prefix` is still decoded).
    Streamed {
        prefix: Vec<Bytes>,
        dec: BodyDecoder,
        continue_sent: bool,
        pace: BodyPace,
        trailers: bool,
    },
}

impl ReqBody {
    /// Whether nothing of the request was consumed that the request head and the buffered body
    /// cannot replay (for a hand-off to another worker).
    pub(crate) fn replayable(&self) -> bool {
        match self {
            ReqBody::Empty | ReqBody::Buffered(..) => true,
            ReqBody::Streamed {
                prefix,
                continue_sent,
                ..
            } => prefix.is_empty() && !continue_sent,
        }
    }
}

/// The request again as raw bytes, for a hand-off to another worker: the head (with a buffered
/// body's length, or chunked when the body is kept chunk-encoded with its trailers; `Expect`
/// dropped once `100 Continue` went out), the body, and what followed.
pub(crate) fn replay_bytes(head: &RequestHead, body: &ReqBody, rest: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    match body {
        ReqBody::Buffered(chunks, chunked) => {
            let mut h = head.clone();
            h.headers.remove("expect");
            let framing = if *chunked {
                BodyFraming::Chunked
            } else {
                let total: usize = chunks.iter().map(Bytes::len).sum();
                BodyFraming::Length(total as u64)
            };
            set_framing_headers(&mut h.headers, framing);
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

/// Reads a request body of at most [`RETRY_BODY_LIMIT`] bytes whole, so it can be resent to
/// another replica; a bigger one is left to stream (with what was read so far). `trailers`:
/// the stream's trailers flag (a chunked body is kept chunk-encoded with its trailer section).
pub(crate) async fn read_small_body<S: ClientIo>(
    w: &Worker,
    c: &mut Conn<S>,
    head: &RequestHead,
    framing: BodyFraming,
    trailers: bool,
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
            pace: body_pace(w),
            trailers,
        });
    }
    if expects_continue(head)
        && c.write(vec![Bytes::from_static(CONTINUE_RESPONSE)])
            .await
            .is_err()
    {
        return Err(Next::Close);
    }
    let metrics = w.plane.registry.metrics();
    // The pieces are copied into one buffer: kept as they came, a body sent as tiny chunks
    // would cost a vector entry per chunk and pin the receive buffer each was sliced from, so
    // memory would follow the chunk count instead of the bytes.
    let mut body = BytesMut::new();
    let mut pace = body_pace(w);
    loop {
        let Some(rd) = c.rd.as_mut() else {
            return Err(Next::Close);
        };
        c.watch
            .start_until(pace.deadline(Instant::now()), ReadKind::Body);
        let r = read_body_chunk(rd, &mut c.buf, &mut dec).await;
        c.watch.stop();
        match r {
            Ok(Some(b)) => {
                pace.add(b.len());
                metrics.bytes_in.inc_by(b.len() as u64);
                body.extend_from_slice(&b);
                if body.len() > RETRY_BODY_LIMIT {
                    return Ok(ReqBody::Streamed {
                        prefix: vec![body.freeze()],
                        dec,
                        continue_sent: true,
                        pace,
                        trailers,
                    });
                }
            }
            Ok(None) if trailers => {
                let mut enc = ChunkedOut::new();
                let mut wire = enc.piece(body.freeze());
                wire.push(ChunkedOut::end(&dec.take_trailers().unwrap_or_default()));
                return Ok(ReqBody::Buffered(wire, true));
            }
            Ok(None) if body.is_empty() => return Ok(ReqBody::Buffered(Vec::new(), false)),
            Ok(None) => return Ok(ReqBody::Buffered(vec![body.freeze()], false)),
            Err(e) => {
                tracing::debug!(error = %e, "public request body failed");
                if c.watch.timed_out(ReadKind::Body) {
                    metrics.public_error("body_timeout");
                    return Err(Next::Close);
                }
                if matches!(e, HttpError::Io(_)) {
                    return Err(Next::Close);
                }
                metrics.public_error("bad_request");
                let (h, b) = response_of(&e);
                let _ = c.write(vec![h.to_bytes(), b]).await;
                return Err(Next::Close);
            }
        }
    }
}

/// The deadlines of a body starting now (`--request-body-timeout`, `--request-body-min-rate`).
fn body_pace(w: &Worker) -> BodyPace {
    BodyPace::new(
        Instant::now(),
        w.plane.request_body_timeout,
        w.plane.limits.request_body_min_rate,
    )
}

/// What the body pump needs besides the stream.
pub(crate) struct PumpCtx {
    pub(crate) watch: Rc<Watch>,
    /// With the stream's trailers flag: the body goes chunk-encoded and ends with the client's
    /// trailer section.
    pub(crate) chunked: Option<ChunkedOut>,
    pub(crate) pace: BodyPace,
    pub(crate) metrics: Arc<Metrics>,
}

/// Moves a request body from the client to the stream (first `prefix`, read already); FIN at
/// its end (after the last chunk and the trailer section with `ctx.chunked`). Returns the read
/// half `rd`, the receive buffer (bytes after the body belong to the next request) and whether
/// the body ended well.
pub(crate) async fn pump_body<R: AsyncRead>(
    mut rd: R,
    mut buf: BytesMut,
    mut dec: BodyDecoder,
    s: Rc<Stream>,
    prefix: Vec<Bytes>,
    mut ctx: PumpCtx,
) -> (R, BytesMut, bool) {
    for b in prefix {
        if !write_piece(&s, &mut ctx.chunked, b).await {
            return (rd, buf, false);
        }
    }
    loop {
        let deadline = ctx.pace.deadline(Instant::now());
        ctx.watch.start_until(deadline, ReadKind::Body);
        let r = read_body_chunk(&mut rd, &mut buf, &mut dec).await;
        ctx.watch.stop();
        match r {
            Ok(Some(b)) => {
                ctx.pace.add(b.len());
                ctx.metrics.bytes_in.inc_by(b.len() as u64);
                if !write_piece(&s, &mut ctx.chunked, b).await {
                    return (rd, buf, false);
                }
            }
            Ok(None) => {
                if ctx.chunked.is_some() {
                    let trailers = dec.take_trailers().unwrap_or_default();
                    if s.write(ChunkedOut::end(&trailers)).await.is_err() {
                        return (rd, buf, false);
                    }
                }
                let ok = s.finish().is_ok();
                return (rd, buf, ok);
            }
            Err(e) => {
                if ctx.watch.timed_out(ReadKind::Body) {
                    ctx.metrics.public_error("body_timeout");
                }
                tracing::debug!(error = %e, "public request body failed");
                s.reset(ErrorCode::CANCEL);
                return (rd, buf, false);
            }
        }
    }
}

/// Writes one piece of a request body to the stream, chunk-encoded with `chunked`. Returns
/// whether the stream took it.
async fn write_piece(s: &Stream, chunked: &mut Option<ChunkedOut>, b: Bytes) -> bool {
    let pieces = match chunked {
        Some(enc) => enc.piece(b),
        None => vec![b],
    };
    for p in pieces {
        if s.write(p).await.is_err() {
            return false;
        }
    }
    true
}
