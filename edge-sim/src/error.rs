//! The crate's one error type.
//!
//! Every variant says whose fault it was and whether retrying can help, in the workspace's one
//! vocabulary ([`Classify`]). The status an admin API caller gets for each is decided apart, in
//! [`crate::admin::status_of`]; the link servers send [`Error::ConnectorLimit`] and friends to
//! the connector verbatim.
use std::net::SocketAddr;
use std::path::PathBuf;

use ringtun_core::error::{Classify, Fault};

/// Errors of the edge simulator library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The operator's configuration (file or flags) is invalid.
    #[error("invalid edge config: {0}")]
    Config(String),
    /// A file or directory of the state directory could not be read or written.
    #[error("state dir: cannot {action} {path}: {source}")]
    State {
        /// What was attempted ("create", "read", "write", "set permissions on").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file of the state directory exists but its content is unusable.
    #[error("state dir: {path} is corrupt: {reason}")]
    CorruptState {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Generating or loading a certificate or key failed.
    #[error("certificates: {0}")]
    Certificate(#[from] rcgen::Error),
    /// The registry database failed.
    #[error("registry database: {0}")]
    Database(rusqlite::Error),
    /// The registry database stayed locked by another connection for longer than the bounded
    /// busy wait (`--registry-busy-timeout-ms`); retrying later may succeed.
    #[error("registry database is busy (locked by another process); retry later")]
    RegistryBusy,
    /// The registry's shared store (etcd) did not answer within its bound
    /// (`--etcd-timeout-ms`): unreachable, or its quorum is lost. Reads still answer from the
    /// last view; retrying the write later may succeed.
    #[error("registry store unavailable: {0}; retry later")]
    RegistryUnavailable(String),
    /// A thread or its runtime could not be started (the etcd client's, for one).
    #[error("cannot start the {what}: {source}")]
    Start {
        /// What was being started.
        what: &'static str,
        /// The operating system's answer.
        #[source]
        source: std::io::Error,
    },
    /// A listener could not be bound.
    #[error("{what}: cannot bind {addr}: {reason}")]
    Bind {
        /// Which listener ("admin API", ...).
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// A short reason ("address in use", or the OS message).
        reason: String,
    },
    /// A request carried an invalid value (a tunnel name, hostname, port, body).
    #[error("{0}")]
    Invalid(String),
    /// No tunnel has this ID or name.
    #[error("tunnel {0} not found")]
    TunnelNotFound(String),
    /// A tunnel with this name already exists.
    #[error("tunnel name {0} is already taken")]
    TunnelExists(String),
    /// The tunnel cannot be deleted while connectors are connected (unless forced).
    #[error(
        "tunnel {name} has {count} connected connector(s); stop them, run cleanup, or delete with force"
    )]
    TunnelHasConnectors {
        /// The tunnel's name.
        name: String,
        /// How many connectors are connected.
        count: usize,
    },
    /// The hostname is already routed (to this or another tunnel).
    #[error("hostname {hostname} is already routed to tunnel {tunnel}")]
    DnsRouteExists {
        /// The hostname.
        hostname: String,
        /// The tunnel (ID) it is routed to.
        tunnel: String,
    },
    /// The public TCP port is already routed.
    #[error("tcp port {port} is already routed to tunnel {tunnel}")]
    TcpRouteExists {
        /// The port.
        port: u16,
        /// The tunnel (ID) it is routed to.
        tunnel: String,
    },
    /// The edge cannot listen on a TCP route's port (another process, or another listener of
    /// the edge, holds it); the route was not stored.
    #[error("cannot listen on tcp port {port} for the route: {reason}")]
    TcpPortUnavailable {
        /// The port.
        port: u16,
        /// Why (the OS error).
        reason: String,
    },
    /// No route has this hostname or port.
    #[error("no route for {0}")]
    RouteNotFound(String),
    /// No edge server listens on this address (a fault asked of the admin API).
    #[error("no edge server {0} (GET /discovery lists them)")]
    UnknownServer(String),
    /// No data center has this name (a fault asked of the admin API).
    #[error("no data center {0:?} (GET /discovery lists them)")]
    UnknownDataCenter(String),
    /// Registering one more connector would exceed the tunnel's connector limit.
    #[error("tunnel {tunnel} has reached its limit of {limit} connectors")]
    ConnectorLimit {
        /// The tunnel's name.
        tunnel: String,
        /// The configured limit.
        limit: usize,
    },
    /// The data-plane runtime (worker threads, listeners) failed to start.
    #[error("data plane: {0}")]
    Runtime(#[from] ringtun_core::rt::RtError),
    /// The links' TLS server configuration could not be built from the edge's certificate.
    #[error("data plane: tls server config: {0}")]
    TlsConfig(#[source] ringtun_core::tls::TlsError),
    /// A connector registered a link index outside the links it may hold.
    #[error(
        "link index {index} is out of range: this connector may hold {allowed} links (it declared {declared} ha-connections; at most 16)"
    )]
    LinkLimit {
        /// The index asked for.
        index: u8,
        /// The ha-connections the registration declared.
        declared: u8,
        /// How many links it may hold (indexes 0 to this, exclusive).
        allowed: u8,
    },
    /// A connector re-registered with data that contradicts its first registration.
    #[error("connector {0} is already registered for another tunnel")]
    ConnectorConflict(String),
}

/// The caller of the admin API, or a connector registering, is [`Fault::Client`]; the edge
/// itself, its operator's configuration and its host (disk, database, certificates, ports) are
/// [`Fault::Local`].
impl Classify for Error {
    fn fault(&self) -> Fault {
        match self {
            Error::Invalid(_)
            | Error::LinkLimit { .. }
            | Error::TunnelNotFound(_)
            | Error::RouteNotFound(_)
            | Error::UnknownServer(_)
            | Error::UnknownDataCenter(_)
            | Error::TunnelExists(_)
            | Error::TunnelHasConnectors { .. }
            | Error::DnsRouteExists { .. }
            | Error::TcpRouteExists { .. }
            | Error::TcpPortUnavailable { .. }
            | Error::ConnectorLimit { .. }
            | Error::ConnectorConflict(_) => Fault::Client,
            Error::Config(_)
            | Error::State { .. }
            | Error::CorruptState { .. }
            | Error::Certificate(_)
            | Error::Database(_)
            | Error::RegistryBusy
            | Error::RegistryUnavailable(_)
            | Error::Start { .. }
            | Error::Bind { .. }
            | Error::Runtime(_)
            | Error::TlsConfig(_) => Fault::Local,
        }
    }

    /// Safe when the same operation, unchanged, may succeed later: the request conflicts with
    /// the current state (a name taken, connectors still connected), which may change, or the
    /// edge failed or was busy. A bad value or a missing thing stays so.
    fn is_retry_safe(&self) -> bool {
        match self {
            Error::TunnelExists(_)
            | Error::TunnelHasConnectors { .. }
            | Error::DnsRouteExists { .. }
            | Error::TcpRouteExists { .. }
            | Error::TcpPortUnavailable { .. }
            | Error::ConnectorLimit { .. }
            | Error::ConnectorConflict(_)
            | Error::State { .. }
            | Error::CorruptState { .. }
            | Error::Certificate(_)
            | Error::Database(_)
            | Error::RegistryBusy
            | Error::RegistryUnavailable(_)
            | Error::Start { .. }
            | Error::Bind { .. }
            | Error::Runtime(_)
            | Error::TlsConfig(_) => true,
            Error::Config(_)
            | Error::Invalid(_)
            | Error::LinkLimit { .. }
            | Error::TunnelNotFound(_)
            | Error::RouteNotFound(_)
            | Error::UnknownServer(_)
            | Error::UnknownDataCenter(_) => false,
        }
    }
}

impl Error {
    pub(crate) fn state(
        action: &'static str,
        path: &std::path::Path,
        source: std::io::Error,
    ) -> Self {
        Error::State {
            action,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// A locked database (`SQLITE_BUSY`, `SQLITE_LOCKED`) is [`Error::RegistryBusy`]; any other
/// SQLite error is [`Error::Database`].
impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Error::RegistryBusy
            }
            _ => Error::Database(e),
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
