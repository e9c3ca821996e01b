//! The per-worker keep-alive pool of origin connections.
//!
//! One pool per worker, reached through an `Rc`: origin sockets never leave the worker that
//! opened them, so there is no lock. Connections are keyed by [`PoolKey`]: where the socket
//! goes (TCP host and port, or a Unix socket path) and its TLS settings (server name and the
//! client configuration, which holds the trusted roots and the verify mode), so a connection is
//! never reused for another origin or under other security settings. An idle connection older
//! than the rule's `keepAliveTimeout` is closed instead of reused, and at most
//! `keepAliveConnections` idle ones are kept per key.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::conn::{OriginConn, OriginTls};
use crate::config::OriginRequest;
use crate::ingress::{Service, host_without_port};

/// What makes two origin connections interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// Where the socket goes.
    pub target: OriginTarget,
    /// TLS towards the origin (`https://`, `unix+tls:`); `None` for plain HTTP.
    pub tls: Option<OriginTls>,
}

/// Where an origin socket goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OriginTarget {
    /// A TCP origin by the service's host (a name or an IP literal) and port.
    Tcp {
        /// The service's host.
        host: String,
        /// The service's port.
        port: u16,
    },
    /// A Unix socket origin by its path.
    Unix(PathBuf),
}

impl PoolKey {
    /// The key of an HTTP origin service under a rule's settings, and the origin's name for
    /// messages (`host[:port]`, `unix:/path`). `request_host` (the routed `Host`) is the TLS
    /// server name of a `unix+tls:` origin without `originServerName`, as in cloudflared. The
    /// error (a TLS configuration that cannot be built) is the reason.
    pub fn for_service(
        service: &Service,
        or: &OriginRequest,
        request_host: &str,
    ) -> Result<(PoolKey, String), String> {
        let tls = |tls: bool, default_name: &str| {
            tls.then(|| OriginTls::new(or, default_name))
                .transpose()
                .map_err(|e| e.to_string())
        };
        match service {
            Service::Http(h) => Ok((
                PoolKey {
                    target: OriginTarget::Tcp {
                        host: h.host.clone(),
                        port: h.port,
                    },
                    tls: tls(h.tls, &h.host)?,
                },
                h.authority.clone(),
            )),
            Service::Unix { path, tls: is_tls } => Ok((
                PoolKey {
                    target: OriginTarget::Unix(path.clone()),
                    tls: tls(*is_tls, host_without_port(request_host))?,
                },
                service.to_string(),
            )),
            other => Err(format!("{other} is not an HTTP origin")),
        }
    }
}

/// Idle origin connections of one worker.
#[derive(Debug, Default)]
pub struct Pool {
    idle: RefCell<HashMap<PoolKey, Vec<(OriginConn, Instant)>>>,
}

impl Pool {
    /// An empty pool.
    pub fn new() -> Pool {
        Pool::default()
    }

    /// The most recently returned idle connection for `key` that is younger than `max_idle`.
    pub fn take(&self, key: &PoolKey, max_idle: Duration) -> Option<OriginConn> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        // Expired connections are dropped (closed) here.
        list.retain(|(_, since)| now.duration_since(*since) < max_idle);
        list.pop().map(|(c, _)| c)
    }

    /// Returns a connection after a clean exchange; closes it when `max` are already idle.
    pub fn put(&self, key: &PoolKey, conn: OriginConn, max: usize) {
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(key.clone()).or_default();
        if list.len() < max {
            list.push((conn, Instant::now()));
        }
    }
}
