//! GOAWAY: stops new streams and closes the link, gracefully or with an error
//! (protocol.md §3.8, §7).

use bytes::Bytes;

use crate::mux::ErrorCode;

/// A GOAWAY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoAway {
    /// The highest stream ID opened by the receiver that the sender processed or may process.
    pub last_id: u64,
    /// Why; [`ErrorCode::NO_ERROR`] for a graceful drain.
    pub code: ErrorCode,
    /// Phase 1 of a two-phase drain.
    pub drain: bool,
    /// Optional debug text, opaque.
    pub reason: Bytes,
}

/// Length of the fixed part of a GOAWAY payload.
pub const GOAWAY_MIN_LEN: usize = 12;
