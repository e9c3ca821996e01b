//! One request: route it by `Host`, choose a replica (retrying and handing the connection to
//! another worker as [`crate::dataplane::retry`] decides), open the stream, then let the body and the
//! response flow.

use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use ringtun_core::error::Classify;
use ringtun_core::http::io::CONTINUE_RESPONSE;
use ringtun_core::http::{
    BodyFraming, RequestHead, RequestRoute, expects_continue, is_upgrade_request,
    is_websocket_upgrade, no_route_detail, request_framing, request_keep_alive, response_of,
};
use ringtun_core::link::{Link, Stream};
use ringtun_core::mux::StreamKind;
use ringtun_core::tunnel::forward_request_meta_with;

use super::body::{PumpCtx, RETRY_BODY_LIMIT, ReqBody, pump_body, read_small_body, replay_bytes};
use super::host_label::count_host_request;
use super::respond::respond;
use super::{Conn, Next, no_connector, reply_error};
use crate::dataplane::client_io::ClientIo;
use crate::dataplane::h2::trailers::ChunkedOut;
use crate::dataplane::lb::{ConnectorLoad, StreamGuard};
use crate::dataplane::open::{Attempt, Outgoing, attempt};
use crate::dataplane::retry::{Choice, Decision, Failure, Retries, RetryReason, is_idempotent};
use crate::dataplane::worker::{HandoffKind, Pick, Worker};

/// Serves one request; `count`: count it in the per-hostname metrics (not yet counted by the
/// worker that handed the connection over).
pub(crate) async fn handle<S: ClientIo>(
    w: &Rc<Worker>,
    c: &mut Conn<S>,
    head: RequestHead,
    count: bool,
) -> Next {
    let framing = match request_framing(&head) {
        Ok(f) => f,
        Err(e) => {
            w.plane.registry.metrics().public_error("bad_request");
            let (h, b) = response_of(&e);
            let _ = c.write(vec![h.to_bytes(), b]).await;
            return Next::Close;
        }
    };
    let has_body = !framing.is_empty();
    // An error answered before the body was read leaves the connection out of sync.
    let close_on_error = has_body || !request_keep_alive(&head);
    // One host and one target, normalised once: routed on here, sent to the connector, which
    // matches its rules on them (`docs/routing.md`).
    let target = match RequestRoute::of(&head) {
        Ok(r) => r,
        Err(e) => {
            let detail = e.to_string();
            return reply_error(w, c, "bad_request", 400, &detail, close_on_error).await;
        }
    };
    let host = target.host();
    let Some(tunnel) = w.routes().tunnel_for_host(host) else {
        return reply_error(
            w,
            c,
            "no_route",
            404,
            &no_route_detail(host),
            close_on_error,
        )
        .await;
    };
    if count {
        count_host_request(w, host);
    }
    let upgrade = is_upgrade_request(&head);
    let kind = if is_websocket_upgrade(&head) {
        StreamKind::WebSocket
    } else {
        StreamKind::Http
    };
    let body_framing = match framing {
        BodyFraming::Length(n) if n > 0 => BodyFraming::Length(n),
        BodyFraming::Empty | BodyFraming::Length(_) => BodyFraming::Empty,
        _ => BodyFraming::Chunked,
    };
    // A chunked body whose head announced trailers (a `Trailer` field) carries them to the
    // origin: the stream gets the trailers flag and the body goes chunk-encoded with its trailer
    // section (`docs/http-meta.md`). Only then: every chunked body re-encoded would cost chunk
    // framing on the stream and a decoder at the connector for the rare body that has trailers;
    // trailers sent without the announcement are dropped.
    let trailers = matches!(body_framing, BodyFraming::Chunked) && head.headers.contains("trailer");
    // The head rewritten for the connector (hop-by-hop fields and `Expect` dropped,
    // `X-Forwarded-*` added, the routed target and host) straight into OPEN metadata.
    let meta = forward_request_meta_with(
        &head,
        &target,
        c.peer.ip(),
        S::SCHEME,
        upgrade,
        body_framing,
        trailers,
    );

    // Before the body is read: is there a replica at all, and is it on this worker?
    // A fresh connection's first choice runs over every replica (it may move once).
    let mut retries = Retries::new(c.hops);
    let prefer = c.chosen.take();
    let pick = w
        .pick_or_wait(tunnel, &[], retries.may_move(true), prefer)
        .await;
    let mut first = match route(w, c, &head, &ReqBody::Empty, &retries, pick, close_on_error).await
    {
        Route::Open(link, load) => Some((link, load)),
        Route::Done(next) => return next,
    };
    let body = match read_small_body(w, c, &head, framing, trailers).await {
        Ok(b) => b,
        Err(next) => return next,
    };
    if !matches!(body, ReqBody::Empty) {
        // Time passed while the body was read: choose again.
        first = None;
    }
    // The stream's place in its tunnel's count, held until the request ends.
    let Some(_tunnel_slot) = w.tunnel_slot(tunnel) else {
        let limit = w.plane.tunnel_streams.max();
        let detail = format!("the tunnel has reached its limit of {limit} concurrent streams");
        return reply_error(w, c, "tunnel_streams", 503, &detail, close_on_error).await;
    };

    // Choose a replica and open the stream; unless the body streams, wait for the REPLY here
    // so a refusal (or, for an idempotent request, a lost link) moves to another replica.
    let idempotent = is_idempotent(&head.method) && matches!(body, ReqBody::Empty) && !upgrade;
    let (stream, guard, early_reply) = loop {
        let (link, load) = match first.take() {
            Some(chosen) => chosen,
            None => {
                let may_move = retries.may_move(body.replayable());
                let pick = w
                    .pick_or_wait(tunnel, retries.excluded(), may_move, None)
                    .await;
                match route(w, c, &head, &body, &retries, pick, close_on_error).await {
                    Route::Open(link, load) => (link, load),
                    Route::Done(next) => return next,
                }
            }
        };
        let out = match &body {
            ReqBody::Streamed { .. } => Outgoing::Streamed,
            ReqBody::Empty if upgrade => Outgoing::LeaveOpen,
            ReqBody::Empty => Outgoing::Empty,
            ReqBody::Buffered(chunks, _) => Outgoing::Buffered(chunks),
        };
        match attempt(&link, &load, kind, &meta, out, idempotent).await {
            Attempt::Replied(s, g, m) => break (s, g, Some(m)),
            Attempt::Streaming(s, g) => break (s, g, None),
            Attempt::Retry(reason, e) => {
                if let Some(f) = retries.not_processed(load.id, &e) {
                    return fail(w, c, &f, close_on_error).await;
                }
                let metrics = w.plane.registry.metrics();
                match reason {
                    RetryReason::Refused => metrics.retries_refused.inc(),
                    RetryReason::LinkLost => metrics.retries_link_lost.inc(),
                };
                tracing::debug!(connector = %load.id, error = %e, "request not processed; retrying on another replica");
            }
            Attempt::Failed(detail) => {
                return reply_error(w, c, "connector", 502, &detail, close_on_error).await;
            }
        }
    };
    let open = Opened {
        stream,
        guard,
        early_reply,
        request_open: upgrade && !has_body,
    };
    exchange(w, c, &head, body, open).await
}

/// What the replica choice led to.
enum Route {
    /// Open the stream on this link.
    Open(Link, Arc<ConnectorLoad>),
    /// The request is over here (answered, or handed to another worker).
    Done(Next),
}

/// Acts on the replica choice as [`Retries::decide`] says. `close`: close the connection after
/// an error answer.
async fn route<S: ClientIo>(
    w: &Worker,
    c: &mut Conn<S>,
    head: &RequestHead,
    body: &ReqBody,
    retries: &Retries,
    pick: Pick,
    close: bool,
) -> Route {
    let (choice, local, chosen) = match pick {
        Pick::Local { link, load } => (Choice::Local, Some((link, load)), None),
        Pick::Elsewhere(to, chosen) => (Choice::Elsewhere(to), None, chosen),
        Pick::NoConnector => (Choice::Nothing, None, None),
        Pick::Unreachable(detail) => {
            return Route::Done(fail(w, c, &Failure::peer(detail), close).await);
        }
    };
    let fresh = retries.excluded().is_empty() && matches!(body, ReqBody::Empty);
    match (retries.decide(choice, body.replayable()), local) {
        (Decision::Open, Some((link, load))) => Route::Open(link, load),
        (Decision::HandOff { to, hops }, _) => {
            let buf = replay_bytes(head, body, &c.buf);
            let slot = c.slot.take();
            // A TLS session leaves its halves here: a failed move closes the connection.
            let moving = S::moving(&mut c.rd, &mut c.wr, &c.stream);
            if w.hand_off(
                to,
                moving,
                c.peer,
                buf,
                HandoffKind::Http { hops, chosen },
                slot,
            ) {
                return Route::Done(Next::HandedOff);
            }
            // Before anything was read the connection stays in sync; after, it cannot.
            Route::Done(no_connector(w, c, close || !fresh).await)
        }
        (Decision::Fail(f), _) => Route::Done(fail(w, c, &f, close).await),
        (Decision::Open, None) => Route::Done(no_connector(w, c, close).await),
    }
}

/// Answers with the failure's status and detail.
async fn fail<S: ClientIo>(w: &Worker, c: &mut Conn<S>, f: &Failure, close: bool) -> Next {
    reply_error(w, c, f.cause, f.status, &f.detail, close).await
}

/// A stream opened for a request.
struct Opened {
    stream: Stream,
    guard: StreamGuard,
    /// The REPLY, when it came before the body streamed.
    early_reply: Option<Bytes>,
    /// The request direction was left open for an upgrade.
    request_open: bool,
}

/// Streams the body (if it streams) while the response is written.
async fn exchange<S: ClientIo>(
    w: &Worker,
    c: &mut Conn<S>,
    head: &RequestHead,
    body: ReqBody,
    o: Opened,
) -> Next {
    // A streamed body flows on its own task, which owns the read half until the body ends and
    // shares the stream; otherwise the stream stays owned here (no shared handle to allocate).
    let streamed = matches!(body, ReqBody::Streamed { .. });
    let (stream, pump) = match body {
        ReqBody::Streamed {
            prefix,
            dec,
            continue_sent,
            pace,
            trailers,
        } => {
            if !continue_sent
                && expects_continue(head)
                && c.write(vec![Bytes::from_static(CONTINUE_RESPONSE)])
                    .await
                    .is_err()
            {
                return Next::Close;
            }
            // The read half goes to the pump and comes back with it.
            let Some(rd) = c.rd.take() else {
                return Next::Close;
            };
            let buf = std::mem::take(&mut c.buf);
            let s = Rc::new(o.stream);
            let ctx = PumpCtx {
                watch: Rc::clone(&c.watch),
                chunked: trailers.then(ChunkedOut::new),
                pace,
                metrics: Arc::clone(w.plane.registry.metrics()),
            };
            let pump = compio::runtime::spawn(pump_body(rd, buf, dec, Rc::clone(&s), prefix, ctx));
            (Held::Shared(s), Some(pump))
        }
        _ => (Held::Owned(o.stream), None),
    };
    let meta = match o.early_reply {
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
        meta => respond(w, c, head, stream, o.guard, meta, o.request_open).await,
    };
    if let Some(p) = pump {
        match p.await {
            Ok((rd, buf, ok)) => {
                c.rd = Some(rd);
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

/// A request's stream: shared with the body pump while a body streams, else owned.
pub(crate) enum Held {
    /// Only the response side uses it.
    Owned(Stream),
    /// The body pump holds it too.
    Shared(Rc<Stream>),
}

impl Held {
    /// A shared handle (for the raw pipe after a `101`).
    pub(crate) fn into_rc(self) -> Rc<Stream> {
        match self {
            Held::Owned(s) => Rc::new(s),
            Held::Shared(s) => s,
        }
    }
}

impl std::ops::Deref for Held {
    type Target = Stream;
    fn deref(&self) -> &Stream {
        match self {
            Held::Owned(s) => s,
            Held::Shared(s) => s,
        }
    }
}
