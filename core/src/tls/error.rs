//! The TLS error type: what failed, whose fault it was, and whether another attempt may work.

use std::io;

use crate::error::{Classify, Fault};

/// Why a TLS connection could not be set up or failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The socket failed (reset, refused, unreachable).
    #[error("tls connection failed: {0}")]
    Io(#[from] io::Error),
    /// The peer closed the TCP connection before the TLS handshake finished.
    #[error("peer closed the connection during the tls handshake")]
    ClosedDuringHandshake,
    /// The peer's certificate was not accepted here: it is not signed by the configured CA,
    /// names another server, or has expired. Either the peer or our CA setting is wrong; the
    /// caller, who knows which setting that is, says so.
    #[error("peer certificate rejected: {0}")]
    BadCertificate(rustls::Error),
    /// The peer aborted the handshake with a TLS alert, typically because it does not trust
    /// our certificate or shares no protocol with us.
    #[error("peer aborted the tls handshake: {0}")]
    PeerAlert(rustls::Error),
    /// The peer broke the TLS protocol.
    #[error("tls protocol error: {0}")]
    Protocol(rustls::Error),
    /// Local TLS material or settings are invalid (PEM, key, server name).
    #[error("invalid tls configuration: {0}")]
    Config(String),
    /// rustls refused the local settings (the protocol versions asked for).
    #[error("invalid tls configuration: {0}")]
    ConfigRejected(#[source] rustls::Error),
}

impl TlsError {
    /// Classifies an error rustls reported while processing the peer's messages.
    pub(crate) fn from_rustls(e: rustls::Error) -> TlsError {
        match e {
            rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented => {
                TlsError::BadCertificate(e)
            }
            rustls::Error::AlertReceived(_) => TlsError::PeerAlert(e),
            other => TlsError::Protocol(other),
        }
    }
}

impl Classify for TlsError {
    fn fault(&self) -> Fault {
        match self {
            TlsError::Io(_) | TlsError::ClosedDuringHandshake => Fault::Network,
            TlsError::BadCertificate(_) | TlsError::PeerAlert(_) | TlsError::Protocol(_) => {
                Fault::Peer
            }
            TlsError::Config(_) | TlsError::ConfigRejected(_) => Fault::Local,
        }
    }

    /// Safe when trying again (another server, a new connection) may succeed. Certificate and
    /// configuration problems do not go away by themselves.
    fn is_retry_safe(&self) -> bool {
        matches!(
            self,
            TlsError::Io(_) | TlsError::ClosedDuringHandshake | TlsError::Protocol(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant, and how rustls errors are sorted into them: whose fault and whether
    /// another attempt may work.
    #[test]
    fn every_error_has_a_fault_and_a_retry_answer() {
        let table = [
            (TlsError::Io(io::Error::other("x")), Fault::Network, true),
            (TlsError::ClosedDuringHandshake, Fault::Network, true),
            (
                TlsError::from_rustls(rustls::Error::NoCertificatesPresented),
                Fault::Peer,
                false,
            ),
            (
                TlsError::from_rustls(rustls::Error::AlertReceived(
                    rustls::AlertDescription::BadCertificate,
                )),
                Fault::Peer,
                false,
            ),
            (
                TlsError::from_rustls(rustls::Error::DecryptError),
                Fault::Peer,
                true,
            ),
            (TlsError::Config("x".into()), Fault::Local, false),
            (
                TlsError::ConfigRejected(rustls::Error::General("x".into())),
                Fault::Local,
                false,
            ),
        ];
        for (e, fault, retry) in table {
            assert_eq!(e.fault(), fault, "{e:?}");
            assert_eq!(e.is_retry_safe(), retry, "{e:?}");
        }
    }
}
