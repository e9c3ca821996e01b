//! RESET: aborts both directions of a stream (protocol.md §3.5).
//!
//! The final size keeps link-level credit in sync, as in QUIC: the receiver of a RESET knows
//! exactly how many bytes the stream used and returns what it did not consume.

use crate::mux::ErrorCode;

/// A RESET frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reset {
    /// The stream.
    pub stream_id: u64,
    /// Why.
    pub code: ErrorCode,
    /// Total DATA payload bytes the sender of the RESET sent on this stream.
    pub final_size: u64,
}

/// Payload length of a RESET frame.
pub const RESET_LEN: usize = 12;
