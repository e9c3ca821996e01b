//! DATA: stream payload bytes (protocol.md §3.1).
//!
//! The payload is a `Bytes` slice of the receive buffer, never copied by the codec.

use bytes::Bytes;

/// A DATA frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    /// The stream.
    pub stream_id: u64,
    /// Payload, counted against stream and link credit.
    pub payload: Bytes,
    /// The sender's half of the stream ends here.
    pub fin: bool,
}
