//! `tunnel run`: the connector's data plane.
//!
//! [`run`] starts the `core::rt` workers, puts link *i* on worker *i mod N* (thread per
//! core, `core::rt`), and waits. Each link is supervised by [`link_supervisor::supervise`]: connect, TLS,
//! registration, then streams served by [`crate::proxy`] on the same worker, with that worker's
//! keep-alive pool. SIGINT/SIGTERM drain every link within the grace period; streams still open
//! when it ends are reset and counted in the log (`grace period over; resetting open streams
//! streams=N`); a second signal exits at once. SIGHUP (and `--watch-config`) reloads the ingress
//! rules ([`reload`]) without touching links or open streams.
//!
//! What it leaves to others: finding the settings ([`crate::cli::tunnel::run`] turns flags,
//! config and credentials into [`RunSettings`]), and everything about HTTP framing
//! (`ringtun_core::http`).

pub mod edges;
mod link_supervisor;
pub mod rediscover;
pub mod reload;

use std::path::PathBuf;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ringtun_core::error::Classify;
use ringtun_core::handshake::TunnelSecret;
use ringtun_core::rt::{Runtime, RuntimeConfig, Shutdown, WorkerCtx};

pub use edges::{DataCenter, LinkPlan, Placement};
pub use rediscover::Rediscovery;

use crate::error::{Error, Result};
use crate::ingress::{IngressRules, LiveRules};
use crate::observe::{Observer, WorkerMetrics};
use crate::proxy::{Pool, ProxyCtx, Resolver};

/// Everything `tunnel run` needs, validated.
#[derive(Debug)]
pub struct RunSettings {
    /// The tunnel's ID.
    pub tunnel_id: [u8; 16],
    /// The tunnel's secret.
    pub secret: TunnelSecret,
    /// This run's connector ID.
    pub connector_id: [u8; 16],
    /// The ingress rules.
    pub ingress: IngressRules,
    /// Where links go.
    pub plan: LinkPlan,
    /// Where discovery is read again when a link is placed again; `None` with `--edge`.
    pub rediscovery: Option<Rediscovery>,
    /// The edge CA in PEM; `None` means plaintext links (`--danger-plaintext-links`).
    pub ca_pem: Option<String>,
    /// How many links (`--ha-connections`).
    pub links: usize,
    /// Worker threads; `None` means one per core.
    pub workers: Option<usize>,
    /// How long links may drain at shutdown.
    pub grace: Duration,
    /// How long an origin may take to send a response head (`--origin-response-timeout`).
    pub origin_response_timeout: Duration,
    /// How often origin names are resolved again (`--origin-dns-refresh-interval`).
    pub origin_dns_refresh: Duration,
    /// The config file the rules came from, reloaded on SIGHUP; `None` with `--url` and no file.
    pub config_path: Option<PathBuf>,
    /// `--url`, if given (a reload combines it with the file as at start).
    pub url: Option<String>,
    /// `--watch-config`: also reload when the file changes.
    pub watch_config: bool,
    /// Metrics and readiness (served by `--metrics`).
    pub observer: Arc<Observer>,
    /// `--label`, sent at registration (empty: none).
    pub label: String,
    /// `--weight`, sent at registration (1–1000).
    pub weight: u16,
    /// `--standby`, sent at registration.
    pub standby: bool,
}

/// What the workers share (read-only, plus the fatal error slot).
#[derive(Debug)]
pub struct Shared {
    tunnel_id: [u8; 16],
    connector_id: [u8; 16],
    secret: TunnelSecret,
    /// Where links go; replaced whole when discovery is read again.
    plan: Mutex<Arc<LinkPlan>>,
    rediscovery: Option<Arc<Rediscovery>>,
    /// Where each link is registered now: its data center (index) and server.
    live: Mutex<Vec<Option<(usize, std::net::SocketAddr)>>>,
    ca_pem: Option<String>,
    grace: Duration,
    fatal: Mutex<Option<String>>,
    observer: Arc<Observer>,
    label: String,
    weight: u16,
    standby: bool,
    /// Streams being served now.
    open_streams: OpenStreams,
}

/// Streams being served now, one counter per worker: each is written only by its own worker,
/// so counting a stream touches no cache line another core writes. Read (summed) only at the
/// grace deadline.
#[derive(Debug)]
struct OpenStreams {
    per_worker: Box<[WorkerCount]>,
}

/// One worker's counter, alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(128))]
struct WorkerCount(AtomicUsize);

impl OpenStreams {
    fn new(workers: usize) -> OpenStreams {
        OpenStreams {
            per_worker: (0..workers.max(1))
                .map(|_| WorkerCount::default())
                .collect(),
        }
    }

    fn slot(&self, worker: usize) -> &AtomicUsize {
        &self.per_worker[worker % self.per_worker.len()].0
    }

    fn total(&self) -> usize {
        self.per_worker
            .iter()
            .map(|c| c.0.load(Ordering::Relaxed))
            .sum()
    }
}

impl Shared {
    /// The current plan.
    fn plan(&self) -> Arc<LinkPlan> {
        Arc::clone(&self.plan.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records where link `index` is registered now (`None`: nowhere).
    fn set_live(&self, index: usize, at: Option<(usize, std::net::SocketAddr)>) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = live.get_mut(index) {
            *slot = at;
        }
    }

    /// The nodes of the other live links in data center `dc`, one entry per link, as `plan`
    /// names them (see [`edges::choose_server`]).
    fn held(&self, plan: &LinkPlan, index: usize, dc: usize) -> Vec<String> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .filter_map(|(_, l)| *l)
            .filter(|(d, _)| *d == dc)
            .map(|(d, addr)| plan.data_center(d).node_of(addr))
            .collect()
    }

    /// Reads discovery again in the background (one refresh at a time; see [`rediscover`]);
    /// the next placement uses the answer.
    fn rediscover(self: &Arc<Self>) {
        let Some(r) = self.rediscovery.clone() else {
            return;
        };
        if !r.start() {
            return;
        }
        let shared = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("ringtun-discovery".into())
            .spawn(move || {
                if let Some(dcs) = r.fetch() {
                    let mut plan = shared.plan.lock().unwrap_or_else(|p| p.into_inner());
                    *plan = Arc::new(plan.refreshed(dcs));
                }
                r.done();
            });
        if let Err(e) = spawned {
            tracing::debug!(error = %e, "cannot start a discovery refresh");
            if let Some(r) = &self.rediscovery {
                r.done();
            }
        }
    }

    /// Records the first fatal refusal.
    fn fail(&self, message: String) {
        if let Ok(mut f) = self.fatal.lock()
            && f.is_none()
        {
            *f = Some(message);
        }
    }

    fn stream_opened(&self, worker: usize) {
        self.open_streams
            .slot(worker)
            .fetch_add(1, Ordering::Relaxed);
    }

    fn stream_closed(&self, worker: usize) {
        self.open_streams
            .slot(worker)
            .fetch_sub(1, Ordering::Relaxed);
    }

    /// How many streams are being served now, over all links and workers.
    pub fn open_streams(&self) -> usize {
        self.open_streams.total()
    }
}

/// Runs the connector until a signal (then `Ok`) or a fatal refusal from the edge (then
/// [`Error::EdgeRefusedConnector`]).
pub fn run(settings: RunSettings) -> Result<()> {
    let uuid = uuid::Uuid::from_bytes(settings.connector_id);
    let connector_id = Bytes::from(uuid.to_string());
    let links = settings.links.max(1);
    let mut config = RuntimeConfig::from_env()?;
    if settings.workers.is_some() {
        config.workers = settings.workers;
    }
    let workers = config.resolved_workers()?;
    let shared = Arc::new(Shared {
        tunnel_id: settings.tunnel_id,
        connector_id: settings.connector_id,
        secret: settings.secret,
        live: Mutex::new(vec![None; settings.plan.links().max(links)]),
        plan: Mutex::new(Arc::new(settings.plan)),
        rediscovery: settings.rediscovery.map(Arc::new),
        ca_pem: settings.ca_pem,
        grace: settings.grace,
        fatal: Mutex::new(None),
        open_streams: OpenStreams::new(workers),
        observer: settings.observer,
        label: settings.label,
        weight: settings.weight,
        standby: settings.standby,
    });
    if shared.ca_pem.is_none() {
        tracing::warn!(
            "DANGER: links are plaintext (--danger-plaintext-links); use this only for benchmarks"
        );
    }
    // Origin names are resolved here, before any worker runs, then kept fresh by a thread.
    let resolver = Arc::new(
        Resolver::system(settings.origin_dns_refresh).observed_by(shared.observer.clone()),
    );
    resolver.track(&settings.ingress);
    resolver.start_refresher();
    let live = LiveRules::new(settings.ingress);
    let reloader = Arc::new(
        reload::Reloader::new(settings.config_path, settings.url, live.clone())
            .observed_by(shared.observer.clone())
            .resolving_with(resolver.clone()),
    );
    // Signals are caught from here on (a SIGHUP before this would have killed the process).
    let signals = catch_signals();
    let origin_response_timeout = settings.origin_response_timeout;
    let watch_config = settings.watch_config;
    let worker_shared = shared.clone();
    // Fires when the grace period after SIGTERM/SIGINT is over.
    let hard = Shutdown::new();
    let worker_hard = hard.clone();
    let rt = Runtime::start(config, move |ctx: WorkerCtx| {
        let shared = worker_shared.clone();
        let hard = worker_hard.clone();
        let ingress = live.for_worker();
        let resolver = resolver.clone();
        let connector_id = connector_id.clone();
        async move {
            let index = ctx.index();
            let workers = ctx.workers().max(1);
            let shutdown: Shutdown = ctx.shutdown().clone();
            let proxy = Rc::new(ProxyCtx {
                ingress,
                connector_id,
                pool: Pool::new(),
                resolver: resolver.for_worker(),
                origin_response_timeout,
                metrics: WorkerMetrics::new(shared.observer.clone()),
            });
            let mut tasks = Vec::new();
            for i in (0..links).filter(|i| i % workers == index) {
                tasks.push(compio::runtime::spawn(link_supervisor::supervise(
                    i,
                    index,
                    shared.clone(),
                    proxy.clone(),
                    shutdown.clone(),
                    hard.clone(),
                )));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    })?;
    if let Some(signals) = signals {
        watch_signals(
            signals,
            rt.shutdown_signal(),
            hard,
            shared.clone(),
            reloader.clone(),
        );
    }
    if watch_config {
        reload::watch(reloader);
    }
    for r in rt.join() {
        if let Err(e) = r {
            tracing::error!(error = %e, "a worker failed");
        }
    }
    let fatal = shared.fatal.lock().ok().and_then(|mut f| f.take());
    match fatal {
        Some(message) => Err(Error::EdgeRefusedConnector { message }),
        None => {
            tracing::info!("all links closed; bye");
            Ok(())
        }
    }
}

/// Runs `step`, a start-up call to the edge's admin API (discovery, resolving a tunnel name),
/// until it succeeds or fails for good. While the edge cannot be reached or fails
/// ([`Classify::is_retry_safe`]), it waits with the links' backoff (1 s doubling to 32 s, with
/// jitter) and says so in one warning per attempt, as cloudflared does; any other error (a
/// refused token, an unknown tunnel) is returned at once.
pub fn retry_at_start<T>(what: &str, mut step: impl FnMut() -> Result<T>) -> Result<T> {
    let mut backoff = link_supervisor::BACKOFF_START;
    let mut attempt: u32 = 1;
    loop {
        match step() {
            Ok(v) => {
                if attempt > 1 {
                    tracing::info!(what, attempt, "the edge answered; starting");
                }
                return Ok(v);
            }
            Err(e) if e.is_retry_safe() => {
                let delay = link_supervisor::jitter(backoff);
                tracing::warn!(
                    what,
                    attempt,
                    retry_in = ?delay,
                    error = %e,
                    "the edge is not reachable yet; retrying"
                );
                std::thread::sleep(delay);
                backoff = (backoff * 2).min(link_supervisor::BACKOFF_CAP);
                attempt = attempt.saturating_add(1);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Registers the signals the connector handles; `None` (logged) when that fails.
fn catch_signals() -> Option<signal_hook::iterator::Signals> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch signals; SIGINT/SIGTERM kill without drain");
            None
        }
    }
}

/// SIGINT/SIGTERM trigger `shutdown` (graceful drain) and start the grace period's clock, at the
/// end of which `hard` fires; a second one exits at once. SIGHUP reloads the rules.
fn watch_signals(
    mut signals: signal_hook::iterator::Signals,
    shutdown: Shutdown,
    hard: Shutdown,
    shared: Arc<Shared>,
    reloader: Arc<reload::Reloader>,
) {
    use signal_hook::consts::SIGHUP;
    let spawned = std::thread::Builder::new()
        .name("ringtun-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                if sig == SIGHUP {
                    tracing::info!("SIGHUP: reloading the config");
                    reloader.reload();
                    continue;
                }
                seen += 1;
                if seen == 1 {
                    shared.observer.set_draining();
                    tracing::info!(signal = sig, grace = ?shared.grace, "shutting down: draining links");
                    shutdown.trigger();
                    start_grace_clock(shared.clone(), hard.clone());
                } else {
                    tracing::warn!(signal = sig, "second signal: exiting now");
                    std::process::exit(1);
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the signal thread");
    }
}

/// After the grace period: count the streams still open, log them, and fire `hard` so every
/// link resets them and closes.
fn start_grace_clock(shared: Arc<Shared>, hard: Shutdown) {
    let spawned = std::thread::Builder::new()
        .name("ringtun-grace".into())
        .spawn(move || {
            std::thread::sleep(shared.grace);
            let n = shared.open_streams();
            tracing::warn!(streams = n, "grace period over; resetting open streams");
            hard.trigger();
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the grace clock; links wait for their streams");
    }
}
