//! Helpers shared by the `rt_*` integration tests (a directory module, so cargo does not build it as a test of its own).

#![allow(dead_code)]

use ringtun_core::rt::{DriverChoice, DriverKind, detect_driver};

/// The drivers to run a test under: always epoll, and io_uring when this host allows it (a
/// blocked io_uring is reported on stderr rather than failing the suite on such hosts).
pub fn drivers() -> Vec<(DriverChoice, DriverKind)> {
    let mut out = vec![(DriverChoice::Epoll, DriverKind::Epoll)];
    match detect_driver(DriverChoice::IoUring) {
        Ok(kind) => out.push((DriverChoice::IoUring, kind)),
        Err(e) => eprintln!("io_uring unavailable on this host, testing epoll only: {e}"),
    }
    out
}
