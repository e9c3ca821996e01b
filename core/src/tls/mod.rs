//! TLS for links: rustls over a compio `TcpStream` (or, towards `unix+tls:` origins, a
//! `UnixStream`: [`TlsSocket`]), splittable into the link's reader and writer tasks.
//!
//! A [`TlsStream`] is made by [`TlsStream::connect`] or [`TlsStream::accept`], which run the
//! whole TLS handshake on the TCP stream first. It is then an ordinary compio
//! `AsyncRead + AsyncWrite` (the registration [`handshake`](crate::handshake) runs on it), and
//! finally a [`Transport`](crate::link::Transport): `Link::spawn(tls, role, config)`.
//!
//! # Why not `compio-tls`
//!
//! Its stream owns the socket and the rustls connection together behind `&mut self`, so it
//! cannot be driven by two independent tasks (one always reading, one writing), which the
//! io_uring rules of the link need (never drop an in-flight read).
//!
//! # How the split works
//!
//! Both halves share one `rustls::Connection` in an `Rc<RefCell<_>>` (one worker, the borrow
//! is never held across an `.await`):
//! - the reader owns the TCP read half and a ciphertext buffer; it feeds rustls and copies
//!   plaintext into the caller's buffer;
//! - the TCP write half (with its ciphertext buffer) is a *write port*: whoever holds it drains
//!   **all** of rustls' pending TLS output in order and writes it, one write in flight. The
//!   writer half encrypts the caller's buffers (all slices of a vectored write), then takes
//!   the port. TLS records leave in sequence order because only the port holder drains them;
//! - reading can make rustls want to send on its own (a key update answer, an alert). The
//!   reader then notifies a small *flusher* task, spawned by `split`, which takes the port and
//!   sends it even when the application writes nothing.
//!
//! A stream whose handshakes are done can move to another worker thread:
//! [`TlsStream::into_parts`] gives a `Send` [`TlsParts`] (a duplicate of the socket, the
//! rustls connection, unread ciphertext) and [`TlsStream::from_parts`] rebuilds it there.
//!
//! End of stream: a received `close_notify` reads as end of file; a TCP end without it is an
//! `UnexpectedEof` error (a possible truncation), unless this side shut the stream down.
//! Shutting the writer down sends `close_notify`.
//!
//! Only TLS 1.3 is offered: both ends are ours. The crypto provider is `ring`: it builds with
//! `cc` alone (no cmake, no Go), which matters on these small build machines, and its AES-GCM
//! and ChaCha20 are assembly-optimised like aws-lc-rs's for the suites TLS 1.3 uses.

mod config;
mod error;
mod stream;

pub use config::{
    ALPN, HTTP1_ALPN, client_config, danger_origin_client_config_no_verify, origin_client_config,
    server_config, server_config_pem,
};
pub use error::TlsError;
pub use stream::{TlsParts, TlsReader, TlsShutdown, TlsSocket, TlsStream, TlsWriter};
