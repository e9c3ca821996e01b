//! The sending side, per worker: which node a stream of a tunnel with no link here goes to,
//! and the worker's own peer link to that node (dialed the first time, then kept).
//!
//! The candidates come from the presence view ([`crate::registry::Registry::cluster_presence`]),
//! indexed per tunnel once per presence change (the index is rebuilt when the view's `Arc`
//! changes, so a request costs a hash lookup). Order: the public data center's nodes first,
//! then the fewest streams this worker has in flight to the node, then the most links of the
//! tunnel, ties broken at random so that equal nodes share the load. A node whose breaker is
//! open is skipped; a node that cannot be dialed counts a failure and the next one is tried, so
//! one request can try every candidate; a node that refuses the stream itself is left to the
//! public path's retry loop, which excludes it (its ID is the peer link's load ID).
use std::cell::RefCell;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use compio::net::TcpStream;
use futures_util::FutureExt as _;
use futures_util::future::{LocalBoxFuture, Shared};
use rand::seq::SliceRandom as _;
use ringtun_core::link::Link;
use ringtun_core::mux::{ErrorCode, Role};
use ringtun_core::rt::net::{SocketTuning, tune_stream};
use ringtun_core::tls::TlsStream;
use ringtun_core::tunnel::tunnel_link_config;
use uuid::Uuid;

use super::PeerPlane;
use super::breaker::Breaker;
use super::tls::node_name;
use crate::cluster::{ClusterPresence, NodeRecord};
use crate::dataplane::lb::ConnectorLoad;
use crate::dataplane::worker::{Pick, Worker};
use crate::limit::Limit;

/// A node that holds links of a tunnel, as the presence view shows it.
#[derive(Debug, Clone)]
struct Candidate {
    node: Rc<str>,
    id: Uuid,
    addr: SocketAddr,
    same_dc: bool,
    links: usize,
}

/// Why dialing a node failed: the metric reason and the detail.
type DialError = (&'static str, String);
type Dial = Shared<LocalBoxFuture<'static, Result<Link, DialError>>>;

/// What this worker knows of one peer node.
struct PeerNode {
    link: Option<(u64, Link)>,
    dialing: Option<Dial>,
    /// Streams in flight to the node (its ID is the node's), which the public path counts like a
    /// connector's.
    load: Arc<ConnectorLoad>,
    breaker: Breaker,
    generation: u64,
}

/// The presence view indexed by tunnel.
type Index = HashMap<Uuid, Vec<Candidate>>;

/// How often a waiting request looks at the presence view and this node's links.
const WAIT_STEP: std::time::Duration = std::time::Duration::from_millis(10);
/// How many tunnels' "last seen with a candidate" times a worker keeps before pruning.
const RECENT_MAX: usize = 4096;

/// One worker's peer links and the state of each node.
pub(crate) struct WorkerPeers {
    plane: Arc<PeerPlane>,
    nodes: Rc<RefCell<HashMap<Rc<str>, PeerNode>>>,
    index: RefCell<Option<(Arc<ClusterPresence>, Rc<Index>)>>,
    /// When each tunnel last had a candidate node here: a request for a tunnel whose links just
    /// left the view waits for them to come back elsewhere ([`WorkerPeers::forward`]).
    recent: RefCell<HashMap<Uuid, Instant>>,
}

impl WorkerPeers {
    pub(crate) fn new(plane: Arc<PeerPlane>) -> WorkerPeers {
        WorkerPeers {
            plane,
            nodes: Rc::new(RefCell::new(HashMap::new())),
            index: RefCell::new(None),
            recent: RefCell::new(HashMap::new()),
        }
    }

    /// [`WorkerPeers::pick`], for a stream with no link of its tunnel on this node. When no node
    /// could take it ([`Pick::Unreachable`]: every candidate failed to connect or was tried and
    /// refused the stream, always before any byte reached an origin), or the tunnel had
    /// candidates within the last `--peer-wait-ms` and has none now ([`Pick::NoConnector`]), it
    /// waits, at most `--peer-wait-ms` in all, for the presence view to change and tries
    /// again, or for a link of the tunnel to appear on this node (`w.pick` with `local`:
    /// `may_hand_off` and `prefer`), which takes the stream instead. A wait that ends with
    /// nothing counts `limit_hits_total{reason="peer_wait"}`.
    pub(crate) async fn forward(
        &self,
        w: &Worker,
        tunnel: Uuid,
        exclude: &[Uuid],
        local: (bool, Option<Uuid>),
    ) -> Pick {
        let registry = &w.plane.registry;
        let wait = self.plane.settings.wait;
        let deadline = Instant::now() + wait;
        // Nodes tried before (by the public path's retry loop) get another try once the view shows
        // their links of the tunnel changed: that node is where the link moved. Both are made
        // only when a request waits, so a forwarded request that is answered costs nothing here.
        let mut skip: Option<Vec<Uuid>> = None;
        let mut counts: Option<HashMap<Uuid, usize>> = None;
        loop {
            let seen = registry.cluster_presence();
            let pick = self
                .pick(registry, tunnel, skip.as_deref().unwrap_or(exclude))
                .await;
            let again = match &pick {
                Pick::Unreachable(_) => true,
                Pick::NoConnector => self.seen_within(tunnel, wait),
                _ => false,
            };
            if !again {
                return pick;
            }
            if Instant::now() >= deadline {
                if !wait.is_zero() {
                    registry.metrics().limits.hit(Limit::PeerWait, &tunnel);
                }
                return pick;
            }
            let before = match counts.take() {
                Some(c) => c,
                None => self.link_counts(seen.clone(), tunnel),
            };
            loop {
                compio::time::sleep(WAIT_STEP).await;
                match w.pick(tunnel, exclude, local.0, local.1) {
                    Pick::NoConnector => {}
                    here => return here,
                }
                let now = registry.cluster_presence();
                let changed = match (&seen, &now) {
                    (Some(a), Some(b)) => !Arc::ptr_eq(a, b),
                    (a, b) => a.is_some() != b.is_some(),
                };
                if changed {
                    let after = self.link_counts(now, tunnel);
                    skip.get_or_insert_with(|| exclude.to_vec())
                        .retain(|id| before.get(id) == after.get(id));
                    counts = Some(after);
                    break;
                }
                if Instant::now() >= deadline {
                    counts = Some(before);
                    break;
                }
            }
        }
    }

    /// How many links of `tunnel` each candidate node holds in `presence`.
    fn link_counts(
        &self,
        presence: Option<Arc<ClusterPresence>>,
        tunnel: Uuid,
    ) -> HashMap<Uuid, usize> {
        presence
            .map(|p| {
                self.candidates(p, tunnel)
                    .into_iter()
                    .map(|c| (c.id, c.links))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether `tunnel` had a candidate node within `within`.
    fn seen_within(&self, tunnel: Uuid, within: std::time::Duration) -> bool {
        self.recent
            .borrow()
            .get(&tunnel)
            .is_some_and(|t| t.elapsed() <= within)
    }

    /// Notes that `tunnel` has candidate nodes now.
    fn seen(&self, tunnel: Uuid) {
        let mut recent = self.recent.borrow_mut();
        if recent.len() >= RECENT_MAX {
            let keep = self.plane.settings.wait;
            recent.retain(|_, t| t.elapsed() <= keep);
        }
        recent.insert(tunnel, Instant::now());
    }

    /// The tunnel's candidates by node, from the current presence view.
    fn candidates(&self, presence: Arc<ClusterPresence>, tunnel: Uuid) -> Vec<Candidate> {
        let cached = self
            .index
            .borrow()
            .as_ref()
            .filter(|(p, _)| Arc::ptr_eq(p, &presence))
            .map(|(_, i)| Rc::clone(i));
        let index = match cached {
            Some(i) => i,
            None => {
                let i = Rc::new(build_index(
                    &presence,
                    &self.plane.node,
                    &self.plane.public_dc,
                ));
                *self.index.borrow_mut() = Some((presence, Rc::clone(&i)));
                i
            }
        };
        index.get(&tunnel).cloned().unwrap_or_default()
    }

    /// A peer link to a node that holds links of `tunnel`, for a stream that has no link on
    /// this node; `exclude`: nodes (and connectors) already tried for this request.
    /// [`Pick::Local`] with the peer link and the node's load; [`Pick::NoConnector`] when no
    /// node has a link of the tunnel; [`Pick::Unreachable`] naming the nodes when some have
    /// but none could be reached or all were tried.
    pub(crate) async fn pick(
        &self,
        registry: &crate::registry::Registry,
        tunnel: Uuid,
        exclude: &[Uuid],
    ) -> Pick {
        let Some(presence) = registry.cluster_presence() else {
            return Pick::NoConnector;
        };
        let mut all = self.candidates(presence, tunnel);
        if all.is_empty() {
            return Pick::NoConnector;
        }
        self.seen(tunnel);
        let tried: Vec<String> = all
            .iter()
            .filter(|c| exclude.contains(&c.id))
            .map(|c| c.node.to_string())
            .collect();
        all.retain(|c| !exclude.contains(&c.id));
        all.shuffle(&mut rand::rng());
        {
            let nodes = self.nodes.borrow();
            let in_flight = |c: &Candidate| nodes.get(&c.node).map_or(0, |n| n.load.outstanding());
            all.sort_by_key(|c| (!c.same_dc, in_flight(c), std::cmp::Reverse(c.links)));
        }
        let mut failed: Vec<String> = tried
            .into_iter()
            .map(|n| format!("node {n}: refused or failed the stream"))
            .collect();
        let metrics = registry.metrics();
        for c in all {
            match self.link_to(&c, metrics).await {
                Ok((link, load)) => {
                    metrics.peer.forwarded.inc();
                    return Pick::Local { link, load };
                }
                Err(reason) => failed.push(format!("node {} at {}: {reason}", c.node, c.addr)),
            }
        }
        Pick::Unreachable(format!(
            "no edge node holding a link of the tunnel could take the request: {}",
            failed.join("; ")
        ))
    }

    /// This worker's usable peer link to `c`, dialed now if there is none.
    async fn link_to(
        &self,
        c: &Candidate,
        metrics: &crate::metrics::Metrics,
    ) -> Result<(Link, Arc<ConnectorLoad>), String> {
        let now = Instant::now();
        let dial = {
            let mut nodes = self.nodes.borrow_mut();
            let n = nodes.entry(Rc::clone(&c.node)).or_insert_with(|| {
                let load = Arc::new(ConnectorLoad::new(c.id, Uuid::nil(), 1));
                // The drain waits for the streams forwarded through it.
                self.plane.track(&load);
                PeerNode {
                    link: None,
                    dialing: None,
                    load,
                    breaker: Breaker::default(),
                    generation: 0,
                }
            });
            if let Some((_, link)) = &n.link
                && link.can_open()
            {
                return Ok((link.clone(), Arc::clone(&n.load)));
            }
            if !n.breaker.allows(now) {
                metrics.limits.hit(Limit::PeerBreakerOpen, &c.node);
                return Err("skipped: its circuit breaker is open after repeated failures".into());
            }
            match &n.dialing {
                Some(d) => d.clone(),
                None => {
                    let d = dial(
                        c.addr,
                        Rc::clone(&c.node),
                        Arc::clone(&self.plane.tls.client),
                        self.plane.settings.connect_timeout,
                    )
                    .boxed_local()
                    .shared();
                    n.dialing = Some(d.clone());
                    d
                }
            }
        };
        let result = dial.await;
        let mut nodes = self.nodes.borrow_mut();
        let Some(n) = nodes.get_mut(&c.node) else {
            return Err("forgotten while dialing".into());
        };
        // The first of the requests that waited on this dial records its outcome.
        if n.dialing.take().is_some() {
            match &result {
                Ok(link) => {
                    n.breaker.success();
                    n.generation += 1;
                    n.link = Some((n.generation, link.clone()));
                    metrics.peer.links.inc();
                    tracing::debug!(node = %c.node, addr = %c.addr, "peer link up");
                    self.watch(link.clone(), Rc::clone(&c.node), n.generation);
                }
                Err((reason, detail)) => {
                    metrics.peer.failure(reason);
                    if *reason == "connect_timeout" {
                        metrics.limits.hit(Limit::PeerConnectTimeout, &c.addr);
                    } else {
                        tracing::debug!(node = %c.node, addr = %c.addr, reason, detail, "cannot reach a peer node");
                    }
                    let s = &self.plane.settings;
                    if n.breaker
                        .failure(Instant::now(), s.breaker_failures, s.breaker_cooldown)
                    {
                        metrics.peer.breaker_opened.inc();
                        tracing::debug!(node = %c.node, "peer node breaker opened");
                    }
                }
            }
        }
        match result {
            Ok(link) => Ok((link, Arc::clone(&n.load))),
            Err((_, detail)) => Err(detail),
        }
    }

    /// Forgets a peer link once it has closed (a failure of the node unless this worker
    /// closed it).
    fn watch(&self, link: Link, node: Rc<str>, generation: u64) {
        let nodes = Rc::clone(&self.nodes);
        let plane = Arc::clone(&self.plane);
        compio::runtime::spawn(async move {
            let why = link.closed().await;
            plane.metrics.peer.links.dec();
            let mut nodes = nodes.borrow_mut();
            if let Some(n) = nodes.get_mut(&node)
                && n.link.as_ref().is_some_and(|(g, _)| *g == generation)
            {
                n.link = None;
                if !plane.is_stopping() {
                    plane.metrics.peer.failure("link_lost");
                    let s = &plane.settings;
                    if n.breaker
                        .failure(Instant::now(), s.breaker_failures, s.breaker_cooldown)
                    {
                        plane.metrics.peer.breaker_opened.inc();
                    }
                    tracing::debug!(node = %node, reason = %why, "peer link lost");
                }
            }
        })
        .detach();
    }

    /// Closes every peer link this worker dialed (shutdown).
    pub(crate) fn close_all(&self) {
        let links: Vec<Link> = self
            .nodes
            .borrow()
            .values()
            .filter_map(|n| n.link.as_ref().map(|(_, l)| l.clone()))
            .collect();
        for l in links {
            l.close(ErrorCode::NO_ERROR);
        }
    }
}

/// Dials `node` at `addr`: TCP, then TLS with this node's certificate, expecting the node's
/// own name; then the link, as its client (the dialer opens the streams).
async fn dial(
    addr: SocketAddr,
    node: Rc<str>,
    tls: Arc<rustls::ClientConfig>,
    timeout: std::time::Duration,
) -> Result<Link, DialError> {
    let connect = async {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| ("connect", format!("connect: {e}")))?;
        if let Err(e) = tune_stream(&tcp, &SocketTuning::default()) {
            tracing::debug!(error = %e, "cannot tune a peer link socket");
        }
        TlsStream::connect(tcp, tls, &node_name(&node))
            .await
            .map_err(|e| ("tls", format!("tls: {e}")))
    };
    match compio::time::timeout(timeout, connect).await {
        Ok(Ok(tls)) => {
            // Only the dialer opens streams on a peer link.
            let config = ringtun_core::mux::Config {
                peer_opens_streams: false,
                ..tunnel_link_config()
            };
            Ok(Link::spawn(tls, Role::Client, config))
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err((
            "connect_timeout",
            format!("no TLS connection within {timeout:?} (--peer-connect-timeout-ms)"),
        )),
    }
}

/// Every tunnel's candidates: the nodes other than `me` with a record that names a peer
/// address and at least one link of the tunnel.
fn build_index(presence: &ClusterPresence, me: &str, public_dc: &str) -> Index {
    let mut counts: HashMap<(Uuid, &str), usize> = HashMap::new();
    for l in &presence.links {
        if l.node != me {
            *counts.entry((l.tunnel, l.node.as_str())).or_default() += 1;
        }
    }
    // Each node's record, decoded once: a candidate with its link count still to fill in.
    let mut records: HashMap<&str, Option<Candidate>> = HashMap::new();
    let mut index = Index::new();
    for ((tunnel, node), links) in counts {
        let record = records.entry(node).or_insert_with(|| {
            let id = Uuid::parse_str(node).ok()?;
            let r = NodeRecord::decode(presence.nodes.get(node)?)?;
            Some(Candidate {
                node: Rc::from(node),
                id,
                addr: r.peer?,
                same_dc: r.data_center == public_dc,
                links: 0,
            })
        });
        if let Some(c) = record {
            index
                .entry(tunnel)
                .or_default()
                .push(Candidate { links, ..c.clone() });
        }
    }
    index
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterLink;

    #[test]
    fn the_index_names_other_nodes_with_a_peer_address_and_counts_their_links() {
        let (me, a, b, old) = (
            Uuid::new_v4().to_string(),
            Uuid::new_v4().to_string(),
            Uuid::new_v4().to_string(),
            Uuid::new_v4().to_string(),
        );
        let t = Uuid::new_v4();
        let mut p = ClusterPresence::default();
        let record = |dc: &str, peer: Option<&str>| match peer {
            Some(peer) => format!(r#"{{"data_center":"{dc}","admin":"x","peer":"{peer}"}}"#),
            None => format!(r#"{{"data_center":"{dc}","admin":"x"}}"#),
        };
        p.nodes
            .insert(me.clone(), record("dfw", Some("127.0.0.1:1")));
        p.nodes
            .insert(a.clone(), record("dfw", Some("127.0.0.1:2")));
        p.nodes
            .insert(b.clone(), record("mci", Some("127.0.0.1:3")));
        // A record without a peer address (an older edge): never a candidate.
        p.nodes.insert(old.clone(), record("dfw", None));
        for (node, n) in [(&me, 1), (&a, 1), (&b, 2), (&old, 1)] {
            for i in 0..n {
                p.links.push(ClusterLink {
                    tunnel: t,
                    node: node.clone(),
                    link: format!("c.{i}"),
                    value: "{}".into(),
                });
            }
        }
        let index = build_index(&p, &me, "dfw");
        let mut got: Vec<(String, bool, usize)> = index[&t]
            .iter()
            .map(|c| (c.node.to_string(), c.same_dc, c.links))
            .collect();
        got.sort();
        let mut want = vec![(a.clone(), true, 1), (b.clone(), false, 2)];
        want.sort();
        assert_eq!(got, want);
    }
}
