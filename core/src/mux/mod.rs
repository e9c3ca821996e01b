//! The link protocol, sans-IO (specified in `docs/protocol.md`).
//!
//! A link is one long-lived byte stream (TCP or TLS) between a connector and an edge; streams
//! (one per public request) are multiplexed over it. This module knows the frames and the
//! rules, and nothing about sockets or clocks: a driver (`link`) feeds it bytes and the time,
//! and writes out the `Bytes` it produces.
//!
//! # Layout
//! - [`frame`]: the wire format, one frame type per file, with a pure decoder and a
//!   vectored-write encoder.
//! - [`Session`]: the state machine of one link end; see its docs for the call order.
//! - [`StreamState`]: the stream lifecycle; `queue`: a stream's buffered bytes.
//! - [`Config`], [`Role`]: what a session is created with.
//! - [`Error`], [`ErrorCode`]: the one error type, and the codes on the wire.

#![forbid(unsafe_code)]

mod config;
mod error;
pub mod frame;
mod queue;
mod session;
mod stream;

pub use config::{
    Config, DEFAULT_LINK_WINDOW, DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_FRAME_SIZE,
    DEFAULT_MAX_METADATA_SIZE, DEFAULT_MAX_STREAM_WINDOW, DEFAULT_STREAM_WINDOW,
    MAX_MAX_FRAME_SIZE, MIN_MAX_FRAME_SIZE, Role,
};
pub use error::{Error, ErrorCode};
pub use frame::StreamKind;
pub use session::{Event, Session, Stats};
pub use stream::StreamState;

/// A stream ID: 64 bits, never reused, odd when opened by the client, even by the server,
/// 0 for the link itself (protocol.md §2).
pub type StreamId = u64;

/// A map keyed by stream ID. Streams are looked up on every frame and every stream operation,
/// so this uses foldhash instead of SipHash; it is randomly seeded per map, so a peer that
/// picks stream IDs cannot aim them at one bucket.
pub type StreamMap<V> = std::collections::HashMap<StreamId, V, foldhash::fast::RandomState>;

#[cfg(test)]
mod tests;
