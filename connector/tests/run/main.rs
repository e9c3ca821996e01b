//! `ringtun tunnel run` against the fake edge of `test-support/src/fake_edge.rs` (registration
//! and a link per `docs/tunnel-contract.md`) and the test origins: one test binary, one module per
//! subject (`cargo test -p ringtun-connector --test run MODULE::`).

mod http;
mod https;
mod trailers;
mod unix;
