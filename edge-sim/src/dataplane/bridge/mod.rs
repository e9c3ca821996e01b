//! The cross-worker stream bridge: a tunnel stream opened by the worker that holds a link of
//! its tunnel, on behalf of another worker that serves the public side but holds none.
//!
//! A public HTTP/1.1 connection moves whole to a worker with a link (`worker.rs`, hand-off);
//! an HTTP/2 connection cannot, since its streams may go to different tunnels. So when the
//! replica choice of an HTTP/2 stream answers "a link on worker N only"
//! ([`Pick::Elsewhere`](super::worker::Pick)), the stream's open request goes to worker N
//! through its mailbox ([`open`]): tunnel, chosen connector, OPEN metadata, the buffered body
//! or the promise of a streamed one. Worker N chooses again among its own links (preferring
//! the connector chosen, whose choice was counted already), makes the same attempt as a local
//! request (`dataplane/open.rs`) and answers with its outcome; from then on it carries the
//! tunnel stream's operations for the requesting worker ([`TunnelStream::Bridged`]).
//!
//! Nothing here knows HTTP: the bridge carries a tunnel stream (OPEN metadata, REPLY
//! metadata, DATA both ways, FIN, reset). A stream forwarded from another edge node that
//! arrives on a worker without its tunnel's link goes the same way (`edge-sim/src/peer/server.rs`).
//!
//! # Bounds and back-pressure
//! Each direction is an `async-channel` of [`PIECES`] pieces: a request piece is taken from
//! the public client's flow-control window only once the channel took it, and the carrying
//! worker reads the next response piece from the link only once the channel has room, so a
//! bridged stream holds at most [`PIECES`] pieces each way on top of what a local stream
//! holds, and a slow side slows the other through the windows as it does locally.
//!
//! # Cancellation, both ways
//! - The requesting side drops its [`Remote`] (client RST_STREAM, deadline, end of the
//!   response): the carrying worker sees its cancel channel close and drops the tunnel
//!   stream, which resets it with CANCEL when still open, as dropping a local stream does.
//!   [`Remote::reset`] resets it with a code first.
//! - The link or the stream fails on the carrying worker: the error crosses as it is
//!   ([`LinkError`]), so the public client gets the same status or RST_STREAM as locally.
//!
//! # Retries
//! The outcome of the attempt crosses as it is: refused before processing (or, for an
//! idempotent request without a body, a link lost before any response byte) comes back as a
//! retry with the connector tried, and the requesting worker chooses again, with the same
//! bound on attempts as a local request (`dataplane/retry.rs`). A streamed body never retries.
//! When worker N holds no usable link of the tunnel any more (it went in the meantime), the
//! answer is a refusal, which nothing reached the origin for.
//!
//! # Layout
//! - this file: the request that crosses, the requesting side ([`open`]).
//! - `stream`: [`TunnelStream`], a local stream or a bridged one ([`Remote`]).
//! - `serve`: the carrying side.

mod serve;
mod stream;

pub(crate) use serve::serve;
pub(crate) use stream::{Remote, TunnelStream};

use bytes::Bytes;
use ringtun_core::link::LinkError;
use ringtun_core::mux::{ErrorCode, StreamKind};
use uuid::Uuid;

use super::WorkerMsg;
use super::retry::RetryReason;
use super::worker::Worker;

/// How many pieces (DATA, each at most a frame) wait in each direction of a bridged stream.
pub(crate) const PIECES: usize = 8;

/// What of the request body goes with the open request.
#[derive(Debug)]
pub(crate) enum Body {
    /// No body: the request direction ends at once.
    Empty,
    /// The whole body, read before the stream opened (an attempt may resend it).
    Buffered(Vec<Bytes>),
    /// The body streams through [`Remote::write`] once the stream is open.
    Streamed,
}

/// What the requesting worker asks for.
#[derive(Debug)]
pub(crate) struct Ask {
    /// The stream's tunnel.
    pub(crate) tunnel: Uuid,
    /// The connector the requesting worker's choice picked (and counted).
    pub(crate) chosen: Option<Uuid>,
    /// Connectors tried already.
    pub(crate) exclude: Vec<Uuid>,
    /// The stream's kind.
    pub(crate) kind: StreamKind,
    /// Its OPEN metadata.
    pub(crate) meta: Bytes,
    /// Its body, as far as it is known.
    pub(crate) body: Body,
    /// The request may run twice (see `dataplane/open.rs`).
    pub(crate) idempotent: bool,
}

/// An open request crossing to the worker that carries it (a [`WorkerMsg::Bridge`]).
#[derive(Debug)]
pub struct Request {
    ask: Ask,
    down: async_channel::Sender<Down>,
    up: async_channel::Receiver<Up>,
    cancel: async_channel::Receiver<ErrorCode>,
}

/// The outcome of the attempt on the carrying worker.
#[derive(Debug)]
pub(crate) enum Opening {
    /// The connector replied with this metadata.
    Replied(Bytes),
    /// The stream is open; the body streams (no retry possible any more).
    Streaming,
    /// Another replica may take it: why, the error, and the connector tried.
    Retry(RetryReason, LinkError, Uuid),
    /// It failed for good; the detail goes into the 502.
    Failed(String),
}

/// Towards the requesting worker.
#[derive(Debug)]
enum Down {
    /// The attempt's outcome (first, once).
    Opened(Opening),
    /// The REPLY metadata of a stream whose body streams.
    Reply(Result<Bytes, LinkError>),
    /// A piece of the response.
    Data(Bytes),
    /// The response ended (FIN).
    End,
    /// The stream or its link failed.
    Failed(LinkError),
}

/// Towards the carrying worker.
#[derive(Debug)]
enum Up {
    /// A piece of the request body.
    Data(Bytes),
    /// The request body ended (FIN).
    Finish,
}

/// Asks worker `to` to open the stream `ask` describes and to carry it: the outcome and,
/// when the stream opened, its handle. Waits while that worker's mailbox is full.
pub(crate) async fn open(w: &Worker, to: usize, ask: Ask) -> (Opening, Option<Remote>) {
    let (down_tx, down_rx) = async_channel::bounded(PIECES);
    let (up_tx, up_rx) = async_channel::bounded(PIECES);
    let (cancel_tx, cancel_rx) = async_channel::bounded(1);
    let req = Request {
        ask,
        down: down_tx,
        up: up_rx,
        cancel: cancel_rx,
    };
    if let Err(e) = w.send_to(to, WorkerMsg::Bridge(Box::new(req))).await {
        // Only at shutdown: the worker is gone.
        return (
            Opening::Failed(format!("cannot reach worker {to}: {e}")),
            None,
        );
    }
    w.plane.registry.metrics().bridged_streams.inc();
    match down_rx.recv().await {
        Ok(Down::Opened(o @ (Opening::Replied(_) | Opening::Streaming))) => {
            (o, Some(Remote::new(down_rx, up_tx, cancel_tx)))
        }
        Ok(Down::Opened(o)) => (o, None),
        Ok(_) | Err(_) => (
            Opening::Failed(format!("worker {to} ended the stream before opening it")),
            None,
        ),
    }
}
