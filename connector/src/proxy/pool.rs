//! The per-worker keep-alive pool of origin connections.
//!
//! One pool per worker, reached through an `Rc`: origin sockets never leave the worker that
//! opened them, so there is no lock. Connections are keyed by [`PoolKey`]: where the socket
//! goes (TCP host and port, or a Unix socket path) and its TLS settings (server name and the
//! client configuration, which holds the trusted roots and the verify mode), so a connection is
//! never reused for another origin or under other security settings. An idle connection older than the rule's `keepAliveTimeout` is closed instead of
//! reused, and at most `keepAliveConnections` idle ones are kept per key.
//!
//! The key is built and hashed once per ingress rule and rule set ([`Pool::slot`]), not per
//! request: requests find their origin's idle list by index. An idle connection keeps its read
//! buffer ([`ReadBuf`]), so the next exchange on it reads into memory it already has.
//!
//! The pool also holds the worker's [`Deadlines`]: the origin response timeout of the
//! connections in use; and for `http2Origin`, the one HTTP/2 connection per slot that all of
//! the worker's requests to that origin share (`h2`).

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ringtun_core::http::io::READ_CHUNK;

use super::conn::{OriginConn, OriginTls};
use super::deadline::Deadlines;
use super::h2::H2Slot;
use crate::config::OriginRequest;
use crate::ingress::{IngressRules, Service, host_without_port};

/// The most one read from an origin asks for once its responses outgrew [`READ_CHUNK`]: a
/// 64 KiB body and its head in one read.
pub const BIG_READ: usize = 64 * 1024 + 4 * 1024;

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

/// An origin's place in the pool, found once per rule ([`Pool::slot`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot(usize);

/// The receive buffer of one origin connection. Reads get at least [`READ_CHUNK`] of room, or
/// [`BIG_READ`] once a response did not fit in one read, so a connection that serves large
/// responses reads each in one go while one serving small ones keeps a small buffer.
#[derive(Debug, Default)]
pub struct ReadBuf {
    /// Bytes received and not yet consumed.
    pub buf: BytesMut,
    /// The room the next read gets.
    pub room: usize,
}

impl ReadBuf {
    /// Makes room for the next read: reuses the buffer's memory when the bytes handed out of it
    /// are gone, else allocates.
    pub fn make_room(&mut self) {
        let room = self.room.max(READ_CHUNK);
        if self.buf.capacity() - self.buf.len() < room {
            self.buf.reserve(room);
        }
    }

    /// The next reads get [`BIG_READ`] of room.
    pub fn grow(&mut self) {
        self.room = BIG_READ;
    }
}

/// An idle connection.
#[derive(Debug)]
struct Idle {
    conn: OriginConn,
    buf: ReadBuf,
    since: Instant,
}

/// The slots of one rule set's rules, cached while the rule set is current.
#[derive(Debug, Default)]
struct RuleSlots {
    /// The rule set the slots belong to; holding it keeps its address from being reused.
    rules: Option<Arc<IngressRules>>,
    slots: Vec<Option<Slot>>,
}

/// Idle origin connections of one worker.
#[derive(Debug, Default)]
pub struct Pool {
    idle: RefCell<Vec<Vec<Idle>>>,
    keys: RefCell<HashMap<PoolKey, Slot>>,
    /// The key of each slot, by index.
    slot_keys: RefCell<Vec<PoolKey>>,
    by_rule: RefCell<RuleSlots>,
    deadlines: Deadlines,
    /// The HTTP/2 connection of each slot (`http2Origin`), by index.
    h2: RefCell<Vec<Option<Rc<H2Slot>>>>,
}

impl Pool {
    /// An empty pool.
    pub fn new() -> Pool {
        Pool::default()
    }

    /// The slot of rule `index` of `rules`, whose connections are keyed by `key()`: looked up
    /// on the first request of a rule set, then cached until the rules are replaced. The error
    /// is `key()`'s (a TLS configuration that cannot be built), and is not cached.
    pub fn slot(
        &self,
        rules: &Arc<IngressRules>,
        index: usize,
        key: impl FnOnce() -> Result<PoolKey, String>,
    ) -> Result<Slot, String> {
        let mut cache = self.by_rule.borrow_mut();
        if !cache.rules.as_ref().is_some_and(|r| Arc::ptr_eq(r, rules)) {
            cache.rules = Some(rules.clone());
            cache.slots.clear();
        }
        if cache.slots.len() <= index {
            cache.slots.resize(index + 1, None);
        }
        if let Some(Some(slot)) = cache.slots.get(index) {
            return Ok(*slot);
        }
        let slot = self.key_slot(key()?);
        cache.slots[index] = Some(slot);
        Ok(slot)
    }

    /// The slot of `key`, made on first use (for keys that depend on the request, looked up
    /// per request).
    pub fn key_slot(&self, key: PoolKey) -> Slot {
        let mut keys = self.keys.borrow_mut();
        let next = keys.len();
        let slot = *keys.entry(key.clone()).or_insert_with(|| {
            self.slot_keys.borrow_mut().push(key);
            Slot(next)
        });
        let mut idle = self.idle.borrow_mut();
        if idle.len() <= slot.0 {
            idle.resize_with(slot.0 + 1, Vec::new);
        }
        slot
    }

    /// The most recently returned idle connection of `slot` that is younger than `max_idle`,
    /// with its read buffer.
    pub fn take(&self, slot: Slot, max_idle: Duration) -> Option<(OriginConn, ReadBuf)> {
        let mut idle = self.idle.borrow_mut();
        let list = idle.get_mut(slot.0)?;
        let now = Instant::now();
        // Expired connections are dropped (closed) here.
        list.retain(|i| now.duration_since(i.since) < max_idle);
        list.pop().map(|i| (i.conn, i.buf))
    }

    /// Returns a connection after a clean exchange; closes it when `max` are already idle.
    pub fn put(&self, slot: Slot, conn: OriginConn, buf: ReadBuf, max: usize) {
        let mut idle = self.idle.borrow_mut();
        let Some(list) = idle.get_mut(slot.0) else {
            return;
        };
        if list.len() < max {
            list.push(Idle {
                conn,
                buf,
                since: Instant::now(),
            });
        }
    }

    /// The key of `slot`: what a new connection for it needs (its TLS settings).
    pub fn key(&self, slot: Slot) -> PoolKey {
        self.slot_keys.borrow()[slot.0].clone()
    }

    /// The HTTP/2 connection place of `slot`, made on first use.
    pub fn h2(&self, slot: Slot) -> Rc<H2Slot> {
        let mut h2 = self.h2.borrow_mut();
        if h2.len() <= slot.0 {
            h2.resize_with(slot.0 + 1, || None);
        }
        h2[slot.0].get_or_insert_with(Rc::default).clone()
    }

    /// The response deadlines of the worker's exchanges.
    pub fn deadlines(&self) -> &Deadlines {
        &self.deadlines
    }
}
