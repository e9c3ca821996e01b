//! Writing the connector's response to the client: an error reply, the head and a re-framed
//! body, or a `101` followed by the raw pipe.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use ringtun_core::http::io::write_bufs;
use ringtun_core::http::{
    BodyEncoder, BodyFraming, RequestHead, ResponseMeta, Version, decode_response_meta,
    remove_hop_by_hop, request_keep_alive, set_framing_headers,
};
use ringtun_core::link::{LinkError, Stream};

use super::{Conn, Next, reply_error};
use crate::dataplane::lb::StreamGuard;
use crate::dataplane::pipe::pipe;
use crate::dataplane::worker::Worker;

/// Answers the client from the stream's REPLY (`meta`) and body. `request_open`: the request
/// direction was left open for an upgrade (ended here when the upgrade is declined).
pub(crate) async fn respond(
    w: &Worker,
    c: &mut Conn,
    req: &RequestHead,
    stream: &Rc<Stream>,
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
