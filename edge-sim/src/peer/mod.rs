//! Forwarding between edge nodes over peer links.
//!
//! With `--etcd`, several nodes share the registry and each other's presence (which node holds
//! which links, see [`crate::cluster`]). A public request that arrives on a node with no link
//! of its tunnel is forwarded to a node that has one, over a **peer link**: a persistent,
//! mutually authenticated TLS connection carrying the same mux protocol as connector links
//! (`core::link`).
//!
//! - **Trust.** Every node listens for peers (`--peer-listen`) and announces the address in its
//!   `nodes/{node}` record. Both ends of a peer link present a certificate signed by the
//!   cluster CA that etcd holds ([`crate::cluster::ClusterCa`]), for the name
//!   `{node}.node.ringtun`, and verify the other's against that CA only; the dialer also checks
//!   that the name is the node it meant to reach. Anything else is refused at the TLS handshake
//!   (`ringtun_edge_peer_rejected_total`, one debug line each).
//! - **Who dials.** The edge is thread-per-core and a link lives on one worker: each worker
//!   dials its own peer link to a node the first time it forwards there, and keeps it. The
//!   accepting node serves the link on the worker that accepted it (`SO_REUSEPORT`).
//! - **Choosing a node** (`client`): the nodes whose presence shows a link of the tunnel, this
//!   node and the ones already tried left out, those whose breaker is open skipped; same data
//!   center first, then the fewest streams this worker has in flight to it, then the most
//!   links. The peer link is handed to the public path as if it were a local link, so the
//!   public path's own retry loop (`dataplane/retry.rs`) moves a request that was refused before any byte
//!   reached the origin to the next node.
//! - **Serving** (`server`): the receiving node finds the tunnel from the stream's OPEN
//!   metadata (the `Host` of an HTTP request, the port of a TCP route) in its own routes and
//!   opens the stream on one of **its own** links on that worker; it never forwards again
//!   (streams that arrive on a peer link never reach the forwarding path). When that worker
//!   holds no link of the tunnel, the stream is refused (`REFUSED_STREAM`) before any byte, so
//!   the sender tries its next candidate.
//! - **Waiting for the view** (`client`): when every node holding a link of the tunnel failed
//!   or refused the stream (before any byte reached an origin), or the tunnel's links just left
//!   the view, the request waits up to `--peer-wait-ms` for the presence view to change (a
//!   connector's link moving between nodes: the old node's key goes, the new one's comes) or a
//!   link of the tunnel to appear on this node, then tries again, instead of answering 502 or
//!   503 at once (`limit_hits_total{reason="peer_wait"}` when the wait ends with nothing).
//! - **Drain** (`dataplane/link_server/draining.rs`): a draining node waits for the streams it
//!   forwarded to other nodes ([`PeerPlane::in_flight`]) as for its own.
//! - **Breaker** (`breaker`): after `--peer-breaker-failures` consecutive failures to reach a
//!   node (connect, TLS, the peer link lost), a worker skips it for
//!   `--peer-breaker-cooldown-ms`, then tries it again.
//!
//! # Layout
//! - this file: the flags and validated settings.
//! - `tls`: the node certificate and the rustls configurations of both ends.
//! - `breaker`: the per-node circuit breaker (no IO, no clock of its own).
//! - `client`: per worker: choosing a node, dialing it, the peer links to reuse.
//! - `server`: the peer listener and serving forwarded streams.
//! - `metrics`: the `ringtun_edge_peer_*` counters.

pub(crate) mod breaker;
pub(crate) mod client;
pub mod metrics;
pub(crate) mod server;
pub(crate) mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ringtun_core::rt::net::{DEFAULT_BACKLOG, ListenerSet};

use crate::error::{Error, Result};
use crate::metrics::Metrics;

pub use metrics::PeerMetrics;

/// What every worker shares of peer links: this node's identity and TLS, the listener, the
/// settings.
#[derive(Debug)]
pub(crate) struct PeerPlane {
    /// This node's ID (`nodes/{node}`).
    pub(crate) node: String,
    /// The data center of this node's public listeners (candidates there come first).
    pub(crate) public_dc: String,
    pub(crate) tls: tls::PeerTls,
    pub(crate) settings: PeerSettings,
    /// The peer listener, one socket per worker.
    pub(crate) listeners: ListenerSet,
    /// The address the other nodes dial (announced in this node's record).
    pub(crate) advertised: SocketAddr,
    pub(crate) metrics: Arc<Metrics>,
    stopping: AtomicBool,
    /// Every worker's per-node loads (streams in flight to each node), for the drain.
    loads: std::sync::Mutex<Vec<Arc<crate::dataplane::lb::ConnectorLoad>>>,
    start: Instant,
    /// Milliseconds since `start` of the last warning about a refused peer, plus one.
    last_reject_log: AtomicU64,
}

impl PeerPlane {
    /// Issues this node's certificate from the cluster CA and binds the peer listener;
    /// `None` without etcd (one node: nothing to forward to). `default_ip`: the listener's IP
    /// when `--peer-listen` is not given (the first edge server's).
    pub(crate) fn start(
        settings: &PeerSettings,
        registry: &crate::registry::Registry,
        public_dc: &str,
        default_ip: std::net::IpAddr,
        workers: usize,
    ) -> Result<Option<PeerPlane>> {
        let (Some(ca), Some(node)) = (registry.cluster_ca(), registry.node_id()) else {
            return Ok(None);
        };
        let tls = tls::PeerTls::new(&ca, node)?;
        let listen = settings
            .listen
            .unwrap_or_else(|| SocketAddr::new(default_ip, 0));
        let listeners =
            ListenerSet::bind(listen, workers, DEFAULT_BACKLOG).map_err(|e| Error::Bind {
                what: "peer links",
                addr: listen,
                reason: e.to_string(),
            })?;
        let bound = listeners.local_addr();
        let advertised = match settings.advertise {
            Some(a) => a,
            None if bound.ip().is_unspecified() => {
                return Err(Error::Config(format!(
                    "--peer-listen {bound} is a wildcard address: give --peer-advertise, the address the other nodes dial"
                )));
            }
            None => bound,
        };
        tracing::info!(peer = %bound, advertised = %advertised, "peer links listening");
        Ok(Some(PeerPlane {
            node: node.to_owned(),
            public_dc: public_dc.to_owned(),
            tls,
            settings: settings.clone(),
            listeners,
            advertised,
            metrics: Arc::clone(registry.metrics()),
            stopping: AtomicBool::new(false),
            loads: std::sync::Mutex::new(Vec::new()),
            start: Instant::now(),
            last_reject_log: AtomicU64::new(0),
        }))
    }

    /// The edge is stopping: links that close now are not failures of their nodes.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
        self.listeners.shut_down();
    }

    /// Counts the streams to a node that a worker sends through `load` in [`Self::in_flight`].
    pub(crate) fn track(&self, load: &Arc<crate::dataplane::lb::ConnectorLoad>) {
        self.loads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Arc::clone(load));
    }

    /// Streams this node forwarded to other nodes that are still in flight, on every worker.
    pub(crate) fn in_flight(&self) -> usize {
        self.loads
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|l| l.outstanding())
            .sum()
    }

    pub(crate) fn is_stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    /// Counts a peer connection the listener refused, and warns at most once per
    /// [`crate::limit::LOG_INTERVAL`].
    pub(crate) fn rejected(&self, reason: &'static str, peer: SocketAddr, detail: &str) {
        self.metrics.peer.rejected(reason);
        tracing::debug!(%peer, reason, detail, "peer connection refused");
        let now = u64::try_from(self.start.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last_reject_log.load(Ordering::Relaxed);
        let interval = u64::try_from(crate::limit::LOG_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if (last == 0 || now.saturating_sub(last) >= interval)
            && self
                .last_reject_log
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                %peer,
                reason,
                detail,
                "peer connection refused: not a node of this cluster (its certificate must be signed by the cluster CA in etcd); see ringtun_edge_peer_rejected_total"
            );
        }
    }
}

/// Default bound on dialing a peer node, TCP and TLS (`--peer-connect-timeout-ms`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Default consecutive failures that open a node's breaker (`--peer-breaker-failures`).
pub const DEFAULT_BREAKER_FAILURES: u32 = 3;
/// Default time a node is skipped once its breaker opened (`--peer-breaker-cooldown-ms`).
pub const DEFAULT_BREAKER_COOLDOWN: Duration = Duration::from_secs(5);
/// Default bound on waiting for the presence view to change when no node could take a
/// request (`--peer-wait-ms`).
pub const DEFAULT_WAIT: Duration = Duration::from_secs(2);

/// The flags of peer links (flattened into the binary's command line).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct PeerFlags {
    /// Where this node accepts peer links from the other nodes (with --etcd) [default: the
    /// first edge server's IP, a free port].
    #[arg(long, value_name = "ADDR")]
    pub peer_listen: Option<SocketAddr>,
    /// The peer address the other nodes dial, when it differs from --peer-listen (NAT, or a
    /// wildcard listen address) [default: the bound --peer-listen address].
    #[arg(long, value_name = "ADDR")]
    pub peer_advertise: Option<SocketAddr>,
    /// Milliseconds dialing a peer node (TCP and TLS) may take before the next node is tried
    /// [default: 2000].
    #[arg(long, value_name = "MS")]
    pub peer_connect_timeout_ms: Option<u64>,
    /// Consecutive failures to reach a peer node after which it is skipped for a while
    /// [default: 3].
    #[arg(long, value_name = "N")]
    pub peer_breaker_failures: Option<u32>,
    /// Milliseconds a peer node is skipped once its breaker opened [default: 5000].
    #[arg(long, value_name = "MS")]
    pub peer_breaker_cooldown_ms: Option<u64>,
    /// Milliseconds a request waits for the cluster's presence view to change (a link moving
    /// between nodes) when no node holding a link of its tunnel could take it, before the 502
    /// or 503; 0 answers at once [default: 2000].
    #[arg(long, value_name = "MS")]
    pub peer_wait_ms: Option<u64>,
    /// Milliseconds a stopping node gives its connectors to move their links to other nodes
    /// (its links keep serving meanwhile) before it drains what is left; capped at
    /// `--grace-period` [default: half of `--grace-period`].
    #[arg(long, value_name = "MS")]
    pub peer_move_period_ms: Option<u64>,
}

/// Validated peer-link settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSettings {
    /// `--peer-listen`; `None`: the first edge server's IP, port 0.
    pub listen: Option<SocketAddr>,
    /// `--peer-advertise`; `None`: the bound listen address.
    pub advertise: Option<SocketAddr>,
    /// `--peer-connect-timeout-ms`.
    pub connect_timeout: Duration,
    /// `--peer-breaker-failures` (at least 1).
    pub breaker_failures: u32,
    /// `--peer-breaker-cooldown-ms`.
    pub breaker_cooldown: Duration,
    /// `--peer-wait-ms`.
    pub wait: Duration,
    /// `--peer-move-period-ms`; `None`: half the grace period.
    pub move_period: Option<Duration>,
}

impl Default for PeerSettings {
    fn default() -> Self {
        PeerSettings {
            listen: None,
            advertise: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            breaker_failures: DEFAULT_BREAKER_FAILURES,
            breaker_cooldown: DEFAULT_BREAKER_COOLDOWN,
            wait: DEFAULT_WAIT,
            move_period: None,
        }
    }
}

impl PeerSettings {
    /// Validates the flags; `clustered`: `--etcd` was given (peer links exist only then).
    pub fn from_flags(flags: &PeerFlags, clustered: bool) -> Result<PeerSettings> {
        let given = flags.peer_listen.is_some()
            || flags.peer_advertise.is_some()
            || flags.peer_connect_timeout_ms.is_some()
            || flags.peer_breaker_failures.is_some()
            || flags.peer_breaker_cooldown_ms.is_some()
            || flags.peer_wait_ms.is_some()
            || flags.peer_move_period_ms.is_some();
        if given && !clustered {
            return Err(Error::Config(
                "the --peer-* flags need --etcd (peer links join the nodes of a cluster)".into(),
            ));
        }
        if let Some(a) = flags.peer_advertise
            && (a.ip().is_unspecified() || a.port() == 0)
        {
            return Err(Error::Config(format!(
                "--peer-advertise {a} must name a reachable IP and port"
            )));
        }
        let connect_timeout = flags
            .peer_connect_timeout_ms
            .map_or(DEFAULT_CONNECT_TIMEOUT, Duration::from_millis);
        if connect_timeout.is_zero() {
            return Err(Error::Config(
                "--peer-connect-timeout-ms must be at least 1".into(),
            ));
        }
        let breaker_failures = flags
            .peer_breaker_failures
            .unwrap_or(DEFAULT_BREAKER_FAILURES);
        if breaker_failures == 0 {
            return Err(Error::Config(
                "--peer-breaker-failures must be at least 1".into(),
            ));
        }
        Ok(PeerSettings {
            listen: flags.peer_listen,
            advertise: flags.peer_advertise,
            connect_timeout,
            breaker_failures,
            breaker_cooldown: flags
                .peer_breaker_cooldown_ms
                .map_or(DEFAULT_BREAKER_COOLDOWN, Duration::from_millis),
            wait: flags
                .peer_wait_ms
                .map_or(DEFAULT_WAIT, Duration::from_millis),
            move_period: flags.peer_move_period_ms.map(Duration::from_millis),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_move_period_needs_etcd_and_defaults_to_none() {
        let flags = PeerFlags {
            peer_move_period_ms: Some(1500),
            ..PeerFlags::default()
        };
        let err = PeerSettings::from_flags(&flags, false).expect_err("needs --etcd");
        assert!(err.to_string().contains("--etcd"), "{err}");
        let s = PeerSettings::from_flags(&flags, true).expect("valid");
        assert_eq!(s.move_period, Some(Duration::from_millis(1500)));
        let s = PeerSettings::from_flags(&PeerFlags::default(), true).expect("valid");
        assert_eq!(
            s.move_period, None,
            "half the grace period is taken at drain"
        );
    }

    #[test]
    fn peer_flags_need_etcd_and_are_validated() {
        let none = PeerFlags::default();
        assert_eq!(
            PeerSettings::from_flags(&none, false).expect("defaults"),
            PeerSettings::default()
        );
        let listen = PeerFlags {
            peer_listen: Some("127.0.0.1:0".parse().expect("addr")),
            ..PeerFlags::default()
        };
        assert!(PeerSettings::from_flags(&listen, false).is_err());
        assert!(PeerSettings::from_flags(&listen, true).is_ok());
        let zero = PeerFlags {
            peer_breaker_failures: Some(0),
            ..PeerFlags::default()
        };
        assert!(PeerSettings::from_flags(&zero, true).is_err());
        let wildcard = PeerFlags {
            peer_advertise: Some("0.0.0.0:7900".parse().expect("addr")),
            ..PeerFlags::default()
        };
        assert!(PeerSettings::from_flags(&wildcard, true).is_err());
    }
}
