//! `originRequest.disableChunkedEncoding`: a request body the client sends chunked (its length
//! unknown in advance) is read whole from the stream, so the origin gets it with a
//! `Content-Length`. Origins such as WSGI servers or Python's `http.server` cannot read chunked
//! request bodies. A body of known length is not touched: it streams as it comes.
//!
//! What the connector holds is bounded by `originRequest.bufferedBodyLimit` (default
//! [`DEFAULT_BUFFERED_BODY_LIMIT`](crate::config::DEFAULT_BUFFERED_BODY_LIMIT)) per request; a
//! body that goes over it is answered with 413 before anything reaches the origin, counted as
//! `ringtun_request_errors_total{cause="request_body_too_large"}`. The rest of the upload is then
//! read and dropped, as for the other answers that do not use the body (`http_status:`, error
//! replies): a reset would make the edge discard the part of the 413 it has not written to the
//! client yet, and the edge's request-body deadlines bound how long an upload may go on. A
//! request holds at most the limit, and the streams a worker serves at once are bounded by the
//! link's stream limit (`docs/limits.md`).

use bytes::Bytes;
use ringtun_core::http::{BodyFraming, ResponseHead};
use ringtun_core::link::Stream;
use ringtun_core::mux::ErrorCode;
use ringtun_core::tunnel::encode_response_meta;

use super::body::TunnelBody;
use crate::observe::{ErrorCause, WorkerMetrics};

/// Reads the rest of the request body from `stream`, at most `limit` bytes. `Some((chunks,
/// length))` when it ended within the limit; `None` when the request was answered here
/// (413 over the limit) or the stream failed.
pub async fn buffer(
    stream: &Stream,
    trailers: bool,
    limit: u64,
    metrics: &WorkerMetrics,
) -> Option<(Vec<Bytes>, u64)> {
    let mut chunks = Vec::new();
    let mut len: u64 = 0;
    let mut body = TunnelBody::new(stream, trailers);
    loop {
        match body.next().await {
            Ok(Some(chunk)) => {
                len += chunk.len() as u64;
                if len > limit {
                    too_large(stream, limit, metrics).await;
                    return None;
                }
                chunks.push(chunk);
            }
            Ok(None) => return Some((chunks, len)),
            Err(e) => {
                tracing::debug!(error = %e, "request body stream failed while buffering it");
                metrics.error(ErrorCause::StreamReset);
                stream.reset(ErrorCode::CANCEL);
                return None;
            }
        }
    }
}

/// Answers 413, then reads and drops what the client still uploads.
async fn too_large(stream: &Stream, limit: u64, metrics: &WorkerMetrics) {
    tracing::debug!(
        limit,
        "chunked request body over bufferedBodyLimit; answering 413"
    );
    metrics.error(ErrorCause::RequestBodyTooLarge);
    let text = format!(
        "request body too large: the origin takes no chunked bodies (disableChunkedEncoding), \
         and the connector buffers at most {limit} bytes (bufferedBodyLimit)\n"
    );
    let mut res = ResponseHead::new(413);
    res.headers
        .append("Content-Type", "text/plain; charset=utf-8");
    res.headers.append("Content-Length", text.len().to_string());
    let framing = BodyFraming::Length(text.len() as u64);
    if stream.reply(encode_response_meta(&res, framing)).is_err() {
        return;
    }
    match stream.write(Bytes::from(text)).await {
        Ok(()) => {
            let _ = stream.finish();
        }
        Err(_) => {
            stream.reset(ErrorCode::INTERNAL_ERROR);
            return;
        }
    }
    while let Ok(Some(_)) = stream.read().await {}
}
