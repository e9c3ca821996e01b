//! The edge as a whole: state directory, registry, admin API, the data plane (link servers and
//! public listeners) and the `--metrics` server, started and stopped together.
use std::net::SocketAddr;
use std::sync::Arc;

use ringtun_core::control::MetricsServer;

use crate::admin::{AdminContext, AdminServer};
use crate::cluster::NodeRecord;
use crate::dataplane::DataPlane;
use crate::error::Result;
use crate::metrics::Metrics;
use crate::metrics_server::EdgeProbes;
use crate::registry::Registry;
use crate::settings::Settings;
use crate::state_dir::StateDir;
use crate::stop_request::StopRequest;

/// A started edge. Dropping it stops the admin API.
#[derive(Debug)]
pub struct Edge {
    settings: Settings,
    state: StateDir,
    registry: Arc<Registry>,
    admin: AdminServer,
    data_plane: DataPlane,
    metrics_server: Option<MetricsServer<EdgeProbes>>,
}

impl Edge {
    /// Creates or loads the state directory, opens the registry, starts the data plane, the admin
    /// API and (with `metrics`) the metrics server, whose `/ready` turns 200 once all is up.
    pub fn start(settings: Settings) -> Result<Edge> {
        Edge::start_with_metrics(settings, None)
    }

    /// [`Edge::start`] with the `--metrics` server on `metrics`.
    pub fn start_with_metrics(
        settings: Settings,
        metrics_addr: Option<SocketAddr>,
    ) -> Result<Edge> {
        let state = StateDir::open(&settings)?;
        let metrics = Arc::new(Metrics::default());
        let registry = Arc::new(match &settings.etcd {
            Some(etcd) => Registry::open_etcd(etcd, settings.connector_limit, metrics)?,
            None => Registry::open_with(
                &state.registry_path(),
                settings.connector_limit,
                metrics,
                settings.registry_busy_timeout,
            )?,
        });
        // Link servers, public HTTP and TCP routes on the core::rt workers (see `dataplane`).
        // Bound first so `/ready` can say 503 while the rest starts.
        let metrics_server = match metrics_addr {
            Some(addr) => {
                let server = crate::metrics_server::start(
                    addr,
                    settings.admin_limits,
                    Arc::clone(&registry),
                )?;
                tracing::info!(metrics = %server.local_addr(), "metrics server listening");
                Some(server)
            }
            None => None,
        };
        let data_plane = DataPlane::start(&settings, Arc::clone(&registry), state.tls())?;
        // Discovery reports the bound addresses (port 0 resolved).
        let mut data_centers = settings.data_centers.clone();
        for dc in &mut data_centers {
            dc.servers = data_plane
                .servers()
                .iter()
                .filter(|s| s.data_center == dc.name)
                .map(|s| s.addr)
                .collect();
        }
        let record_dcs = crate::admin::record_data_centers(&data_centers);
        let admin = AdminServer::start(
            settings.admin,
            settings.admin_limits,
            AdminContext {
                registry: Arc::clone(&registry),
                token: state.admin_token().clone(),
                data_centers,
                ca_pem: state.tls().ca_pem.clone(),
                faults: Arc::clone(data_plane.faults()),
            },
        )?;
        // With etcd, the other nodes learn where this one is (its record lives under its lease).
        registry.announce_node(
            NodeRecord {
                data_center: settings.public_dc.clone(),
                admin: admin.local_addr().to_string(),
                servers: data_plane.servers().iter().map(|s| s.addr).collect(),
                peer: data_plane.peer_addr(),
                // Discovery lists every node's servers by data center from this.
                data_centers: record_dcs,
            }
            .encode(),
        );
        // Every listener is bound (connections queue until each worker takes its sockets,
        // which it does first thing): ready, before the last start-up line is logged.
        if let Some(m) = &metrics_server {
            m.probes().set_ready(true);
        }
        tracing::info!(
            admin = %admin.local_addr(),
            token_file = %state.admin_token_path().display(),
            state_dir = %state.path().display(),
            "admin API listening"
        );
        Ok(Edge {
            settings,
            state,
            registry,
            admin,
            data_plane,
            metrics_server,
        })
    }

    /// The metrics server's bound address, when `--metrics` was given.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_server.as_ref().map(MetricsServer::local_addr)
    }

    /// The fault injection state.
    pub fn faults(&self) -> &Arc<crate::dataplane::faults::Faults> {
        self.data_plane.faults()
    }

    /// The admin API's bound address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr()
    }

    /// The bound public HTTP address.
    pub fn public_http_addr(&self) -> SocketAddr {
        self.data_plane.public_http()
    }

    /// The edge servers (data center and bound address).
    pub fn servers(&self) -> &[crate::dataplane::ServerInfo] {
        self.data_plane.servers()
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The state directory (admin token, TLS material).
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// The settings the edge runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Graceful shutdown's first half: `/ready` says 503, no new public connection or link is
    /// accepted, every link gets the DRAIN GOAWAY, and in-flight requests get up to
    /// `--grace-period` to finish. Call [`Edge::stop`] afterwards.
    pub fn drain(&self) {
        if let Some(m) = &self.metrics_server {
            m.probes().set_ready(false);
        }
        let grace = self.settings.grace_period;
        let moving = self.settings.peer.move_period.unwrap_or(grace / 2);
        self.data_plane.drain(grace, moving);
    }

    /// Stops everything that was started; `/ready` says 503 from the start of it, and the
    /// metrics server stops last. In an etcd cluster the node's presence lease is revoked once
    /// the data plane (its links) has stopped.
    pub fn stop(mut self) {
        if let Some(m) = &self.metrics_server {
            m.probes().set_ready(false);
        }
        self.data_plane.stop();
        // Its links are closed: the other nodes of a cluster see its presence go at once.
        self.registry.leave_cluster();
        self.admin.stop();
        if let Some(m) = self.metrics_server.take() {
            m.stop();
        }
        tracing::info!("edge stopped");
    }
}

/// Runs the edge until `shutdown` is triggered.
pub fn run(settings: Settings, shutdown: StopRequest) -> Result<()> {
    run_with_metrics(settings, None, shutdown)
}

/// [`run`] with the `--metrics` server on `metrics`.
pub fn run_with_metrics(
    settings: Settings,
    metrics: Option<SocketAddr>,
    shutdown: StopRequest,
) -> Result<()> {
    let edge = Edge::start_with_metrics(settings, metrics)?;
    shutdown.wait();
    tracing::info!("shutting down");
    edge.drain();
    edge.stop();
    Ok(())
}
