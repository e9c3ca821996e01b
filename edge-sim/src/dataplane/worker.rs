//! One worker's state: its live links per connector, its snapshots of the routes and of the
//! connectors per tunnel, the hand-off of public connections between workers, the arrival of
//! links seated here by the worker that accepted them (`super::placement`), and of streams to
//! carry for another worker (`super::bridge`).
//!
//! # Layout
//! - this file: the worker's state, its snapshots of routes and connectors, where a stream
//!   goes (`Worker::pick`, `Worker::pick_or_wait`) and the per-tunnel and per-client slots;
//! - `local_links.rs`: the live links served here, per connector;
//! - `handoff.rs`: public connections moving to another worker ([`Handoff`]);
//! - `mailbox.rs`: what workers send one another;
//! - `run.rs`: a worker's life, from taking its listeners to drain and shutdown.

mod handoff;
mod local_links;
mod mailbox;
mod run;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use ringtun_core::link::Link;
use ringtun_core::rt::MailboxSender;
use uuid::Uuid;

pub use handoff::{Handoff, HandoffKind};
pub(crate) use run::run;

use super::lb::{Ask, ByTunnel, ConnectorLoad, Route, choose_replica};
use super::limits::{ClientSlot, TunnelSlot};
use super::{SharedState, WorkerMsg};
use crate::limit::Limit;
use crate::registry::RouteTable;
use prometheus_client::metrics::counter::Counter;

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
    /// one (see [`crate::peer`]): the public path opens its stream there as on a local link. Only
    /// the public path comes here; a stream that arrived on a peer link uses
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
}
