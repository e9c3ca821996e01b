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

#[cfg(test)]
mod tests {
    use super::*;

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        compio::runtime::Runtime::new()
            .expect("a runtime")
            .block_on(f)
    }

    #[test]
    fn the_response_crosses_in_order_and_a_failure_as_it_was() {
        let (down_tx, down_rx) = async_channel::bounded(4);
        let (up_tx, _up_rx) = async_channel::bounded(4);
        let (cancel_tx, _cancel_rx) = async_channel::bounded(1);
        let s = TunnelStream::Bridged(Remote::new(down_rx, up_tx, cancel_tx));
        block_on(async {
            down_tx
                .send(Down::Reply(Ok(Bytes::from_static(b"meta"))))
                .await
                .expect("room");
            down_tx
                .send(Down::Data(Bytes::from_static(b"ab")))
                .await
                .expect("room");
            down_tx.send(Down::End).await.expect("room");
            assert_eq!(s.reply_meta().await.expect("reply"), &b"meta"[..]);
            assert_eq!(
                s.read().await.expect("data"),
                Some(Bytes::from_static(b"ab"))
            );
            assert_eq!(s.read().await.expect("end"), None);
            down_tx
                .send(Down::Failed(LinkError::Reset(ErrorCode::CANCEL)))
                .await
                .expect("room");
            assert!(matches!(s.read().await, Err(LinkError::Reset(_))));
            drop(down_tx);
            assert!(matches!(s.read().await, Err(LinkError::StreamGone)));
        });
    }

    #[test]
    fn the_request_waits_for_room_and_dropping_the_handle_cancels() {
        let (_down_tx, down_rx) = async_channel::bounded(1);
        let (up_tx, up_rx) = async_channel::bounded(1);
        let (cancel_tx, cancel_rx) = async_channel::bounded(1);
        let s = TunnelStream::Bridged(Remote::new(down_rx, up_tx, cancel_tx));
        block_on(async {
            s.write(Bytes::from_static(b"x")).await.expect("room");
            // Full: the next write waits until the carrying side takes a piece.
            assert!(up_rx.is_full());
            s.reset(ErrorCode::CANCEL);
            s.reset(ErrorCode::INTERNAL_ERROR);
            assert_eq!(cancel_rx.recv().await.ok(), Some(ErrorCode::CANCEL));
            up_rx.close();
            assert!(s.write(Bytes::from_static(b"y")).await.is_err());
            assert!(s.finish().await.is_err());
        });
        drop(s);
        assert!(
            cancel_rx.is_closed(),
            "the carrying side sees the handle go"
        );
    }
}
