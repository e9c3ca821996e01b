//! ringtun-core: the pieces every ringtun binary stands on.
//!
//! # Layout
//! - [`rt`]: the thread-per-core runtime (workers pinned to cores, one io_uring each, driver
//!   detection with the epoll fallback, per-worker `SO_REUSEPORT` listeners, mailboxes).
//! - [`mux`]: the link protocol, sans-IO. No sockets and no clock: bytes and time go in, frames
//!   and timers come out. Specified in `docs/protocol.md`.
//! - [`http`]: HTTP/1.1 for the request path: heads, body framing and codecs, proxy header
//!   rules, error responses.
//! - [`tunnel`]: what a request carries between the edge and the connector: the OPEN/REPLY
//!   stream metadata (`docs/http-meta.md`), the edge's rewrite of a head into it, and the mux
//!   configuration of a tunnel link.
//! - [`link`]: drives a [`mux`] session over a real socket on a worker and gives the rest of
//!   the code an async stream API.
//! - [`handshake`]: registration before a link starts: the connector proves it holds the
//!   tunnel secret (HMAC over the edge's challenge), the edge accepts or refuses.
//! - [`tls`]: TLS links with rustls, splittable into a link's reader and writer tasks.
//! - [`error`]: the vocabulary of every error type: whose fault it was ([`error::Fault`]) and
//!   whether a retry is safe ([`error::Classify`]).
//! - [`control`]: the small HTTP/1.1 server on std threads behind the edge's admin API and
//!   both binaries' `--metrics` servers.
//! - [`alloc`]: the counting global allocator both binaries install, and its metric.
//! - [`signal`]: sending a signal to a process (the demo's supervisor and the tests).

pub mod alloc;
pub mod control;
pub mod error;
pub mod handshake;
pub mod http;
pub mod link;
pub mod mux;
pub mod rt;
pub mod signal;
pub mod tls;
pub mod tunnel;
