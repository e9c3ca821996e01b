//! One try at opening a request's stream on one replica's link, shared by the HTTP/1.1
//! (`http/`) and HTTP/2 (`h2/`) public sides: open, send what of the body is at hand, wait for the
//! REPLY, and say whether another replica may take the request (see `retry.rs`).

use ringtun_core::error::Classify;
use std::sync::Arc;

use bytes::Bytes;
use ringtun_core::link::{Link, LinkError, Stream};
use ringtun_core::mux::StreamKind;

use super::lb::{ConnectorLoad, StreamGuard};
use super::retry::RetryReason;

/// What of the request body an attempt sends before it waits for the REPLY.
pub(crate) enum Outgoing<'a> {
    /// No body: the request direction ends at once.
    Empty,
    /// No body yet, but the request direction stays open (an upgrade: after a 101 it carries
    /// raw bytes).
    LeaveOpen,
    /// The whole body, read before the stream opened (it can be resent elsewhere).
    Buffered(&'a [Bytes]),
    /// The body streams once the stream is open: the attempt returns at once.
    Streamed,
}

/// Why one attempt did or did not produce a reply.
pub(crate) enum Attempt {
    /// The connector replied.
    Replied(Stream, StreamGuard, Bytes),
    /// The stream is open; the body still flows (no retry possible any more).
    Streaming(Stream, StreamGuard),
    /// Another replica may take it.
    Retry(RetryReason, LinkError),
    /// It failed for good; the detail goes into the 502.
    Failed(String),
}

/// One try on one replica: open, send a buffered body, wait for the REPLY (a streamed body
/// returns at once with the open stream). `idempotent`: the request may run twice, so a link
/// lost before any response byte lets another replica take it.
pub(crate) async fn attempt(
    link: &Link,
    load: &Arc<ConnectorLoad>,
    kind: StreamKind,
    meta: &Bytes,
    body: Outgoing<'_>,
    idempotent: bool,
) -> Attempt {
    let s = match link.open(kind, meta.clone()) {
        Ok(s) => s,
        Err(e) if e.is_retry_safe() => return Attempt::Retry(RetryReason::Refused, e),
        // Nothing was sent: any request may go elsewhere.
        Err(e @ LinkError::Closed { .. }) => return Attempt::Retry(RetryReason::Refused, e),
        Err(e) => {
            return Attempt::Failed(format!("cannot open a stream to the connector: {e}"));
        }
    };
    let guard = load.start_stream();
    let sent = match body {
        Outgoing::Streamed => return Attempt::Streaming(s, guard),
        Outgoing::LeaveOpen => Ok(()),
        Outgoing::Empty => s.finish(),
        Outgoing::Buffered(chunks) => send_all(&s, chunks).await,
    };
    let res = match sent {
        Ok(()) => s.reply_meta().await,
        // A refusal that arrived while the body was sent says so here too.
        Err(e) => Err(s.reply_meta().await.err().unwrap_or(e)),
    };
    match res {
        Ok(m) => Attempt::Replied(s, guard, m),
        Err(e) if e.is_retry_safe() => Attempt::Retry(RetryReason::Refused, e),
        Err(e) if idempotent && (matches!(e, LinkError::Closed { .. }) || link.is_closed()) => {
            Attempt::Retry(RetryReason::LinkLost, e)
        }
        Err(e) => Attempt::Failed(format!("the connector failed the request: {e}")),
    }
}

/// Writes a buffered body and FIN.
pub(crate) async fn send_all(s: &Stream, chunks: &[Bytes]) -> Result<(), LinkError> {
    for ch in chunks {
        s.write(ch.clone()).await?;
    }
    s.finish()
}
