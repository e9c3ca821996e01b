//! Several edge nodes sharing one etcd: the etcd client on its own control-plane thread.
//!
//! `--etcd http://HOST:PORT[,…]` moves the registry's durable records from SQLite into etcd
//! (see `docs/cluster.md`). The etcd client (`etcd-client`, on tokio and tonic) runs on one
//! thread, `cluster`, with its own current-thread tokio runtime; tokio exists nowhere else in
//! the edge. The rest of the edge talks to it through channels:
//! - writes go in as an [`Op`] with a reply channel; every one is bounded by
//!   `--etcd-timeout-ms` on the thread and waited for at most a little longer by the caller, so
//!   an unreachable etcd or a lost quorum is a prompt [`Error::RegistryUnavailable`] (503 from
//!   the admin API), never a hang;
//! - reads never reach this thread: it keeps the registry's in-memory view (see
//!   [`crate::registry`]) up to date from a watch on the key prefix, so a change made on one node
//!   reaches every other node, and the data-plane workers read that view without waiting.
//!
//! # Layout
//! - [`keys`]: the key layout under the prefix and the records' encoding.
//! - `connect`: TLS and authentication towards etcd (`--etcd-cacert`, `--etcd-cert`,
//!   `--etcd-key`, `--etcd-user`, `--etcd-password-file`), read and checked at start.
//! - `task`: the tokio side, started and stopped together: `sync` (the list-then-watch loop
//!   feeding the view), `writes` (the write transactions) and `presence` (this node's lease).
//! - `ca`: the cluster CA of peer links, created once in etcd.
mod ca;
mod connect;
mod keys;
mod presence;
mod sync;
mod task;
mod writes;

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, sync_channel};
use std::thread::JoinHandle;
use std::time::Duration;

pub use ca::{ClusterCa, ca_params};
pub use connect::{EtcdAccess, EtcdAccessFlags};
pub use keys::{
    ClusterLink, ClusterPresence, DEFAULT_PREFIX, LinkRecord, NodeDataCenter, NodeRecord,
};
pub(crate) use presence::Presence;

use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::registry::{DnsRoute, TcpRoute, Tunnel, TunnelSecret};
use crate::settings::LbPolicy;

/// Default bound on one etcd call (`--etcd-timeout-ms`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(2);

/// Default TTL of a node's presence lease (`--etcd-lease-ttl`); renewed every third of it.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(10);

/// The `--etcd*` flags (flattened into the binary's command line).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct EtcdFlags {
    /// etcd client URLs, http://HOST:PORT[,...] (or all https://, see --etcd-cacert): keep the
    /// registry in etcd, shared with the other edge nodes given the same URLs (see
    /// docs/cluster.md) [default: SQLite, one node].
    #[arg(long, value_name = "URLS")]
    pub etcd: Vec<String>,
    /// Prefix of every etcd key of this edge cluster [default: /ringtun/].
    #[arg(long, value_name = "PREFIX")]
    pub etcd_prefix: Option<String>,
    /// Milliseconds one etcd call may take before an admin write answers 503 [default: 2000].
    #[arg(long, value_name = "MS")]
    pub etcd_timeout_ms: Option<u64>,
    /// Seconds a node's presence in etcd (its record and its links) outlives its last lease
    /// renewal; renewed every third of it [default: 10].
    #[arg(long, value_name = "SECS")]
    pub etcd_lease_ttl: Option<u64>,
    /// TLS and authentication towards etcd.
    #[command(flatten)]
    pub access: EtcdAccessFlags,
}

/// Where the cluster's etcd is and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EtcdSettings {
    /// Client URLs of the etcd members, all `http://HOST:PORT` or all `https://HOST:PORT`.
    pub endpoints: Vec<String>,
    /// Every key of this edge cluster starts with it (`--etcd-prefix`, default `/ringtun/`).
    pub prefix: String,
    /// Bound on one etcd call: connecting, a write, the first read at start
    /// (`--etcd-timeout-ms`).
    pub timeout: Duration,
    /// TTL of this node's presence lease (`--etcd-lease-ttl`): a node that dies loses its
    /// `nodes/` and `links/` keys this long after its last renewal.
    pub lease_ttl: Duration,
    /// TLS and authentication towards etcd.
    pub access: EtcdAccess,
}

impl Default for EtcdSettings {
    /// No endpoint, and every default.
    fn default() -> Self {
        EtcdSettings {
            endpoints: Vec::new(),
            prefix: DEFAULT_PREFIX.to_owned(),
            timeout: DEFAULT_TIMEOUT,
            lease_ttl: DEFAULT_LEASE_TTL,
            access: EtcdAccess::default(),
        }
    }
}

impl EtcdSettings {
    /// Parses `--etcd URL[,URL…]` (repeatable), `--etcd-prefix`, `--etcd-timeout-ms`,
    /// `--etcd-lease-ttl` and the TLS and authentication flags; `None` when no URL was given
    /// (SQLite, one node).
    pub fn from_flags(flags: &EtcdFlags) -> Result<Option<EtcdSettings>> {
        let (prefix, timeout_ms, lease_ttl_secs) = (
            flags.etcd_prefix.clone(),
            flags.etcd_timeout_ms,
            flags.etcd_lease_ttl,
        );
        let access = &flags.access;
        let endpoints: Vec<String> = flags
            .etcd
            .iter()
            .flat_map(|u| u.split(','))
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        if endpoints.is_empty() {
            if prefix.is_some() || timeout_ms.is_some() || lease_ttl_secs.is_some() || access.any()
            {
                return Err(Error::Config(
                    "--etcd-prefix, --etcd-timeout-ms, --etcd-lease-ttl and the TLS and user \
                     flags of etcd need --etcd"
                        .into(),
                ));
            }
            return Ok(None);
        }
        let mut schemes = Vec::new();
        for url in &endpoints {
            let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
            if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains('/') {
                return Err(Error::Config(format!(
                    "etcd endpoint {url:?} must be http://HOST:PORT or https://HOST:PORT"
                )));
            }
            if !schemes.contains(&scheme) {
                schemes.push(scheme);
            }
        }
        if schemes.len() > 1 {
            return Err(Error::Config(
                "etcd endpoints must be all http:// or all https://".into(),
            ));
        }
        let access = EtcdAccess::from_flags(access, schemes == ["https"])?;
        let prefix = prefix.unwrap_or_else(|| DEFAULT_PREFIX.to_owned());
        if !prefix.starts_with('/') || !prefix.ends_with('/') || prefix.len() < 2 {
            return Err(Error::Config(format!(
                "etcd prefix {prefix:?} must start and end with '/', like /ringtun/"
            )));
        }
        let timeout =
            Duration::from_millis(timeout_ms.unwrap_or(DEFAULT_TIMEOUT.as_millis() as u64));
        if timeout.is_zero() {
            return Err(Error::Config("etcd-timeout-ms must be at least 1".into()));
        }
        let lease_ttl = Duration::from_secs(lease_ttl_secs.unwrap_or(DEFAULT_LEASE_TTL.as_secs()));
        if lease_ttl < Duration::from_secs(2) {
            return Err(Error::Config("etcd-lease-ttl must be at least 2".into()));
        }
        Ok(Some(EtcdSettings {
            endpoints,
            prefix,
            timeout,
            lease_ttl,
            access,
        }))
    }
}

/// A write to the registry's records in etcd (see [`keys`] for what each touches).
#[derive(Debug, Clone)]
pub(crate) enum Op {
    /// A new tunnel; its name must be free.
    CreateTunnel(Tunnel, TunnelSecret),
    /// A tunnel, its secret, its name and its routes go.
    DeleteTunnel(Tunnel),
    /// A tunnel's load-balancing policy.
    SetPolicy(Tunnel, Option<LbPolicy>),
    /// A DNS route whose hostname must be free (`false`) or may be taken (`true`, overwrite).
    PutDns(DnsRoute, bool),
    /// A DNS route goes.
    DeleteDns(String),
    /// A TCP route whose port must be free.
    AddTcp(TcpRoute),
    /// A TCP route goes.
    DeleteTcp(u16),
}

/// A write on its way to the cluster thread, with where to answer.
struct Request {
    op: Op,
    reply: SyncSender<Result<()>>,
}

/// The handle on the cluster thread; dropping it stops the thread.
#[derive(Debug)]
pub(crate) struct Cluster {
    requests: tokio::sync::mpsc::UnboundedSender<Request>,
    presence: tokio::sync::mpsc::UnboundedSender<Presence>,
    /// This node's ID in `nodes/` and `links/` (new at every start).
    node: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    timeout: Duration,
    endpoints: String,
    /// The cluster CA of peer links (set before the thread answers ready).
    ca: Arc<std::sync::OnceLock<ClusterCa>>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("op", &self.op).finish()
    }
}

impl Cluster {
    /// Starts the cluster thread and waits until it has loaded the first full view into
    /// `view` (which it then keeps up to date); fails when etcd cannot be reached in time.
    pub(crate) fn start(
        settings: &EtcdSettings,
        view: Arc<crate::registry::ViewCell>,
        presence_view: Arc<std::sync::RwLock<Arc<ClusterPresence>>>,
        metrics: Arc<Metrics>,
    ) -> Result<Cluster> {
        // Every file the TLS and user flags name is read and checked before anything connects.
        let options = connect::load(settings)?;
        let (requests, rx) = tokio::sync::mpsc::unbounded_channel();
        let (presence, presence_rx) = tokio::sync::mpsc::unbounded_channel();
        let node = uuid::Uuid::new_v4().to_string();
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (ready_tx, ready) = sync_channel(1);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|source| Error::Start {
                what: "etcd runtime",
                source,
            })?;
        let task = task::Task::new(settings.clone(), options, view, presence_view, metrics);
        let node_id = node.clone();
        let ca = Arc::new(std::sync::OnceLock::new());
        let ca_cell = Arc::clone(&ca);
        let thread = std::thread::Builder::new()
            .name("cluster".into())
            .spawn(move || {
                runtime.block_on(task.run(rx, presence_rx, node_id, stopped, ready_tx, ca_cell))
            })
            .map_err(|source| Error::Start {
                what: "cluster thread",
                source,
            })?;
        let endpoints = settings.endpoints.join(",");
        tracing::info!(node = %node, "edge node in the etcd cluster");
        let mut cluster = Cluster {
            requests,
            presence,
            node,
            stop: Some(stop),
            thread: Some(thread),
            timeout: settings.timeout,
            endpoints,
            ca,
        };
        // Connecting and the first list each take at most `timeout`.
        match ready.recv_timeout(settings.timeout * 3 + Duration::from_secs(1)) {
            Ok(Ok(())) => Ok(cluster),
            Ok(Err(reason)) => {
                cluster.shut_down();
                Err(Error::Config(format!(
                    "cannot reach etcd at {}: {}",
                    cluster.endpoints,
                    connect::with_hint(reason, &settings.access)
                )))
            }
            Err(_) => {
                cluster.shut_down();
                let reason = format!("no answer within {:?}", settings.timeout * 3);
                Err(Error::Config(format!(
                    "cannot reach etcd at {}: {}",
                    cluster.endpoints,
                    connect::with_hint(reason, &settings.access)
                )))
            }
        }
    }

    /// Runs `op` on the cluster thread. Returns once the view shows it, or with a retryable
    /// [`Error::RegistryUnavailable`] when etcd does not answer in time.
    pub(crate) fn call(&self, op: Op) -> Result<()> {
        let (reply, answer) = sync_channel(1);
        self.requests
            .send(Request { op, reply })
            .map_err(|_| Error::RegistryUnavailable("the cluster thread has stopped".into()))?;
        // The thread bounds the call itself by `timeout` (twice: the write, then the view
        // catching up); this bound only guards against the thread itself being stuck.
        answer
            .recv_timeout(self.timeout * 2 + Duration::from_secs(1))
            .unwrap_or_else(|_| {
                Err(Error::RegistryUnavailable(format!(
                    "etcd at {} did not answer within {:?}",
                    self.endpoints,
                    self.timeout * 2
                )))
            })
    }

    /// Tells the presence task something new (never waits).
    pub(crate) fn announce(&self, presence: Presence) {
        let _ = self.presence.send(presence);
    }

    /// This node leaves the cluster: its presence lease is revoked, so the other nodes see its
    /// record and links vanish at once. Waits for it, bounded by twice the call timeout (a
    /// lease that cannot be revoked expires after its TTL anyway). Call it once its links
    /// have drained.
    pub(crate) fn leave(&self) {
        let (done, left) = sync_channel(1);
        if self.presence.send(Presence::Leave(done)).is_ok() {
            let _ = left.recv_timeout(self.timeout * 2 + Duration::from_secs(1));
        }
    }

    /// This node's ID in the cluster.
    pub(crate) fn node(&self) -> &str {
        &self.node
    }

    /// The cluster CA of peer links, as etcd holds it.
    pub(crate) fn ca(&self) -> Option<&ClusterCa> {
        self.ca.get()
    }

    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shut_down();
    }
}
