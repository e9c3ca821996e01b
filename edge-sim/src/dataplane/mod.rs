//! The data plane: link servers, public HTTP and public TCP on `core::rt` workers.
//!
//! # Threads
//! [`DataPlane::start`] starts one `core::rt` worker per core (`--workers N`). Every listener
//! (each edge server address, the public HTTP address, each TCP route port) is bound with
//! `SO_REUSEPORT` once per worker, so a connection is served on the worker that accepted it.
//! Only those workers share it: an address some other socket listens on (another process, or
//! another listener of this edge) is refused (`ringtun_core::rt::net::ListenerSet::bind`). A TCP
//! route's listeners are bound when the route is created, through [`SharedState`]'s
//! [`TcpPorts`](crate::registry::TcpPorts), so a port that cannot be listened on fails the admin
//! request instead of being stored.
//!
//! # Links and replica choice
//! A [`Link`](ringtun_core::link::Link) is `Rc`-based: it lives on one worker, in that
//! worker's `worker::Worker` (live links per connector). Which worker is decided once, when
//! the link has registered: `placement` spreads each connector's links over the workers (a
//! link accepted elsewhere moves there once, before it carries a stream), so with at least as
//! many links per connector as workers every worker serves the tunnel's requests itself. What
//! the replica choice needs across workers sits in one [`lb::ConnectorLoad`] per connector, an
//! `Arc` of atomics (outstanding streams, choices served, draining, live links per worker), in
//! the `lb::LoadTable`: control-plane state behind a `Mutex` with an atomic version, so a
//! worker checks the version per request (one atomic load) and only takes the lock to refresh
//! its snapshot when connectors came or went.
//!
//! Choosing a replica ([`lb`]): the candidates are the tunnel's connectors with a live link
//! that are not draining (a connector drains from the first GOAWAY it sends on any link, see
//! [`link_server`]); standby connectors only when no active one is left (both fleet-wide). The
//! tunnel's policy (from the route-table snapshot, else `--lb`, p2c by default) chooses among
//! them. When the chosen connector has no link **on this worker**, the public connection is
//! handed to a worker that has one (the socket is duplicated, and the already read bytes
//! travel with it through that worker's mailbox), with the choice, which that worker does not
//! make again. A connection moves at most twice (`http/retry.rs`: once for the first choice,
//! once more for a retry after a refusal). An HTTP/2 connection never moves (its streams may go
//! to different tunnels): a stream of it whose tunnel has links only on another worker is
//! opened and carried by that worker (`bridge`).
//!
//! # Shutdown
//! [`DataPlane::drain`] (SIGTERM/SIGINT, then [`DataPlane::stop`]): every connector is marked
//! draining so no worker opens a new stream, each worker shuts its listening sockets down (the
//! kernel refuses new public connections and links) and sends the two-phase DRAIN GOAWAY on
//! each of its links (`docs/protocol.md` §7, §9); the streams in flight finish and the links
//! close, or `--grace-period` ends first and `stop` closes what is left.
//!
//! A node of a cluster (with etcd) drains **make before break** (`docs/cluster.md`, "Stopping
//! a node"): its links get a drain notice instead (`docs/protocol.md` §7.1) and keep carrying
//! new streams, its own and those forwarded from other nodes (the peer listener stays open),
//! while each connector sets up a replacement on another node and then drains the old link
//! itself. Only when the links are gone, or half the grace period is over, are the connectors
//! marked draining and what is left drained as above. The drain waits for the streams this
//! node forwarded to other nodes as for its own, then the peer listener closes and the peer
//! links drain; `stop` then revokes the presence lease.
//!
//! # Layout
//! - [`link_server`]: TLS, registration handshake under a deadline, `Link::spawn`, unregistration.
//! - `placement`: which worker serves each link.
//! - [`lb`]: replica choice: per-connector load, the load table, the policies, and whether
//!   this worker or another opens the stream.
//! - [`worker`]: per-worker state: live links, snapshots of routes and connectors, hand-off.
//! - [`http`]: public HTTP/1.1, over plain TCP or TLS (`client_io`: the client
//!   stream it is generic over).
//! - `h2`: public HTTP/2 (h2c prior knowledge on the public HTTP listener, TLS with
//!   ALPN `h2` on `--public-https`), and the HTTPS listener that sends `http/1.1` to [`http`].
//! - `bridge`: a tunnel stream opened and carried by another worker, which holds a link of its
//!   tunnel, for an HTTP/2 stream (or a stream forwarded from another node) on a worker that
//!   holds none.
//! - `open`, `retry`: one attempt at opening a request's stream, and the retry decision (both
//!   HTTP versions).
//! - [`tcp`]: the public TCP route listeners.
//! - [`limits`]: concurrent connections per client IP, concurrent streams per tunnel.
//! - `watchdog`: the deadlines of public connections (slow clients, write timeout, idle pipes).
//! - `pipe`: raw bytes both ways between a public socket and a stream (upgrades, TCP routes).
//! - [`faults`]: edge servers and data centers taken down and up (fault injection).

pub(crate) mod bridge;
mod client_io;
pub mod faults;
mod h2;
pub mod http;
pub mod lb;
pub mod limits;
pub mod link_server;
mod open;
mod pipe;
mod placement;
mod retry;
pub mod tcp;
mod watchdog;
pub mod worker;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ringtun_core::rt::net::{DEFAULT_BACKLOG, ListenerSet};
use ringtun_core::rt::{Runtime, RuntimeConfig, WorkerCtx};
use rustls::ServerConfig;

use crate::error::{Error, Result};
use crate::registry::{LiveLoads, Registry};
use crate::settings::{LbPolicy, Settings};
use crate::state_dir::TlsMaterial;

/// One edge server: where it listens and which data center it belongs to.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    /// Data center name.
    pub data_center: String,
    /// The bound address (real port when `:0` was configured).
    pub addr: SocketAddr,
}

/// A control message between workers.
#[derive(Debug)]
pub enum WorkerMsg {
    /// A public connection handed over by a worker without a link of its tunnel.
    Handoff(worker::Handoff),
    /// A registered link seated on this worker by another that accepted it.
    Link(Box<link_server::MovedLink>),
    /// A stream to open and carry on a link of this worker for a worker that holds none of
    /// its tunnel (see `bridge`).
    Bridge(Box<bridge::Request>),
}

/// The data plane's state every worker shares: settings, registry, TLS, limits, the load
/// table, link placement and the TCP-route listeners (read-mostly; no lock on the request
/// path).
#[derive(Debug)]
pub struct SharedState {
    pub(crate) registry: Arc<Registry>,
    pub(crate) policy: LbPolicy,
    /// The data center of the public listeners (`same-dc-first`).
    pub(crate) public_dc: String,
    pub(crate) tls: Option<Arc<ServerConfig>>,
    pub(crate) workers: usize,
    pub(crate) faults: Arc<faults::Faults>,
    pub(crate) request_body_timeout: std::time::Duration,
    /// Write, body-rate and idle limits of public connections.
    pub(crate) limits: crate::settings::PublicLimits,
    /// Public connections per client IP.
    pub(crate) clients: Arc<limits::ClientConns>,
    /// Streams per tunnel at the edge.
    pub(crate) tunnel_streams: limits::TunnelStreams,
    /// Link handshakes in progress, on every worker (see [`link_server`]).
    pub(crate) pending_handshakes: std::sync::atomic::AtomicUsize,
    /// `--max-pending-handshakes`.
    pub(crate) max_pending_handshakes: usize,
    /// `--handshake-timeout`.
    pub(crate) handshake_timeout: std::time::Duration,
    /// `--grace-period`: how long a replaced or draining link's streams may take to finish.
    pub(crate) grace: std::time::Duration,
    /// Triggered when the edge starts its graceful shutdown ([`DataPlane::drain`]).
    pub(crate) draining: ringtun_core::rt::Shutdown,
    /// Triggered when the links themselves drain (two-phase GOAWAY): with `draining` on one
    /// node, after the move period in a cluster (see [`links`]).
    pub(crate) links_draining: ringtun_core::rt::Shutdown,
    /// Triggered at the end of a cluster node's drain: the peer listener closes and the peer
    /// links accepted from other nodes drain.
    pub(crate) peers_closing: ringtun_core::rt::Shutdown,
    /// Which worker serves each link (see [`placement`]).
    pub(crate) placement: Arc<placement::Placement>,
    /// Every live connector's load, which the replica choice reads (see [`lb`]).
    pub(crate) loads: Arc<lb::LoadTable>,
    /// The limits of public HTTP/2 connections.
    pub(crate) h2: crate::settings::H2Settings,
    /// The listeners of TCP routes, one set (one socket per worker) per port.
    tcp_listeners: Mutex<HashMap<u16, Arc<ListenerSet>>>,
    /// The IP TCP routes listen on (`--public-tcp-ip`).
    tcp_ip: std::net::IpAddr,
    /// Peer links to and from the other nodes (with etcd; see [`crate::peer`]).
    pub(crate) peers: Option<Arc<crate::peer::PeerPlane>>,
}

impl SharedState {
    /// Whether the edge is shutting down (accept loops end instead of retrying).
    pub(crate) fn is_draining(&self) -> bool {
        self.draining.is_triggered()
    }

    /// The listeners of a TCP route's port, bound now if they are not yet.
    pub(crate) fn tcp_listeners(&self, port: u16) -> std::result::Result<Arc<ListenerSet>, String> {
        let mut sets = self.tcp_listeners.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(set) = sets.get(&port) {
            return Ok(Arc::clone(set));
        }
        if self.is_draining() {
            return Err("the edge is shutting down".to_owned());
        }
        let addr = SocketAddr::from((self.tcp_ip, port));
        let set = Arc::new(
            ListenerSet::bind(addr, self.workers, DEFAULT_BACKLOG).map_err(|e| e.to_string())?,
        );
        sets.insert(port, Arc::clone(&set));
        Ok(set)
    }
}

impl crate::registry::TcpPorts for SharedState {
    fn open(&self, port: u16) -> std::result::Result<(), String> {
        self.tcp_listeners(port).map(drop)
    }

    fn close(&self, port: u16) {
        let set = self
            .tcp_listeners
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&port);
        if let Some(set) = set {
            set.shut_down();
        }
    }
}

/// The running data plane. Dropping it stops the workers.
#[derive(Debug)]
pub struct DataPlane {
    plane: Arc<SharedState>,
    runtime: Option<Runtime<()>>,
    servers: Vec<ServerInfo>,
    public_http: SocketAddr,
    public_https: Option<SocketAddr>,
    faults: Arc<faults::Faults>,
}

impl DataPlane {
    /// Binds every listener and starts the workers.
    pub fn start(settings: &Settings, registry: Arc<Registry>, tls: &TlsMaterial) -> Result<Self> {
        let material = tls;
        let config = RuntimeConfig {
            workers: settings.workers,
            ..RuntimeConfig::from_env()?
        };
        let n = config.resolved_workers()?;
        let tls = if settings.danger_plaintext_links {
            tracing::warn!(
                "DANGER: links run WITHOUT TLS (--danger-plaintext-links); anyone on the path can read and forge tunnel traffic; benchmarks only"
            );
            None
        } else {
            Some(
                ringtun_core::tls::server_config(
                    tls.cert_chain_der.clone(),
                    tls.key_der.clone_key(),
                )
                .map_err(Error::TlsConfig)?,
            )
        };
        let bind = |what: &'static str, addr: SocketAddr| {
            ListenerSet::bind(addr, n, DEFAULT_BACKLOG).map_err(|e| Error::Bind {
                what,
                addr,
                reason: e.to_string(),
            })
        };
        let mut servers = Vec::new();
        let mut server_sets = Vec::new();
        for dc in &settings.data_centers {
            for addr in &dc.servers {
                let set = bind("edge server", *addr)?;
                let info = ServerInfo {
                    data_center: dc.name.clone(),
                    addr: set.local_addr(),
                };
                tracing::info!(data_center = %info.data_center, server = %info.addr, "edge server listening");
                servers.push(info.clone());
                server_sets.push((info, set));
            }
        }
        let http_set = bind("public HTTP", settings.public_http)?;
        let public_http = http_set.local_addr();
        tracing::info!(public_http = %public_http, "public HTTP listening");
        let https = match settings.h2.public_https {
            Some(addr) => {
                let config = h2::tls::server_config(&settings.h2, material)?;
                let set = bind("public HTTPS", addr)?;
                tracing::info!(public_https = %set.local_addr(), "public HTTPS listening (HTTP/2)");
                Some((Arc::new(set), config))
            }
            None => None,
        };
        let public_https = https.as_ref().map(|(set, _)| set.local_addr());
        let peers = crate::peer::PeerPlane::start(
            &settings.peer,
            &registry,
            &settings.public_dc,
            servers
                .first()
                .map_or(settings.public_http.ip(), |s| s.addr.ip()),
            n,
        )?
        .map(Arc::new);
        let faults = Arc::new(faults::Faults::new(
            &servers,
            Arc::clone(registry.metrics()),
        ));
        let plane = Arc::new(SharedState {
            faults: Arc::clone(&faults),
            request_body_timeout: settings.request_body_timeout,
            limits: settings.public_limits.clone(),
            clients: Arc::new(limits::ClientConns::new(
                settings.public_limits.max_connections_per_ip,
            )),
            tunnel_streams: limits::TunnelStreams::new(settings.public_limits.tunnel_stream_limit),
            pending_handshakes: std::sync::atomic::AtomicUsize::new(0),
            max_pending_handshakes: settings.max_pending_handshakes,
            handshake_timeout: settings.handshake_timeout,
            grace: settings.grace_period,
            draining: ringtun_core::rt::Shutdown::new(),
            links_draining: ringtun_core::rt::Shutdown::new(),
            peers_closing: ringtun_core::rt::Shutdown::new(),
            registry,
            policy: settings.lb,
            public_dc: settings.public_dc.clone(),
            tls,
            workers: n,
            placement: Arc::new(placement::Placement::new(n)),
            loads: Arc::new(lb::LoadTable::new(n)),
            h2: settings.h2.clone(),
            tcp_listeners: Mutex::new(HashMap::new()),
            tcp_ip: settings.public_tcp_ip,
            peers,
        });
        let live: std::sync::Weak<dyn LiveLoads> = Arc::downgrade(&plane.loads) as _;
        plane.registry.set_live_loads(live);
        let ports: std::sync::Weak<dyn crate::registry::TcpPorts> = Arc::downgrade(&plane) as _;
        plane.registry.set_tcp_ports(ports);
        let server_sets = Arc::new(server_sets);
        let http_set = Arc::new(http_set);
        let shared = Arc::clone(&plane);
        let runtime = Runtime::start(config, move |ctx: WorkerCtx<WorkerMsg>| {
            let plane = Arc::clone(&shared);
            let server_sets = Arc::clone(&server_sets);
            let http_set = Arc::clone(&http_set);
            let https = https.clone();
            async move {
                worker::run(ctx, plane, &server_sets, &http_set, https).await;
            }
        })?;
        Ok(DataPlane {
            plane,
            runtime: Some(runtime),
            servers,
            public_http,
            public_https,
            faults,
        })
    }

    /// The fault injection state (admin API `/faults`).
    pub fn faults(&self) -> &Arc<faults::Faults> {
        &self.faults
    }

    /// The edge servers with their bound addresses.
    pub fn servers(&self) -> &[ServerInfo] {
        &self.servers
    }

    /// The bound public HTTP address.
    pub fn public_http(&self) -> SocketAddr {
        self.public_http
    }

    /// The address the other nodes dial for peer links (with etcd).
    pub fn peer_addr(&self) -> Option<SocketAddr> {
        self.plane.peers.as_ref().map(|p| p.advertised)
    }

    /// The bound public HTTPS address, when `--public-https` was given.
    pub fn public_https(&self) -> Option<SocketAddr> {
        self.public_https
    }

    /// The graceful half of shutdown: stops accepting public connections and links, sends the
    /// two-phase DRAIN GOAWAY on every link (`docs/protocol.md` §9) and opens no new stream,
    /// then waits until every stream in flight has finished and every link has closed, or
    /// `grace` is over. [`DataPlane::stop`] then closes what is left.
    ///
    /// In a cluster the links first get a drain notice and keep serving while their
    /// connectors move them to other nodes (for at most `moving`, `--peer-move-period-ms`; see
    /// the module doc), and the streams forwarded to other nodes are waited for too.
    pub fn drain(&self, grace: std::time::Duration, moving: std::time::Duration) {
        let start = std::time::Instant::now();
        let clustered = self.plane.peers.is_some();
        let drain_links = || {
            self.plane.loads.stop_new_streams();
            self.plane.links_draining.trigger();
        };
        if !clustered {
            drain_links();
        }
        self.plane.draining.trigger();
        let (streams, links) = self.plane.loads.in_flight();
        tracing::info!(
            streams,
            links,
            grace_secs = grace.as_secs(),
            make_before_break = clustered,
            "draining: no new connections, links drain"
        );
        if clustered {
            let links = || self.plane.loads.in_flight().1;
            if poll_until(start, moving.min(grace), || links() == 0) {
                tracing::info!(
                    elapsed_ms = start.elapsed().as_millis() as u64,
                    "every connector moved its links to other nodes"
                );
            } else {
                tracing::warn!(
                    links = links(),
                    "connectors did not move every link to another node within the move period (--peer-move-period-ms); draining them"
                );
            }
            drain_links();
        }
        let left = || {
            let (streams, links) = self.plane.loads.in_flight();
            let forwarded = self.plane.peers.as_ref().map_or(0, |p| p.in_flight());
            (streams, links, forwarded)
        };
        if poll_until(start, grace, || left() == (0, 0, 0)) {
            tracing::info!(elapsed_ms = start.elapsed().as_millis() as u64, "drained");
        } else {
            let (streams, links, forwarded) = left();
            tracing::warn!(
                streams,
                links,
                forwarded,
                "grace period over; closing what is left"
            );
        }
        self.plane.peers_closing.trigger();
    }

    /// Stops the workers and waits for them.
    pub fn stop(&mut self) {
        if let Some(peers) = &self.plane.peers {
            peers.stop();
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown();
            for r in rt.join() {
                if let Err(e) = r {
                    tracing::warn!(error = %e, "data-plane worker ended with an error");
                }
            }
        }
    }
}

impl Drop for DataPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Checks `done` every 20 ms until it holds (`true`) or `limit` has passed since `start`
/// (`false`). Blocking, as the drain is: it runs on the thread that stops the edge, never on a
/// worker.
fn poll_until(
    start: std::time::Instant,
    limit: std::time::Duration,
    mut done: impl FnMut() -> bool,
) -> bool {
    loop {
        if done() {
            return true;
        }
        if start.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}
