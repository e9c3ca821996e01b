//! The per-worker keep-alive pool of origin connections.
//!
//! One pool per worker, reached through an `Rc`: origin sockets never leave the worker that
//! opened them, so there is no lock. Connections are keyed by the origin's socket address; an
//! idle connection older than the rule's `keepAliveTimeout` is closed instead of reused, and at
//! most `keepAliveConnections` idle ones are kept per origin.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use compio::net::TcpStream;

/// Idle origin connections of one worker.
#[derive(Debug, Default)]
pub struct Pool {
    idle: RefCell<HashMap<SocketAddr, Vec<(TcpStream, Instant)>>>,
}

impl Pool {
    /// An empty pool.
    pub fn new() -> Pool {
        Pool::default()
    }

    /// The most recently returned idle connection to `origin` that is younger than `max_idle`.
    pub fn take(&self, origin: SocketAddr, max_idle: Duration) -> Option<TcpStream> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(&origin)?;
        let now = Instant::now();
        // Expired connections are dropped (closed) here.
        list.retain(|(_, since)| now.duration_since(*since) < max_idle);
        list.pop().map(|(c, _)| c)
    }

    /// Returns a connection after a clean exchange; closes it when `max` are already idle.
    pub fn put(&self, origin: SocketAddr, conn: TcpStream, max: usize) {
        let mut idle = self.idle.borrow_mut();
        let list = idle.entry(origin).or_default();
        if list.len() < max {
            list.push((conn, Instant::now()));
        }
    }
}
