//! The link's error type: what went wrong, whose fault it was, and whether a retry is safe.

use crate::error::{Classify, Fault};
use crate::mux::{self, ErrorCode};

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

impl Classify for LinkError {
    fn fault(&self) -> Fault {
        match self {
            LinkError::Closed { fault, .. } => *fault,
            LinkError::Reset(_) | LinkError::Refused => Fault::Peer,
            LinkError::StreamGone => Fault::Local,
            LinkError::Mux(e) => e.fault(),
        }
    }

    /// Safe when the peer refused the stream before processing it, or the session could not
    /// open it: retry on another link.
    fn is_retry_safe(&self) -> bool {
        match self {
            LinkError::Refused => true,
            LinkError::Mux(e) => e.is_retry_safe(),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant: whose fault and whether retrying on another link is safe.
    #[test]
    fn every_error_has_a_fault_and_a_retry_answer() {
        let closed = |fault| LinkError::Closed {
            fault,
            reason: "x".into(),
        };
        let table = [
            (closed(Fault::Peer), Fault::Peer, false),
            (closed(Fault::Network), Fault::Network, false),
            (LinkError::Reset(ErrorCode::CANCEL), Fault::Peer, false),
            (LinkError::Refused, Fault::Peer, true),
            (LinkError::StreamGone, Fault::Local, false),
            (LinkError::Mux(mux::Error::GoingAway), Fault::Local, true),
            (
                LinkError::Mux(mux::Error::IdleTimeout),
                Fault::Network,
                false,
            ),
        ];
        for (e, fault, retry) in table {
            assert_eq!(e.fault(), fault, "{e:?}");
            assert_eq!(e.is_retry_safe(), retry, "{e:?}");
        }
    }
}
