//! `ringtun-load`: load generator and benchmarks.
fn main() {}
