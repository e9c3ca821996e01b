//! The cluster thread's tokio side: one client, the list-then-watch loop feeding the view
//! ([`sync`](super::sync)), the write transactions ([`writes`](super::writes)) and presence
//! ([`presence`](super::presence)), started here and stopped together.
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, RwLock};

use etcd_client::ConnectOptions;
use tokio::sync::{mpsc, oneshot, watch};

use super::keys::{ClusterPresence, Keys};
use super::{EtcdSettings, Presence, Request};
use crate::metrics::Metrics;
use crate::registry::ViewCell;

pub(super) struct Task {
    pub(super) settings: EtcdSettings,
    pub(super) keys: Keys,
    pub(super) view: Arc<ViewCell>,
    pub(super) presence: Arc<RwLock<Arc<ClusterPresence>>>,
    pub(super) metrics: Arc<Metrics>,
    /// How the client connects (TLS, user), read from the flags' files at start.
    options: ConnectOptions,
}

impl Task {
    pub(super) fn new(
        settings: EtcdSettings,
        options: ConnectOptions,
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
            options,
        }
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
        let client = match super::connect::connect(&self.settings, self.options.clone()).await {
            Ok(client) => client,
            Err(reason) => {
                let _ = ready.send(Err(reason));
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
}
