//! A public client connection's byte stream: plain TCP (`--public-http`, TCP routes) or TLS
//! over TCP (HTTP/1.1 on `--public-https`). The HTTP/1.1 path and the raw pipe are generic
//! over [`ClientIo`] and monomorphised for each, so the plaintext path pays nothing for TLS:
//! its halves are handles on the same socket, as they always were.
//!
//! The raw TCP socket stays at hand whatever the stream: the watchdog shuts it down to end an
//! operation in flight (`watchdog.rs`), and a lingering close shuts its sending side.

use std::io;

use compio::io::{AsyncRead, AsyncWrite};
use compio::net::TcpStream;
use ringtun_core::tls::{TlsReader, TlsStream, TlsWriter};

use super::link_server::Moving;

/// A client stream the HTTP/1.1 path can serve.
pub(crate) trait ClientIo: Sized + 'static {
    /// The reading half (owned by one task at a time: the connection, or a body pump).
    type Rd: AsyncRead + 'static;
    /// The writing half.
    type Wr: AsyncWrite + 'static;
    /// The scheme the client used, for `X-Forwarded-Proto` (`http` or `https`).
    const SCHEME: &'static str;
    /// Whether a fresh connection may open with the HTTP/2 preface (h2c with prior
    /// knowledge). Over TLS, ALPN chose the protocol already.
    const SNIFF_H2: bool;

    /// Splits the stream into its halves.
    fn into_halves(self) -> (Self::Rd, Self::Wr);

    /// The connection as it moves to another worker, between operations. The plaintext socket
    /// is duplicated and the halves stay; a TLS session is taken out of them (they are `None`
    /// afterwards, whether the move succeeds or not).
    fn moving(
        rd: &mut Option<Self::Rd>,
        wr: &mut Option<Self::Wr>,
        sock: &TcpStream,
    ) -> io::Result<Moving>;

    /// Ends the sending direction (over TLS, `close_notify` first).
    async fn close_write(wr: &mut Self::Wr, sock: &TcpStream);
}

impl ClientIo for TcpStream {
    type Rd = TcpStream;
    type Wr = TcpStream;
    const SCHEME: &'static str = "http";
    const SNIFF_H2: bool = true;

    fn into_halves(self) -> (TcpStream, TcpStream) {
        (self.clone(), self)
    }

    fn moving(
        _rd: &mut Option<TcpStream>,
        _wr: &mut Option<TcpStream>,
        sock: &TcpStream,
    ) -> io::Result<Moving> {
        Moving::plain(sock)
    }

    async fn close_write(_wr: &mut TcpStream, sock: &TcpStream) {
        let _ = socket2::SockRef::from(sock).shutdown(std::net::Shutdown::Write);
    }
}

impl ClientIo for TlsStream {
    type Rd = TlsReader;
    type Wr = TlsWriter;
    const SCHEME: &'static str = "https";
    const SNIFF_H2: bool = false;

    fn into_halves(self) -> (TlsReader, TlsWriter) {
        TlsStream::into_halves(self)
    }

    fn moving(
        rd: &mut Option<TlsReader>,
        wr: &mut Option<TlsWriter>,
        _sock: &TcpStream,
    ) -> io::Result<Moving> {
        let (Some(rd), Some(wr)) = (rd.take(), wr.take()) else {
            return Err(io::Error::other("the tls stream is in use"));
        };
        let parts = TlsStream::from_halves(rd, wr)?.into_parts()?;
        Ok(Moving::Tls(Box::new(parts)))
    }

    async fn close_write(wr: &mut TlsWriter, _sock: &TcpStream) {
        // Sends close_notify, then shuts the socket's sending side down.
        let _ = wr.shutdown().await;
    }
}
