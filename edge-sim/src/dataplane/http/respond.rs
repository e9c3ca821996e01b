//! Writing the connector's response to the client: an error reply, the head and a re-framed
//! body, or a `101` followed by the raw pipe.
//!
//! A REPLY with the trailers flag (`docs/http-meta.md`) brings the body in chunked encoding
//! with its trailer section: it is decoded here (same checks and limits as from a socket) and
//! re-framed; the trailer fields go to an HTTP/1.1 client that asked for them (`TE: trailers`)
//! and is sent a chunked body, and are dropped for any other.

use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use ringtun_core::http::io::MAX_IOVECS;
use ringtun_core::http::{
    BodyDecoder, BodyEncoder, BodyFraming, BodyLimits, DecodeStep, Fault, RequestHead,
    ResponseHead, Version, encode_client_response, is_upgrade_request, remove_hop_by_hop,
    request_keep_alive, tokens,
};
use ringtun_core::link::LinkError;
use ringtun_core::tunnel::{ResponseMeta, decode_response_meta};

use super::request::Held;
use super::{Conn, Next, reply_error};
use crate::dataplane::client_io::ClientIo;
use crate::dataplane::lb::StreamGuard;
use crate::dataplane::pipe::pipe;
use crate::dataplane::worker::Worker;
use crate::metrics::Metrics;

/// Answers the client from the stream's REPLY (`meta`) and body. `request_open`: the request
/// direction was left open for an upgrade (ended here when the upgrade is declined).
pub(crate) async fn respond<S: ClientIo>(
    w: &Worker,
    c: &mut Conn<S>,
    req: &RequestHead,
    stream: Held,
    guard: StreamGuard,
    meta: Result<Bytes, LinkError>,
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
    let (mut rh, rbody, trailers) = match decode_response_meta(meta) {
        Ok(ResponseMeta::Head {
            head,
            body,
            trailers,
        }) => (head, body, trailers),
        Ok(ResponseMeta::Error(re)) => {
            w.plane.registry.metrics().public_error("origin");
            let close = !keep_client;
            let (h, b) = re.to_response(close);
            return match c.write(vec![h.to_bytes(), b]).await {
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
        if !upgrade_agreed(req, &rh) {
            // Turning the connection into a raw pipe would let the connector speak any protocol
            // to a client that asked for none: refuse the reply (the stream is reset as it is
            // dropped).
            let detail = format!(
                "connector {} answered 101 Switching Protocols to a request that did not ask for that upgrade",
                guard.connector()
            );
            return reply_error(w, c, "connector", 502, &detail, true).await;
        }
        // The read half is with the body pump while a large body streams: no pipe can read.
        if c.rd.is_none() {
            let detail = "an upgrade whose request body still streams cannot switch protocols";
            return reply_error(w, c, "connector", 502, detail, true).await;
        }
        remove_hop_by_hop(&mut rh.headers, true);
        if c.write(vec![rh.to_bytes()]).await.is_err() {
            return Next::Close;
        }
        let (Some(rd), Some(wr)) = (c.rd.take(), c.wr.take()) else {
            return Next::Close;
        };
        let buf = std::mem::take(&mut c.buf);
        let metrics = Arc::clone(w.plane.registry.metrics());
        c.watch.set_idle(w.plane.limits.upgrade_idle_timeout);
        let watch = Rc::clone(&c.watch);
        let sock = c.stream.clone();
        pipe::<S>(rd, wr, sock, buf, stream.into_rc(), metrics, watch).await;
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
    let head = encode_client_response(&rh, (!no_body).then_some(out), !keep);
    let mut enc = BodyEncoder::new(out);
    let mut relay = Relay {
        chunked: trailers.then(|| {
            let dec = BodyDecoder::new(BodyFraming::Chunked, BodyLimits::default(), Fault::Origin);
            (dec, BytesMut::new())
        }),
        enc: &mut enc,
    };
    let mut bufs = Vec::with_capacity(8);
    bufs.push(head);
    let metrics = w.plane.registry.metrics();
    // Each write carries the head (the first time) and every piece of the body that has
    // arrived by then, up to [`BATCH_BYTES`]: a response that came in one go leaves in one
    // write, its end included.
    loop {
        let mut step = take(stream.read().await, no_body, &mut relay, &mut bufs, metrics);
        let mut batched = 0;
        while let Take::More(n) = step {
            batched += n;
            if batched >= BATCH_BYTES || bufs.len() >= MAX_IOVECS {
                break;
            }
            match ready_now(stream.read()) {
                Some(r) => step = take(r, no_body, &mut relay, &mut bufs, metrics),
                None => break,
            }
        }
        match step {
            Take::More(_) => {}
            Take::End => break,
            Take::Failed { flush } => {
                if flush {
                    let _ = c.write(bufs).await;
                }
                return Next::Close;
            }
        }
        match c.write(bufs).await {
            Ok(b) => bufs = b,
            Err(_) => return Next::Close,
        }
    }
    let fields = relay.chunked.and_then(|(mut d, _)| d.take_trailers());
    let wants_trailers = out == BodyFraming::Chunked && accepts_trailers(req);
    let fields = fields.filter(|_| wants_trailers);
    if enc
        .finish_with_trailers(fields.as_ref(), &mut bufs)
        .is_err()
    {
        let _ = c.write(bufs).await;
        return Next::Close;
    }
    if !bufs.is_empty() && c.write(bufs).await.is_err() {
        return Next::Close;
    }
    drop(guard);
    if keep { Next::KeepAlive } else { Next::Close }
}

/// The most body bytes gathered for one write to the client. Taking a piece from the stream
/// returns its credit to the connector, so the batch bounds what the edge holds beyond the
/// stream's window.
const BATCH_BYTES: usize = 256 * 1024;

/// What one read from the stream left to do.
#[derive(Clone, Copy)]
enum Take {
    /// A piece of this many bytes (0 for a piece dropped or empty) was framed onto the batch.
    More(usize),
    /// The body ended.
    End,
    /// The response failed; `flush`: write what was batched before closing.
    Failed { flush: bool },
}

/// Where the body read from the stream goes: straight to the encoder, or first through a
/// chunked decoder when the stream carries trailers.
struct Relay<'e> {
    /// With the trailers flag: the decoder, and what arrived and is not decoded yet.
    chunked: Option<(BodyDecoder, BytesMut)>,
    enc: &'e mut BodyEncoder,
}

impl Relay<'_> {
    /// Frames a piece of the stream onto `bufs`; the payload bytes it held, or `None` when the
    /// body is invalid (bad chunked framing, more than announced, bytes after its end).
    fn piece(&mut self, chunk: Bytes, bufs: &mut Vec<Bytes>) -> Option<usize> {
        let Some((dec, buf)) = self.chunked.as_mut() else {
            let n = chunk.len();
            return self.enc.encode(chunk, bufs).ok().map(|()| n);
        };
        if dec.is_done() {
            return chunk.is_empty().then_some(0);
        }
        if buf.is_empty() {
            *buf = BytesMut::from(chunk);
        } else {
            buf.extend_from_slice(&chunk);
        }
        let mut n = 0;
        loop {
            match dec.decode(buf) {
                Ok(DecodeStep::Data(b)) => {
                    n += b.len();
                    self.enc.encode(b, bufs).ok()?;
                }
                Ok(DecodeStep::NeedMore) => return Some(n),
                Ok(DecodeStep::End) => return buf.is_empty().then_some(n),
                Err(_) => return None,
            }
        }
    }

    /// Whether the body ended where it should have: without the trailers flag the stream's
    /// end is the body's; with it the chunked encoding must have ended.
    fn complete(&self) -> bool {
        self.chunked.as_ref().is_none_or(|(d, _)| d.is_done())
    }
}

/// Whether the client takes trailer fields: HTTP/1.1 with `TE: trailers` (RFC 9110 §10.1.4).
fn accepts_trailers(req: &RequestHead) -> bool {
    req.version == Version::Http11 && req.headers.has_token("te", "trailers")
}

/// Frames one read's result onto `bufs`.
fn take(
    r: Result<Option<Bytes>, LinkError>,
    no_body: bool,
    relay: &mut Relay<'_>,
    bufs: &mut Vec<Bytes>,
    metrics: &Metrics,
) -> Take {
    match r {
        Ok(Some(chunk)) if !no_body => {
            let Some(n) = relay.piece(chunk, bufs) else {
                metrics.public_error("connector");
                return Take::Failed { flush: false };
            };
            metrics.bytes_out.inc_by(n as u64);
            Take::More(n)
        }
        Ok(Some(_)) => Take::More(0),
        Ok(None) if !no_body && !relay.complete() => {
            tracing::debug!("response body from the connector ended inside its chunked encoding");
            metrics.public_error("connector");
            Take::Failed { flush: true }
        }
        Ok(None) => Take::End,
        Err(e) => {
            tracing::debug!(error = %e, "response body from the connector failed");
            metrics.public_error("connector");
            Take::Failed { flush: true }
        }
    }
}

/// The output of `f` if it is ready at once, without waiting. For futures that hold no IO in
/// flight (a stream read is a poll of the session's buffers), so dropping one is harmless.
fn ready_now<F: Future>(f: F) -> Option<F::Output> {
    let mut f = std::pin::pin!(f);
    match f
        .as_mut()
        .poll(&mut Context::from_waker(std::task::Waker::noop()))
    {
        Poll::Ready(v) => Some(v),
        Poll::Pending => None,
    }
}

/// Whether a `101` answers an upgrade the client asked for: the request carried `Connection:
/// upgrade` and `Upgrade`, and the `101` names one of the protocols it offered (RFC 9110
/// §7.8; protocol names compare without regard to case).
fn upgrade_agreed(req: &RequestHead, resp: &ResponseHead) -> bool {
    if !is_upgrade_request(req) {
        return false;
    }
    let offered: Vec<&[u8]> = req
        .headers
        .get_all("upgrade")
        .flat_map(|v| tokens(v))
        .collect();
    let mut chosen = resp
        .headers
        .get_all("upgrade")
        .flat_map(|v| tokens(v))
        .peekable();
    chosen.peek().is_some() && chosen.all(|p| offered.iter().any(|o| o.eq_ignore_ascii_case(p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringtun_core::http::Headers;

    fn req(headers: &[(&'static str, &'static str)]) -> RequestHead {
        let mut h = Headers::new();
        for (n, v) in headers {
            h.append(*n, *v);
        }
        RequestHead {
            method: Bytes::from_static(b"GET"),
            target: Bytes::from_static(b"/"),
            version: Version::Http11,
            headers: h,
        }
    }

    fn switching(upgrade: Option<&'static str>) -> ResponseHead {
        let mut rh = ResponseHead::new(101);
        if let Some(u) = upgrade {
            rh.headers.append("Upgrade", u);
        }
        rh
    }

    #[test]
    fn a_101_is_agreed_only_for_the_upgrade_asked_for() {
        let ws = req(&[
            ("Connection", "keep-alive, Upgrade"),
            ("Upgrade", "websocket"),
        ]);
        assert!(upgrade_agreed(&ws, &switching(Some("WebSocket"))));
        assert!(
            !upgrade_agreed(&ws, &switching(Some("h2c"))),
            "another protocol"
        );
        assert!(!upgrade_agreed(&ws, &switching(None)), "no protocol named");
        let two = req(&[("Connection", "upgrade"), ("Upgrade", "foo/2, websocket")]);
        assert!(upgrade_agreed(&two, &switching(Some("websocket"))));
        let plain = req(&[]);
        assert!(
            !upgrade_agreed(&plain, &switching(Some("websocket"))),
            "nothing asked"
        );
        let no_conn = req(&[("Upgrade", "websocket")]);
        assert!(
            !upgrade_agreed(&no_conn, &switching(Some("websocket"))),
            "Upgrade without Connection: upgrade is no request"
        );
    }
}
