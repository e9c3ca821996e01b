//! The end-to-end tests: real `ringtun-edge`, `ringtun tunnel run` and `ringtun-load` processes
//! on loopback, driven with the harness of `test-support/src/e2e.rs`. One test binary, one module
//! per subject (`cargo test -p ringtun-connector --test e2e MODULE::`), so the harness is compiled
//! and linked once.

mod admin;
mod allocations;
mod big;
mod cli_ops;
mod cloudflared;
mod cluster;
mod cluster_rolling;
mod edge_drain;
mod faults;
mod h2;
mod h2_bridge;
mod harness;
mod http;
mod http2;
mod https11;
mod lifecycle;
mod observe;
mod origins;
mod routing;
mod scale;
mod spread;
mod steering;
mod tunnel;
mod tunnel_cli;
