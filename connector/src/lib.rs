//! `ringtun-connector`: the connector side of ringtun, the library behind the `ringtun` binary.
//!
//! It reads the operator's YAML config in cloudflared's layout, validates it once into ingress
//! rules, reads and writes tunnel credentials, and carries the CLI's command handlers. The `tunnel`
//! management commands talk to the edge's admin API through [`admin_client`]; `tunnel run`
//! is [`run`] (links to the edge) and [`proxy`] (streams to origins).
//!
//! # Layout
//! - [`config`]: loading, unknown-field warnings, durations, config file discovery;
//! - [`ingress`]: rules, hostname patterns, services, request matching;
//! - [`credentials`]: the credentials JSON file and the secret newtype;
//! - [`admin_client`]: the blocking client for the edge's admin API;
//! - [`run`]: `tunnel run`: workers, links, registration, reconnects, shutdown;
//! - [`observe`]: metrics and readiness, and the `--metrics` server (`/ready`, `/metrics`);
//! - [`proxy`]: serving streams: HTTP to origins through per-worker pools, TCP, built-ins;
//! - [`cli`]: the clap command tree and one handler function per command;
//! - [`demo`]: `ringtun demo`, the whole system as child processes;
//! - [`process`]: supervised child processes (output collected, waited for, stopped on drop),
//!   used by the demo and by the workspace's test-support crate;
//! - [`error`]: the crate's one error type.
#![forbid(unsafe_code)]

pub mod admin_client;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod demo;
pub mod error;
pub mod ingress;
pub mod observe;
pub mod process;
pub mod proxy;
pub mod run;

pub use error::{Error, Result};
