//! Link servers: accept a connector's TCP connection, TLS (unless `--danger-plaintext-links`),
//! the registration handshake (`core::handshake::edge_accept`) under a deadline, then
//! `Link::spawn(.., Role::Server, ..)` until the link ends, on the worker that
//! [`Placement`](super::placement::Placement) seats it on: the registered link (its socket and
//! TLS session, [`MovedLink`]) moves there through that worker's mailbox when it is not the
//! worker that accepted it, so a connector's links spread over the workers.
//!
//! Each link also gets a small watcher task: the first GOAWAY the connector sends on **any**
//! of its links marks the whole connector draining (its `ConnectorLoad`, so no worker opens
//! anything new to it, and the registry's record, which the admin API shows).
//!
//! A connection whose TLS or registration does not finish within `--handshake-timeout` is
//! dropped, never turned into a link (the timed-out read may have consumed bytes). If the
//! registry admitted the link before the deadline fired, it is unregistered again. At most
//! `--max-pending-handshakes` handshakes run at once on the whole edge: a connection beyond
//! that is closed as soon as it is accepted and counted as
//! [`Limit::PendingHandshakes`](crate::limit::Limit::PendingHandshakes), so idle or slow
//! connections to a link port cost a bounded amount of memory. Per-connection outcomes
//! (refused, timed out) are logged at debug: a hostile peer must not flood the log.
//!
//! Links per connector: a registration declares the connector's `ha_connections`, and the
//! registry refuses an index outside it (`RejectCode::LinkLimit`, see
//! [`crate::registry::Registry::register_link`]). A registration under an index that already
//! has a live link **replaces** it: the registry triggers the old link's "replaced" signal and
//! its link server drains it (the two-phase DRAIN GOAWAY of `docs/protocol.md` §9), so its
//! streams finish within `--grace-period` and the peer opens nothing new on it; what is still
//! open after that is reset. A connector can therefore hold at most `ha_connections` links
//! that take new streams, however often it registers.
//!
//! Tunnel secrets come from the registry's in-memory view: registration never waits on the
//! database. An unknown tunnel is refused as `UnknownTunnel` (the connector gives up); any
//! other registry failure as `TryAgain` (the connector retries with backoff).
//!
//! A link whose tunnel is deleted, or whose connector a cleanup disconnects, is closed at once
//! (the registry triggers its "revoked" signal): streams are reset and GOAWAY is sent.
//!
//! Fault injection ([`super::faults`]): while a server is down, its accept loop closes every new
//! connection at once, and each live link of it ends like a crash: the link task waits on the
//! server's "down" signal next to `Link::closed` and then shuts the TCP socket down (through a
//! duplicate of its descriptor taken before TLS), so the connector sees the connection end with
//! no GOAWAY.

use std::cell::Cell;
use std::future::Future;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::Poll;
use std::time::Duration;

use compio::io::{AsyncRead, AsyncWrite};
use compio::net::{TcpListener, TcpStream};
use ringtun_core::handshake::{
    Accepted, HandshakeError, Register, RejectCode, Rejected, TunnelSecret, edge_accept,
};
use ringtun_core::http::tunnel_link_config;
use ringtun_core::link::{Link, LinkError, Transport};
use ringtun_core::mux::{Config, ErrorCode, Role};
use ringtun_core::rt::Shutdown;
use ringtun_core::rt::net::{SocketTuning, tune_stream};
use ringtun_core::tls::{TlsParts, TlsStream};
use uuid::Uuid;

use super::ServerInfo;
use super::lb::ConnectorLoad;
use super::placement::Seat;
use super::worker::Worker;
use crate::error::Error;
use crate::limit::Limit;
use crate::registry::{ConnectorRegistration, LinkInfo, LinkSlot};

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

/// Ends a link like a crash when its server goes down: a duplicate of the link's TCP socket
/// (taken before TLS owns it) and the server's down signal.
pub(crate) struct KillSwitch {
    socket: socket2::Socket,
    down: super::faults::DownWatch,
}

impl KillSwitch {
    fn new(w: &Worker, index: usize, tcp: &TcpStream) -> Option<KillSwitch> {
        match socket2::SockRef::from(tcp).try_clone() {
            Ok(socket) => Some(KillSwitch {
                socket,
                down: w.plane.faults.watch(index),
            }),
            Err(e) => {
                tracing::warn!(error = %e, "cannot duplicate a link socket; fault injection will not close this link");
                None
            }
        }
    }
}

/// Waits for the link to end. When its server goes down first, shuts its socket down (no
/// GOAWAY, no drain: the connector sees the connection end) and waits for the link's tasks.
/// When a newer link of the connector takes its index first, drains it: the streams it carries
/// finish within the grace period, then what is left is reset.
async fn run_link(
    w: &Worker,
    (link, local): (&Link, (Uuid, u64)),
    kill: Option<KillSwitch>,
    (replaced, revoked): (&Shutdown, &Shutdown),
    info: &ServerInfo,
) -> LinkError {
    enum Ended {
        Closed(LinkError),
        Down,
        Replaced,
        Revoked,
    }
    // All are waits on wakers, not IO: dropping the losers loses nothing.
    let ended = {
        let mut closed = std::pin::pin!(link.closed());
        let mut down = std::pin::pin!(async {
            match &kill {
                Some(k) => k.down.wait().await,
                None => std::future::pending::<()>().await,
            }
        });
        let mut newer = std::pin::pin!(replaced.wait());
        let mut gone = std::pin::pin!(revoked.wait());
        std::future::poll_fn(|cx| {
            if let Poll::Ready(why) = closed.as_mut().poll(cx) {
                return Poll::Ready(Ended::Closed(why));
            }
            if down.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ended::Down);
            }
            if gone.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Ended::Revoked);
            }
            newer.as_mut().poll(cx).map(|()| Ended::Replaced)
        })
        .await
    };
    match ended {
        Ended::Closed(why) => why,
        Ended::Down => {
            w.plane.registry.metrics().fault_links_closed.inc();
            tracing::info!(server = %info.addr, "server is down (fault injection); closing its link at once");
            if let Some(k) = &kill {
                let _ = k.socket.shutdown(std::net::Shutdown::Both);
            }
            // The reader sees the end of the socket and the writer fails: the link ends.
            link.close(ErrorCode::INTERNAL_ERROR);
            link.closed().await
        }
        Ended::Revoked => {
            tracing::info!(server = %info.addr, connector = %local.0, "tunnel deleted or connector disconnected by cleanup; closing its link at once");
            // No new stream goes to it; the peer sees the link close with an error code and,
            // when its tunnel is gone, is refused as an unknown tunnel when it reconnects.
            w.remove_link(local.0, local.1);
            link.close(ErrorCode::CANCEL);
            link.closed().await
        }
        Ended::Replaced => {
            tracing::debug!(server = %info.addr, "link replaced by a newer link of the same index; draining it");
            // No new stream goes to it from here on.
            w.remove_link(local.0, local.1);
            link.drain();
            match compio::time::timeout(w.plane.grace, link.closed()).await {
                Ok(why) => why,
                Err(_) => {
                    link.close(ErrorCode::CANCEL);
                    link.closed().await
                }
            }
        }
    }
}

/// The registry entry a successful `admit` made (connector, index, link ID), to undo if the
/// handshake fails after it.
type Admitted = Rc<Cell<Option<(Uuid, u8, u64)>>>;

async fn register<S: AsyncRead + AsyncWrite>(
    w: &Worker,
    stream: &mut S,
    peer: SocketAddr,
    info: &ServerInfo,
    admitted: &Admitted,
    (replaced, revoked): (&Shutdown, &Shutdown),
) -> Result<Register, HandshakeError> {
    let registry = &w.plane.registry;
    let lookup = |r: &Register| {
        let tunnel = Uuid::from_bytes(r.tunnel_id);
        registry
            .tunnel_secret(tunnel)
            .map(|s| TunnelSecret::new(s.0.to_vec()))
            .map_err(|e| {
                registry.metrics().connectors_rejected.inc();
                match e {
                    Error::TunnelNotFound(_) => Rejected {
                        code: RejectCode::UnknownTunnel,
                        message: format!("tunnel {tunnel} does not exist on this edge"),
                    },
                    e => Rejected {
                        code: RejectCode::TryAgain,
                        message: format!("the edge cannot check the registration now: {e}"),
                    },
                }
            })
    };
    let admit = |r: &Register| {
        let connector_id = Uuid::from_bytes(r.connector_id);
        let res = registry.register_link(
            Uuid::from_bytes(r.tunnel_id),
            ConnectorRegistration {
                connector_id,
                arch: r.arch.clone(),
                version: r.version.clone(),
                origin_ip: peer.ip(),
                label: r.label.clone(),
                weight: r.weight.max(1),
                standby: r.flags.standby(),
            },
            LinkInfo {
                index: r.link_index,
                data_center: info.data_center.clone(),
                server: info.addr,
            },
            LinkSlot {
                ha_connections: r.ha_connections,
                replaced: replaced.clone(),
                revoked: revoked.clone(),
            },
        );
        match res {
            Ok(id) => {
                admitted.set(Some((connector_id, r.link_index, id)));
                Ok(Accepted {
                    data_center: info.data_center.clone(),
                    server: info.addr.to_string(),
                })
            }
            Err(e) => Err(Rejected {
                code: match e {
                    Error::ConnectorLimit { .. } => RejectCode::ConnectorLimit,
                    Error::TunnelNotFound(_) => RejectCode::UnknownTunnel,
                    Error::LinkLimit { .. } => RejectCode::LinkLimit,
                    Error::ConnectorConflict(_) => RejectCode::Unavailable,
                    _ => RejectCode::TryAgain,
                },
                message: e.to_string(),
            }),
        }
    };
    edge_accept(stream, lookup, admit).await
}

async fn handshake<S: AsyncRead + AsyncWrite>(
    w: &Worker,
    mut stream: S,
    peer: SocketAddr,
    info: &ServerInfo,
    admitted: &Admitted,
    signals: (&Shutdown, &Shutdown),
) -> Result<(S, Register), String> {
    let reg = register(w, &mut stream, peer, info, admitted, signals)
        .await
        .map_err(|e| e.to_string())?;
    Ok((stream, reg))
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

/// A link's transport on its way to another worker (`Send`).
pub(crate) enum Moving {
    /// `--danger-plaintext-links`: the socket.
    Plain(std::net::TcpStream),
    /// The socket and the TLS session.
    Tls(Box<TlsParts>),
}

/// A link transport that can move to another worker.
pub(crate) trait Movable: Transport + Sized {
    /// Takes the transport apart for the move (only between operations).
    fn into_moving(self) -> std::io::Result<Moving>;
}

impl Movable for TcpStream {
    fn into_moving(self) -> std::io::Result<Moving> {
        // The duplicate keeps the connection; this worker's handle closes with `self`.
        let socket = socket2::SockRef::from(&self).try_clone()?;
        Ok(Moving::Plain(socket.into()))
    }
}

impl Movable for TlsStream {
    fn into_moving(self) -> std::io::Result<Moving> {
        self.into_parts().map(|p| Moving::Tls(Box::new(p)))
    }
}

/// A registered link moving to the worker it was seated on (see [`super::placement`]).
pub struct MovedLink {
    transport: Moving,
    registered: Registered,
}

impl std::fmt::Debug for MovedLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MovedLink")
            .field(
                "connector",
                &Uuid::from_bytes(self.registered.reg.connector_id),
            )
            .field("worker", &self.registered.seat.worker())
            .finish_non_exhaustive()
    }
}

impl MovedLink {
    /// Its registry entry: connector, link index, link ID.
    pub(crate) fn registry_key(&self) -> (Uuid, u8, u64) {
        let reg = &self.registered.reg;
        (
            Uuid::from_bytes(reg.connector_id),
            reg.link_index,
            self.registered.link_id,
        )
    }
}

/// Serves a link that moved here from the worker that accepted it.
pub(crate) async fn adopt(w: Rc<Worker>, moved: MovedLink) {
    let MovedLink {
        transport,
        registered,
    } = moved;
    match transport {
        Moving::Plain(socket) => match TcpStream::from_std(socket) {
            Ok(tcp) => serve_registered(&w, tcp, registered).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take a moved link's socket; closed (the connector reconnects)");
                registered.abandon(&w.plane.registry);
            }
        },
        Moving::Tls(parts) => match TlsStream::from_parts(*parts) {
            Ok(tls) => serve_registered(&w, tls, registered).await,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take a moved link's socket; closed (the connector reconnects)");
                registered.abandon(&w.plane.registry);
            }
        },
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

/// Marks the connector draining everywhere once the peer sends GOAWAY on this link. The task
/// ends with the link (then [`Link::peer_draining`] resolves `false`).
///
/// One exception: a GOAWAY on a link whose index has another live link of the same connector
/// is a link being *replaced* (a displaced link moving back to its home data center brings
/// the new link up first, then drains the old one), not the connector going away.
fn watch_drain(w: &Worker, link: &Link, load: &Arc<ConnectorLoad>, index: u8) {
    let link = link.clone();
    let load = Arc::clone(load);
    let registry = Arc::clone(&w.plane.registry);
    compio::runtime::spawn(async move {
        if !link.peer_draining().await || load.is_draining() {
            return;
        }
        if load.links_with_index(index) > 1 {
            tracing::info!(
                tunnel = %load.tunnel, connector = %load.id, index,
                "link replaced (GOAWAY with a newer link under the same index); connector keeps serving"
            );
            return;
        }
        load.set_draining();
        registry.set_draining(load.id);
        tracing::info!(
            tunnel = %load.tunnel, connector = %load.id, index,
            "connector draining (GOAWAY); no new streams to it on any link"
        );
    })
    .detach();
}
