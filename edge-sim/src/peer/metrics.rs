//! The counters of forwarding between nodes, registered under `ringtun_edge_peer_`.
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::metrics::{ReasonLabels, WorkerCounter};

/// What became of a stream that arrived on a peer link (`ringtun_edge_peer_streams_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// Opened on one of this node's links.
    Served,
    /// Refused: this node has no route for its host or port.
    NoRoute,
    /// Refused: this worker holds no link of the tunnel.
    NoLink,
    /// Refused by this node's connector (or its link) before processing.
    Refused,
    /// The OPEN metadata did not decode.
    BadMeta,
}

impl Served {
    /// Every result, in label order.
    pub const ALL: [Served; 5] = [
        Served::Served,
        Served::NoRoute,
        Served::NoLink,
        Served::Refused,
        Served::BadMeta,
    ];

    /// The `result` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Served::Served => "served",
            Served::NoRoute => "no_route",
            Served::NoLink => "no_link",
            Served::Refused => "refused",
            Served::BadMeta => "bad_meta",
        }
    }
}

/// Why reaching a peer node failed (`ringtun_edge_peer_failures_total{reason}`).
pub const FAILURE_REASONS: [&str; 4] = ["connect", "connect_timeout", "tls", "link_lost"];

/// The `ringtun_edge_peer_*` metrics.
#[derive(Debug)]
pub struct PeerMetrics {
    /// Streams opened to another node for a public request or TCP connection
    /// (`ringtun_edge_peer_forwarded_total`).
    pub forwarded: WorkerCounter,
    /// Streams that arrived on a peer link, by result.
    streams: Family<ReasonLabels, WorkerCounter>,
    served: [WorkerCounter; Served::ALL.len()],
    /// Failures to reach a peer node, by reason (one of [`FAILURE_REASONS`]).
    pub failures: Family<ReasonLabels, Counter>,
    /// Peer connections this node's listener refused, by reason (`tls`: not a certificate of
    /// the cluster CA, or no certificate; `timeout`: no handshake in time).
    pub rejected: Family<ReasonLabels, Counter>,
    /// Times a node's breaker opened.
    pub breaker_opened: Counter,
    /// Peer links up now (dialed and accepted).
    pub links: Gauge,
}

impl Default for PeerMetrics {
    fn default() -> Self {
        let streams: Family<ReasonLabels, WorkerCounter> = Family::default();
        let served = Served::ALL.map(|r| {
            streams
                .get_or_create(&ReasonLabels {
                    reason: r.as_str().to_owned(),
                })
                .clone()
        });
        PeerMetrics {
            forwarded: WorkerCounter::default(),
            streams,
            served,
            failures: Family::default(),
            rejected: Family::default(),
            breaker_opened: Counter::default(),
            links: Gauge::default(),
        }
    }
}

impl PeerMetrics {
    /// Counts one stream that arrived on a peer link.
    pub fn served(&self, result: Served) {
        let i = Served::ALL.iter().position(|r| *r == result).unwrap_or(0);
        self.served[i].inc();
    }

    /// Streams that arrived on a peer link with `result` so far.
    pub fn served_count(&self, result: Served) -> u64 {
        let i = Served::ALL.iter().position(|r| *r == result).unwrap_or(0);
        self.served[i].get()
    }

    /// Counts one failure to reach a peer node.
    pub fn failure(&self, reason: &'static str) {
        self.failures
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    /// Counts one connection refused by the peer listener.
    pub fn rejected(&self, reason: &'static str) {
        self.rejected
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub(crate) fn register(&self, registry: &mut Registry) {
        registry.register(
            "peer_forwarded",
            "Streams forwarded to another edge node over a peer link",
            self.forwarded.clone(),
        );
        registry.register(
            "peer_streams",
            "Streams that arrived on a peer link, by result (reason label)",
            self.streams.clone(),
        );
        registry.register(
            "peer_failures",
            "Failures to reach a peer node, by reason",
            self.failures.clone(),
        );
        registry.register(
            "peer_rejected",
            "Peer connections refused by this node's peer listener, by reason",
            self.rejected.clone(),
        );
        registry.register(
            "peer_breaker_opened",
            "Times a peer node's circuit breaker opened",
            self.breaker_opened.clone(),
        );
        registry.register(
            "peer_links",
            "Peer links up now, dialed and accepted",
            self.links.clone(),
        );
    }
}
