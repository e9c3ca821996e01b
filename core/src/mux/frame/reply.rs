//! REPLY: the acceptor's answer to an OPEN, carrying response metadata or an error
//! (protocol.md §3.3).

use bytes::Bytes;

/// A REPLY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The stream.
    pub stream_id: u64,
    /// Opaque metadata.
    pub meta: Bytes,
}
