//! Prometheus metrics of the edge (control plane and public data plane), encoded for the admin
//! API's `GET /metrics` and the `--metrics` server.
//!
//! Counters are atomics (`prometheus-client`), so bumping one takes no lock; the registry of
//! metric descriptions is only read when scraped. On the request path a labelled counter is
//! resolved once and then cloned (a counter is an `Arc` of its atomics): the byte and retry
//! counters here are resolved up front, per-hostname counters are cached per worker by the
//! caller ([`Metrics::host_requests`] takes the family's lock only on a cache miss).
//!
//! Every counter bumped per public request, per failed request, per retry, per limit hit or per
//! chunk of bytes is per worker: [`WorkerCounter`] and [`AtomicHistogram`] keep one cache line
//! of atomics per thread slot and sum them when scraped, so workers serving requests at once
//! never write the same cache line. A new counter on the request path should be a
//! [`WorkerCounter`] too. Plain [`Counter`]s are left to the control plane (tunnels, admin
//! requests, registrations, fault injection), which changes now and then.
//!
//! # Layout
//! - this file: [`Metrics`] (every metric, registered under `ringtun_edge_`) and [`scrape`].
//! - [`per_worker`]: [`WorkerCounter`] and [`AtomicHistogram`].
//! - [`labels`]: the label sets, kept to bounded values whatever clients send.
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

pub mod labels;
pub mod per_worker;

use labels::valid_hostname_label;
pub use labels::{
    AdminLabels, CauseLabels, DcLabels, DirectionLabels, FaultLabels, HostLabels,
    MAX_HOSTNAME_LABEL_LEN, MAX_HOSTNAME_LABELS, ReasonLabels, RejectedLabels, STANDARD_METHODS,
    WorkerLabels,
};
pub use per_worker::{AtomicHistogram, HistogramCounts, WorkerCounter};

/// The causes of `ringtun_edge_public_errors_total{cause}` that the data plane reports: each
/// has a per-worker counter made up front (so every cause shows, at 0 until it happens). A
/// cause not in this list still counts, through the family's lock.
pub const PUBLIC_ERROR_CAUSES: [&str; 9] = [
    "no_route",
    "no_connector",
    "tunnel_streams",
    "connector",
    "origin",
    "bad_request",
    "body_timeout",
    "refused_large_body",
    "tls_handshake",
];

/// `Content-Type` of the encoded metrics.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Refreshes the gauges computed from the registry (draining connectors), then encodes every
/// metric: what `GET /metrics` serves on the admin API and on `--metrics`.
pub fn scrape(registry: &crate::registry::Registry) -> String {
    match registry.tunnels() {
        Ok(tunnels) => {
            let draining = tunnels
                .iter()
                .flat_map(|t| registry.connectors(t.id))
                .filter(|c| c.draining)
                .count();
            registry.metrics().set_draining(draining);
        }
        Err(e) => {
            tracing::warn!(error = %e, "metrics: cannot list tunnels; draining gauge not refreshed")
        }
    }
    registry.metrics().encode()
}

/// The edge's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Tunnels created.
    pub tunnels_created: Counter,
    /// Tunnels deleted.
    pub tunnels_deleted: Counter,
    /// Tunnels that exist now.
    pub tunnels: Gauge,
    /// Connectors registered (first link of a connector).
    pub connectors_registered: Counter,
    /// Connector registrations refused (limit, unknown tunnel).
    pub connectors_rejected: Counter,
    /// Connectors connected now.
    pub connectors: Gauge,
    /// Admin API requests by method and status.
    pub admin_requests: Family<AdminLabels, Counter>,
    /// Admin API and metrics server connections refused or cut short at a limit.
    pub control_rejected: Family<RejectedLabels, Counter>,
    /// Live links per data center.
    pub links: Family<DcLabels, Gauge>,
    /// Public HTTP requests received.
    pub public_requests: WorkerCounter,
    /// Public TCP connections received.
    pub public_tcp_connections: WorkerCounter,
    /// Public HTTP/2 requests (streams) received; also counted in `public_requests`.
    pub public_h2_requests: WorkerCounter,
    /// Public HTTP/2 connections accepted (h2c prior knowledge and TLS with ALPN `h2`).
    pub public_h2_connections: WorkerCounter,
    /// Public connections handed to another worker (no link of their tunnel on theirs):
    /// `ringtun_edge_handoffs_total`.
    pub handoffs: WorkerCounter,
    /// Public HTTP/2 streams whose tunnel stream another worker opened and carries for them
    /// (no usable link of their tunnel on the worker serving the connection, see
    /// `dataplane/bridge`): `ringtun_edge_bridged_streams_total`.
    pub bridged_streams: WorkerCounter,
    /// Public requests and TCP-route connections served, per worker (counted by the worker
    /// that opens their stream): `ringtun_edge_worker_requests_total{worker}`.
    pub worker_requests: Family<WorkerLabels, Counter>,
    /// Public requests that failed, by cause (see [`Metrics::public_error`]).
    pub public_errors: Family<CauseLabels, WorkerCounter>,
    /// The counters of [`PUBLIC_ERROR_CAUSES`], in that order.
    public_error_counters: [WorkerCounter; PUBLIC_ERROR_CAUSES.len()],
    /// Public HTTP requests per routed hostname (`ringtun_edge_requests_total{hostname}`).
    pub requests: Family<HostLabels, WorkerCounter>,
    hostname_labels: AtomicUsize,
    /// Payload bytes from public clients (request bodies, upgraded and TCP bytes).
    pub bytes_in: WorkerCounter,
    /// Payload bytes to public clients (response bodies, upgraded and TCP bytes).
    pub bytes_out: WorkerCounter,
    /// Public HTTP request latency, head received to response sent.
    pub request_duration: AtomicHistogram,
    /// Connectors draining now (set when scraped, see [`Metrics::set_draining`]).
    pub draining_connectors: Gauge,
    /// Requests retried on another replica because one refused them before processing.
    pub retries_refused: WorkerCounter,
    /// Idempotent requests retried on another replica because their link died first.
    pub retries_link_lost: WorkerCounter,
    /// Fault injections by target and action.
    pub faults: Family<FaultLabels, Counter>,
    /// Edge servers down now by fault injection.
    pub servers_down: Gauge,
    /// Live links closed because their server was taken down.
    pub fault_links_closed: Counter,
    /// Link connections closed right after accept because their server is down.
    pub fault_links_refused: Counter,
    /// Limits hit, by reason (`ringtun_edge_limit_hits_total{reason}`), with their log lines.
    pub limits: crate::limit::LimitHits,
    /// Forwarding between edge nodes (`ringtun_edge_peer_*`, see [`crate::peer`]).
    pub peer: crate::peer::PeerMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ringtun_edge");
        let m = Metrics {
            registry: Registry::default(),
            tunnels_created: Counter::default(),
            tunnels_deleted: Counter::default(),
            tunnels: Gauge::default(),
            connectors_registered: Counter::default(),
            connectors_rejected: Counter::default(),
            connectors: Gauge::default(),
            admin_requests: Family::default(),
            control_rejected: Family::default(),
            links: Family::default(),
            public_requests: WorkerCounter::default(),
            public_tcp_connections: WorkerCounter::default(),
            public_h2_requests: WorkerCounter::default(),
            public_h2_connections: WorkerCounter::default(),
            handoffs: WorkerCounter::default(),
            bridged_streams: WorkerCounter::default(),
            worker_requests: Family::default(),
            public_errors: Family::default(),
            public_error_counters: Default::default(),
            requests: Family::default(),
            hostname_labels: AtomicUsize::new(0),
            bytes_in: WorkerCounter::default(),
            bytes_out: WorkerCounter::default(),
            request_duration: AtomicHistogram::default(),
            draining_connectors: Gauge::default(),
            retries_refused: WorkerCounter::default(),
            retries_link_lost: WorkerCounter::default(),
            faults: Family::default(),
            servers_down: Gauge::default(),
            fault_links_closed: Counter::default(),
            fault_links_refused: Counter::default(),
            limits: crate::limit::LimitHits::new(Default::default()),
            peer: crate::peer::PeerMetrics::default(),
        };
        registry.register(
            "tunnels_created",
            "Tunnels created",
            m.tunnels_created.clone(),
        );
        registry.register(
            "tunnels_deleted",
            "Tunnels deleted",
            m.tunnels_deleted.clone(),
        );
        registry.register("tunnels", "Tunnels that exist", m.tunnels.clone());
        registry.register(
            "connectors_registered",
            "Connectors registered",
            m.connectors_registered.clone(),
        );
        registry.register(
            "connectors_rejected",
            "Connector registrations refused",
            m.connectors_rejected.clone(),
        );
        registry.register("connectors", "Connectors connected", m.connectors.clone());
        registry.register(
            "admin_requests",
            "Admin API requests",
            m.admin_requests.clone(),
        );
        registry.register(
            "control_rejected",
            "Admin API and metrics server connections refused or cut short, by server and limit",
            m.control_rejected.clone(),
        );
        registry.register("links", "Live links per data center", m.links.clone());
        registry.register(
            "public_requests",
            "Public HTTP requests",
            m.public_requests.clone(),
        );
        registry.register(
            "public_tcp_connections",
            "Public TCP connections",
            m.public_tcp_connections.clone(),
        );
        registry.register(
            "public_h2_requests",
            "Public HTTP/2 requests (also in public_requests)",
            m.public_h2_requests.clone(),
        );
        registry.register(
            "public_h2_connections",
            "Public HTTP/2 connections",
            m.public_h2_connections.clone(),
        );
        registry.register(
            "handoffs",
            "Public connections handed to another worker",
            m.handoffs.clone(),
        );
        registry.register(
            "bridged_streams",
            "Public HTTP/2 streams carried by another worker that holds a link of their tunnel",
            m.bridged_streams.clone(),
        );
        registry.register(
            "worker_requests",
            "Public requests and TCP-route connections served, per worker",
            m.worker_requests.clone(),
        );
        let public_error_counters = PUBLIC_ERROR_CAUSES.map(|cause| {
            m.public_errors
                .get_or_create(&CauseLabels {
                    cause: cause.to_owned(),
                })
                .clone()
        });
        let m = Metrics {
            public_error_counters,
            ..m
        };
        registry.register(
            "public_errors",
            "Public requests that failed, by cause",
            m.public_errors.clone(),
        );
        registry.register(
            "requests",
            "Public HTTP requests per hostname",
            m.requests.clone(),
        );
        let bytes: Family<DirectionLabels, WorkerCounter> = Family::default();
        let dir = |d: &str| DirectionLabels {
            direction: d.to_owned(),
        };
        // One statement each: `get_or_create` returns a read guard, and creating the next
        // label while it lives would deadlock.
        let bytes_in = bytes.get_or_create(&dir("in")).clone();
        let bytes_out = bytes.get_or_create(&dir("out")).clone();
        let m = Metrics {
            bytes_in,
            bytes_out,
            ..m
        };
        registry.register(
            "bytes",
            "Payload bytes from (in) and to (out) public clients",
            bytes,
        );
        registry.register(
            "request_duration_seconds",
            "Public HTTP request latency, head received to response sent",
            m.request_duration.clone(),
        );
        registry.register(
            "draining_connectors",
            "Connectors draining now",
            m.draining_connectors.clone(),
        );
        let retries: Family<ReasonLabels, WorkerCounter> = Family::default();
        let reason = |r: &str| ReasonLabels {
            reason: r.to_owned(),
        };
        let retries_refused = retries.get_or_create(&reason("refused")).clone();
        let retries_link_lost = retries.get_or_create(&reason("link_lost")).clone();
        let m = Metrics {
            retries_refused,
            retries_link_lost,
            ..m
        };
        registry.register(
            "retries",
            "Requests retried on another replica, by reason",
            retries,
        );
        registry.register(
            "faults",
            "Fault injections by target and action",
            m.faults.clone(),
        );
        registry.register(
            "servers_down",
            "Edge servers down by fault injection",
            m.servers_down.clone(),
        );
        registry.register(
            "fault_links_closed",
            "Live links closed because their server was taken down",
            m.fault_links_closed.clone(),
        );
        registry.register(
            "fault_links_refused",
            "Link connections closed at accept because their server is down",
            m.fault_links_refused.clone(),
        );
        let limit_hits: Family<ReasonLabels, WorkerCounter> = Family::default();
        let counters = crate::limit::Limit::ALL.map(|l| {
            limit_hits
                .get_or_create(&ReasonLabels {
                    reason: l.as_str().to_owned(),
                })
                .clone()
        });
        registry.register(
            "limit_hits",
            "Limits hit by public clients and peers, by reason",
            limit_hits,
        );
        let limits = crate::limit::LimitHits::new(counters);
        m.peer.register(&mut registry);
        registry.register(
            "process_allocations",
            ringtun_core::alloc::ALLOCATIONS_HELP,
            ringtun_core::alloc::AllocationsMetric,
        );
        Metrics {
            registry,
            limits,
            ..m
        }
    }
}

impl Metrics {
    /// Counts one admin API request; `method` is taken as sent and mapped to a closed set.
    pub fn admin_request(&self, method: &str, code: u16) {
        self.admin_requests
            .get_or_create(&AdminLabels::new(method, code))
            .inc();
    }

    /// Counts one connection the admin API or the metrics server refused at a limit.
    pub fn control_rejected(&self, server: &'static str, reason: &'static str) {
        self.control_rejected
            .get_or_create(&RejectedLabels { server, reason })
            .inc();
    }

    /// A link registered in `data_center`.
    pub fn link_up(&self, data_center: &str) {
        self.links
            .get_or_create(&DcLabels {
                data_center: data_center.to_owned(),
            })
            .inc();
    }

    /// A link of `data_center` ended.
    pub fn link_down(&self, data_center: &str) {
        self.links
            .get_or_create(&DcLabels {
                data_center: data_center.to_owned(),
            })
            .dec();
    }

    /// Counts one failed public request: for a cause of [`PUBLIC_ERROR_CAUSES`], one atomic add
    /// in this worker's slot (no lock, no allocation).
    pub fn public_error(&self, cause: &str) {
        match PUBLIC_ERROR_CAUSES.iter().position(|c| *c == cause) {
            Some(i) => self.public_error_counters[i].inc(),
            None => self
                .public_errors
                .get_or_create(&CauseLabels {
                    cause: cause.to_owned(),
                })
                .inc(),
        }
    }

    /// The request counter of `hostname` (lowercase, no port), for a per-worker cache: this
    /// takes the family's lock, so call it once per hostname, not per request.
    pub fn host_requests(&self, hostname: &str) -> WorkerCounter {
        let other = || HostLabels {
            hostname: "other".to_owned(),
        };
        if !valid_hostname_label(hostname) {
            return self.requests.get_or_create(&other()).clone();
        }
        let labels = HostLabels {
            hostname: hostname.to_owned(),
        };
        // Several workers may resolve the same hostname at once: the cap is approximate.
        let known = self.requests.get(&labels).map(|c| c.clone());
        if let Some(c) = known {
            return c;
        }
        let labels = if self.hostname_labels.fetch_add(1, Ordering::Relaxed) < MAX_HOSTNAME_LABELS {
            labels
        } else {
            other()
        };
        self.requests.get_or_create(&labels).clone()
    }

    /// Counts one fault injection.
    pub fn fault(&self, target: &str, action: &str) {
        self.faults
            .get_or_create(&FaultLabels {
                target: target.to_owned(),
                action: action.to_owned(),
            })
            .inc();
    }

    /// Sets the draining connectors gauge (computed from the registry when scraped).
    pub fn set_draining(&self, n: usize) {
        self.draining_connectors
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The metrics in the Prometheus text format (OpenMetrics flavour).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests;
