//! `ringtun-edge-sim`: the edge simulator, a real edge server in one process.
//!
//! # Layout
//! - [`settings`]: the operator's config file and flags, validated once into [`Settings`].
//! - [`state`]: the state directory (admin token, CA and server certificate, registry file).
//! - [`auth`]: registration proofs (HMAC over a challenge); pure, shared with the connector.
//! - [`registry`]: tunnels and routes (SQLite) and connectors (memory).
//! - [`metrics`]: Prometheus counters.
//! - [`error`]: the crate's one error type.
#![forbid(unsafe_code)]

pub mod auth;
pub mod error;
pub mod metrics;
pub mod registry;
pub mod settings;
pub mod state;

pub use error::{Error, Fault, Result};
pub use settings::Settings;
pub use state::{AdminToken, StateDir, TlsMaterial};
