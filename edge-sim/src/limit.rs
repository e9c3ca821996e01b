//! Reporting a limit that a public client or a peer ran into.
//!
//! Every bound the edge keeps on what others can make it hold (see `docs/limits.md`) is named by a
//! [`Limit`]. Hitting one is counted in `ringtun_edge_limit_hits_total{reason}` and logged at most
//! once per [`LOG_INTERVAL`] per limit, with the number of hits since the last line: a hostile
//! client that hits a limit in a loop cannot flood the log, and the operator still learns that it
//! happens and how often.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::metrics::WorkerCounter;

/// At most one log line per limit in this interval.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// A bound the edge enforces; its [`as_str`](Limit::as_str) is the metric's `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limit {
    /// A client did not read a response within `--client-write-timeout`.
    ClientWriteTimeout,
    /// An upgraded connection or a TCP route's connection was idle past its idle timeout.
    IdleTimeout,
    /// A request body was slower than its minimum rate or past its deadline.
    RequestBodyTimeout,
    /// One client IP reached its limit of concurrent public connections.
    ClientConnections,
    /// A tunnel reached its limit of concurrent streams.
    TunnelStreams,
    /// Link handshakes in progress reached their limit.
    PendingHandshakes,
    /// A connector asked for more links than it may hold.
    ConnectorLinks,
    /// An etcd call did not finish within `--etcd-timeout-ms` (the admin write got 503).
    EtcdTimeout,
    /// An HTTP/2 client reset more streams than `--h2-max-client-resets` allows (rapid reset).
    H2ClientResets,
    /// `h2` ended an HTTP/2 connection with GOAWAY ENHANCE_YOUR_CALM on a bound of its own:
    /// more refused or malformed streams than `--h2-max-refused-streams`, too many streams
    /// reset before they were accepted, a flood of tiny DATA frames.
    H2ProtocolAbuse,
    /// Dialing a peer node (TCP and TLS) took longer than `--peer-connect-timeout-ms`.
    PeerConnectTimeout,
    /// A peer node was skipped because its circuit breaker is open (`--peer-breaker-failures`
    /// failures in a row, for `--peer-breaker-cooldown-ms`).
    PeerBreakerOpen,
    /// A request waited `--peer-wait-ms` for the presence view to change (no node holding a
    /// link of its tunnel could take it) and is answered 502 or 503.
    PeerWait,
    /// A public HTTPS client did not finish its TLS handshake within
    /// `--public-tls-handshake-timeout`.
    TlsHandshakeTimeout,
}

impl Limit {
    /// Every limit, in label order.
    pub const ALL: [Limit; 14] = [
        Limit::ClientWriteTimeout,
        Limit::IdleTimeout,
        Limit::RequestBodyTimeout,
        Limit::ClientConnections,
        Limit::TunnelStreams,
        Limit::PendingHandshakes,
        Limit::ConnectorLinks,
        Limit::EtcdTimeout,
        Limit::H2ClientResets,
        Limit::H2ProtocolAbuse,
        Limit::PeerConnectTimeout,
        Limit::PeerBreakerOpen,
        Limit::PeerWait,
        Limit::TlsHandshakeTimeout,
    ];

    /// The metric label and the log field.
    pub fn as_str(self) -> &'static str {
        match self {
            Limit::ClientWriteTimeout => "client_write_timeout",
            Limit::IdleTimeout => "idle_timeout",
            Limit::RequestBodyTimeout => "request_body_timeout",
            Limit::ClientConnections => "client_connections",
            Limit::TunnelStreams => "tunnel_streams",
            Limit::PendingHandshakes => "pending_handshakes",
            Limit::ConnectorLinks => "connector_links",
            Limit::EtcdTimeout => "etcd_timeout",
            Limit::H2ClientResets => "h2_client_resets",
            Limit::H2ProtocolAbuse => "h2_protocol_abuse",
            Limit::PeerConnectTimeout => "peer_connect_timeout",
            Limit::PeerBreakerOpen => "peer_breaker_open",
            Limit::PeerWait => "peer_wait",
            Limit::TlsHandshakeTimeout => "tls_handshake_timeout",
        }
    }

    fn index(self) -> usize {
        Limit::ALL.iter().position(|l| *l == self).unwrap_or(0)
    }
}

/// Counts and logs limit hits; shared by every worker (atomics only, no lock). A hit is one
/// add in the worker's own slot of a per-worker counter and one read of the last log time; the
/// shared atomics are written only when a line is logged.
#[derive(Debug)]
pub struct LimitHits {
    counters: [WorkerCounter; Limit::ALL.len()],
    start: Instant,
    /// Per limit: milliseconds since `start` of the last log line, plus one (0: never logged).
    last_log: [AtomicU64; Limit::ALL.len()],
    /// Per limit: the hits counted when the last line was logged.
    logged: [AtomicU64; Limit::ALL.len()],
}

impl LimitHits {
    /// Reporters over `counters`, one per [`Limit::ALL`] entry in order.
    pub fn new(counters: [WorkerCounter; Limit::ALL.len()]) -> LimitHits {
        LimitHits {
            counters,
            start: Instant::now(),
            last_log: Default::default(),
            logged: Default::default(),
        }
    }

    /// Counts one hit of `limit`; logs a warning unless one was logged in the last
    /// [`LOG_INTERVAL`]. `detail` says which (a client address, a tunnel ID).
    pub fn hit(&self, limit: Limit, detail: &dyn std::fmt::Display) {
        let i = limit.index();
        self.counters[i].inc();
        let now = u64::try_from(self.start.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(1);
        let last = self.last_log[i].load(Ordering::Relaxed);
        let interval = u64::try_from(LOG_INTERVAL.as_millis()).unwrap_or(u64::MAX);
        if last != 0 && now.saturating_sub(last) < interval {
            return;
        }
        // One worker wins the right to log this interval's line.
        if self.last_log[i]
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            return;
        }
        let total = self.counters[i].get();
        let hits = total.saturating_sub(self.logged[i].swap(total, Ordering::Relaxed));
        tracing::warn!(
            reason = limit.as_str(),
            hits,
            last = %detail,
            "limit reached"
        );
    }

    /// Hits of `limit` so far (for tests and `/metrics`).
    pub fn count(&self, limit: Limit) -> u64 {
        self.counters[limit.index()].get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_hit_is_counted_and_labels_are_distinct() {
        let hits = LimitHits::new(Default::default());
        for _ in 0..1000 {
            hits.hit(Limit::TunnelStreams, &"t");
        }
        hits.hit(Limit::IdleTimeout, &"c");
        assert_eq!(hits.count(Limit::TunnelStreams), 1000);
        assert_eq!(hits.count(Limit::IdleTimeout), 1);
        assert_eq!(hits.count(Limit::ClientWriteTimeout), 0);
        let mut labels: Vec<_> = Limit::ALL.iter().map(|l| l.as_str()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Limit::ALL.len());
    }

    #[test]
    fn one_log_line_per_interval() {
        let hits = LimitHits::new(Default::default());
        hits.hit(Limit::ClientConnections, &"a");
        let first = hits.last_log[Limit::ClientConnections.index()].load(Ordering::Relaxed);
        assert_ne!(first, 0);
        for _ in 0..100 {
            hits.hit(Limit::ClientConnections, &"a");
        }
        // Still inside the interval: no new line, the hits wait for the next one.
        assert_eq!(
            hits.last_log[Limit::ClientConnections.index()].load(Ordering::Relaxed),
            first
        );
        let i = Limit::ClientConnections.index();
        assert_eq!(
            hits.count(Limit::ClientConnections) - hits.logged[i].load(Ordering::Relaxed),
            100
        );
    }
}
