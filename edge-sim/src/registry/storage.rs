//! [`Storage`]: where the registry's durable records live, behind one trait.
//!
//! Two implementations: [`super::sqlite::Sqlite`] (one edge, `<state>/registry.db`, the
//! default) and [`super::etcd::Etcd`] (several edge nodes sharing one etcd, `--etcd`). Both keep
//! the records in an in-memory [`View`] that every read is served from; a write returns once
//! the view shows it (read your writes), and with etcd the view also follows what other nodes
//! write. Readers — the admin API, link registration on a data-plane worker, the route-table
//! refresh — take an `Arc` of a complete view and never wait on the store.
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};

use uuid::Uuid;

use super::connectors::ConnectorTable;
use super::types::{DnsRoute, TcpRoute, Tunnel, TunnelSecret};
use super::view::View;
use crate::error::Result;
use crate::settings::LbPolicy;

/// The registry's durable records: tunnels with their secrets, DNS and TCP routes.
///
/// Every method checks what the store itself can guarantee across writers (a name or route
/// taken by a concurrent writer is [`crate::Error::TunnelExists`] /
/// [`crate::Error::DnsRouteExists`] / [`crate::Error::TcpRouteExists`]); a store that cannot
/// answer in bounded time fails with a retryable [`crate::Fault::Unavailable`] error. On `Ok`,
/// [`Storage::view`] already shows the change.
pub(crate) trait Storage: Send + Sync + fmt::Debug {
    /// The current view (an `Arc` clone; never waits on the store).
    fn view(&self) -> Arc<View>;
    /// Bumped whenever the view changes (by this node or, with a shared store, another).
    fn version(&self) -> u64;
    /// Stores a new tunnel; its name must be free.
    fn create_tunnel(&self, tunnel: &Tunnel, secret: &TunnelSecret) -> Result<()>;
    /// Removes a tunnel, its secret and its routes.
    fn delete_tunnel(&self, tunnel: &Tunnel) -> Result<()>;
    /// Sets (or with `None` clears) a tunnel's load-balancing policy.
    fn set_lb_policy(&self, tunnel: &Tunnel, policy: Option<LbPolicy>) -> Result<()>;
    /// Adds a DNS route whose hostname must be free (compare-and-set across writers).
    fn add_dns_route(&self, route: &DnsRoute) -> Result<()>;
    /// Points an existing DNS route at another tunnel (`overwrite`).
    fn move_dns_route(&self, route: &DnsRoute) -> Result<()>;
    /// Removes a DNS route.
    fn delete_dns_route(&self, hostname: &str) -> Result<()>;
    /// Adds a TCP route whose port must be free (compare-and-set across writers).
    fn add_tcp_route(&self, route: &TcpRoute) -> Result<()>;
    /// Removes a TCP route.
    fn delete_tcp_route(&self, port: u16) -> Result<()>;
    /// Calls `hook` with each view that another writer's change brought (a shared store only;
    /// this node's own writes are followed up by the registry itself).
    fn on_remote_change(&self, _hook: ViewHook) {}
    /// This node's connector table changed (a shared store announces its links; never waits).
    fn links_changed(&self, _table: &ConnectorTable) {}
    /// This node's record for the other nodes, JSON (a shared store announces it).
    fn announce_node(&self, _record: String) {}
    /// This node stops after its links drained: a shared store withdraws its presence at once
    /// (waits, bounded).
    fn leave(&self) {}
    /// This node's ID in the cluster (a shared store only).
    fn node_id(&self) -> Option<&str> {
        None
    }
    /// Every node and live link of the cluster (a shared store only).
    fn presence(&self) -> Option<Arc<crate::cluster::ClusterPresence>> {
        None
    }
    /// The cluster CA of peer links (a shared store only).
    fn cluster_ca(&self) -> Option<crate::cluster::ClusterCa> {
        None
    }
}

/// What [`Storage::on_remote_change`] calls.
pub(crate) type ViewHook = Box<dyn Fn(&View) + Send + Sync>;

/// A view that is replaced whole (copy on write) and a version bumped with each replacement.
#[derive(Default)]
pub(crate) struct ViewCell {
    view: RwLock<Arc<View>>,
    version: AtomicU64,
    hook: OnceLock<ViewHook>,
}

impl fmt::Debug for ViewCell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ViewCell")
            .field("version", &self.version())
            .field("hook", &self.hook.get().is_some())
            .finish_non_exhaustive()
    }
}

impl ViewCell {
    /// A cell holding `view`.
    pub(crate) fn new(view: View) -> ViewCell {
        ViewCell {
            view: RwLock::new(Arc::new(view)),
            version: AtomicU64::new(0),
            hook: OnceLock::new(),
        }
    }

    /// The current view (one `Arc` clone under a lock held for no longer than that).
    pub(crate) fn get(&self) -> Arc<View> {
        // A panic while holding the lock leaves a complete `Arc` behind: still usable.
        Arc::clone(&self.view.read().unwrap_or_else(|p| p.into_inner()))
    }

    pub(crate) fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Publishes `view` in place of the current one, then calls the hook (if set) with it,
    /// outside the lock.
    pub(crate) fn set(&self, view: View) {
        let view = Arc::new(view);
        {
            let mut slot = self.view.write().unwrap_or_else(|p| p.into_inner());
            *slot = Arc::clone(&view);
            self.version.fetch_add(1, Ordering::Release);
        }
        if let Some(hook) = self.hook.get() {
            hook(&view);
        }
    }

    /// Sets the hook [`ViewCell::set`] calls; the first call wins.
    pub(crate) fn set_hook(&self, hook: ViewHook) {
        let _ = self.hook.set(hook);
    }

    /// Applies `change` to a copy of the current view and publishes it.
    pub(crate) fn update(&self, change: impl FnOnce(&mut View)) {
        let mut slot = self.view.write().unwrap_or_else(|p| p.into_inner());
        let mut next = View::clone(&slot);
        change(&mut next);
        *slot = Arc::new(next);
        self.version.fetch_add(1, Ordering::Release);
    }
}

/// The tunnel named `tunnel_id` in `view`, for errors that name the owner of a route.
pub(crate) fn tunnel_name(view: &View, tunnel_id: Uuid) -> String {
    view.find(&tunnel_id.to_string())
        .map(|t| t.name.clone())
        .unwrap_or_else(|| tunnel_id.to_string())
}
