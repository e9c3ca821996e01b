//! `ringtun-test-support`: what the workspace's integration tests share, compiled once as a
//! library instead of once per test binary. Only tests use it (as a dev-dependency); it is never
//! published and no binary depends on it.
//!
//! # Layout
//! - [`e2e`]: the end-to-end harness: real `ringtun-edge`, `ringtun` and `ringtun-load`
//!   processes on loopback (edge, tunnel, connector, the `ServedTunnel` of all three), RSS sampling;
//! - [`http`]: the one blocking HTTP/1.1 client (keep-alive [`http::Client`], one-shot
//!   [`http::http_get`], [`http::parse_response`]);
//! - [`load`]: the bounded GET load client that counts what failed and when;
//! - [`origin`]: the in-test origins (keep-alive HTTP/1.1 over TCP or Unix sockets, HTTPS with a
//!   CA of its own, head echo and WebSocket echo) and loopback helpers;
//! - [`fake_edge`]: a fake edge (registration and a link) for the connector's `run` tests;
//! - [`edge`]: the edge's fixtures: the settings an in-process edge starts from, a routed tunnel,
//!   a `ringtun-edge` process on port 0, one admin API call;
//! - [`fake_connector`]: a fake connector (one link) for the edge's tests;
//! - [`etcd`]: real `etcd` members on loopback for the tests of several edge nodes;
//! - [`cluster`]: a `ringtun-edge --etcd` node of those tests, its flags and its key prefix;
//! - [`grpc`]: the Python gRPC origin and client scripts, and gRPC message framing.
//!
//! The process supervisor itself ([`e2e::Proc`]) is `ringtun_connector::process`, which `ringtun
//! demo` uses too.
#![forbid(unsafe_code)]
// A test helper that cannot do its job panics: that is how the test using it fails.
#![allow(clippy::unwrap_used)]

pub mod cluster;
pub mod e2e;
pub mod edge;
pub mod etcd;
pub mod fake_connector;
pub mod fake_edge;
pub mod grpc;
pub mod http;
pub mod load;
pub mod origin;
