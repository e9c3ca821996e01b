//! The carrying side of a bridged stream: the worker that holds a link of the tunnel opens
//! the stream on it as for a local request (`dataplane/open.rs`), says how that went, then
//! moves the request body to the stream and the response back until both ends are done or
//! the requesting side lets go.

use std::pin::pin;
use std::rc::Rc;

use futures_util::future::{Either, join, select};
use ringtun_core::error::Fault;
use ringtun_core::link::LinkError;

use super::{Body, Down, Opening, Request, Up};
use crate::dataplane::open::{Attempt, Outgoing, attempt};
use crate::dataplane::retry::RetryReason;
use crate::dataplane::worker::{Pick, Worker};

/// Opens and carries the stream `req` asks for, on a link of this worker.
pub(crate) async fn serve(w: Rc<Worker>, req: Request) {
    let Request {
        ask,
        down,
        up,
        cancel,
    } = req;
    // The connector the requesting worker chose, if it still has a usable link here; else
    // this worker's choice among its own links.
    let (link, load) = match w.pick(ask.tunnel, &ask.exclude, false, ask.chosen) {
        Pick::Local { link, load } => (link, load),
        Pick::Elsewhere(..) | Pick::NoConnector | Pick::Unreachable(_) => {
            let e = LinkError::Closed {
                fault: Fault::Local,
                reason: "the worker no longer holds a link of the tunnel".to_owned(),
            };
            let tried = ask.chosen.unwrap_or_default();
            let no = Opening::Retry(RetryReason::Refused, e, tried);
            let _ = down.send(Down::Opened(no)).await;
            return;
        }
    };
    let out = match &ask.body {
        Body::Empty => Outgoing::Empty,
        Body::Buffered(chunks) => Outgoing::Buffered(chunks),
        Body::Streamed => Outgoing::Streamed,
    };
    // The requesting side may let go while the attempt runs (its client reset the stream):
    // dropping the attempt resets the stream, as a local request does.
    let tried = pin!(attempt(
        &link,
        &load,
        ask.kind,
        &ask.meta,
        out,
        ask.idempotent
    ));
    let outcome = match select(tried, pin!(cancel.recv())).await {
        Either::Left((a, _)) => a,
        Either::Right(_) => return,
    };
    let (stream, _guard, opening) = match outcome {
        Attempt::Replied(s, g, meta) => (s, g, Opening::Replied(meta)),
        Attempt::Streaming(s, g) => (s, g, Opening::Streaming),
        Attempt::Retry(reason, e) => {
            let _ = down
                .send(Down::Opened(Opening::Retry(reason, e, load.id)))
                .await;
            return;
        }
        Attempt::Failed(detail) => {
            let _ = down.send(Down::Opened(Opening::Failed(detail))).await;
            return;
        }
    };
    let streaming = matches!(opening, Opening::Streaming);
    if down.send(Down::Opened(opening)).await.is_err() {
        return;
    }
    let response = async {
        if streaming {
            let r = stream.reply_meta().await;
            let ok = r.is_ok();
            if down.send(Down::Reply(r)).await.is_err() || !ok {
                return;
            }
        }
        loop {
            let msg = match stream.read().await {
                Ok(Some(d)) => Down::Data(d),
                Ok(None) => Down::End,
                Err(e) => Down::Failed(e),
            };
            let last = !matches!(msg, Down::Data(_));
            // Waits while the requesting side has [`super::PIECES`] pieces to take.
            if down.send(msg).await.is_err() || last {
                return;
            }
        }
    };
    let request = async {
        while let Ok(m) = up.recv().await {
            let r = match m {
                Up::Data(d) => stream.write(d).await,
                Up::Finish => stream.finish(),
            };
            if r.is_err() {
                break;
            }
        }
        // The requesting side's next write fails, as a local one on a dead stream does.
        up.close();
    };
    // Both directions run until done; the requesting side dropping its handle (the channel
    // closes) or resetting the stream ends them at once.
    match select(pin!(join(response, request)), pin!(cancel.recv())).await {
        Either::Left(_) => {}
        Either::Right((Ok(code), _)) => stream.reset(code),
        Either::Right((Err(_), _)) => {}
    }
    // Dropping the stream resets it with CANCEL if it is still open (see `Stream`'s `Drop`).
}
