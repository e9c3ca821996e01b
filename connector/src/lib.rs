//! `ringtun-connector`: the connector side of ringtun, the library behind the `ringtun` binary.
//!
//! It reads the operator's YAML config in cloudflared's layout, validates it once into ingress
//! rules, reads and writes tunnel credentials, and carries the CLI's command handlers. Talking to
//! the edge (`tunnel create`, `tunnel run`, ...) arrives with the edge-backed commands; those
//! handlers are declared and answer "not implemented yet" for now.
//!
//! # Layout
//! - [`config`]: loading, unknown-field warnings, durations, config file discovery;
//! - [`ingress`]: rules, hostname patterns, services, request matching;
//! - [`credentials`]: the credentials JSON file and the secret newtype;
//! - [`cli`]: the clap command tree and one handler function per command;
//! - [`error`]: the crate's one error type.
#![forbid(unsafe_code)]

pub mod cli;
pub mod config;
pub mod credentials;
pub mod error;
pub mod ingress;

pub use error::{Error, Fault, Result};
