//! The link's error type: what went wrong, whose fault it was, and whether a retry is safe.

use crate::mux::{self, ErrorCode, Fault};

/// Why a link or stream operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    /// The link is closed; the reason says how (GOAWAY sent or received, idle timeout, socket
    /// error, drain complete).
    #[error("link closed: {reason}")]
    Closed {
        /// Whose fault the close was.
        fault: Fault,
        /// A human-readable reason.
        reason: String,
    },
    /// The peer reset the stream with this code.
    #[error("stream reset by peer ({0})")]
    Reset(ErrorCode),
    /// The peer refused the stream before processing it (over its limit or above its GOAWAY
    /// last ID). Opening it again on another link is safe.
    #[error("stream refused by peer before processing; safe to retry on another link")]
    Refused,
    /// The stream was reset locally, or its handle is no longer valid.
    #[error("stream is no longer open")]
    StreamGone,
    /// A local misuse or refusal reported by the session (e.g. too many streams, going away).
    #[error(transparent)]
    Mux(#[from] mux::Error),
}

impl LinkError {
    /// Whose fault it was.
    pub fn fault(&self) -> Fault {
        match self {
            LinkError::Closed { fault, .. } => *fault,
            LinkError::Reset(_) | LinkError::Refused => Fault::Peer,
            LinkError::StreamGone => Fault::Local,
            LinkError::Mux(e) => e.fault(),
        }
    }

    /// Whether the operation may be retried on another link without risk of running twice.
    pub fn is_retry_safe(&self) -> bool {
        match self {
            LinkError::Refused => true,
            LinkError::Mux(e) => e.is_retry_safe(),
            _ => false,
        }
    }
}
