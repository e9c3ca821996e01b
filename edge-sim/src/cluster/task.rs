//! The cluster thread's tokio side: one client, a list-then-watch loop feeding the view, and
//! the write transactions.
//!
//! # The view
//! The loop lists every key under the prefix, publishes the view and then watches the prefix
//! from the list's revision + 1, applying each batch of events and publishing again. When the
//! watch ends (etcd restarted, the connection broke, the revision was compacted) it lists again
//! and watches from the new revision: a list is complete, so no update is lost whatever happened
//! in between. Until etcd answers, the last view stays in place: the data plane keeps serving.
//!
//! # Writes
//! Each write is one transaction whose compares make it safe against other nodes (a name or a
//! route is taken by creating its key: `create_revision == 0`). It is bounded by the timeout,
//! and then waits (bounded again) until the watch has applied the write's revision, so the
//! node that wrote reads its own write.
use std::collections::BTreeMap;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, Txn, TxnOp, TxnOpResponse,
    WatchOptions,
};
use tokio::sync::{mpsc, oneshot, watch};

use super::keys::{ClusterPresence, Keys};
use super::{EtcdSettings, Op, Presence, Request};
use crate::error::{Error, Result};
use crate::limit::Limit;
use crate::metrics::Metrics;
use crate::registry::{Tunnel, ViewCell};

/// Longest pause between two attempts to list and watch again while etcd is away.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// At most one warning per this interval while etcd stays unreachable.
const LOG_INTERVAL: Duration = crate::limit::LOG_INTERVAL;

pub(super) struct Task {
    settings: EtcdSettings,
    keys: Keys,
    view: Arc<ViewCell>,
    presence: Arc<RwLock<Arc<ClusterPresence>>>,
    metrics: Arc<Metrics>,
}

impl Task {
    pub(super) fn new(
        settings: EtcdSettings,
        view: Arc<ViewCell>,
        presence: Arc<RwLock<Arc<ClusterPresence>>>,
        metrics: Arc<Metrics>,
    ) -> Task {
        let keys = Keys::new(&settings.prefix);
        Task {
            settings,
            keys,
            view,
            presence,
            metrics,
        }
    }

    fn publish_presence(&self, kvs: &BTreeMap<Vec<u8>, Vec<u8>>) {
        let presence = Arc::new(self.keys.presence(kvs));
        *self.presence.write().unwrap_or_else(|p| p.into_inner()) = presence;
    }

    /// Connects, loads the first view (then answers `ready`), and serves until `stop`.
    pub(super) async fn run(
        self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        presence: mpsc::UnboundedReceiver<Presence>,
        node: String,
        stop: oneshot::Receiver<()>,
        ready: SyncSender<std::result::Result<(), String>>,
        ca: Arc<std::sync::OnceLock<super::ClusterCa>>,
    ) {
        let timeout = self.settings.timeout;
        let options = ConnectOptions::new()
            .with_connect_timeout(timeout)
            .with_timeout(timeout)
            // A dead connection (etcd killed, a partition) is noticed within about two
            // intervals, which ends the watch and starts a new list.
            .with_keep_alive(Duration::from_secs(1), timeout)
            .with_keep_alive_while_idle(true);
        let connect = Client::connect(&self.settings.endpoints, Some(options));
        let client = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => {
                let _ = ready.send(Err(e.to_string()));
                return;
            }
            Err(_) => {
                let _ = ready.send(Err(format!("no connection within {timeout:?}")));
                return;
            }
        };
        // The cluster CA of peer links: created by the first node, read by every node.
        match tokio::time::timeout(timeout, super::ca::get_or_create(&client, &self.keys)).await {
            Ok(Ok(found)) => {
                let _ = ca.set(found);
            }
            Ok(Err(e)) => {
                let _ = ready.send(Err(e));
                return;
            }
            Err(_) => {
                let _ = ready.send(Err(format!("cluster CA: no answer within {timeout:?}")));
                return;
            }
        }
        let (applied_tx, applied) = watch::channel(0i64);
        let this = Arc::new(self);
        let sync = tokio::spawn(Arc::clone(&this).sync(client.clone(), applied_tx, ready));
        let presence = tokio::spawn(super::presence::run(
            client.clone(),
            this.keys.clone(),
            node,
            this.settings.lease_ttl,
            timeout,
            presence,
        ));
        let serve = async {
            while let Some(request) = requests.recv().await {
                let this = Arc::clone(&this);
                let client = client.clone();
                let applied = applied.clone();
                tokio::spawn(async move {
                    let result = this.write(client, request.op, applied).await;
                    let _ = request.reply.send(result);
                });
            }
        };
        tokio::select! {
            _ = stop => {}
            () = serve => {}
        }
        sync.abort();
        presence.abort();
    }

    /// The list-then-watch loop (see the module doc); answers `ready` after the first list.
    async fn sync(
        self: Arc<Self>,
        client: Client,
        applied: watch::Sender<i64>,
        ready: SyncSender<std::result::Result<(), String>>,
    ) {
        let mut ready = Some(ready);
        let mut backoff = Duration::from_millis(100);
        let mut last_log: Option<Instant> = None;
        let mut failures = 0u64;
        loop {
            let listed_before = *applied.borrow();
            let reason = match self.list_and_watch(&client, &applied, &mut ready).await {
                Ok(()) => "the watch ended".to_owned(),
                Err(e) => e,
            };
            // A list got through this time: etcd is there, the next try comes soon.
            if *applied.borrow() != listed_before {
                backoff = Duration::from_millis(100);
            }
            if let Some(ready) = ready.take() {
                let _ = ready.send(Err(reason));
                return;
            }
            failures += 1;
            if last_log.is_none_or(|t| t.elapsed() >= LOG_INTERVAL) {
                tracing::warn!(
                    reason,
                    failures,
                    "etcd unreachable; serving from the last registry view"
                );
                last_log = Some(Instant::now());
                failures = 0;
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One list and the watch after it; returns why the watch ended.
    async fn list_and_watch(
        &self,
        client: &Client,
        applied: &watch::Sender<i64>,
        ready: &mut Option<SyncSender<std::result::Result<(), String>>>,
    ) -> std::result::Result<(), String> {
        let timeout = self.settings.timeout;
        let prefix = self.keys.prefix().to_owned();
        let kv = client.kv_client();
        let list = tokio::time::timeout(
            timeout,
            retry_unsent(|| {
                let (mut kv, prefix) = (kv.clone(), prefix.clone());
                async move { kv.get(prefix, Some(GetOptions::new().with_prefix())).await }
            }),
        )
        .await
        .map_err(|_| format!("list: no answer within {timeout:?}"))?
        .map_err(|e| format!("list: {e}"))?;
        let revision = list.header().map_or(0, |h| h.revision());
        let mut kvs: BTreeMap<Vec<u8>, Vec<u8>> = list
            .kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
            .collect();
        self.view.set(self.keys.view(&kvs));
        self.publish_presence(&kvs);
        applied.send_replace(revision);
        if let Some(ready) = ready.take() {
            tracing::info!(revision, keys = kvs.len(), "registry loaded from etcd");
            let _ = ready.send(Ok(()));
        }
        let mut watcher = client.watch_client();
        let options = WatchOptions::new()
            .with_prefix()
            .with_start_revision(revision + 1);
        let mut stream = tokio::time::timeout(timeout, watcher.watch(prefix, Some(options)))
            .await
            .map_err(|_| format!("watch: no answer within {timeout:?}"))?
            .map_err(|e| format!("watch: {e}"))?;
        loop {
            let response = match stream.message().await {
                Ok(Some(r)) => r,
                Ok(None) => return Err("watch: stream closed".into()),
                Err(e) => return Err(format!("watch: {e}")),
            };
            if response.canceled() {
                return Err(format!(
                    "watch canceled ({}; compacted at {})",
                    response.cancel_reason(),
                    response.compact_revision()
                ));
            }
            if response.events().is_empty() {
                continue;
            }
            let (mut records, mut presence) = (false, false);
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                if self.keys.is_presence(kv.key()) {
                    presence = true;
                } else {
                    records = true;
                }
                match event.event_type() {
                    EventType::Put => {
                        kvs.insert(kv.key().to_vec(), kv.value().to_vec());
                    }
                    EventType::Delete => {
                        kvs.remove(kv.key());
                    }
                }
            }
            // Presence churn (links coming and going) does not make the workers rebuild their
            // route tables: only a change of the records does.
            if records {
                self.view.set(self.keys.view(&kvs));
            }
            if presence {
                self.publish_presence(&kvs);
            }
            if let Some(h) = response.header() {
                applied.send_replace(h.revision());
            }
        }
    }

    /// Runs one write, then waits until the view shows it.
    async fn write(&self, client: Client, op: Op, mut applied: watch::Receiver<i64>) -> Result<()> {
        let timeout = self.settings.timeout;
        let revision = match tokio::time::timeout(timeout, self.transact(client, op)).await {
            Ok(Ok(revision)) => revision,
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                self.metrics
                    .limits
                    .hit(Limit::EtcdTimeout, &self.settings.endpoints.join(","));
                return Err(Error::RegistryUnavailable(format!(
                    "etcd did not answer within {timeout:?} (unreachable, or its quorum is lost)"
                )));
            }
        };
        let caught_up = applied.wait_for(|r| *r >= revision);
        if tokio::time::timeout(timeout, caught_up).await.is_err() {
            tracing::warn!(
                revision,
                "etcd write done, but the watch has not shown it yet"
            );
        }
        Ok(())
    }

    /// One write's transaction; returns its revision.
    async fn transact(&self, client: Client, op: Op) -> Result<i64> {
        let k = &self.keys;
        let kv = client.kv_client();
        let exists = |key: String| Compare::version(key, CompareOp::Greater, 0);
        let free = |key: String| Compare::create_revision(key, CompareOp::Equal, 0);
        let (txn, refused) = match op {
            Op::CreateTunnel(tunnel, secret) => (
                Txn::new().when([free(k.name(&tunnel.name))]).and_then([
                    TxnOp::put(k.name(&tunnel.name), tunnel.id.to_string(), None),
                    TxnOp::put(k.tunnel(tunnel.id), Keys::encode_tunnel(&tunnel)?, None),
                    TxnOp::put(k.secret(tunnel.id), Keys::encode_secret(&secret), None),
                ]),
                Error::TunnelExists(tunnel.name),
            ),
            Op::DeleteTunnel(tunnel) => return self.delete_tunnel(&kv, tunnel).await,
            Op::SetPolicy(mut tunnel, policy) => {
                tunnel.lb_policy = policy;
                (
                    Txn::new()
                        .when([exists(k.tunnel(tunnel.id))])
                        .and_then([TxnOp::put(
                            k.tunnel(tunnel.id),
                            Keys::encode_tunnel(&tunnel)?,
                            None,
                        )]),
                    Error::TunnelNotFound(tunnel.name),
                )
            }
            Op::PutDns(route, overwrite) => {
                let key = k.dns(&route.hostname);
                let mut when = vec![exists(k.tunnel(route.tunnel_id))];
                if !overwrite {
                    when.push(free(key.clone()));
                }
                let txn = Txn::new()
                    .when(when)
                    .and_then([TxnOp::put(key.clone(), route.tunnel_id.to_string(), None)])
                    .or_else([TxnOp::get(key, None)]);
                let refused = Error::DnsRouteExists {
                    hostname: route.hostname.clone(),
                    tunnel: String::new(),
                };
                return self.route_txn(&kv, txn, refused, route.tunnel_id).await;
            }
            Op::AddTcp(route) => {
                let key = k.tcp(route.port);
                let txn = Txn::new()
                    .when([exists(k.tunnel(route.tunnel_id)), free(key.clone())])
                    .and_then([TxnOp::put(key.clone(), route.tunnel_id.to_string(), None)])
                    .or_else([TxnOp::get(key, None)]);
                let refused = Error::TcpRouteExists {
                    port: route.port,
                    tunnel: String::new(),
                };
                return self.route_txn(&kv, txn, refused, route.tunnel_id).await;
            }
            Op::DeleteDns(hostname) => (
                Txn::new()
                    .when([exists(k.dns(&hostname))])
                    .and_then([TxnOp::delete(k.dns(&hostname), None)]),
                Error::RouteNotFound(format!("hostname {hostname}")),
            ),
            Op::DeleteTcp(port) => (
                Txn::new()
                    .when([exists(k.tcp(port))])
                    .and_then([TxnOp::delete(k.tcp(port), None)]),
                Error::RouteNotFound(format!("tcp port {port}")),
            ),
        };
        let response = run_txn(&kv, txn).await?;
        if !response.succeeded() {
            return Err(refused);
        }
        Ok(response.header().map_or(0, |h| h.revision()))
    }

    /// Deletes a tunnel, its secret, its name and every route to it, in one transaction. The
    /// routes are read first, and the transaction only applies if no route changed since that
    /// read (a route added meanwhile by another node would otherwise outlive its tunnel); if one
    /// did, it reads again.
    async fn delete_tunnel(&self, kv: &etcd_client::KvClient, tunnel: Tunnel) -> Result<i64> {
        let k = &self.keys;
        let id = tunnel.id.to_string();
        loop {
            let routes = retry_unsent(|| {
                let (mut kv, prefix) = (kv.clone(), k.routes());
                async move { kv.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await
            .map_err(unavailable)?;
            let read_at = routes.header().map_or(0, |h| h.revision());
            let mut ops = vec![
                TxnOp::delete(k.tunnel(tunnel.id), None),
                TxnOp::delete(k.secret(tunnel.id), None),
                TxnOp::delete(k.name(&tunnel.name), None),
            ];
            for route in routes.kvs() {
                if route.value() == id.as_bytes() {
                    ops.push(TxnOp::delete(route.key().to_vec(), None));
                }
            }
            let txn = Txn::new()
                .when([
                    Compare::version(k.tunnel(tunnel.id), CompareOp::Greater, 0),
                    Compare::mod_revision(k.routes(), CompareOp::Less, read_at + 1).with_prefix(),
                ])
                .and_then(ops)
                .or_else([TxnOp::get(k.tunnel(tunnel.id), None)]);
            let response = run_txn(kv, txn).await?;
            if response.succeeded() {
                return Ok(response.header().map_or(0, |h| h.revision()));
            }
            let tunnel_there = response.op_responses().into_iter().any(|r| match r {
                TxnOpResponse::Get(g) => !g.kvs().is_empty(),
                _ => false,
            });
            if !tunnel_there {
                return Err(Error::TunnelNotFound(tunnel.name));
            }
        }
    }

    /// A route's compare-and-set: on refusal, says whose the route is (or that the tunnel has
    /// gone meanwhile).
    async fn route_txn(
        &self,
        kv: &etcd_client::KvClient,
        txn: Txn,
        refused: Error,
        tunnel_id: uuid::Uuid,
    ) -> Result<i64> {
        let response = run_txn(kv, txn).await?;
        if response.succeeded() {
            return Ok(response.header().map_or(0, |h| h.revision()));
        }
        let owner = response.op_responses().into_iter().find_map(|r| match r {
            TxnOpResponse::Get(g) => g
                .kvs()
                .first()
                .and_then(|kv| uuid::Uuid::parse_str(kv.value_str().ok()?).ok()),
            _ => None,
        });
        let view = self.view.get();
        let Some(owner) = owner else {
            // The route is free: the compare that failed was the tunnel's.
            return Err(Error::TunnelNotFound(tunnel_id.to_string()));
        };
        let owner = crate::registry::tunnel_name(&view, owner);
        Err(match refused {
            Error::DnsRouteExists { hostname, .. } => Error::DnsRouteExists {
                hostname,
                tunnel: owner,
            },
            Error::TcpRouteExists { port, .. } => Error::TcpRouteExists {
                port,
                tunnel: owner,
            },
            other => other,
        })
    }
}

/// Runs `call` until it returns anything but a failure to connect. With several endpoints the
/// client spreads calls over them, and one whose member is down fails at once with a refused
/// connection; such a call never reached etcd, so sending it again (to another member) cannot
/// apply it twice. The caller's timeout bounds the retries.
async fn retry_unsent<T, F, Fut>(mut call: F) -> std::result::Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    loop {
        match call().await {
            Err(e) if never_sent(&e) => tokio::time::sleep(Duration::from_millis(20)).await,
            other => return other,
        }
    }
}

/// Whether `e` is a failure to connect (the request was never sent).
fn never_sent(e: &etcd_client::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        if let etcd_client::Error::GRpcStatus(status) = e
            && status.message() == "tcp connect error"
        {
            return true;
        }
        source = err.source();
    }
    false
}

/// An etcd failure, as the admin API's 503.
/// Runs one transaction ([`retry_unsent`]); etcd's failure is [`Error::RegistryUnavailable`].
async fn run_txn(kv: &etcd_client::KvClient, txn: Txn) -> Result<etcd_client::TxnResponse> {
    retry_unsent(|| {
        let (mut kv, txn) = (kv.clone(), txn.clone());
        async move { kv.txn(txn).await }
    })
    .await
    .map_err(unavailable)
}

fn unavailable(e: etcd_client::Error) -> Error {
    Error::RegistryUnavailable(format!("etcd: {e}"))
}
