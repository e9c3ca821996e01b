//! Registration: before the mux session starts on a fresh (TLS) connection, the connector
//! proves it holds the tunnel secret, and the edge accepts or refuses it with a reason.
//!
//! ```text
//! edge      → connector   Challenge { version, nonce (32 random bytes) }
//! connector → edge        Register  { tunnel_id, connector_id, proof, version, arch,
//!                                     link_index, flags (standby), label, weight,
//!                                     ha_connections }
//! edge      → connector   Accepted  { data_center, server }  |  Rejected { code, message }
//! ```
//!
//! `proof = HMAC-SHA256(secret, "ringtun-register-v1" || nonce || tunnel_id || connector_id)`:
//! the secret never crosses the wire, and a fresh nonce per connection stops replays. The edge
//! checks it in constant time.
//!
//! The codec ([`Message`]) is sans-IO: length-prefixed, versioned, every size bounded, and
//! decoding never panics on garbage. [`connector_register`] and [`edge_accept`] are thin async
//! functions over any compio `AsyncRead + AsyncWrite` (a [`TlsStream`](crate::tls::TlsStream)
//! before it is split into a link). They read exactly one message at a time, so nothing the
//! peer sends after the handshake (the first mux frames) is consumed.
//!
//! # Timeouts
//!
//! These functions have none: the caller races them against its deadline. A read may be in
//! flight when the deadline fires, so **a connection whose handshake timed out must be
//! discarded** (closed, never split into a link): the dropped read may have consumed bytes.

mod error;
mod io;
mod message;
mod secret;

pub use error::HandshakeError;
pub use io::{connector_register, edge_accept};
pub use message::{
    Accepted, Challenge, DEFAULT_WEIGHT, MAX_HA_CONNECTIONS, MAX_MESSAGE, MAX_STRING, Message,
    PROTOCOL_VERSION, Register, RegisterFlags, RegisterRequest, RejectCode, Rejected,
};
pub use secret::{SECRET_LEN, TunnelSecret, compute_proof};
