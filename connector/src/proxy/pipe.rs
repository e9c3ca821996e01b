//! Moving raw bytes between a link stream and an origin socket, for `tcp://` services and for
//! upgraded (101) HTTP connections: the shared pipe of `ringtun_core::link::pipe` (one
//! direction per task, small reads while the connection is quiet), with the connector's byte
//! counters and what the end of each direction means here.

use bytes::Bytes;
use compio::io::{AsyncRead, AsyncWrite};
use prometheus_client::metrics::counter::Counter;
use ringtun_core::link::Stream;
use ringtun_core::link::pipe::{self, PipeHooks, ReadEnd, WriteEnd};
use ringtun_core::mux::ErrorCode;

pub use ringtun_core::link::pipe::READ_SIZE;

/// Counts the bytes read from the origin.
struct Received<'a>(&'a Counter);

impl PipeHooks for Received<'_> {
    fn received(&self, n: usize) {
        self.0.inc_by(n as u64);
    }
}

/// Counts the bytes written to the origin.
struct Sent<'a>(&'a Counter);

impl PipeHooks for Sent<'_> {
    fn sending(&self, n: usize) {
        self.0.inc_by(n as u64);
    }
}

/// Copies the stream's data to `w` until the stream's FIN, then shuts `w`'s write side down
/// (half-close), counting the bytes in `sent`. Returns whether the direction ended cleanly.
pub async fn stream_to_socket<W: AsyncWrite>(stream: &Stream, w: &mut W, sent: &Counter) -> bool {
    match pipe::stream_to_socket(stream, w, &Sent(sent)).await {
        WriteEnd::Fin => w.shutdown().await.is_ok(),
        WriteEnd::Stream(e) => {
            tracing::debug!(error = %e, "stream ended with an error while piping to the origin");
            let _ = w.shutdown().await;
            false
        }
        WriteEnd::Socket(_) | WriteEnd::Aborted => false,
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
    match pipe::socket_to_stream(r, stream, first, &Received(received)).await {
        ReadEnd::Eof => stream.finish().is_ok(),
        ReadEnd::Stream(_) => false,
        ReadEnd::Socket(e) => {
            tracing::debug!(error = %e, "origin socket read failed while piping");
            stream.reset(ErrorCode::CANCEL);
            false
        }
    }
}
