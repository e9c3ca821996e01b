//! The `--metrics ADDR` server: `/ready`, `/healthcheck` and `/metrics` for orchestrators and
//! Prometheus, without the admin token.
//!
//! It is `ringtun_core::control`'s [`MetricsServer`] (the connector's too) with the edge's
//! [`EdgeProbes`]. Like the admin API it runs on std threads of its own, with the same
//! [`Limits`], off the data-plane workers: probes and scrapes come now and then, and must
//! answer even when the workers are busy, or when another client stalls.
//!
//! | route | answer |
//! |---|---|
//! | `GET /ready` | `200 {"status":200,"ready":true}` once every listener is bound and serving; `503` before that and while shutting down |
//! | `GET /healthcheck` | `200 OK` while the process runs |
//! | `GET /metrics` | the same Prometheus text as the admin API's `/metrics` |
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ringtun_core::control::{Limits, MetricsServer, Probes, Rejection};

use crate::error::{Error, Result};
use crate::registry::Registry;

/// Binds `addr` and serves the edge's probes under `limits`; `/ready` says 503 until
/// [`EdgeProbes::set_ready`] (through [`MetricsServer::probes`]).
pub fn start(
    addr: SocketAddr,
    limits: Limits,
    registry: Arc<Registry>,
) -> Result<MetricsServer<EdgeProbes>> {
    let what = "metrics server";
    let probes = Arc::new(EdgeProbes {
        registry,
        ready: AtomicBool::new(false),
    });
    MetricsServer::start(crate::admin::bind(what, addr)?, limits, probes).map_err(|e| Error::Bind {
        what,
        addr,
        reason: format!("cannot start its thread: {e}"),
    })
}

/// What the edge says on its metrics server: `/ready` follows the edge's state (set at start,
/// cleared at drain), `/metrics` is the registry's Prometheus text.
pub struct EdgeProbes {
    registry: Arc<Registry>,
    ready: AtomicBool,
}

impl std::fmt::Debug for EdgeProbes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EdgeProbes")
            .field("ready", &self.is_ready())
            .finish_non_exhaustive()
    }
}

impl EdgeProbes {
    /// Sets what `/ready` answers.
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// What `/ready` answers now.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}

impl Probes for EdgeProbes {
    fn ready(&self) -> (bool, String) {
        let ready = self.is_ready();
        let status = if ready { 200 } else { 503 };
        (ready, format!(r#"{{"status":{status},"ready":{ready}}}"#))
    }

    fn metrics(&self) -> (&'static str, String) {
        (
            crate::metrics::CONTENT_TYPE,
            crate::metrics::scrape(&self.registry),
        )
    }

    fn rejected(&self, reason: Rejection) {
        self.registry
            .metrics()
            .control_rejected("metrics", reason.as_str());
    }
}
