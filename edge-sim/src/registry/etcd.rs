//! [`Etcd`]: the registry's records in etcd, shared by several edge nodes (`--etcd`).
//!
//! Writes are sent to the cluster thread ([`crate::cluster`]), which runs them as transactions
//! bounded by `--etcd-timeout-ms` and returns once this node's view shows them. The view is
//! fed by the cluster thread's watch on the key prefix, so it also follows every other node's
//! writes; when etcd is away it stays as it was, and writes fail with a retryable
//! [`crate::Error::RegistryUnavailable`].
use std::sync::{Arc, RwLock};

use super::connectors::ConnectorTable;
use super::storage::{Storage, ViewCell, ViewHook};
use super::types::{DnsRoute, TcpRoute, Tunnel, TunnelSecret};
use super::view::View;
use crate::cluster::{Cluster, ClusterPresence, EtcdSettings, Op, Presence};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::settings::LbPolicy;

/// The registry's records in etcd, with the view the cluster thread keeps.
#[derive(Debug)]
pub(crate) struct Etcd {
    view: Arc<ViewCell>,
    presence: Arc<RwLock<Arc<ClusterPresence>>>,
    cluster: Cluster,
}

impl Etcd {
    /// Starts the cluster thread; returns once the first view is loaded.
    pub(crate) fn start(settings: &EtcdSettings, metrics: Arc<Metrics>) -> Result<Etcd> {
        let view = Arc::new(ViewCell::default());
        let presence = Arc::new(RwLock::new(Arc::new(ClusterPresence::default())));
        let cluster = Cluster::start(settings, Arc::clone(&view), Arc::clone(&presence), metrics)?;
        Ok(Etcd {
            view,
            presence,
            cluster,
        })
    }
}

impl Storage for Etcd {
    fn view(&self) -> Arc<View> {
        self.view.get()
    }

    fn version(&self) -> u64 {
        self.view.version()
    }

    fn create_tunnel(&self, tunnel: &Tunnel, secret: &TunnelSecret) -> Result<()> {
        self.cluster
            .call(Op::CreateTunnel(tunnel.clone(), secret.clone()))
    }

    fn delete_tunnel(&self, tunnel: &Tunnel) -> Result<()> {
        self.cluster.call(Op::DeleteTunnel(tunnel.clone()))
    }

    fn set_lb_policy(&self, tunnel: &Tunnel, policy: Option<LbPolicy>) -> Result<()> {
        self.cluster.call(Op::SetPolicy(tunnel.clone(), policy))
    }

    fn add_dns_route(&self, route: &DnsRoute) -> Result<()> {
        self.cluster.call(Op::PutDns(route.clone(), false))
    }

    fn move_dns_route(&self, route: &DnsRoute) -> Result<()> {
        self.cluster.call(Op::PutDns(route.clone(), true))
    }

    fn delete_dns_route(&self, hostname: &str) -> Result<()> {
        self.cluster.call(Op::DeleteDns(hostname.to_owned()))
    }

    fn add_tcp_route(&self, route: &TcpRoute) -> Result<()> {
        self.cluster.call(Op::AddTcp(route.clone()))
    }

    fn delete_tcp_route(&self, port: u16) -> Result<()> {
        self.cluster.call(Op::DeleteTcp(port))
    }

    fn on_remote_change(&self, hook: ViewHook) {
        self.view.set_hook(hook);
    }

    fn links_changed(&self, table: &ConnectorTable) {
        self.cluster
            .announce(Presence::Links(table.presence_links()));
    }

    fn announce_node(&self, record: String) {
        self.cluster.announce(Presence::Node(record));
    }

    fn leave(&self) {
        self.cluster.leave();
    }

    fn node_id(&self) -> Option<&str> {
        Some(self.cluster.node())
    }

    fn cluster_ca(&self) -> Option<crate::cluster::ClusterCa> {
        self.cluster.ca().cloned()
    }

    fn presence(&self) -> Option<Arc<ClusterPresence>> {
        Some(Arc::clone(
            &self.presence.read().unwrap_or_else(|p| p.into_inner()),
        ))
    }
}
