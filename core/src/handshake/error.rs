//! The registration error type: what failed, whose fault it was, and whether a retry may work.

use std::io;

use super::message::{RejectCode, Rejected};
use crate::error::{Classify, Fault};

/// Why registration failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    /// The stream failed.
    #[error("registration i/o failed: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the stream before the handshake finished.
    #[error("peer closed the connection during registration")]
    Closed,
    /// The peer sent bytes that are not a valid message.
    #[error("malformed registration message from peer: {0}")]
    Malformed(&'static str),
    /// The peer announced a message longer than the limit.
    #[error("registration message of {0} bytes is over the limit")]
    TooLarge(usize),
    /// The peer sent a valid message that does not belong at this step.
    #[error("unexpected registration message from peer: {0}")]
    Unexpected(&'static str),
    /// The peer speaks a registration version we do not.
    #[error("unsupported registration version {0}")]
    UnsupportedVersion(u8),
    /// (Connector side) the edge refused the registration; the message is the edge's.
    #[error("the edge refused the registration ({code:?}): {message}", code = .0.code, message = .0.message)]
    Rejected(Rejected),
    /// (Edge side) the connector's proof does not match the tunnel secret.
    #[error("the connector's proof does not match the tunnel secret")]
    BadProof,
    /// (Edge side) the edge's registry refused the connector; this was sent to it.
    #[error("refused the connector ({code:?}): {message}", code = .0.code, message = .0.message)]
    Refused(Rejected),
    /// No randomness for the challenge.
    #[error("no randomness for the challenge nonce")]
    Random,
}

/// Whose fault it is is seen from the side that got the error: a refusal by the edge is the
/// connector's own (wrong secret, limit reached), so [`Fault::Local`] there.
impl Classify for HandshakeError {
    fn fault(&self) -> Fault {
        match self {
            HandshakeError::Io(_) | HandshakeError::Closed => Fault::Network,
            HandshakeError::Malformed(_)
            | HandshakeError::TooLarge(_)
            | HandshakeError::Unexpected(_)
            | HandshakeError::UnsupportedVersion(_)
            | HandshakeError::BadProof
            | HandshakeError::Refused(_) => Fault::Peer,
            HandshakeError::Rejected(_) | HandshakeError::Random => Fault::Local,
        }
    }

    /// Safe when a new connection (perhaps to another server) may succeed. A wrong secret, an
    /// unknown tunnel or a full connector limit will not change by retrying at once.
    fn is_retry_safe(&self) -> bool {
        match self {
            HandshakeError::Io(_) | HandshakeError::Closed | HandshakeError::Random => true,
            HandshakeError::Rejected(r) => {
                matches!(r.code, RejectCode::Unavailable | RejectCode::TryAgain)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant, and every refusal code: whose fault and whether a new connection may work.
    #[test]
    fn every_error_has_a_fault_and_a_retry_answer() {
        let refusal = |code| Rejected {
            code,
            message: "m".into(),
        };
        let mut table = vec![
            (
                HandshakeError::Io(io::Error::other("x")),
                Fault::Network,
                true,
            ),
            (HandshakeError::Closed, Fault::Network, true),
            (HandshakeError::Malformed("x"), Fault::Peer, false),
            (HandshakeError::TooLarge(1), Fault::Peer, false),
            (HandshakeError::Unexpected("x"), Fault::Peer, false),
            (HandshakeError::UnsupportedVersion(9), Fault::Peer, false),
            (HandshakeError::BadProof, Fault::Peer, false),
            (
                HandshakeError::Refused(refusal(RejectCode::BadSecret)),
                Fault::Peer,
                false,
            ),
            (HandshakeError::Random, Fault::Local, true),
        ];
        for (code, retry) in [
            (RejectCode::BadSecret, false),
            (RejectCode::UnknownTunnel, false),
            (RejectCode::ConnectorLimit, false),
            (RejectCode::UnsupportedVersion, false),
            (RejectCode::Unavailable, true),
            (RejectCode::LinkLimit, false),
            (RejectCode::TryAgain, true),
            (RejectCode::Other(99), false),
        ] {
            table.push((HandshakeError::Rejected(refusal(code)), Fault::Local, retry));
        }
        for (e, fault, retry) in table {
            assert_eq!(e.fault(), fault, "{e:?}");
            assert_eq!(e.is_retry_safe(), retry, "{e:?}");
        }
    }
}
