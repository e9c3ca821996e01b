//! The edge's own drain of its links, on each worker (see `DataPlane::drain`).
//!
//! When the edge starts shutting down, the worker stops accepting (its listening sockets are
//! shut down, so the kernel refuses new connections; the peer listener is not among them) and:
//!
//! - **one node** (no etcd): drains every link of the worker at once (two-phase DRAIN GOAWAY,
//!   `docs/protocol.md` §7); the edge opens nothing new on them and they close once their
//!   streams have finished;
//! - **a node of a cluster**: sends every link a drain notice (`docs/protocol.md` §7.1) and
//!   keeps opening streams on it, so that requests arriving here or forwarded from other nodes
//!   are still served while the connector sets up a replacement on another node and then
//!   drains this link itself (make before break). When `links_draining` fires (the links are
//!   gone, or half the grace period is over), what is left is drained as on one node.
//!
//! A link that registers while the edge is draining is drained at once (`serve_registered`).

use std::rc::Rc;

use super::super::worker::Worker;

/// Waits for the edge's drain, then stops accepting and drains this worker's links.
pub(crate) async fn drain_on_signal(w: Rc<Worker>, listening: Vec<socket2::Socket>) {
    w.plane.draining.wait().await;
    for l in &listening {
        let _ = l.shutdown(std::net::Shutdown::Read);
    }
    if !w.plane.links_draining.is_triggered() {
        for l in &w.all_links() {
            l.drain_notice();
        }
        w.plane.links_draining.wait().await;
    }
    for l in &w.all_links() {
        l.drain();
    }
}
