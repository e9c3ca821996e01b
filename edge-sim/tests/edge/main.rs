//! The edge's integration tests: in-process edges and real `ringtun-edge` processes on loopback,
//! with fake connectors, public clients, the admin API and etcd members from
//! `test-support/` (`ringtun-test-support`). One test binary, one module per subject (`cargo
//! test -p ringtun-edge-sim --test edge MODULE::`), so the shared code is linked once.
//! `request_cost.rs` stays a binary of its own: it counts allocations with a global allocator.

mod admin_api;
mod admin_hostile;
mod binary;
mod cluster;
mod cluster_forward;
mod cluster_ops;
mod cluster_tcp;
mod cluster_tls;
mod control;
mod dataplane;
mod faults;
mod h2_trailers;
mod hostile_peer;
mod limits;
mod ops;
mod registry_suite;
mod steering;
mod tls;
