//! The edge as a whole: state directory, registry, admin API, and the seams for the link
//! servers and the public ingress.
use std::net::SocketAddr;
use std::sync::Arc;

use crate::admin::{AdminContext, AdminServer};
use crate::error::Result;
use crate::metrics::Metrics;
use crate::registry::Registry;
use crate::settings::Settings;
use crate::shutdown::Shutdown;
use crate::state::StateDir;

/// A started edge. Dropping it stops the admin API.
#[derive(Debug)]
pub struct Edge {
    settings: Settings,
    state: StateDir,
    registry: Arc<Registry>,
    admin: AdminServer,
}

impl Edge {
    /// Creates or loads the state directory, opens the registry and starts the admin API.
    pub fn start(settings: Settings) -> Result<Edge> {
        let state = StateDir::open(&settings)?;
        let metrics = Arc::new(Metrics::default());
        let registry = Arc::new(Registry::open(
            &state.registry_path(),
            settings.connector_limit,
            metrics,
        )?);
        let admin = AdminServer::start(
            settings.admin,
            AdminContext {
                registry: Arc::clone(&registry),
                token: state.admin_token().clone(),
                data_centers: settings.data_centers.clone(),
                ca_pem: state.tls().ca_pem.clone(),
            },
        )?;
        // Seam: the link servers (one per `settings.data_centers[..].servers`, TLS from
        // `state.tls()`, registration through `registry.register_connector`) start here.
        // Seam: the public HTTP ingress on `settings.public_http` and the TCP route listeners
        // (from `registry.route_table()`) start here.
        tracing::info!(
            admin = %admin.local_addr(),
            token_file = %state.admin_token_path().display(),
            state_dir = %state.path().display(),
            "admin API listening"
        );
        for dc in &settings.data_centers {
            let servers: Vec<String> = dc.servers.iter().map(|s| s.to_string()).collect();
            tracing::info!(data_center = %dc.name, servers = %servers.join(","), "data center configured");
        }
        Ok(Edge {
            settings,
            state,
            registry,
            admin,
        })
    }

    /// The admin API's bound address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin.local_addr()
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

    /// Stops everything that was started.
    pub fn stop(self) {
        self.admin.stop();
        tracing::info!("edge stopped");
    }
}

/// Runs the edge until `shutdown` is triggered.
pub fn run(settings: Settings, shutdown: Shutdown) -> Result<()> {
    let edge = Edge::start(settings)?;
    shutdown.wait();
    tracing::info!("shutting down");
    edge.stop();
    Ok(())
}
