//! The per-worker keep-alive pool of origin connections.
//!
//! One pool per worker, reached through an `Rc`: origin sockets never leave the worker that
//! opened them, so there is no lock. Connections are keyed by [`PoolKey`]: scheme, host, port,
//! TLS server name and verify mode, so a connection is never reused under other security
//! settings. An idle connection older than the rule's `keepAliveTimeout` is closed instead of
//! reused, and at most `keepAliveConnections` idle ones are kept per key.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::conn::OriginConn;

/// What makes two origin connections interchangeable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// `https`: TLS towards the origin.
    pub tls: bool,
    /// The service's host.
    pub host: String,
    /// The service's port.
    pub port: u16,
    /// The TLS server name (SNI and verified name); empty without TLS.
    pub server_name: String,
    /// Whether the origin's certificate went unverified (`noTLSVerify`).
    pub danger_no_verify: bool,
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
