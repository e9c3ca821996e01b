//! `tunnel run`: the connector's data plane.
//!
//! [`run`] starts the `core::rt` workers, puts link *i* on worker *i mod N* (DESIGN.md, "Threads
//! and cores"), and waits. Each link is supervised by [`link::supervise`]: connect, TLS,
//! registration, then streams served by [`crate::proxy`] on the same worker, with that worker's
//! keep-alive pool. SIGINT/SIGTERM drain every link within the grace period; a second signal
//! exits at once.
//!
//! What it leaves to others: finding the settings ([`crate::cli::tunnel::run`] turns flags,
//! config and credentials into [`RunSettings`]), and everything about HTTP framing
//! (`ringtun_core::http`).

pub mod edges;
mod link;

use std::rc::Rc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ringtun_core::handshake::TunnelSecret;
use ringtun_core::rt::{Runtime, RuntimeConfig, Shutdown, WorkerCtx};

pub use edges::{DataCenter, LinkPlan};

use crate::error::{Error, Result};
use crate::ingress::IngressRules;
use crate::observe::{Observer, WorkerMetrics};
use crate::proxy::{Pool, ProxyCtx};

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
    plan: LinkPlan,
    ca_pem: Option<String>,
    grace: Duration,
    fatal: Mutex<Option<String>>,
    observer: Arc<Observer>,
    label: String,
    weight: u16,
    standby: bool,
}

impl Shared {
    /// Records the first fatal refusal.
    fn fail(&self, message: String) {
        if let Ok(mut f) = self.fatal.lock()
            && f.is_none()
        {
            *f = Some(message);
        }
    }
}

/// Runs the connector until a signal (then `Ok`) or a fatal refusal from the edge (then
/// [`Error::EdgeRefusedConnector`]).
pub fn run(settings: RunSettings) -> Result<()> {
    let uuid = uuid::Uuid::from_bytes(settings.connector_id);
    let connector_id = Bytes::from(uuid.to_string());
    let links = settings.links.max(1);
    let shared = Arc::new(Shared {
        tunnel_id: settings.tunnel_id,
        connector_id: settings.connector_id,
        secret: settings.secret,
        plan: settings.plan,
        ca_pem: settings.ca_pem,
        grace: settings.grace,
        fatal: Mutex::new(None),
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
    let ingress = Arc::new(settings.ingress);
    let origin_response_timeout = settings.origin_response_timeout;
    let mut config = RuntimeConfig::from_env().map_err(|e| Error::Runtime {
        reason: e.to_string(),
    })?;
    if settings.workers.is_some() {
        config.workers = settings.workers;
    }
    let worker_shared = shared.clone();
    let rt = Runtime::start(config, move |ctx: WorkerCtx| {
        let shared = worker_shared.clone();
        let ingress = ingress.clone();
        let connector_id = connector_id.clone();
        async move {
            let index = ctx.index();
            let workers = ctx.workers().max(1);
            let shutdown: Shutdown = ctx.shutdown().clone();
            let proxy = Rc::new(ProxyCtx {
                ingress,
                connector_id,
                pool: Pool::new(),
                origin_response_timeout,
                metrics: WorkerMetrics::new(shared.observer.clone()),
            });
            let mut tasks = Vec::new();
            for i in (0..links).filter(|i| i % workers == index) {
                tasks.push(compio::runtime::spawn(link::supervise(
                    i,
                    shared.clone(),
                    proxy.clone(),
                    shutdown.clone(),
                )));
            }
            for t in tasks {
                let _ = t.await;
            }
        }
    })
    .map_err(|e| Error::Runtime {
        reason: e.to_string(),
    })?;
    watch_signals(rt.shutdown_signal(), shared.observer.clone());
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

/// SIGINT/SIGTERM trigger `shutdown` (graceful drain) and turn `/ready` to 503; a second one
/// exits at once.
fn watch_signals(shutdown: Shutdown, observer: Arc<Observer>) {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM]) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch signals; SIGINT/SIGTERM kill without drain");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("ringtun-signals".into())
        .spawn(move || {
            let mut seen = 0;
            for sig in signals.forever() {
                seen += 1;
                if seen == 1 {
                    observer.set_draining();
                    tracing::info!(signal = sig, "shutting down: draining links");
                    shutdown.trigger();
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
