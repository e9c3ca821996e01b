//! A tunnel stream as the public side uses it: the link's own stream when this worker holds
//! the link, or one another worker carries ([`Remote`], see the module doc of `bridge`). The
//! operations are the ones of [`Stream`] that a request's bodies need; a local stream costs
//! one match per operation.

use bytes::Bytes;
use ringtun_core::link::{LinkError, Stream};
use ringtun_core::mux::ErrorCode;

use super::{Down, Up};

/// A request's tunnel stream.
pub(crate) enum TunnelStream {
    /// On a link of this worker.
    Local(Stream),
    /// Carried by another worker.
    Bridged(Remote),
}

impl TunnelStream {
    /// The next piece of the response; `None` at its end.
    pub(crate) async fn read(&self) -> Result<Option<Bytes>, LinkError> {
        match self {
            TunnelStream::Local(s) => s.read().await,
            TunnelStream::Bridged(r) => r.read().await,
        }
    }

    /// Writes a piece of the request body, waiting for room.
    pub(crate) async fn write(&self, data: Bytes) -> Result<(), LinkError> {
        match self {
            TunnelStream::Local(s) => s.write(data).await,
            TunnelStream::Bridged(r) => r.write(data).await,
        }
    }

    /// Ends the request direction.
    pub(crate) async fn finish(&self) -> Result<(), LinkError> {
        match self {
            TunnelStream::Local(s) => s.finish(),
            TunnelStream::Bridged(r) => r.finish().await,
        }
    }

    /// Aborts both directions with `code`.
    pub(crate) fn reset(&self, code: ErrorCode) {
        match self {
            TunnelStream::Local(s) => s.reset(code),
            TunnelStream::Bridged(r) => r.reset(code),
        }
    }

    /// The connector's REPLY metadata.
    pub(crate) async fn reply_meta(&self) -> Result<Bytes, LinkError> {
        match self {
            TunnelStream::Local(s) => s.reply_meta().await,
            TunnelStream::Bridged(r) => r.reply_meta().await,
        }
    }
}

/// The requesting side's handle on a stream another worker carries. Dropping it cancels the
/// stream there (see the module doc of `bridge`).
pub(crate) struct Remote {
    down: async_channel::Receiver<Down>,
    up: async_channel::Sender<Up>,
    cancel: async_channel::Sender<ErrorCode>,
}

/// What a closed channel means: the carrying worker dropped the stream (it was reset, or the
/// worker is shutting down).
fn gone() -> LinkError {
    LinkError::StreamGone
}

impl Remote {
    pub(super) fn new(
        down: async_channel::Receiver<Down>,
        up: async_channel::Sender<Up>,
        cancel: async_channel::Sender<ErrorCode>,
    ) -> Remote {
        Remote { down, up, cancel }
    }

    async fn read(&self) -> Result<Option<Bytes>, LinkError> {
        loop {
            return match self.down.recv().await.map_err(|_| gone())? {
                Down::Data(d) => Ok(Some(d)),
                Down::End => Ok(None),
                Down::Failed(e) => Err(e),
                // The REPLY of a streamed request that nobody asked for: the body follows.
                Down::Reply(Ok(_)) => continue,
                Down::Reply(Err(e)) => Err(e),
                Down::Opened(_) => Err(gone()),
            };
        }
    }

    async fn write(&self, data: Bytes) -> Result<(), LinkError> {
        self.up.send(Up::Data(data)).await.map_err(|_| gone())
    }

    async fn finish(&self) -> Result<(), LinkError> {
        self.up.send(Up::Finish).await.map_err(|_| gone())
    }

    fn reset(&self, code: ErrorCode) {
        // The first reset wins (the channel holds one); the stream is gone after it anyway.
        let _ = self.cancel.try_send(code);
    }

    async fn reply_meta(&self) -> Result<Bytes, LinkError> {
        match self.down.recv().await.map_err(|_| gone())? {
            Down::Reply(r) => r,
            Down::Failed(e) => Err(e),
            _ => Err(gone()),
        }
    }
}
