//! OPEN: starts a stream and carries its request metadata (protocol.md §3.2).
//!
//! The metadata is opaque to the mux; the kind byte lets the acceptor dispatch without
//! parsing it.

use bytes::Bytes;

/// What a stream carries (protocol.md §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// An HTTP request/response exchange.
    Http = 1,
    /// An upgraded WebSocket, a plain byte stream after the handshake.
    WebSocket = 2,
    /// A raw TCP connection.
    Tcp = 3,
}

impl StreamKind {
    /// The kind for a wire byte; `None` for an unknown value.
    pub fn from_u8(b: u8) -> Option<StreamKind> {
        match b {
            1 => Some(StreamKind::Http),
            2 => Some(StreamKind::WebSocket),
            3 => Some(StreamKind::Tcp),
            _ => None,
        }
    }
}

/// An OPEN frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The new stream's ID.
    pub stream_id: u64,
    /// What it carries.
    pub kind: StreamKind,
    /// Opaque metadata (request head or target).
    pub meta: Bytes,
    /// The opener sends no DATA on this stream.
    pub fin: bool,
}
