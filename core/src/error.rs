//! The one vocabulary every error of ringtun answers in: whose fault it was ([`Fault`]) and
//! whether the failed work may be tried again ([`Classify::is_retry_safe`]).
//!
//! Each crate and module keeps its own error type, with the variants its callers match on
//! ([`crate::mux::Error`], [`crate::http::HttpError`], [`crate::link::LinkError`],
//! [`crate::handshake::HandshakeError`], [`crate::tls::TlsError`], [`crate::rt::RtError`], and the
//! binaries' `Error`s), and implements [`Classify`] for it. Nothing here knows about status codes:
//! what a fault means to a public HTTP client is decided in
//! [`crate::http::status_of`], what it means to an admin API caller in the edge's admin module.
//! An error is described once; each place that answers for it keeps its own table.

/// Who caused an error: whose behaviour has to change for the work to succeed.
///
/// Names are relative to the side that got the error, so the same failure is [`Fault::Peer`] on
/// one end of a link and [`Fault::Local`] on the other.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Whoever sent a request to this process: a public client (a malformed or hostile request)
    /// or an admin API caller (a bad value, a name taken, a thing that does not exist).
    Client,
    /// The server a request was sent to answered with something wrong: the origin service behind
    /// the connector (or the load generator's target).
    Origin,
    /// The other end of the tunnel: the edge seen from the connector (its link, registration or
    /// admin API), the connector seen from the edge.
    Peer,
    /// This side: the process itself (a bug, a misused API, a feature not there yet), its
    /// configuration (files, flags, credentials) or its host (disk, database, ports, threads).
    Local,
    /// The network between the two: a socket reset, a connection that went quiet or closed;
    /// nobody in particular is known to be at fault.
    Network,
}

/// The two questions every error type of ringtun answers.
///
/// The answers depend on the error alone, never on who reports it: mapping them to a status
/// code, a log level or a metric label is the caller's business.
pub trait Classify {
    /// Whose fault the error was.
    fn fault(&self) -> Fault;

    /// Whether the work that failed may be attempted again (on another link, connection or
    /// server, or later) with a chance of success and without risk of doing it twice: none of
    /// it was done (refused before processing, never sent, the connection never came up), and
    /// the cause is not one an unchanged attempt meets again (a bad input, a refusal that needs
    /// a person to act).
    fn is_retry_safe(&self) -> bool;
}
