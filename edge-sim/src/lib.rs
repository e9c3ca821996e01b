//! `ringtun-edge-sim`: the edge simulator, a real edge server in one process.
//!
//! It plays Cloudflare's part: data centers with edge servers, the registry of tunnels, routes
//! and connectors, the admin API, the link servers and the public HTTP and TCP listeners. [`run`] is what the `ringtun-edge` binary calls.
//!
//! # Layout
//! - [`cli`]: the `ringtun-edge` command line (flags, logging, signals); `main.rs` only calls it.
//! - [`settings`]: the operator's config file and flags, validated once into [`Settings`].
//! - [`state_dir`]: the state directory (admin token, CA and server certificate, registry file).
//! - [`registry`]: tunnels and routes (SQLite, or etcd with `--etcd`) and connectors (memory).
//! - [`cluster`]: several edge nodes sharing the registry in etcd (`--etcd`).
//! - [`peer`]: forwarding a request to the node that holds its tunnel's links (peer links).
//! - [`admin`]: the admin API server and its routes.
//! - [`dataplane`]: link servers, public HTTP and TCP, replica load balancing on `core::rt`
//!   workers.
//! - [`limit`]: counting and logging the limits clients and peers hit.
//! - [`metrics`]: Prometheus counters; [`metrics_server`]: `--metrics` (`/ready`, `/healthcheck`,
//!   `/metrics`).
//! - [`edge`]: starting and stopping the whole edge; [`stop_request`]: the request to stop (SIGINT/SIGTERM).
//! - [`error`]: the crate's one error type.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cli;
pub mod cluster;
pub mod dataplane;
pub mod edge;
pub mod error;
pub mod limit;
pub mod metrics;
pub mod metrics_server;
pub mod peer;
pub mod registry;
pub mod settings;
pub mod state_dir;
pub mod stop_request;

pub use edge::{Edge, run};
pub use error::{Error, Result};
pub use settings::Settings;
pub use state_dir::{AdminToken, StateDir, TlsMaterial};
pub use stop_request::StopRequest;
