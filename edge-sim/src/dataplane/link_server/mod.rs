//! Link servers: accept a connector's TCP connection, TLS (unless `--danger-plaintext-links`),
//! the registration handshake (`core::handshake::edge_accept`, see `register`) under a
//! deadline, then `Link::spawn(.., Role::Server, ..)` until the link ends (`ending`), on the
//! worker that [`Placement`](super::placement::Placement) seats it on: the registered link (its
//! socket and TLS session, [`MovedLink`]) moves there through that worker's mailbox when it is
//! not the worker that accepted it (`moving`), so a connector's links spread over the workers.
//!
//! A connection whose TLS or registration does not finish within `--handshake-timeout` is
//! dropped, never turned into a link (the timed-out read may have consumed bytes). If the
//! registry admitted the link before the deadline fired, it is unregistered again. At most
//! `--max-pending-handshakes` handshakes run at once on the whole edge: a connection beyond
//! that is closed as soon as it is accepted and counted as `Limit::PendingHandshakes`
//! (`limit.rs`), so idle or slow connections to a link port cost a bounded amount of memory. Per-connection outcomes
//! (refused, timed out) are logged at debug: a hostile peer must not flood the log.
//!
//! # Layout
//! - this file: the accept loop, the handshake deadline, serving a registered link.
//! - `register`: the registration: tunnel secret, admission by the registry, refusals.
//! - `moving`: a registered link's transport on its way to the worker it was seated on.
//! - `ending`: how a link ends: closed, its server down, replaced, revoked; the connector
//!   draining from its first GOAWAY.
//! - `draining`: the edge's own drain of its links (at once, or make before break in a
//!   cluster).

mod draining;
mod ending;
mod moving;
mod register;

pub(crate) use draining::drain_on_signal;
pub use moving::MovedLink;
pub(crate) use moving::Moving;
pub(crate) use moving::adopt;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use compio::net::{TcpListener, TcpStream};
use ringtun_core::handshake::Register;
use ringtun_core::link::{Link, Transport};
use ringtun_core::mux::{Config, Role};
use ringtun_core::rt::Shutdown;
use ringtun_core::rt::net::{SocketTuning, tune_stream};
use ringtun_core::tls::TlsStream;
use ringtun_core::tunnel::tunnel_link_config;
use uuid::Uuid;

use super::ServerInfo;
use super::placement::Seat;
use super::worker::Worker;
use crate::limit::Limit;
use ending::{KillSwitch, run_link, watch_drain};
use moving::Movable;
use register::{Admitted, handshake};

/// One handshake in progress, counted in [`super::SharedState::pending_handshakes`] until dropped.
struct Pending(Arc<super::SharedState>);

impl Pending {
    /// Counts a new handshake, or `None` when `--max-pending-handshakes` are running.
    fn start(plane: &Arc<super::SharedState>) -> Option<Pending> {
        let before = plane.pending_handshakes.fetch_add(1, Ordering::AcqRel);
        if before >= plane.max_pending_handshakes {
            plane.pending_handshakes.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(Pending(Arc::clone(plane)))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.0.pending_handshakes.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts links on one edge server's socket of this worker.
pub(crate) async fn accept_loop(w: Rc<Worker>, listener: TcpListener, info: ServerInfo) {
    let info = Rc::new(info);
    let fault_index = w.plane.faults.server_index(info.addr);
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                if fault_index.is_some_and(|i| w.plane.faults.is_down(i)) {
                    w.plane.registry.metrics().fault_links_refused.inc();
                    tracing::debug!(%peer, server = %info.addr, "server is down (fault injection); connection closed");
                    let _ = socket2::SockRef::from(&tcp).shutdown(std::net::Shutdown::Both);
                    drop(tcp);
                    continue;
                }
                let Some(pending) = Pending::start(&w.plane) else {
                    w.plane
                        .registry
                        .metrics()
                        .limits
                        .hit(Limit::PendingHandshakes, &peer);
                    let _ = socket2::SockRef::from(&tcp).shutdown(std::net::Shutdown::Both);
                    drop(tcp);
                    continue;
                };
                let kill = fault_index.and_then(|i| KillSwitch::new(&w, i, &tcp));
                compio::runtime::spawn(serve_link(
                    Rc::clone(&w),
                    tcp,
                    peer,
                    Rc::clone(&info),
                    (kill, pending),
                ))
                .detach();
            }
            Err(_) if w.plane.is_draining() => return,
            Err(e) => {
                tracing::warn!(error = %e, server = %info.addr, "link accept failed");
                compio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_link(
    w: Rc<Worker>,
    tcp: TcpStream,
    peer: SocketAddr,
    info: Rc<ServerInfo>,
    (kill, pending): (Option<KillSwitch>, Pending),
) {
    if let Err(e) = tune_stream(&tcp, &SocketTuning::default()) {
        tracing::debug!(error = %e, "cannot tune a link socket");
    }
    let admitted: Admitted = Rc::new(Cell::new(None));
    let replaced = Shutdown::new();
    let revoked = Shutdown::new();
    let deadline = w.plane.handshake_timeout;
    match w.plane.tls.clone() {
        Some(cfg) => {
            let fut = async {
                let tls = TlsStream::accept(tcp, cfg)
                    .await
                    .map_err(|e| format!("tls: {e}"))?;
                handshake(&w, tls, peer, &info, &admitted, (&replaced, &revoked)).await
            };
            let res = compio::time::timeout(deadline, fut).await;
            drop(pending);
            finish(&w, res, peer, &info, &admitted, (kill, replaced, revoked)).await;
        }
        None => {
            let fut = handshake(&w, tcp, peer, &info, &admitted, (&replaced, &revoked));
            let res = compio::time::timeout(deadline, fut).await;
            drop(pending);
            finish(&w, res, peer, &info, &admitted, (kill, replaced, revoked)).await;
        }
    }
}

async fn finish<S: Movable, E>(
    w: &Worker,
    res: Result<Result<(S, Register), String>, E>,
    peer: SocketAddr,
    info: &ServerInfo,
    admitted: &Admitted,
    (kill, replaced, revoked): (Option<KillSwitch>, Shutdown, Shutdown),
) {
    let registry = &w.plane.registry;
    let (stream, reg) = match res {
        Ok(Ok(ok)) => ok,
        Ok(Err(e)) => {
            tracing::debug!(%peer, server = %info.addr, error = %e, "link refused");
            if let Some((c, i, id)) = admitted.take() {
                registry.unregister_link_id(c, i, id);
            }
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, server = %info.addr, "link handshake timed out; connection dropped");
            if let Some((c, i, id)) = admitted.take() {
                registry.unregister_link_id(c, i, id);
            }
            return;
        }
    };
    let Some((_, _, link_id)) = admitted.take() else {
        // `edge_accept` returns a registration only after `admit` accepted it.
        return;
    };
    let tunnel = Uuid::from_bytes(reg.tunnel_id);
    let connector = Uuid::from_bytes(reg.connector_id);
    let home = info.data_center == w.plane.public_dc;
    let seat = w.plane.placement.seat(tunnel, connector, home, w.index);
    let registered = Registered {
        reg,
        link_id,
        peer,
        info: info.clone(),
        kill,
        replaced,
        revoked,
        seat,
    };
    if registered.seat.worker() == w.index {
        serve_registered(w, stream, registered).await;
        return;
    }
    let to = registered.seat.worker();
    match stream.into_moving() {
        Ok(transport) => {
            tracing::debug!(%tunnel, %connector, from = w.index, to, "link moves to its worker");
            w.move_link(
                to,
                MovedLink {
                    transport,
                    registered,
                },
            )
            .await;
        }
        Err(e) => {
            tracing::warn!(error = %e, %connector, "cannot move a link to its worker; closed (the connector reconnects)");
            registered.abandon(registry);
        }
    }
}

/// A registered link, before `Link::spawn`: what its worker needs to serve it.
pub(crate) struct Registered {
    reg: Register,
    /// The registry's ID of the link.
    link_id: u64,
    peer: SocketAddr,
    info: ServerInfo,
    kill: Option<KillSwitch>,
    replaced: Shutdown,
    /// Fires when the tunnel is deleted (`tunnel delete -f`): the link closes at once.
    revoked: Shutdown,
    /// Its place among the workers, held until it ends.
    seat: Seat,
}

impl Registered {
    /// Gives up on the link before it served anything (its worker could not take it).
    pub(crate) fn abandon(self, registry: &crate::registry::Registry) {
        let connector = Uuid::from_bytes(self.reg.connector_id);
        registry.unregister_link_id(connector, self.reg.link_index, self.link_id);
    }
}

/// Runs a registered link on this worker (the one its seat names) until it ends.
async fn serve_registered<S: Transport>(w: &Worker, stream: S, r: Registered) {
    let Registered {
        reg,
        link_id,
        peer,
        info,
        kill,
        replaced,
        revoked,
        seat,
    } = r;
    let registry = &w.plane.registry;
    let tunnel = Uuid::from_bytes(reg.tunnel_id);
    let connector = Uuid::from_bytes(reg.connector_id);
    let info = &info;
    // Only the edge opens streams on a tunnel link (protocol.md §2.1).
    let config = Config {
        peer_opens_streams: false,
        ..tunnel_link_config()
    };
    let link = Link::spawn(stream, Role::Server, config);
    let load = w
        .plane
        .loads
        .connector(tunnel, connector, reg.weight, reg.flags.standby());
    let home = info.data_center == w.plane.public_dc;
    let id = w.add_link(connector, link.clone(), home);
    load.link_up(w.index, home);
    load.index_up(reg.link_index);
    watch_drain(w, &link, &load, reg.link_index);
    if w.plane.is_draining() {
        // The edge began shutting down while this handshake ran: no stream goes to it.
        load.set_draining();
        link.drain();
    }
    registry.metrics().link_up(&info.data_center);
    tracing::info!(
        %tunnel, %connector, index = reg.link_index, data_center = %info.data_center,
        server = %info.addr, origin_ip = %peer.ip(), version = %reg.version, arch = %reg.arch,
        worker = w.index, "link registered"
    );
    let why = run_link(
        w,
        (&link, (connector, id)),
        kill,
        (&replaced, &revoked),
        info,
    )
    .await;
    w.remove_link(connector, id);
    load.link_down(w.index, home);
    load.index_down(reg.link_index);
    w.plane.loads.link_gone(&load);
    registry.metrics().link_down(&info.data_center);
    let gone = registry.unregister_link_id(connector, reg.link_index, link_id);
    drop(seat);
    tracing::info!(
        %tunnel, %connector, index = reg.link_index, data_center = %info.data_center,
        reason = %why, connector_gone = gone, "link unregistered"
    );
}
