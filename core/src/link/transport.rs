//! The seam between a link and its byte stream.
//!
//! A link needs a reader half, a writer half (each driven by its own task, see the module doc
//! of [`link`](super)) and a way to end a read that is in flight. Plain TCP implements it here,
//! and [`TlsStream`](crate::tls::TlsStream) in `core/src/tls/stream.rs`, so nothing above the
//! link knows which one it runs over.

use std::io;

use compio::io::{AsyncRead, AsyncWrite};
use compio::net::TcpStream;

/// Ends a transport from outside its tasks: after [`Shutdown::shutdown`], a pending read
/// completes (with end of file or an error) and writes fail.
pub trait Shutdown: 'static {
    /// Shuts both directions down. Calling it twice is harmless.
    fn shutdown(&self) -> io::Result<()>;
}

/// A connected byte stream a link can run over.
pub trait Transport: 'static {
    /// The half the reader task owns.
    type Reader: AsyncRead + 'static;
    /// The half the writer task owns.
    type Writer: AsyncWrite + 'static;
    /// The handle that ends both halves.
    type Shutdown: Shutdown;
    /// Splits the stream.
    fn split(self) -> (Self::Reader, Self::Writer, Self::Shutdown);
}

/// Shuts a TCP socket down with `shutdown(2)`, which completes a read in flight on it.
#[derive(Debug)]
pub struct TcpShutdown(TcpStream);

impl Shutdown for TcpShutdown {
    fn shutdown(&self) -> io::Result<()> {
        match socket2::SockRef::from(&self.0).shutdown(std::net::Shutdown::Both) {
            // Already shut down or reset by the peer: the goal is reached.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}

impl Transport for TcpStream {
    type Reader = TcpStream;
    type Writer = TcpStream;
    type Shutdown = TcpShutdown;

    fn split(self) -> (TcpStream, TcpStream, TcpShutdown) {
        let (r, w) = self.into_split();
        let s = TcpShutdown(w.clone());
        (r, w, s)
    }
}
