//! Prometheus metrics of the edge (control plane and public data plane), encoded for the admin
//! API's `GET /metrics` and the `--metrics` server.
//!
//! Counters are atomics (`prometheus-client`), so bumping one takes no lock; the registry of
//! metric descriptions is only read when scraped. On the request path a labelled counter is
//! resolved once and then cloned (a counter is an `Arc` of its atomics): the byte and retry
//! counters here are resolved up front, per-hostname counters are cached per worker by the
//! caller ([`Metrics::host_requests`] takes the family's lock only on a cache miss).
//!
//! The counters and the latency histogram bumped on every public request are per worker:
//! [`WorkerCounter`] and [`AtomicHistogram`] keep one cache line of atomics per thread slot
//! and sum them when scraped, so workers serving requests at once never write the same cache
//! line. A new counter on the request path should be a [`WorkerCounter`] too.
use std::cell::Cell;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

/// Most distinct `hostname` labels of `ringtun_edge_requests_total`; later hostnames (wildcard
/// routes can match any number) are counted under `other`.
pub const MAX_HOSTNAME_LABELS: usize = 1000;

/// The longest hostname kept as a label (a DNS name's limit); longer ones count as `other`.
pub const MAX_HOSTNAME_LABEL_LEN: usize = 253;

/// Whether `hostname` may be a label value as is: a DNS name of lowercase letters, digits, `-`,
/// `_` and `.`, at most [`MAX_HOSTNAME_LABEL_LEN`] bytes. A wildcard route matches whatever
/// `Host` a client sends, and the encoder writes label values unescaped: a `"` would break the
/// scrape and a 60 KB name would make every scrape large.
fn valid_hostname_label(hostname: &str) -> bool {
    (1..=MAX_HOSTNAME_LABEL_LEN).contains(&hostname.len())
        && hostname
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

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

/// Labels of an admin API request. Both come from closed sets whatever the client sends (see
/// [`AdminLabels::new`]), so made-up methods cannot grow the metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdminLabels {
    /// HTTP method: one of [`STANDARD_METHODS`], or `other`.
    pub method: &'static str,
    /// Response status code (100 to 599), or `other`.
    pub code: String,
}

/// The methods of RFC 9110 §9 and PATCH: the values of the admin `method` label besides `other`.
pub const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

impl AdminLabels {
    /// The labels of a request with `method` (as the client sent it) answered with `code`.
    pub fn new(method: &str, code: u16) -> AdminLabels {
        AdminLabels {
            method: STANDARD_METHODS
                .iter()
                .find(|m| **m == method)
                .copied()
                .unwrap_or("other"),
            code: if (100..600).contains(&code) {
                code.to_string()
            } else {
                "other".to_owned()
            },
        }
    }
}

/// Labels of a connection the admin API or the metrics server refused or cut short.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectedLabels {
    /// `admin` or `metrics`.
    pub server: &'static str,
    /// The limit hit, e.g. `connections`, `head_timeout`, `body_too_large` (see
    /// `admin::server::Rejection`).
    pub reason: &'static str,
}

/// Labels of a per-data-center gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DcLabels {
    /// Data center name.
    pub data_center: String,
}

/// Labels of a per-worker counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    /// The worker's index.
    pub worker: String,
}

/// Labels of a public request error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    /// What failed, e.g. `no_route`, `no_connector`, `bad_request`, `connector`, `origin`.
    pub cause: String,
}

/// Labels of a per-hostname counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostLabels {
    /// The request's host (lowercase, without port).
    pub hostname: String,
}

/// Labels of the byte counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `in` (from public clients) or `out` (to public clients).
    pub direction: String,
}

/// Labels of the retry and limit counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why: a retry's `refused` or `link_lost`, or a limit's name (`crate::limit::Limit`).
    pub reason: String,
}

/// Labels of a fault injection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    /// `server` or `data_center`.
    pub target: String,
    /// `down` or `up`.
    pub action: String,
}

/// Upper bounds (seconds) of the request latency buckets.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// How many slots a per-worker metric has: one per core the process may run on (at least 1,
/// at most 64). Threads share slots round-robin beyond that, which stays correct (the slots
/// are atomics) and only shares cache lines again.
fn slot_count() -> usize {
    static SLOTS: OnceLock<usize> = OnceLock::new();
    *SLOTS.get_or_init(|| {
        std::thread::available_parallelism()
            .map(usize::from)
            .unwrap_or(1)
            .clamp(1, 64)
    })
}

/// The calling thread's slot in per-worker metrics: threads take slots in the order they first
/// count, so the workers, started together, get slots of their own.
fn my_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
    }
    SLOT.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT.fetch_add(1, Ordering::Relaxed) % slot_count());
        }
        s.get()
    })
}

/// One slot of a per-worker metric, alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Padded<T>(T);

/// A counter that each worker bumps in a slot of its own (no cache line shared between
/// workers), summed when scraped. Encodes as a Prometheus counter. Clones share the counts.
#[derive(Debug, Clone)]
pub struct WorkerCounter(std::sync::Arc<[Padded<AtomicU64>]>);

impl Default for WorkerCounter {
    fn default() -> Self {
        WorkerCounter((0..slot_count()).map(|_| Padded::default()).collect())
    }
}

impl WorkerCounter {
    /// Adds one.
    pub fn inc(&self) {
        self.inc_by(1);
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        if let Some(slot) = self.0.get(my_slot()) {
            slot.0.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// The total over every worker.
    pub fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

impl TypedMetric for WorkerCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for WorkerCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A histogram of durations whose `observe` is a few relaxed atomic adds in the calling
/// worker's own slot (no lock, no cache line shared between workers), summed when scraped.
/// Clones share the counts.
#[derive(Debug, Clone)]
pub struct AtomicHistogram(std::sync::Arc<[Padded<HistogramCounts>]>);

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram((0..slot_count()).map(|_| Padded::default()).collect())
    }
}

/// The counts of one slot of an [`AtomicHistogram`].
#[derive(Debug, Default)]
pub struct HistogramCounts {
    /// Per bucket (non-cumulative), the last one is `+Inf`.
    buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl AtomicHistogram {
    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        let Some(Padded(c)) = self.0.get(my_slot()) else {
            return;
        };
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        if let Some(b) = c.buckets.get(i) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        c.count.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        c.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Durations recorded.
    pub fn count(&self) -> u64 {
        self.0
            .iter()
            .map(|s| s.0.count.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for AtomicHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for AtomicHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut counts = [0u64; LATENCY_BUCKETS.len() + 1];
        let mut sum_micros = 0u64;
        for Padded(slot) in self.0.iter() {
            for (n, b) in counts.iter_mut().zip(&slot.buckets) {
                *n += b.load(Ordering::Relaxed);
            }
            sum_micros = sum_micros.saturating_add(slot.sum_micros.load(Ordering::Relaxed));
        }
        let buckets: Vec<(f64, u64)> = LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::MAX))
            .zip(counts)
            .collect();
        // The count is the buckets' total, so the encoded histogram is self-consistent.
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = sum_micros as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
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
    /// Public requests and TCP-route connections served, per worker (counted by the worker
    /// that opens their stream): `ringtun_edge_worker_requests_total{worker}`.
    pub worker_requests: Family<WorkerLabels, Counter>,
    /// Public requests that failed, by cause.
    pub public_errors: Family<CauseLabels, Counter>,
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
    pub retries_refused: Counter,
    /// Idempotent requests retried on another replica because their link died first.
    pub retries_link_lost: Counter,
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
            worker_requests: Family::default(),
            public_errors: Family::default(),
            requests: Family::default(),
            hostname_labels: AtomicUsize::new(0),
            bytes_in: WorkerCounter::default(),
            bytes_out: WorkerCounter::default(),
            request_duration: AtomicHistogram::default(),
            draining_connectors: Gauge::default(),
            retries_refused: Counter::default(),
            retries_link_lost: Counter::default(),
            faults: Family::default(),
            servers_down: Gauge::default(),
            fault_links_closed: Counter::default(),
            fault_links_refused: Counter::default(),
            limits: crate::limit::LimitHits::new(Default::default()),
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
            "worker_requests",
            "Public requests and TCP-route connections served, per worker",
            m.worker_requests.clone(),
        );
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
        let retries: Family<ReasonLabels, Counter> = Family::default();
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
        let limit_hits: Family<ReasonLabels, Counter> = Family::default();
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

    /// Counts one failed public request.
    pub fn public_error(&self, cause: &str) {
        self.public_errors
            .get_or_create(&CauseLabels {
                cause: cause.to_owned(),
            })
            .inc();
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
mod tests {
    use super::*;

    #[test]
    fn encodes_counters() {
        let m = Metrics::default();
        m.tunnels_created.inc();
        m.admin_request("GET", 200);
        let text = m.encode();
        assert!(
            text.contains("ringtun_edge_tunnels_created_total 1"),
            "{text}"
        );
        assert!(
            text.contains("ringtun_edge_admin_requests_total{method=\"GET\",code=\"200\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn admin_labels_are_a_closed_set() {
        let m = Metrics::default();
        for i in 0..500 {
            m.admin_request(&format!("M{i}"), 401);
            m.admin_request("get", 401);
        }
        m.admin_request("PATCH", 1000);
        let text = m.encode();
        assert!(
            text.contains("ringtun_edge_admin_requests_total{method=\"other\",code=\"401\"} 1000"),
            "{text}"
        );
        assert!(
            text.contains("ringtun_edge_admin_requests_total{method=\"PATCH\",code=\"other\"} 1"),
            "{text}"
        );
        assert_eq!(
            text.matches("ringtun_edge_admin_requests_total{").count(),
            2
        );
    }

    #[test]
    fn hostname_labels_are_dns_names() {
        let m = Metrics::default();
        let long = format!("{}.example.com", "a".repeat(300));
        for host in [
            "a\"}.example.com",
            "a\\b.example.com",
            "a b.example.com",
            long.as_str(),
            "",
        ] {
            m.host_requests(host).inc();
        }
        m.host_requests("ok-1_x.example.com").inc();
        let text = m.encode();
        assert!(
            text.contains("ringtun_edge_requests_total{hostname=\"other\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("ringtun_edge_requests_total{hostname=\"ok-1_x.example.com\"} 1"),
            "{text}"
        );
        assert_eq!(text.matches("ringtun_edge_requests_total{").count(), 2);
    }

    #[test]
    fn per_worker_metrics_sum_every_thread() {
        let m = Metrics::default();
        std::thread::scope(|s| {
            for _ in 0..5 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        m.public_requests.inc();
                        m.bytes_out.inc_by(2);
                        m.request_duration.observe(Duration::from_millis(1));
                    }
                });
            }
        });
        assert_eq!(m.public_requests.get(), 5000);
        assert_eq!(m.request_duration.count(), 5000);
        let text = m.encode();
        for want in [
            "ringtun_edge_public_requests_total 5000",
            "ringtun_edge_bytes_total{direction=\"out\"} 10000",
            "ringtun_edge_request_duration_seconds_count 5000",
            "ringtun_edge_request_duration_seconds_bucket{le=\"0.001\"} 5000",
        ] {
            assert!(text.contains(want), "{want} missing in {text}");
        }
    }

    #[test]
    fn encodes_request_metrics() {
        let m = Metrics::default();
        m.host_requests("app.example.com").inc();
        m.host_requests("app.example.com").inc();
        m.bytes_in.inc_by(10);
        m.retries_refused.inc();
        m.request_duration.observe(Duration::from_millis(3));
        m.request_duration.observe(Duration::from_secs(60));
        let text = m.encode();
        for want in [
            "ringtun_edge_requests_total{hostname=\"app.example.com\"} 2",
            "ringtun_edge_bytes_total{direction=\"in\"} 10",
            "ringtun_edge_bytes_total{direction=\"out\"} 0",
            "ringtun_edge_retries_total{reason=\"refused\"} 1",
            "ringtun_edge_retries_total{reason=\"link_lost\"} 0",
            "ringtun_edge_request_duration_seconds_count 2",
            "ringtun_edge_request_duration_seconds_bucket{le=\"0.005\"} 1",
            "ringtun_edge_request_duration_seconds_bucket{le=\"+Inf\"} 2",
            "ringtun_edge_draining_connectors 0",
            "ringtun_edge_process_allocations_total ",
        ] {
            assert!(text.contains(want), "{want} missing in {text}");
        }
    }
}
