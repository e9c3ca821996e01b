//! The one error type of the mux, and the wire error codes.
//!
//! Every [`Error`] answers the two questions of [`Classify`]: whose fault was it and may the
//! caller retry the work elsewhere. Wire error codes
//! ([`ErrorCode`]) are an open set, as they travel in RESET and GOAWAY frames: an unknown code
//! from a peer is kept as it is, not rejected (protocol.md §6).

use std::fmt;

use super::StreamId;
use crate::error::{Classify, Fault};

/// A 32-bit error code carried in RESET and GOAWAY frames (protocol.md §6).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErrorCode(pub u32);

impl ErrorCode {
    /// Graceful: no error.
    pub const NO_ERROR: Self = Self(0);
    /// The peer broke a rule of the protocol.
    pub const PROTOCOL_ERROR: Self = Self(1);
    /// The sender hit an internal failure.
    pub const INTERNAL_ERROR: Self = Self(2);
    /// The peer sent more than its credit, or sent an inconsistent final size.
    pub const FLOW_CONTROL_ERROR: Self = Self(3);
    /// A frame was larger than the receiver allows, or had a malformed length for its type.
    pub const FRAME_SIZE_ERROR: Self = Self(4);
    /// The stream was refused before any processing; retrying it elsewhere is safe.
    pub const REFUSED_STREAM: Self = Self(5);
    /// The stream is no longer wanted.
    pub const CANCEL: Self = Self(6);
    /// The peer is generating excessive load (floods of control frames, empty frames).
    pub const ENHANCE_YOUR_CALM: Self = Self(7);
    /// The link was idle for longer than the idle timeout.
    pub const IDLE_TIMEOUT: Self = Self(8);

    fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "NO_ERROR",
            1 => "PROTOCOL_ERROR",
            2 => "INTERNAL_ERROR",
            3 => "FLOW_CONTROL_ERROR",
            4 => "FRAME_SIZE_ERROR",
            5 => "REFUSED_STREAM",
            6 => "CANCEL",
            7 => "ENHANCE_YOUR_CALM",
            8 => "IDLE_TIMEOUT",
            _ => return None,
        })
    }
}

impl fmt::Debug for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => f.write_str(n),
            None => write!(f, "ErrorCode({:#x})", self.0),
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Every error of the mux.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The peer broke the protocol; the link is closed with GOAWAY(`code`).
    #[error("peer protocol violation ({code}): {reason}")]
    Protocol {
        /// The code sent in our GOAWAY.
        code: ErrorCode,
        /// A constant description of the violated rule.
        reason: &'static str,
    },
    /// The peer closed the link with a GOAWAY carrying an error code.
    #[error("link closed by peer ({code})")]
    PeerClosed {
        /// The peer's error code.
        code: ErrorCode,
    },
    /// This side closed the link with [`Session::close`](super::Session::close).
    #[error("link closed locally ({code})")]
    LocallyClosed {
        /// The code we sent.
        code: ErrorCode,
    },
    /// Nothing was received for the idle timeout.
    #[error("link idle timeout")]
    IdleTimeout,
    /// The link drained gracefully: every stream finished.
    #[error("link drained")]
    Drained,
    /// The link is closed; no stream operation is possible.
    #[error("link is closed")]
    LinkClosed,
    /// The link is going away (we drain, or the peer sent GOAWAY): no new stream may be opened.
    #[error("link is going away, open the stream on another link")]
    GoingAway,
    /// The peer's limit on concurrent streams is reached.
    #[error("too many concurrent streams (peer allows {max})")]
    TooManyStreams {
        /// The peer's MAX_CONCURRENT_STREAMS.
        max: u64,
    },
    /// The stream ID is not open on this link (never opened, finished, or reset).
    #[error("unknown stream {0}")]
    UnknownStream(StreamId),
    /// The operation does not fit the stream's state (writing after finish, replying twice, ...).
    #[error("stream {id}: {reason}")]
    InvalidState {
        /// The stream.
        id: StreamId,
        /// A constant description.
        reason: &'static str,
    },
    /// Metadata is larger than the peer accepts.
    #[error("metadata of {len} bytes exceeds the peer's limit of {max}")]
    MetadataTooLarge {
        /// Its length.
        len: usize,
        /// The peer's MAX_METADATA_SIZE.
        max: u64,
    },
    /// No data is buffered on the stream yet; wait for [`Event::StreamReadable`](super::Event).
    #[error("no data available yet")]
    Blocked,
}

impl Classify for Error {
    fn fault(&self) -> Fault {
        match self {
            Error::Protocol { .. } | Error::PeerClosed { .. } => Fault::Peer,
            Error::IdleTimeout => Fault::Network,
            _ => Fault::Local,
        }
    }

    /// Safe for the work not yet started: a stream that could not be opened or read.
    fn is_retry_safe(&self) -> bool {
        matches!(
            self,
            Error::GoingAway | Error::TooManyStreams { .. } | Error::Blocked | Error::LinkClosed
        )
    }
}

impl Error {
    /// The wire code that describes this error in a GOAWAY.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Protocol { code, .. }
            | Error::PeerClosed { code }
            | Error::LocallyClosed { code } => *code,
            Error::IdleTimeout => ErrorCode::IDLE_TIMEOUT,
            _ => ErrorCode::NO_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant: whose fault, whether a retry is safe, and its GOAWAY code.
    #[test]
    fn every_error_has_a_fault_a_retry_answer_and_a_code() {
        let id: StreamId = 1;
        let p = ErrorCode::PROTOCOL_ERROR;
        let table = [
            (
                Error::Protocol {
                    code: p,
                    reason: "x",
                },
                Fault::Peer,
                false,
                p,
            ),
            (Error::PeerClosed { code: p }, Fault::Peer, false, p),
            (Error::LocallyClosed { code: p }, Fault::Local, false, p),
            (
                Error::IdleTimeout,
                Fault::Network,
                false,
                ErrorCode::IDLE_TIMEOUT,
            ),
            (Error::Drained, Fault::Local, false, ErrorCode::NO_ERROR),
            (Error::LinkClosed, Fault::Local, true, ErrorCode::NO_ERROR),
            (Error::GoingAway, Fault::Local, true, ErrorCode::NO_ERROR),
            (
                Error::TooManyStreams { max: 1 },
                Fault::Local,
                true,
                ErrorCode::NO_ERROR,
            ),
            (
                Error::UnknownStream(id),
                Fault::Local,
                false,
                ErrorCode::NO_ERROR,
            ),
            (
                Error::InvalidState { id, reason: "x" },
                Fault::Local,
                false,
                ErrorCode::NO_ERROR,
            ),
            (
                Error::MetadataTooLarge { len: 2, max: 1 },
                Fault::Local,
                false,
                ErrorCode::NO_ERROR,
            ),
            (Error::Blocked, Fault::Local, true, ErrorCode::NO_ERROR),
        ];
        for (e, fault, retry, code) in table {
            assert_eq!(e.fault(), fault, "{e:?}");
            assert_eq!(e.is_retry_safe(), retry, "{e:?}");
            assert_eq!(e.code(), code, "{e:?}");
        }
    }
}
