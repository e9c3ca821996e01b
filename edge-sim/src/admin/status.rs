//! The status code an admin API caller gets for each [`Error`]: the one table, kept apart from
//! the error, which says only whose fault it was and whether a retry may work.

use crate::error::Error;

/// The admin API status for `e`: 400 for a bad request (or an invalid edge configuration), 404
/// for a tunnel, route, edge server or data center that does not exist, 409 for a request that
/// conflicts with the current state, 503 while the registry's store is busy or unreachable, 500
/// when the edge itself failed.
pub fn status_of(e: &Error) -> u16 {
    match e {
        Error::Config(_) | Error::Invalid(_) | Error::LinkLimit { .. } => 400,
        Error::TunnelNotFound(_)
        | Error::RouteNotFound(_)
        | Error::UnknownServer(_)
        | Error::UnknownDataCenter(_) => 404,
        Error::TunnelExists(_)
        | Error::TunnelHasConnectors { .. }
        | Error::DnsRouteExists { .. }
        | Error::TcpRouteExists { .. }
        | Error::TcpPortUnavailable { .. }
        | Error::ConnectorLimit { .. }
        | Error::ConnectorConflict(_) => 409,
        Error::RegistryBusy | Error::RegistryUnavailable(_) => 503,
        Error::State { .. }
        | Error::CorruptState { .. }
        | Error::Certificate(_)
        | Error::Database(_)
        | Error::Bind { .. }
        | Error::Start { .. }
        | Error::Runtime(_)
        | Error::TlsConfig(_) => 500,
    }
}

#[cfg(test)]
mod tests {
    use ringtun_core::error::{Classify, Fault};

    use super::*;

    /// Every variant: its status, whose fault it is, and whether a retry may work.
    #[test]
    fn every_error_has_one_status_fault_and_retry() {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1));
        let table: Vec<(Error, u16, Fault, bool)> = vec![
            (Error::Config("x".into()), 400, Fault::Local, false),
            (
                Error::State {
                    action: "read",
                    path: "x".into(),
                    source: std::io::Error::other("x"),
                },
                500,
                Fault::Local,
                true,
            ),
            (
                Error::CorruptState {
                    path: "x".into(),
                    reason: "x".into(),
                },
                500,
                Fault::Local,
                true,
            ),
            (
                Error::Certificate(rcgen::Error::CouldNotParseCertificate),
                500,
                Fault::Local,
                true,
            ),
            (
                Error::Database(rusqlite::Error::QueryReturnedNoRows),
                500,
                Fault::Local,
                true,
            ),
            (Error::RegistryBusy, 503, Fault::Local, true),
            (
                Error::RegistryUnavailable("etcd timed out".into()),
                503,
                Fault::Local,
                true,
            ),
            (
                Error::Bind {
                    what: "admin API",
                    addr,
                    reason: "x".into(),
                },
                500,
                Fault::Local,
                true,
            ),
            (
                Error::Start {
                    what: "cluster thread",
                    source: std::io::Error::other("x"),
                },
                500,
                Fault::Local,
                true,
            ),
            (Error::Invalid("x".into()), 400, Fault::Client, false),
            (Error::TunnelNotFound("x".into()), 404, Fault::Client, false),
            (Error::TunnelExists("x".into()), 409, Fault::Client, true),
            (
                Error::TunnelHasConnectors {
                    name: "x".into(),
                    count: 1,
                },
                409,
                Fault::Client,
                true,
            ),
            (
                Error::DnsRouteExists {
                    hostname: "x".into(),
                    tunnel: "x".into(),
                },
                409,
                Fault::Client,
                true,
            ),
            (
                Error::TcpRouteExists {
                    port: 1,
                    tunnel: "x".into(),
                },
                409,
                Fault::Client,
                true,
            ),
            (
                Error::TcpPortUnavailable {
                    port: 1,
                    reason: "x".into(),
                },
                409,
                Fault::Client,
                true,
            ),
            (Error::RouteNotFound("x".into()), 404, Fault::Client, false),
            (Error::UnknownServer("x".into()), 404, Fault::Client, false),
            (
                Error::UnknownDataCenter("x".into()),
                404,
                Fault::Client,
                false,
            ),
            (
                Error::ConnectorLimit {
                    tunnel: "x".into(),
                    limit: 1,
                },
                409,
                Fault::Client,
                true,
            ),
            (
                Error::Runtime(ringtun_core::rt::RtError::WorkerLost { worker: 0 }),
                500,
                Fault::Local,
                true,
            ),
            (
                Error::TlsConfig(ringtun_core::tls::TlsError::Config("x".into())),
                500,
                Fault::Local,
                true,
            ),
            (
                Error::LinkLimit {
                    index: 4,
                    declared: 4,
                    allowed: 4,
                },
                400,
                Fault::Client,
                false,
            ),
            (
                Error::ConnectorConflict("x".into()),
                409,
                Fault::Client,
                true,
            ),
        ];
        for (e, status, fault, retry) in &table {
            assert_eq!(status_of(e), *status, "{e:?}");
            assert_eq!(e.fault(), *fault, "{e:?}");
            assert_eq!(e.is_retry_safe(), *retry, "{e:?}");
        }
        // A locked database is the busy error, any other SQLite error the database error.
        let busy = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
            None,
        );
        assert_eq!(status_of(&Error::from(busy)), 503);
    }
}
