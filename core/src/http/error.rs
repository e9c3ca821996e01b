//! [`HttpError`]: every error of [`crate::http`], with whose fault it was and the response
//! status it maps to.

/// Who caused an HTTP error. The edge and the connector use it to pick a status, a log level and
/// a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The public client sent something wrong (a malformed or hostile request).
    Client,
    /// The origin service answered with something wrong.
    Origin,
    /// The other end of the tunnel (edge or connector) sent bad stream metadata.
    Peer,
    /// This side misused the API (for example wrote more body than it announced).
    Local,
    /// The socket failed; nobody in particular is known to be at fault.
    Network,
}

/// Every error of [`crate::http`].
///
/// Parse and framing errors carry `from`: [`Fault::Client`] when the message came from a public
/// client (parse_request, request framing, request bodies), [`Fault::Origin`] when it came from an
/// origin. [`HttpError::status`] maps client faults to 4xx and everything else to a 5xx.
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

impl HttpError {
    /// Whose fault the error was.
    pub fn fault(&self) -> Fault {
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

    /// The status of the response to send to the public client because of this error:
    /// 431 for an oversized client head, 400 for other client faults, 502 otherwise (the
    /// upstream side of the request path failed).
    pub fn status(&self) -> u16 {
        match (self, self.fault()) {
            (HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. }, Fault::Client) => {
                431
            }
            (_, Fault::Client) => 400,
            _ => 502,
        }
    }

    /// Whether the whole exchange may be retried without risk of the origin processing the
    /// request twice. Never true at this level: every error here can happen after the request
    /// left; the callers that know better (a refused stream, a failed connect) decide themselves.
    pub fn is_retry_safe(&self) -> bool {
        false
    }

    /// The response to send the public client: [`HttpError::status`], the error's message as
    /// the body, and `Connection: close` (see [`HttpError::closes_connection`]).
    pub fn to_response(&self) -> (super::ResponseHead, bytes::Bytes) {
        super::error_response(self.status(), &self.to_string(), true)
    }

    /// Whether the connection the error happened on must be closed (it is out of sync, or gone).
    /// Every error of this module leaves the connection unusable.
    pub fn closes_connection(&self) -> bool {
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_fault() {
        let e = HttpError::HeadTooLarge {
            from: Fault::Client,
            limit: 10,
        };
        assert_eq!(e.status(), 431);
        let e = HttpError::HeadTooLarge {
            from: Fault::Origin,
            limit: 10,
        };
        assert_eq!(e.status(), 502);
        let e = HttpError::InvalidFraming {
            from: Fault::Client,
            reason: "x",
        };
        assert_eq!(e.status(), 400);
        assert_eq!(HttpError::InvalidMeta("x").fault(), Fault::Peer);
        assert_eq!(e.to_string(), "invalid message framing: x");
        let (head, body) = e.to_response();
        assert_eq!(head.status, 400);
        assert!(head.headers.has_token("connection", "close"));
        assert_eq!(&body[..], b"400 Bad Request: invalid message framing: x\n");
    }
}
