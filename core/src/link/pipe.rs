//! The raw byte pipe between a socket and a [`Stream`]: both directions of a TCP route, and of
//! an HTTP connection after `101 Switching Protocols`, on the edge and on the connector.
//!
//! One direction per task (io_uring: one read and one write in flight per socket, never a
//! dropped read). What differs between the two binaries (counters, the edge's watchdog) comes
//! in through [`PipeHooks`]; what the end of a direction means (FIN, reset, shutdown) stays
//! with the caller, which gets a [`ReadEnd`] or [`WriteEnd`].
//!
//! # Memory
//!
//! An idle connection holds no large buffer: a socket read asks for [`IDLE_READ`] bytes until
//! one fills it, and only then for [`READ_SIZE`]; a read that comes back short drops back to
//! the small buffer. A bulk transfer fills every read and keeps the large one, so it costs one
//! read and one DATA frame per 64 KiB; a thousand idle connections hold a thousand small
//! buffers instead of a thousand 64 KiB ones. The next read waits until the link took the
//! chunk, so the link's flow control bounds what a direction buffers.

use std::future::{Future, poll_fn};
use std::io;
use std::pin::pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use compio::BufResult;
use compio::io::{AsyncRead, AsyncWrite};

use super::driver::write_batch;
use super::error::LinkError;
use super::stream::Stream;

/// The most bytes one socket read asks for once data flows.
pub const READ_SIZE: usize = 64 * 1024;

/// What a socket read asks for while the connection is quiet (see the module doc).
pub const IDLE_READ: usize = 512;

/// About the most bytes one socket write carries (whatever the stream has received by then).
pub const WRITE_BATCH: usize = 256 * 1024;

/// What the owner of a pipe learns as bytes move, and how it may stop the socket writer.
/// Every method has a default that does nothing.
pub trait PipeHooks {
    /// `n` bytes were read from the socket (and go to the stream).
    fn received(&self, _n: usize) {}
    /// `n` bytes from the stream are about to be written to the socket.
    fn sending(&self, _n: usize) {}
    /// A socket write starts.
    fn write_started(&self) {}
    /// The socket write ended (whatever its result).
    fn write_ended(&self) {}
    /// Ready once the owner wants the socket writer to stop waiting for stream data (the
    /// connection was closed from outside). Dropping the pending stream read loses nothing: it
    /// takes data only when it completes.
    fn poll_abort(&self, _cx: &mut Context<'_>) -> Poll<()> {
        Poll::Pending
    }
}

/// Hooks that do nothing.
impl PipeHooks for () {}

/// How the socket-to-stream direction ended.
#[derive(Debug)]
pub enum ReadEnd {
    /// The socket reached end of file; the caller finishes (or resets) the stream.
    Eof,
    /// A socket read failed.
    Socket(io::Error),
    /// Writing to the stream failed (reset by the peer, link closed).
    Stream(LinkError),
}

/// How the stream-to-socket direction ended.
#[derive(Debug)]
pub enum WriteEnd {
    /// The stream's FIN arrived; the caller half-closes the socket.
    Fin,
    /// Reading the stream failed (reset by the peer, link closed).
    Stream(LinkError),
    /// A socket write failed.
    Socket(io::Error),
    /// [`PipeHooks::poll_abort`] became ready.
    Aborted,
}

/// Writes `first` (bytes already read past a head), then what `r` reads to `stream`, until
/// end of file or an error. The stream is neither finished nor reset here.
pub async fn socket_to_stream<R: AsyncRead, H: PipeHooks>(
    r: &mut R,
    stream: &Stream,
    first: Bytes,
    hooks: &H,
) -> ReadEnd {
    if !first.is_empty() {
        hooks.received(first.len());
        if let Err(e) = stream.write(first).await {
            return ReadEnd::Stream(e);
        }
    }
    let mut buf = BytesMut::new();
    let mut want = IDLE_READ;
    loop {
        let spare = buf.capacity() - buf.len();
        // A fresh buffer when what is left of the current one is too small for the ask, or
        // too large for a quiet connection (dropping this handle frees a large one once the
        // stream sent the chunks cut from it).
        let fresh = if want == READ_SIZE {
            spare < READ_SIZE / 4
        } else {
            !(IDLE_READ / 2..=IDLE_READ).contains(&spare)
        };
        if fresh {
            buf = BytesMut::with_capacity(want);
        }
        let asked = buf.capacity() - buf.len();
        let BufResult(res, b) = r.read(buf).await;
        buf = b;
        match res {
            Ok(0) => return ReadEnd::Eof,
            Ok(n) => {
                hooks.received(n);
                // A full read means more is waiting: ask for the large size next; a short one
                // means the sender paused, so go back to the small buffer.
                want = if n == asked { READ_SIZE } else { IDLE_READ };
                let chunk = buf.split().freeze();
                if let Err(e) = stream.write(chunk).await {
                    return ReadEnd::Stream(e);
                }
            }
            Err(e) => return ReadEnd::Socket(e),
        }
    }
}

/// Writes what `stream` receives to `w`, everything already received in one vectored write,
/// until the stream's FIN, an error, or the hooks abort. The socket is not shut down here.
pub async fn stream_to_socket<W: AsyncWrite, H: PipeHooks>(
    stream: &Stream,
    w: &mut W,
    hooks: &H,
) -> WriteEnd {
    loop {
        let next = {
            let mut read = pin!(stream.read_batch(WRITE_BATCH));
            poll_fn(|cx| match read.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending => hooks.poll_abort(cx).map(|()| None),
            })
            .await
        };
        let chunks = match next {
            None => return WriteEnd::Aborted,
            Some(Ok(Some(chunks))) => chunks,
            Some(Ok(None)) => return WriteEnd::Fin,
            Some(Err(e)) => return WriteEnd::Stream(e),
        };
        hooks.sending(chunks.iter().map(Bytes::len).sum());
        hooks.write_started();
        let mut chunks = chunks;
        let r = write_batch(w, &mut chunks).await;
        hooks.write_ended();
        if let Err(e) = r {
            return WriteEnd::Socket(e);
        }
    }
}
