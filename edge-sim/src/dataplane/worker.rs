//! One worker's state: its live links per connector, its snapshots of the routes and of the
//! connectors per tunnel, the hand-off of public connections between workers, the arrival of
//! links seated here by the worker that accepted them (`super::placement`), and of streams to
//! carry for another worker (`super::bridge`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use bytes::BytesMut;
use compio::net::TcpStream;
use ringtun_core::link::Link;
use ringtun_core::mux::ErrorCode;
use ringtun_core::rt::net::ListenerSet;
use ringtun_core::rt::{MailboxSender, WorkerCtx};
use uuid::Uuid;

use super::lb::{Ask, ByTunnel, ConnectorLoad, Route, choose_replica};
use super::limits::{ClientSlot, TunnelSlot};
use super::links::Moving;
use super::{ServerInfo, SharedState, WorkerMsg};
use crate::limit::Limit;
use crate::metrics::WorkerLabels;
use crate::registry::RouteTable;
use prometheus_client::metrics::counter::Counter;

/// A public connection moving to another worker: a duplicate of its socket and, over TLS, its
/// session (`Send`), and the bytes already read from it.
#[derive(Debug)]
pub struct Handoff {
    /// The client socket (with its TLS session, for HTTP/1.1 over TLS).
    pub(crate) socket: Moving,
    /// The client's address.
    pub peer: SocketAddr,
    /// Bytes read but not processed (for HTTP, the request head re-encoded and what followed).
    pub buf: BytesMut,
    /// What the connection is.
    pub kind: HandoffKind,
    /// The connection's place in its client IP's count; it moves with the connection.
    pub slot: Option<super::limits::ClientSlot>,
}

/// What kind of public connection a [`Handoff`] carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandoffKind {
    /// Public HTTP, moved between workers `hops` times so far (this move included).
    Http {
        /// How many times the connection has been handed off (at most `MAX_HOPS` in
        /// `dataplane/retry.rs`).
        hops: u8,
        /// The connector the sending worker's policy chose for it (and counted).
        chosen: Option<Uuid>,
    },
    /// A TCP route on this port, with the connector chosen for it (and counted).
    Tcp(u16, Option<Uuid>),
}

/// Where a stream for a tunnel can go from this worker.
pub(crate) enum Pick {
    /// A link on this worker, of the chosen connector.
    Local {
        link: Link,
        load: Arc<ConnectorLoad>,
    },
    /// The chosen connector has no usable link here; this worker has one. With the connector
    /// (its choice already counted), which the receiving worker takes without choosing again.
    Elsewhere(usize, Option<Uuid>),
    /// The tunnel has no live connector.
    NoConnector,
    /// No link of the tunnel on this node, and none of the nodes that hold one could take the
    /// stream (the detail names them, for the 502).
    Unreachable(String),
}

/// How long [`Worker::pick_or_wait`] waits for a link being set up: rounds × step.
const SETUP_WAIT_ROUNDS: u32 = 50;
const SETUP_WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(10);

/// One live link on this worker.
struct LocalLink {
    id: u64,
    link: Link,
    /// In the public data center (`same-dc-first`).
    home: bool,
}

/// One worker's state; lives in an `Rc` on its worker.
pub(crate) struct Worker {
    pub(crate) index: usize,
    pub(crate) plane: Arc<SharedState>,
    senders: MailboxSender<WorkerMsg>,
    links: RefCell<HashMap<Uuid, Vec<LocalLink>>>,
    next_link: Cell<u64>,
    view: RefCell<Option<(u64, Rc<ByTunnel>)>>,
    routes: RefCell<Option<(u64, Rc<RouteTable>)>>,
    /// This worker's handles on the per-tunnel stream counters.
    tunnel_counters: RefCell<HashMap<Uuid, Arc<AtomicUsize>>>,
    /// `ringtun_edge_worker_requests_total{worker}` of this worker.
    requests: Counter,
    /// This worker's peer links to the other nodes (with etcd).
    peers: Option<crate::peer::client::WorkerPeers>,
}

impl Worker {
    /// Every link this worker serves, of every connector (taken out of the borrow, so the
    /// caller may await on them).
    pub(crate) fn all_links(&self) -> Vec<Link> {
        self.links
            .borrow()
            .values()
            .flatten()
            .map(|l| l.link.clone())
            .collect()
    }

    /// The current route table: one atomic load, and a refresh only when routes changed.
    pub(crate) fn routes(&self) -> Rc<RouteTable> {
        let version = self.plane.registry.routes_version();
        if let Some((v, t)) = &*self.routes.borrow()
            && *v == version
        {
            return Rc::clone(t);
        }
        match self.plane.registry.route_table() {
            Ok(t) => {
                let t = Rc::new(t);
                *self.routes.borrow_mut() = Some((version, Rc::clone(&t)));
                t
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot refresh the route table; using the last one");
                self.routes
                    .borrow()
                    .as_ref()
                    .map(|(_, t)| Rc::clone(t))
                    .unwrap_or_default()
            }
        }
    }

    /// The connectors per tunnel: one atomic load, and a refresh only when they changed.
    fn view(&self) -> Rc<ByTunnel> {
        let version = self.plane.loads.version();
        if let Some((v, t)) = &*self.view.borrow()
            && *v == version
        {
            return Rc::clone(t);
        }
        let t = Rc::new(self.plane.loads.by_tunnel());
        *self.view.borrow_mut() = Some((version, Rc::clone(&t)));
        t
    }

    /// Chooses where a stream of `tunnel` goes, skipping the connectors in `exclude` (already
    /// tried): [`lb::choose_replica`](super::lb::choose_replica) decides, over this worker's
    /// snapshot of the tunnel's connectors and its own links; the chosen connector's least busy
    /// usable link here takes the stream. Lock-free: the route-table and connector snapshots
    /// are versioned (one atomic load each), the rest are the connectors' atomics and this
    /// worker's own links.
    ///
    /// `may_hand_off`: the connection may still move (it was not handed off before and nothing
    /// of it is consumed that cannot be replayed), so the policy runs over every candidate,
    /// wherever its links are. `prefer`: the connector another worker's policy chose (and
    /// counted) for a connection it handed over.
    ///
    /// A [`Pick::Local`] for a first try (`exclude` empty) counts one request served by this
    /// worker (`ringtun_edge_worker_requests_total{worker}`).
    pub(crate) fn pick(
        &self,
        tunnel: Uuid,
        exclude: &[Uuid],
        may_hand_off: bool,
        prefer: Option<Uuid>,
    ) -> Pick {
        let pick = self.pick_uncounted(tunnel, exclude, may_hand_off, prefer);
        if exclude.is_empty() && matches!(pick, Pick::Local { .. }) {
            self.requests.inc();
        }
        pick
    }

    fn pick_uncounted(
        &self,
        tunnel: Uuid,
        exclude: &[Uuid],
        may_hand_off: bool,
        prefer: Option<Uuid>,
    ) -> Pick {
        let view = self.view();
        let Some(all) = view.get(&tunnel) else {
            return Pick::NoConnector;
        };
        let ask = Ask {
            policy: self.routes().policy(tunnel).unwrap_or(self.plane.policy),
            worker: self.index,
            workers: self.plane.workers,
            exclude,
            may_hand_off,
            prefer,
        };
        let links = self.links.borrow();
        let usable = |l: &LocalLink, home_only: bool| l.link.can_open() && (l.home || !home_only);
        let here = |c: &Arc<ConnectorLoad>, home_only: bool| {
            links
                .get(&c.id)
                .is_some_and(|ls| ls.iter().any(|l| usable(l, home_only)))
        };
        match choose_replica(&ask, all, here, &mut rand::rng()) {
            Route::Here { replica, home_only } => links
                .get(&replica.id)
                .and_then(|ls| {
                    ls.iter()
                        .filter(|l| usable(l, home_only))
                        .min_by_key(|l| l.link.stats().open_streams)
                })
                .map_or(Pick::NoConnector, |l| Pick::Local {
                    link: l.link.clone(),
                    load: Arc::clone(replica),
                }),
            Route::Elsewhere(w, c) => Pick::Elsewhere(w, Some(c.id)),
            Route::Nothing => Pick::NoConnector,
        }
    }

    /// [`Worker::pick`], but when the tunnel has no live link yet while the registry already
    /// admitted a connector that is not excluded (its link is between `Accepted` and
    /// `Link::spawn`, or moving to the worker that will hold it: microseconds to milliseconds),
    /// waits briefly for it instead of answering 503 (or, for a retry, 502). Only this failure
    /// path touches the registry's lock.
    ///
    /// When this node has no link of the tunnel left to try, a peer link to a node that has
    /// one (see [`crate::peer`]): the ingress opens its stream there as on a local link. Only
    /// the public ingress comes here; a stream that arrived on a peer link uses
    /// [`Worker::pick`], so it is never forwarded again.
    pub(crate) async fn pick_or_wait(
        &self,
        tunnel: Uuid,
        exclude: &[Uuid],
        may_hand_off: bool,
        prefer: Option<Uuid>,
    ) -> Pick {
        match self
            .pick_or_wait_here(tunnel, exclude, may_hand_off, prefer)
            .await
        {
            Pick::NoConnector => match &self.peers {
                Some(peers) => {
                    peers
                        .forward(self, tunnel, exclude, (may_hand_off, prefer))
                        .await
                }
                None => Pick::NoConnector,
            },
            pick => pick,
        }
    }

    async fn pick_or_wait_here(
        &self,
        tunnel: Uuid,
        exclude: &[Uuid],
        may_hand_off: bool,
        prefer: Option<Uuid>,
    ) -> Pick {
        for _ in 0..SETUP_WAIT_ROUNDS {
            match self.pick(tunnel, exclude, may_hand_off, prefer) {
                Pick::NoConnector if self.plane.registry.has_connector_besides(tunnel, exclude) => {
                    compio::time::sleep(SETUP_WAIT_STEP).await;
                }
                other => return other,
            }
        }
        self.pick(tunnel, exclude, may_hand_off, prefer)
    }

    /// A place for one more stream of `tunnel` (`--tunnel-stream-limit`), or `None` at the
    /// limit, which is counted and logged here.
    pub(crate) fn tunnel_slot(&self, tunnel: Uuid) -> Option<TunnelSlot> {
        let counter = Arc::clone(
            self.tunnel_counters
                .borrow_mut()
                .entry(tunnel)
                .or_insert_with(|| self.plane.tunnel_streams.counter(tunnel)),
        );
        let slot = self.plane.tunnel_streams.try_acquire(&counter);
        if slot.is_none() {
            self.plane
                .registry
                .metrics()
                .limits
                .hit(Limit::TunnelStreams, &tunnel);
        }
        slot
    }

    /// A place for one more public connection from `peer` (`--max-connections-per-ip`), or
    /// `None` at the limit, which is counted and logged here.
    pub(crate) fn client_slot(&self, peer: SocketAddr) -> Option<ClientSlot> {
        let slot = self.plane.clients.try_acquire(peer.ip());
        if slot.is_none() {
            self.plane
                .registry
                .metrics()
                .limits
                .hit(Limit::ClientConnections, &peer.ip());
        }
        slot
    }

    /// Adds a live link (`home`: in the public data center); returns its local ID for
    /// [`Worker::remove_link`].
    pub(crate) fn add_link(&self, connector: Uuid, link: Link, home: bool) -> u64 {
        let id = self.next_link.get();
        self.next_link.set(id + 1);
        self.links
            .borrow_mut()
            .entry(connector)
            .or_default()
            .push(LocalLink { id, link, home });
        id
    }

    pub(crate) fn remove_link(&self, connector: Uuid, id: u64) {
        let mut links = self.links.borrow_mut();
        if let Some(ls) = links.get_mut(&connector) {
            ls.retain(|l| l.id != id);
            if ls.is_empty() {
                links.remove(&connector);
            }
        }
    }

    /// Hands a public connection, taken apart for the move (`socket`), to worker `to`. The
    /// caller drops its handles of the connection afterwards; the moved socket keeps it open.
    pub(crate) fn hand_off(
        &self,
        to: usize,
        socket: std::io::Result<Moving>,
        peer: SocketAddr,
        buf: BytesMut,
        kind: HandoffKind,
        slot: Option<ClientSlot>,
    ) -> bool {
        let socket = match socket {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot take a public connection apart for hand-off");
                return false;
            }
        };
        let msg = WorkerMsg::Handoff(Handoff {
            socket,
            peer,
            buf,
            kind,
            slot,
        });
        match self.senders.try_send(to, msg) {
            Ok(()) => {
                self.plane.registry.metrics().handoffs.inc();
                tracing::debug!(from = self.index, to, %peer, "public connection handed off");
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, to, "cannot hand a public connection off");
                false
            }
        }
    }

    /// Sends `msg` to worker `to`, waiting while its mailbox is full.
    pub(crate) async fn send_to(
        &self,
        to: usize,
        msg: WorkerMsg,
    ) -> Result<(), ringtun_core::rt::RtError> {
        self.senders.send(to, msg).await
    }

    /// Sends a registered link to worker `to`, which serves it from then on (see
    /// [`super::placement`]). Waits while that worker's mailbox is full; when the worker is gone
    /// (shutdown), the link is closed and unregistered.
    pub(crate) async fn move_link(&self, to: usize, link: super::links::MovedLink) {
        let (connector, index, id) = link.registry_key();
        if let Err(e) = self.senders.send(to, WorkerMsg::Link(Box::new(link))).await {
            tracing::warn!(error = %e, to, "cannot move a link to its worker; closed (the connector reconnects)");
            // The failed send dropped the link; its registry entry is left to undo.
            self.plane.registry.unregister_link_id(connector, index, id);
        }
    }

    fn take_handoff(self: &Rc<Self>, h: Handoff) {
        let w = Rc::clone(self);
        match h.kind {
            HandoffKind::Http { hops, chosen } => {
                super::http::take_over(w, h.socket, h.peer, h.buf, hops, h.slot, chosen);
            }
            HandoffKind::Tcp(port, chosen) => {
                let Moving::Plain(socket) = h.socket else {
                    tracing::warn!("a TCP-route connection cannot arrive over TLS; closed");
                    return;
                };
                let stream = match TcpStream::from_std(socket) {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot register a handed-off socket");
                        return;
                    }
                };
                let serve = super::tcp::serve(w, stream, h.peer, port, h.slot, Some(chosen));
                compio::runtime::spawn(serve).detach();
            }
        }
    }
}

/// A worker's whole life: takes its listeners, serves until shutdown, then closes its links.
pub(crate) async fn run(
    ctx: WorkerCtx<WorkerMsg>,
    plane: Arc<SharedState>,
    servers: &[(ServerInfo, ListenerSet)],
    http: &ListenerSet,
    https: Option<(Arc<ListenerSet>, Arc<rustls::ServerConfig>)>,
) {
    let index = ctx.index();
    let (mailbox, senders, shutdown) = ctx.into_parts();
    let w = Rc::new(Worker {
        index,
        plane: Arc::clone(&plane),
        senders,
        links: RefCell::new(HashMap::new()),
        next_link: Cell::new(0),
        view: RefCell::new(None),
        routes: RefCell::new(None),
        tunnel_counters: RefCell::new(HashMap::new()),
        requests: plane
            .registry
            .metrics()
            .worker_requests
            .get_or_create(&WorkerLabels {
                worker: index.to_string(),
            })
            .clone(),
        peers: plane
            .peers
            .as_ref()
            .map(|p| crate::peer::client::WorkerPeers::new(Arc::clone(p))),
    });
    // Duplicates of this worker's listening sockets: at drain, shutting them down makes the
    // kernel refuse new connections and ends the accept loops.
    let mut listening: Vec<socket2::Socket> = Vec::new();
    let mut keep = |l: &compio::net::TcpListener| match socket2::SockRef::from(l).try_clone() {
        Ok(dup) => listening.push(dup),
        Err(e) => {
            tracing::warn!(error = %e, "cannot duplicate a listening socket; it will not stop at drain")
        }
    };
    for (info, set) in servers {
        match set.take(index) {
            Ok(l) => {
                keep(&l);
                compio::runtime::spawn(super::links::accept_loop(Rc::clone(&w), l, info.clone()))
                    .detach();
            }
            Err(e) => {
                tracing::error!(error = %e, server = %info.addr, "cannot take the edge server socket")
            }
        }
    }
    match http.take(index) {
        Ok(l) => {
            keep(&l);
            compio::runtime::spawn(super::http::accept_loop(Rc::clone(&w), l)).detach()
        }
        Err(e) => tracing::error!(error = %e, "cannot take the public HTTP socket"),
    }
    if let Some((set, config)) = https {
        match set.take(index) {
            Ok(l) => {
                keep(&l);
                compio::runtime::spawn(super::h2::tls::accept_loop(Rc::clone(&w), l, config))
                    .detach()
            }
            Err(e) => tracing::error!(error = %e, "cannot take the public HTTPS socket"),
        }
    }
    if let Some(peers) = &plane.peers {
        match peers.listeners.take(index) {
            Ok(l) => {
                // Not shut at drain: it closes at the end of it (see `peer::server`).
                let task = crate::peer::server::accept_loop(Rc::clone(&w), l, Arc::clone(peers));
                compio::runtime::spawn(task).detach();
            }
            Err(e) => tracing::error!(error = %e, "cannot take the peer link socket"),
        }
    }
    compio::runtime::spawn(super::links::drain_on_signal(Rc::clone(&w), listening)).detach();
    compio::runtime::spawn(super::tcp::route_watch(Rc::clone(&w))).detach();
    {
        let w = Rc::clone(&w);
        compio::runtime::spawn(async move {
            while let Some(msg) = mailbox.recv().await {
                match msg {
                    WorkerMsg::Handoff(h) => w.take_handoff(h),
                    WorkerMsg::Link(l) => {
                        compio::runtime::spawn(super::links::adopt(Rc::clone(&w), *l)).detach();
                    }
                    WorkerMsg::Bridge(r) => {
                        compio::runtime::spawn(super::bridge::serve(Rc::clone(&w), *r)).detach();
                    }
                }
            }
        })
        .detach();
    }
    shutdown.wait().await;
    if let Some(peers) = &w.peers {
        peers.close_all();
    }
    let links = w.all_links();
    for l in &links {
        l.close(ErrorCode::NO_ERROR);
    }
    for l in &links {
        let _ = compio::time::timeout(std::time::Duration::from_secs(1), l.closed()).await;
    }
}
