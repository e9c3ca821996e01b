//! One HTTP/2 request stream: the request head rebuilt as HTTP/1.1 (the tunnel's OPEN
//! metadata is HTTP/1.1 whatever the client spoke), routed, a replica chosen and the stream
//! opened as for HTTP/1.1 (`dataplane/open.rs`, `dataplane/retry.rs`), then the bodies (see
//! `body.rs`). A client reset at any point ends the request and counts against
//! `--h2-max-client-resets`.

use std::future::poll_fn;
use std::pin::pin;
use std::rc::Rc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::future::{Either, select};
use h2::RecvStream;
use h2::server::SendResponse;
use http::request::Parts;
use ringtun_core::http::{
    BodyFraming, Headers, RequestHead, RequestRoute, Version, error_response, no_route_detail,
};
use ringtun_core::mux::StreamKind;
use ringtun_core::tunnel::forward_request_meta_with;

use super::body::{Answer, ReqBody, answer, read_small_body, respond};
use super::{ConnState, trailers};
use crate::dataplane::bridge::{self, Opening, TunnelStream};
use crate::dataplane::http::host_label::count_host_request;
use crate::dataplane::lb::StreamGuard;
use crate::dataplane::limits::TunnelSlot;
use crate::dataplane::open::{Attempt, Outgoing, attempt};
use crate::dataplane::retry::{
    Choice, Decision, Failure, MAX_HOPS, Retries, RetryReason, is_idempotent,
};
use crate::dataplane::worker::{Pick, Worker};

/// Serves one request stream to its end.
pub(crate) async fn handle(
    w: &Rc<Worker>,
    conn: &ConnState,
    req: http::Request<RecvStream>,
    mut send: SendResponse<Bytes>,
) {
    let started = Instant::now();
    let (parts, mut body) = req.into_parts();
    let is_head = parts.method == http::Method::HEAD;
    // Until the stream is open, a client reset ends the work at once (dropping it resets the
    // tunnel stream, if one was opened).
    let prepared = {
        let work = pin!(prepare(w, conn, &parts, &mut body));
        let reset = pin!(poll_fn(|cx| send.poll_reset(cx)));
        match select(work, reset).await {
            Either::Left((p, _)) => p,
            Either::Right((r, _)) => {
                if r.is_ok() {
                    conn.client_reset(Instant::now());
                }
                return;
            }
        }
    };
    match prepared {
        Prepared::Fail(f) => {
            w.plane.registry.metrics().public_error(f.cause);
            let (h, b) = error_response(f.status, &f.detail, false);
            answer(w, conn, &mut send, Answer::Page(h, b)).await;
        }
        Prepared::Open(o) => {
            respond(w, conn, send, body, is_head, o).await;
        }
    }
    w.plane
        .registry
        .metrics()
        .request_duration
        .observe(started.elapsed());
}

/// A stream opened for a request.
pub(crate) struct Opened {
    /// On a link of this worker, or carried by the worker that holds one.
    pub(crate) stream: TunnelStream,
    /// The connector's load count, when the stream is on a link of this worker (a bridged
    /// stream's count is held by the worker carrying it).
    pub(crate) guard: Option<StreamGuard>,
    /// The REPLY, when it came before the body streamed.
    pub(crate) reply: Option<Bytes>,
    /// The body still to stream (the part read already first).
    pub(crate) rest: Option<Vec<Bytes>>,
    /// The stream's trailers flag: the body goes chunk-encoded with the client's trailers.
    pub(crate) trailers: bool,
    /// The stream's place in its tunnel's count.
    pub(crate) _slot: TunnelSlot,
}

/// What the request led to before its response.
pub(crate) enum Prepared {
    /// An error page.
    Fail(Failure),
    /// The stream is open.
    Open(Opened),
}

fn fail(status: u16, cause: &'static str, detail: String) -> Prepared {
    Prepared::Fail(Failure {
        status,
        cause,
        detail,
    })
}

/// Routes the request, reads a small body whole, chooses a replica and opens the stream,
/// retrying on another replica as HTTP/1.1 does. The connection never moves: a replica whose
/// links are all on another worker gets the stream through that worker (`dataplane/bridge`).
async fn prepare(
    w: &Rc<Worker>,
    conn: &ConnState,
    parts: &Parts,
    body: &mut RecvStream,
) -> Prepared {
    let head = match request_head(parts) {
        Ok(h) => h,
        Err(detail) => return fail(400, "bad_request", detail),
    };
    let target = match RequestRoute::of(&head) {
        Ok(r) => r,
        Err(e) => return fail(400, "bad_request", e.to_string()),
    };
    let host = target.host();
    let Some(tunnel) = w.routes().tunnel_for_host(host) else {
        return fail(404, "no_route", no_route_detail(host));
    };
    count_host_request(w, host);
    let req_body = match read_small_body(w, conn, body).await {
        Ok(b) => b,
        Err(f) => return Prepared::Fail(f),
    };
    // Framing and trailers flag (`trailers.rs`): a buffered body that came with trailers, or
    // one that streams without a length and announced them, goes chunked with the flag.
    let (framing, trailers) = match &req_body {
        ReqBody::Buffered(_, true) => (BodyFraming::Chunked, true),
        ReqBody::Buffered(chunks, false) => match chunks.iter().map(Bytes::len).sum::<usize>() {
            0 if body.is_end_stream() => (BodyFraming::Empty, false),
            n => (BodyFraming::Length(n as u64), false),
        },
        ReqBody::Streamed(_) => match content_length(&head) {
            Some(n) => (BodyFraming::Length(n), false),
            None => (BodyFraming::Chunked, trailers::announced(&head)),
        },
    };
    let meta = forward_request_meta_with(
        &head,
        &target,
        conn.peer.ip(),
        conn.proto,
        false,
        framing,
        trailers,
    );
    let Some(slot) = w.tunnel_slot(tunnel) else {
        let limit = w.plane.tunnel_streams.max();
        let detail = format!("the tunnel has reached its limit of {limit} concurrent streams");
        return fail(503, "tunnel_streams", detail);
    };
    let idempotent = is_idempotent(&head.method) && matches!(framing, BodyFraming::Empty);
    // A multiplexed connection stays on its worker: the first choice is the retry state of a
    // connection that may not move any more. A stream whose tunnel has a link only on another
    // worker is carried by that worker (`dataplane/bridge`).
    let mut retries = Retries::new(MAX_HOPS);
    loop {
        let out = match &req_body {
            ReqBody::Buffered(c, _) if c.is_empty() => Outgoing::Empty,
            ReqBody::Buffered(c, _) => Outgoing::Buffered(c),
            ReqBody::Streamed(_) => Outgoing::Streamed,
        };
        let tried = match w
            .pick_or_wait(tunnel, retries.excluded(), false, None)
            .await
        {
            Pick::Local { link, load } => {
                match attempt(&link, &load, StreamKind::Http, &meta, out, idempotent).await {
                    Attempt::Replied(s, g, m) => Ok((TunnelStream::Local(s), Some(g), Some(m))),
                    Attempt::Streaming(s, g) => Ok((TunnelStream::Local(s), Some(g), None)),
                    Attempt::Retry(reason, e) => Err(Opening::Retry(reason, e, load.id)),
                    Attempt::Failed(detail) => Err(Opening::Failed(detail)),
                }
            }
            Pick::Elsewhere(to, chosen) => {
                let ask = bridge::Ask {
                    tunnel,
                    chosen,
                    exclude: retries.excluded().to_vec(),
                    kind: StreamKind::Http,
                    meta: meta.clone(),
                    body: match out {
                        Outgoing::Buffered(c) => bridge::Body::Buffered(c.to_vec()),
                        Outgoing::Streamed => bridge::Body::Streamed,
                        Outgoing::Empty | Outgoing::LeaveOpen => bridge::Body::Empty,
                    },
                    idempotent,
                };
                match bridge::open(w, to, ask).await {
                    (Opening::Replied(m), Some(r)) => Ok((TunnelStream::Bridged(r), None, Some(m))),
                    (Opening::Streaming, Some(r)) => Ok((TunnelStream::Bridged(r), None, None)),
                    (other, _) => Err(other),
                }
            }
            Pick::NoConnector => match retries.decide(Choice::Nothing, false) {
                Decision::Fail(f) => return Prepared::Fail(f),
                _ => return Prepared::Fail(Failure::no_connector()),
            },
            Pick::Unreachable(detail) => return Prepared::Fail(Failure::peer(detail)),
        };
        let (stream, guard, reply) = match tried {
            Ok(opened) => opened,
            Err(Opening::Retry(reason, e, connector)) => {
                if let Some(f) = retries.not_processed(connector, &e) {
                    return Prepared::Fail(f);
                }
                let metrics = w.plane.registry.metrics();
                match reason {
                    RetryReason::Refused => metrics.retries_refused.inc(),
                    RetryReason::LinkLost => metrics.retries_link_lost.inc(),
                };
                tracing::debug!(%connector, error = %e, "request not processed; retrying on another replica");
                continue;
            }
            Err(Opening::Failed(detail)) => return fail(502, "connector", detail),
            Err(Opening::Replied(_) | Opening::Streaming) => {
                return fail(
                    502,
                    "connector",
                    "the stream was lost while it opened".to_owned(),
                );
            }
        };
        let rest = match req_body {
            ReqBody::Streamed(prefix) => Some(prefix),
            ReqBody::Buffered(..) => None,
        };
        return Prepared::Open(Opened {
            stream,
            guard,
            reply,
            rest,
            trailers,
            _slot: slot,
        });
    }
}

/// The request as an HTTP/1.1 head: `:method`, `:path` as the target, `:authority` as `Host`
/// (it wins over a `Host` field, RFC 9113 §8.3.1), `Cookie` fields joined (§8.2.3).
fn request_head(parts: &Parts) -> Result<RequestHead, String> {
    if parts.method == http::Method::CONNECT {
        return Err("CONNECT is not supported over HTTP/2 here".to_owned());
    }
    let target = parts
        .uri
        .path_and_query()
        .map(|p| Bytes::copy_from_slice(p.as_str().as_bytes()))
        .ok_or_else(|| "the request has no :path".to_owned())?;
    let mut headers = Headers::with_capacity(parts.headers.len() + 1);
    let authority = parts.uri.authority();
    if let Some(a) = authority {
        headers.append(
            Bytes::from_static(b"host"),
            Bytes::copy_from_slice(a.as_str().as_bytes()),
        );
    }
    let mut cookie: Option<Vec<u8>> = None;
    for (name, value) in &parts.headers {
        if name == http::header::HOST && authority.is_some() {
            continue;
        }
        if name == http::header::COOKIE {
            let c = cookie.get_or_insert_with(Vec::new);
            if !c.is_empty() {
                c.extend_from_slice(b"; ");
            }
            c.extend_from_slice(value.as_bytes());
            continue;
        }
        headers.append(
            Bytes::copy_from_slice(name.as_str().as_bytes()),
            Bytes::copy_from_slice(value.as_bytes()),
        );
    }
    if let Some(c) = cookie {
        headers.append(Bytes::from_static(b"cookie"), Bytes::from(c));
    }
    Ok(RequestHead {
        method: Bytes::copy_from_slice(parts.method.as_str().as_bytes()),
        target,
        version: Version::Http11,
        headers,
    })
}

/// The request's `Content-Length`, when it has one valid value (`h2` checks the DATA against
/// it).
fn content_length(head: &RequestHead) -> Option<u64> {
    let v = head.headers.get("content-length")?;
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: http::Request<()>) -> Parts {
        req.into_parts().0
    }

    #[test]
    fn the_authority_becomes_host_and_cookies_are_joined() {
        let p = parts(
            http::Request::builder()
                .method("POST")
                .uri("https://App.Example.com:8443/a/b?c=d")
                .header("host", "other.example")
                .header("cookie", "a=1")
                .header("cookie", "b=2")
                .header("x-thing", "v")
                .body(())
                .expect("valid request"),
        );
        let h = request_head(&p).expect("valid");
        assert_eq!(&h.method[..], b"POST");
        assert_eq!(&h.target[..], b"/a/b?c=d");
        assert_eq!(
            h.headers.get("host").map(|v| &v[..]),
            Some(&b"App.Example.com:8443"[..])
        );
        assert_eq!(h.headers.get_all("host").count(), 1, "the authority wins");
        assert_eq!(
            h.headers.get("cookie").map(|v| &v[..]),
            Some(&b"a=1; b=2"[..])
        );
        assert_eq!(h.headers.get("x-thing").map(|v| &v[..]), Some(&b"v"[..]));
        let route = RequestRoute::of(&h).expect("routable");
        assert_eq!(route.host(), "app.example.com");
    }

    #[test]
    fn connect_is_refused() {
        let p = parts(
            http::Request::builder()
                .method("CONNECT")
                .uri("example.com:443")
                .body(())
                .expect("valid request"),
        );
        assert!(request_head(&p).is_err());
    }
}
