//! The connector's observability: Prometheus metrics and the readiness state behind
//! `--metrics ADDR` (`/ready`, `/healthcheck`, `/metrics`, replicas-contract.md "Endpoints").
//!
//! [`Observer`] is shared by everything in one `tunnel run`: the link supervisors report links
//! going up and down, the signal thread flips [`Observer::set_draining`], and each worker's
//! proxy holds a [`WorkerMetrics`] that counts requests, bytes, errors and latency.
//!
//! The request path stays cheap: the request metrics (`ringtun_requests_total{rule,hostname}`,
//! `ringtun_request_duration_seconds{rule}`, `ringtun_request_errors_total{cause}`,
//! `ringtun_bytes_total{direction}`, `ringtun_active_streams`) are kept per worker, written only
//! by that worker (no lock, no cache line shared with other cores), and summed at scrape time.
//! The per-rule series are looked up once per worker and rule set, then cached in the worker,
//! so a request allocates nothing for its metrics. The labels are the ingress rule's number
//! (from 1, as `ringtun ingress rule` prints it) and the rule's hostname pattern (`*` for a
//! catch-all), not the request's `Host`, so a client cannot grow the label space.
//!
//! The HTTP side ([`server`]: the observer's [`Probes`](ringtun_core::control::Probes) on
//! `ringtun_core::control`'s [`MetricsServer`], the edge's too) runs on a small std thread of
//! its own, never on the io_uring workers.

pub mod server;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use ringtun_core::tunnel::ReplyErrorKind;

use crate::ingress::IngressRules;

pub use ringtun_core::control::MetricsServer;

/// Upper bounds of the request duration buckets, in seconds (1 ms to 60 s).
const DURATION_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Labels of `ringtun_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct RuleHostLabels {
    /// The ingress rule's number, from 1.
    pub rule: String,
    /// The rule's hostname pattern (`*` for any host).
    pub hostname: String,
}

/// Labels of `ringtun_request_duration_seconds`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord, EncodeLabelSet)]
pub struct RuleLabels {
    /// The ingress rule's number, from 1.
    pub rule: String,
}

/// Labels of `ringtun_request_errors_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    /// Why the request failed.
    pub cause: &'static str,
}

/// Labels of `ringtun_bytes_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `to_origin` or `from_origin`.
    pub direction: &'static str,
}

/// Labels of a per-worker counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    /// The worker's index.
    pub worker: String,
}

/// Labels of `ringtun_links`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DataCenterLabels {
    /// The data center the edge reported at registration.
    pub data_center: String,
}

/// Labels of `ringtun_config_reloads_total` and `ringtun_origin_resolutions_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `ok` or `rejected` (reloads); `ok` or `failed` (resolutions).
    pub result: &'static str,
}

/// Labels of `ringtun_metrics_rejected_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// The limit a client of the metrics server hit (`ringtun_core::control::Rejection`).
    pub reason: &'static str,
}

/// Why a request failed, as `ringtun_request_errors_total{cause}` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCause {
    /// The origin refused the connection (or does not resolve).
    OriginRefused,
    /// The origin did not connect or answer in time.
    OriginTimeout,
    /// The origin's answer was invalid, or the rule's service cannot serve the stream.
    OriginInvalid,
    /// No ingress rule matched.
    NoRule,
    /// The stream was reset (by the edge, or by the connector after the reply).
    StreamReset,
    /// Refused because the connector is draining or overloaded.
    Unavailable,
    /// A TCP stream with no `tcp://` rule to serve it.
    NoTcpRule,
    /// The TLS handshake with the origin did not finish within `tlsTimeout` (502).
    OriginTlsTimeout,
    /// A chunked request body for a `disableChunkedEncoding` origin went over
    /// `bufferedBodyLimit` (413).
    RequestBodyTooLarge,
}

impl ErrorCause {
    /// Every cause, in [`ErrorCause::index`] order.
    pub const ALL: [ErrorCause; 9] = [
        ErrorCause::OriginRefused,
        ErrorCause::OriginTimeout,
        ErrorCause::OriginInvalid,
        ErrorCause::NoRule,
        ErrorCause::StreamReset,
        ErrorCause::Unavailable,
        ErrorCause::NoTcpRule,
        ErrorCause::OriginTlsTimeout,
        ErrorCause::RequestBodyTooLarge,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCause::OriginRefused => "origin_refused",
            ErrorCause::OriginTimeout => "origin_timeout",
            ErrorCause::OriginInvalid => "origin_invalid",
            ErrorCause::NoRule => "no_rule",
            ErrorCause::StreamReset => "stream_reset",
            ErrorCause::Unavailable => "unavailable",
            ErrorCause::NoTcpRule => "no_tcp_rule",
            ErrorCause::OriginTlsTimeout => "origin_tls_timeout",
            ErrorCause::RequestBodyTooLarge => "request_body_too_large",
        }
    }

    fn index(self) -> usize {
        match self {
            ErrorCause::OriginRefused => 0,
            ErrorCause::OriginTimeout => 1,
            ErrorCause::OriginInvalid => 2,
            ErrorCause::NoRule => 3,
            ErrorCause::StreamReset => 4,
            ErrorCause::Unavailable => 5,
            ErrorCause::NoTcpRule => 6,
            ErrorCause::OriginTlsTimeout => 7,
            ErrorCause::RequestBodyTooLarge => 8,
        }
    }
}

impl From<ReplyErrorKind> for ErrorCause {
    fn from(kind: ReplyErrorKind) -> ErrorCause {
        match kind {
            ReplyErrorKind::OriginRefused => ErrorCause::OriginRefused,
            ReplyErrorKind::OriginTimeout => ErrorCause::OriginTimeout,
            ReplyErrorKind::NoIngressRule => ErrorCause::NoRule,
            ReplyErrorKind::Unavailable => ErrorCause::Unavailable,
            ReplyErrorKind::OriginInvalid | ReplyErrorKind::Other(_) => ErrorCause::OriginInvalid,
        }
    }
}

/// The direction of `ringtun_bytes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Bytes written to origins (request bodies, upgraded and TCP bytes from the edge).
    ToOrigin,
    /// Bytes read from origins and sent to the edge.
    FromOrigin,
}

/// One `tunnel run`'s metrics and readiness. Cheap to share (`Arc`); every update is atomic.
#[derive(Debug)]
pub struct Observer {
    connector_id: String,
    registry: Registry,
    draining_flag: AtomicBool,
    ready_count: AtomicI64,
    /// The request metrics of every worker (the first: those counted off the workers).
    counts: Arc<WorkerList>,
    links: Family<DataCenterLabels, Gauge>,
    ready_links: Gauge,
    draining: Gauge,
    reloads_ok: Counter,
    reloads_rejected: Counter,
    resolutions_ok: Counter,
    resolutions_failed: Counter,
    worker_streams: Family<WorkerLabels, Counter>,
    metrics_rejected: Family<ReasonLabels, Counter>,
}

impl Observer {
    /// A fresh observer for connector `connector_id` (shown by `/ready`): no links, not draining.
    pub fn new(connector_id: impl Into<String>) -> Observer {
        let mut registry = Registry::with_prefix("ringtun");
        let counts = Arc::new(WorkerList::default());
        counts.add();
        let links = Family::<DataCenterLabels, Gauge>::default();
        let ready_links = Gauge::default();
        let draining = Gauge::default();
        let reloads = Family::<ResultLabels, Counter>::default();
        let reloads_ok = reloads.get_or_create_owned(&ResultLabels { result: "ok" });
        let reloads_rejected = reloads.get_or_create_owned(&ResultLabels { result: "rejected" });
        let resolutions = Family::<ResultLabels, Counter>::default();
        let resolutions_ok = resolutions.get_or_create_owned(&ResultLabels { result: "ok" });
        let resolutions_failed =
            resolutions.get_or_create_owned(&ResultLabels { result: "failed" });
        registry.register_collector(Box::new(counts.clone()));
        registry.register(
            "links",
            "Registered links to the edge, by data center",
            links.clone(),
        );
        registry.register(
            "ready_links",
            "Registered links to the edge",
            ready_links.clone(),
        );
        registry.register(
            "draining",
            "1 once SIGTERM/SIGINT started the drain",
            draining.clone(),
        );
        registry.register(
            "config_reloads",
            "Config reloads (SIGHUP, --watch-config), by result",
            reloads,
        );
        registry.register(
            "origin_resolutions",
            "Resolutions of origin names (at start, reload and refresh; never per request), by result",
            resolutions,
        );
        registry.register(
            "process_allocations",
            ringtun_core::alloc::ALLOCATIONS_HELP,
            ringtun_core::alloc::AllocationsMetric,
        );
        let worker_streams = Family::<WorkerLabels, Counter>::default();
        registry.register(
            "worker_streams",
            "Streams the edge opened, by the connector worker that served them",
            worker_streams.clone(),
        );
        let metrics_rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "metrics_rejected",
            "Metrics server connections refused or cut short at a limit, by limit",
            metrics_rejected.clone(),
        );
        Observer {
            connector_id: connector_id.into(),
            registry,
            draining_flag: AtomicBool::new(false),
            ready_count: AtomicI64::new(0),
            counts,
            links,
            ready_links,
            draining,
            reloads_ok,
            reloads_rejected,
            resolutions_ok,
            resolutions_failed,
            worker_streams,
            metrics_rejected,
        }
    }

    /// Counts a connection the metrics server refused or cut short at a limit (`reason` as
    /// `ringtun_core::control::Rejection::as_str` names it).
    pub fn metrics_rejected(&self, reason: &'static str) {
        self.metrics_rejected
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }

    /// The stream counter of worker `worker` (`ringtun_worker_streams_total{worker}`), to
    /// resolve once per link and bump per stream: each worker has its own, so counting
    /// touches no counter another core writes.
    pub fn worker_streams(&self, worker: usize) -> Counter {
        self.worker_streams.get_or_create_owned(&WorkerLabels {
            worker: worker.to_string(),
        })
    }

    /// The connector ID `/ready` reports.
    pub fn connector_id(&self) -> &str {
        &self.connector_id
    }

    /// A link registered with the edge in `data_center`.
    pub fn link_up(&self, data_center: &str) {
        self.links
            .get_or_create(&DataCenterLabels {
                data_center: data_center.to_owned(),
            })
            .inc();
        let n = self.ready_count.fetch_add(1, Ordering::AcqRel) + 1;
        self.ready_links.set(n);
    }

    /// A link that [`Observer::link_up`] reported has ended (lost, or closed by the drain).
    pub fn link_down(&self, data_center: &str) {
        self.links
            .get_or_create(&DataCenterLabels {
                data_center: data_center.to_owned(),
            })
            .dec();
        let n = (self.ready_count.fetch_sub(1, Ordering::AcqRel) - 1).max(0);
        self.ready_links.set(n);
    }

    /// The drain started (first SIGTERM/SIGINT): `/ready` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining_flag.store(true, Ordering::Release);
        self.draining.set(1);
    }

    /// Whether the drain started.
    pub fn is_draining(&self) -> bool {
        self.draining_flag.load(Ordering::Acquire)
    }

    /// How many links are registered now.
    pub fn ready_links(&self) -> u64 {
        u64::try_from(self.ready_count.load(Ordering::Acquire)).unwrap_or(0)
    }

    /// Whether `/ready` answers 200: at least one link registered and not draining.
    pub fn is_ready(&self) -> bool {
        !self.is_draining() && self.ready_links() > 0
    }

    /// Counts a config reload (`ok` when the new rules were taken, else `rejected`).
    pub fn config_reload(&self, ok: bool) {
        if ok {
            self.reloads_ok.inc();
        } else {
            self.reloads_rejected.inc();
        }
    }

    /// Counts a resolution of an origin name (`ok`, or `failed` when it gave no address).
    pub fn origin_resolution(&self, ok: bool) {
        if ok {
            self.resolutions_ok.inc();
        } else {
            self.resolutions_failed.inc();
        }
    }

    /// Counts a failed request or stream (off the workers; a worker counts in its own
    /// [`WorkerMetrics`]).
    pub fn error(&self, cause: ErrorCause) {
        self.counts.first().error(cause);
    }

    /// Counts payload bytes (off the workers, like [`Observer::error`]).
    pub fn bytes(&self, direction: Direction, n: usize) {
        self.counts.first().bytes(direction, n);
    }

    /// The Prometheus text exposition of every family.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::warn!(error = %e, "cannot encode the metrics");
        }
        out
    }
}

/// One worker's request metrics, written only by that worker (plain atomics, no lock) and
/// summed over the workers at scrape time.
#[derive(Debug, Default)]
struct WorkerCounts {
    errors: [Counter; ErrorCause::ALL.len()],
    to_origin: Counter,
    from_origin: Counter,
    active_streams: Gauge,
    /// The worker's per-rule series by label set; locked only to add a series (once per rule
    /// and rule set) and to scrape.
    rules: Mutex<RuleSeries>,
}

#[derive(Debug, Default)]
struct RuleSeries {
    requests: HashMap<RuleHostLabels, Counter>,
    durations: HashMap<RuleLabels, Arc<Durations>>,
}

impl WorkerCounts {
    fn error(&self, cause: ErrorCause) {
        self.errors[cause.index()].inc();
    }

    fn bytes(&self, direction: Direction, n: usize) {
        self.counter(direction).inc_by(n as u64);
    }

    fn counter(&self, direction: Direction) -> &Counter {
        match direction {
            Direction::ToOrigin => &self.to_origin,
            Direction::FromOrigin => &self.from_origin,
        }
    }

    /// The series of rule `number` (from 1) with hostname pattern `hostname`.
    fn rule_handles(&self, number: usize, hostname: String) -> RuleHandles {
        let rule = number.to_string();
        let mut series = self.rules.lock().unwrap_or_else(|e| e.into_inner());
        let duration = series
            .durations
            .entry(RuleLabels { rule: rule.clone() })
            .or_default()
            .clone();
        let requests = series
            .requests
            .entry(RuleHostLabels { rule, hostname })
            .or_default()
            .clone();
        RuleHandles { requests, duration }
    }
}

/// A request duration histogram written by one worker: [`DURATION_BUCKETS`] plus `+Inf`.
#[derive(Debug, Default)]
struct Durations {
    /// Per bucket (not cumulative), the last one `+Inf`.
    buckets: [AtomicU64; DURATION_BUCKETS.len() + 1],
    count: AtomicU64,
    /// The sum of the observations in seconds, as `f64` bits.
    sum: AtomicU64,
}

impl Durations {
    /// Records `secs`. One writer per histogram (its worker), so load-then-store loses nothing.
    fn observe(&self, secs: f64) {
        let i = DURATION_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(DURATION_BUCKETS.len());
        bump(&self.buckets[i], 1);
        bump(&self.count, 1);
        let sum = f64::from_bits(self.sum.load(Ordering::Relaxed)) + secs;
        self.sum.store(sum.to_bits(), Ordering::Relaxed);
    }
}

/// Adds `n` to a counter that only the calling worker writes.
fn bump(a: &AtomicU64, n: u64) {
    a.store(a.load(Ordering::Relaxed).wrapping_add(n), Ordering::Relaxed);
}

/// Every worker's [`WorkerCounts`], the collector that sums them at scrape time.
#[derive(Debug, Default)]
struct WorkerList {
    workers: Mutex<Vec<Arc<WorkerCounts>>>,
}

impl WorkerList {
    fn add(&self) -> Arc<WorkerCounts> {
        let counts = Arc::new(WorkerCounts::default());
        self.lock().push(counts.clone());
        counts
    }

    /// The counts taken off the workers (made by [`Observer::new`]).
    fn first(&self) -> Arc<WorkerCounts> {
        self.lock()
            .first()
            .cloned()
            .unwrap_or_else(|| Arc::new(WorkerCounts::default()))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<WorkerCounts>>> {
        self.workers.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Collector for WorkerList {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let workers = self.lock().clone();
        let mut requests = BTreeMap::<RuleHostLabels, u64>::new();
        let mut durations = BTreeMap::<RuleLabels, (f64, u64, Vec<u64>)>::new();
        for w in &workers {
            let series = w.rules.lock().unwrap_or_else(|e| e.into_inner());
            for (labels, c) in &series.requests {
                *requests.entry(labels.clone()).or_default() += c.get();
            }
            for (labels, d) in &series.durations {
                let e = durations
                    .entry(labels.clone())
                    .or_insert_with(|| (0.0, 0, vec![0; DURATION_BUCKETS.len() + 1]));
                e.0 += f64::from_bits(d.sum.load(Ordering::Relaxed));
                e.1 += d.count.load(Ordering::Relaxed);
                for (sum, b) in e.2.iter_mut().zip(&d.buckets) {
                    *sum += b.load(Ordering::Relaxed);
                }
            }
        }
        let mut m = encoder.encode_descriptor(
            "requests",
            "Requests served, by ingress rule number and the rule's hostname pattern",
            None,
            MetricType::Counter,
        )?;
        for (labels, n) in &requests {
            m.encode_family(labels)?
                .encode_counter::<NoLabelSet, _, u64>(n, None)?;
        }
        let mut m = encoder.encode_descriptor(
            "request_errors",
            "Requests and streams that failed, by cause",
            None,
            MetricType::Counter,
        )?;
        for cause in ErrorCause::ALL {
            let n: u64 = workers.iter().map(|w| w.errors[cause.index()].get()).sum();
            m.encode_family(&CauseLabels {
                cause: cause.as_str(),
            })?
            .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
        let mut m = encoder.encode_descriptor(
            "bytes",
            "Payload bytes moved between the edge and origins",
            None,
            MetricType::Counter,
        )?;
        for (direction, name) in [
            (Direction::ToOrigin, "to_origin"),
            (Direction::FromOrigin, "from_origin"),
        ] {
            let n: u64 = workers.iter().map(|w| w.counter(direction).get()).sum();
            m.encode_family(&DirectionLabels { direction: name })?
                .encode_counter::<NoLabelSet, _, u64>(&n, None)?;
        }
        let mut m = encoder.encode_descriptor(
            "request_duration_seconds",
            "Time from a stream's arrival to the end of its response, by ingress rule number",
            None,
            MetricType::Histogram,
        )?;
        for (labels, (sum, count, buckets)) in &durations {
            let bounds = DURATION_BUCKETS.iter().copied().chain([f64::MAX]);
            let buckets: Vec<(f64, u64)> = bounds.zip(buckets.iter().copied()).collect();
            m.encode_family(labels)?
                .encode_histogram::<NoLabelSet>(*sum, *count, &buckets, None)?;
        }
        let active: i64 = workers.iter().map(|w| w.active_streams.get()).sum();
        encoder
            .encode_descriptor(
                "active_streams",
                "Streams being served now",
                None,
                MetricType::Gauge,
            )?
            .encode_gauge(&active)
    }
}

/// The metric handles of one ingress rule on one worker.
#[derive(Debug, Clone)]
pub struct RuleHandles {
    requests: Counter,
    duration: Arc<Durations>,
}

impl RuleHandles {
    /// Counts a request matched to the rule.
    pub fn request(&self) {
        bump(self.requests.inner(), 1);
    }

    /// Records how long a request of the rule took.
    pub fn observe(&self, elapsed: Duration) {
        self.duration.observe(elapsed.as_secs_f64());
    }
}

/// The rule handles cached for one rule set.
#[derive(Debug, Default)]
struct RuleCache {
    /// The rule set the handles belong to; holding it keeps its address from being reused.
    rules: Option<Arc<IngressRules>>,
    handles: Vec<Option<RuleHandles>>,
}

/// One worker's view of the [`Observer`]: the shared counters plus a cache of per-rule handles,
/// so the request path neither allocates label sets nor takes the families' locks.
#[derive(Debug)]
pub struct WorkerMetrics {
    observer: Arc<Observer>,
    counts: Arc<WorkerCounts>,
    cache: RefCell<RuleCache>,
}

impl WorkerMetrics {
    /// A worker's metrics reporting into `observer`.
    pub fn new(observer: Arc<Observer>) -> WorkerMetrics {
        let counts = observer.counts.add();
        WorkerMetrics {
            observer,
            counts,
            cache: RefCell::new(RuleCache::default()),
        }
    }

    /// The shared observer.
    pub fn observer(&self) -> &Observer {
        &self.observer
    }

    /// Counts a request matched to rule `index` (from 0) of `rules`.
    pub fn request(&self, rules: &Arc<IngressRules>, index: usize) {
        self.with_rule(rules, index, RuleHandles::request);
    }

    /// Records how long a request matched to rule `index` (from 0) of `rules` took.
    pub fn observe(&self, rules: &Arc<IngressRules>, index: usize, elapsed: Duration) {
        self.with_rule(rules, index, |h| h.observe(elapsed));
    }

    /// Runs `f` on the handles of rule `index` of `rules`: created on the first request of a
    /// rule set, then cached until the rules are replaced (a reload).
    fn with_rule<R>(
        &self,
        rules: &Arc<IngressRules>,
        index: usize,
        f: impl FnOnce(&RuleHandles) -> R,
    ) -> R {
        let mut cache = self.cache.borrow_mut();
        if !cache.rules.as_ref().is_some_and(|r| Arc::ptr_eq(r, rules)) {
            cache.rules = Some(rules.clone());
            cache.handles.clear();
        }
        if cache.handles.len() <= index {
            cache.handles.resize(index + 1, None);
        }
        let slot = &mut cache.handles[index];
        let handles = slot.get_or_insert_with(|| {
            let hostname = rules
                .rules()
                .get(index)
                .map(|r| r.hostname.to_string())
                .unwrap_or_else(|| "*".to_owned());
            self.counts.rule_handles(index + 1, hostname)
        });
        f(handles)
    }

    /// Counts a failed request or stream.
    pub fn error(&self, cause: ErrorCause) {
        self.counts.error(cause);
    }

    /// Counts payload bytes.
    pub fn bytes(&self, direction: Direction, n: usize) {
        self.counts.bytes(direction, n);
    }

    /// The worker's byte counter of `direction`, for tasks that outlive a borrow of the
    /// worker's context.
    pub fn counter(&self, direction: Direction) -> Counter {
        self.counts.counter(direction).clone()
    }

    /// Marks a stream as being served until the returned guard drops.
    pub fn stream(&self) -> StreamGuard<'_> {
        self.counts.active_streams.inc();
        StreamGuard {
            gauge: &self.counts.active_streams,
        }
    }
}

/// Keeps `ringtun_active_streams` counted while a stream is served.
#[derive(Debug)]
pub struct StreamGuard<'a> {
    gauge: &'a Gauge,
}

impl Drop for StreamGuard<'_> {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OriginRequest;

    #[test]
    fn readiness_follows_links_and_draining() {
        let o = Observer::new("c1");
        assert!(!o.is_ready());
        o.link_up("dfw");
        o.link_up("mci");
        assert!(o.is_ready());
        assert_eq!(o.ready_links(), 2);
        o.link_down("dfw");
        assert_eq!(o.ready_links(), 1);
        o.set_draining();
        assert!(!o.is_ready());
        let text = o.encode();
        assert!(
            text.contains("ringtun_links{data_center=\"mci\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("ringtun_links{data_center=\"dfw\"} 0"),
            "{text}"
        );
        assert!(text.contains("ringtun_ready_links 1"), "{text}");
        assert!(text.contains("ringtun_draining 1"), "{text}");
    }

    #[test]
    fn rule_handles_are_cached_per_rule_set() {
        let o = Arc::new(Observer::new("c1"));
        let w = WorkerMetrics::new(o.clone());
        let rules = Arc::new(
            IngressRules::from_url("http://127.0.0.1:1", &OriginRequest::default())
                .unwrap_or_else(|e| panic!("{e}")),
        );
        let started = std::time::Instant::now();
        for _ in 0..3 {
            w.request(&rules, 0);
            w.observe(&rules, 0, started.elapsed());
        }
        w.bytes(Direction::ToOrigin, 10);
        w.bytes(Direction::FromOrigin, 5);
        w.error(ErrorCause::OriginRefused);
        {
            let _s = w.stream();
            assert!(o.encode().contains("ringtun_active_streams 1"));
        }
        let text = o.encode();
        assert!(
            text.contains("ringtun_requests_total{rule=\"1\",hostname=\"*\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("ringtun_request_duration_seconds_count{rule=\"1\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("ringtun_bytes_total{direction=\"to_origin\"} 10"),
            "{text}"
        );
        assert!(
            text.contains("ringtun_bytes_total{direction=\"from_origin\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("ringtun_request_errors_total{cause=\"origin_refused\"} 1"),
            "{text}"
        );
        assert!(text.contains("ringtun_active_streams 0"), "{text}");
        // A reload (a new rule set) gets fresh handles for the same numbers.
        let reloaded = Arc::new((*rules).clone());
        w.request(&reloaded, 0);
        assert!(
            o.encode()
                .contains("ringtun_requests_total{rule=\"1\",hostname=\"*\"} 4")
        );
    }
}
