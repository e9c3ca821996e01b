//! [`HttpError`]: every error of [`crate::http`], with whose fault it was ([`Classify`]). The
//! response status each maps to is decided apart, in [`super::status_of`].

use crate::error::Classify;

/// Who sent the message an error is about; re-exported here because [`super::BodyDecoder`] and
/// the head parsers take it.
pub use crate::error::Fault;

/// Every error of [`crate::http`].
///
/// Parse and framing errors carry `from`: [`Fault::Client`] when the message came from a public
/// client (parse_request, request framing, request bodies), [`Fault::Origin`] when it came from an
/// origin. [`super::status_of`] maps client faults to 4xx and everything else to a 5xx.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The head grew over the configured limit before it was complete (431 for a client).
    #[error("head larger than {limit} bytes")]
    HeadTooLarge {
        /// Who sent the head.
        from: Fault,
        /// The limit in bytes.
        limit: usize,
    },
    /// The head has more header fields than the configured limit (431 for a client).
    #[error("more than {limit} header fields")]
    TooManyHeaders {
        /// Who sent the head.
        from: Fault,
        /// The limit in header fields.
        limit: usize,
    },
    /// The head is not valid HTTP/1.x.
    #[error("malformed head: {reason}")]
    MalformedHead {
        /// Who sent the head.
        from: Fault,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The connection ended in the middle of a head.
    #[error("connection closed after {received} bytes of an incomplete head")]
    IncompleteHead {
        /// Who closed.
        from: Fault,
        /// How many bytes of the head had arrived.
        received: usize,
    },
    /// The body framing headers are invalid or ambiguous (request smuggling shapes: both
    /// Content-Length and Transfer-Encoding, differing Content-Lengths, a non-numeric
    /// Content-Length, a Transfer-Encoding that does not end in chunked).
    #[error("invalid message framing: {reason}")]
    InvalidFraming {
        /// Who sent the message.
        from: Fault,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The body's chunked coding is malformed or over a limit.
    #[error("invalid body: {reason}")]
    InvalidBody {
        /// Who sent the body.
        from: Fault,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The connection ended before the body did.
    #[error("connection closed before the end of the body")]
    IncompleteBody {
        /// Who closed.
        from: Fault,
    },
    /// A body written through a [`crate::http::BodyEncoder`] does not match its framing.
    #[error("body length mismatch: framing announced {expected} bytes, got {actual}")]
    BodyLengthMismatch {
        /// Bytes announced by the framing.
        expected: u64,
        /// Bytes written (so far, when too many).
        actual: u64,
    },
    /// Stream metadata (OPEN or REPLY) could not be decoded.
    #[error("invalid stream metadata: {0}")]
    InvalidMeta(&'static str),
    /// A socket operation failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

impl Classify for HttpError {
    fn fault(&self) -> Fault {
        match self {
            HttpError::HeadTooLarge { from, .. }
            | HttpError::TooManyHeaders { from, .. }
            | HttpError::MalformedHead { from, .. }
            | HttpError::IncompleteHead { from, .. }
            | HttpError::InvalidFraming { from, .. }
            | HttpError::InvalidBody { from, .. }
            | HttpError::IncompleteBody { from } => *from,
            HttpError::BodyLengthMismatch { .. } => Fault::Local,
            HttpError::InvalidMeta(_) => Fault::Peer,
            HttpError::Io(_) => Fault::Network,
        }
    }

    /// Never safe at this level: every error here can happen after the request left; the
    /// callers that know better (a refused stream, a failed connect) decide themselves.
    fn is_retry_safe(&self) -> bool {
        false
    }
}

impl HttpError {
    /// Whether the connection the error happened on must be closed (it is out of sync, or gone).
    /// Every error of this module leaves the connection unusable.
    pub fn closes_connection(&self) -> bool {
        true
    }
}
