//! Moving raw bytes between a link stream and a socket, one direction per task (io_uring: one
//! read and one write in flight per socket, never a dropped read). Used for `tcp://` services
//! and for upgraded (101) HTTP connections.
//!
//! Memory stays flat: a socket read fills at most [`READ_SIZE`] bytes, and the next read waits
//! until the link took the chunk (the link's flow control bounds what it buffers).

use bytes::{Bytes, BytesMut};
use compio::BufResult;
use compio::io::{AsyncRead, AsyncWrite};
use prometheus_client::metrics::counter::Counter;
use ringtun_core::http::io::write_bufs;
use ringtun_core::link::Stream;

/// The most bytes one socket read asks for.
pub const READ_SIZE: usize = 64 * 1024;

/// About the most bytes one socket write carries (whatever the stream has received by then).
pub const WRITE_BATCH: usize = 256 * 1024;

/// Copies the stream's data to `w` until the stream's FIN, then shuts `w`'s write side down
/// (half-close), counting the bytes in `sent`. Returns whether the direction ended cleanly.
pub async fn stream_to_socket<W: AsyncWrite>(stream: &Stream, w: &mut W, sent: &Counter) -> bool {
    loop {
        // Everything already received goes out in one vectored write.
        match stream.read_batch(WRITE_BATCH).await {
            Ok(Some(chunks)) => {
                sent.inc_by(chunks.iter().map(|c| c.len() as u64).sum());
                if write_bufs(w, chunks).await.is_err() {
                    return false;
                }
            }
            Ok(None) => return w.shutdown().await.is_ok(),
            Err(e) => {
                tracing::debug!(error = %e, "stream ended with an error while piping to the origin");
                let _ = w.shutdown().await;
                return false;
            }
        }
    }
}

/// Writes `first` (bytes already read past a head), then copies what `r` reads to the stream
/// until end of file, then finishes the stream; the bytes are counted in `received`. Returns
/// whether the direction ended cleanly.
pub async fn socket_to_stream<R: AsyncRead>(
    r: &mut R,
    stream: &Stream,
    first: Bytes,
    received: &Counter,
) -> bool {
    received.inc_by(first.len() as u64);
    if !first.is_empty() && stream.write(first).await.is_err() {
        return false;
    }
    let mut buf = BytesMut::with_capacity(READ_SIZE);
    loop {
        if buf.capacity() < READ_SIZE {
            buf = BytesMut::with_capacity(READ_SIZE);
        }
        let BufResult(res, b) = r.read(buf).await;
        buf = b;
        match res {
            Ok(0) => return stream.finish().is_ok(),
            Ok(n) => {
                received.inc_by(n as u64);
                let chunk = buf.split().freeze();
                if stream.write(chunk).await.is_err() {
                    return false;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "origin socket read failed while piping");
                stream.reset(ringtun_core::mux::ErrorCode::CANCEL);
                return false;
            }
        }
    }
}
