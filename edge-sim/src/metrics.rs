//! Prometheus metrics of the control plane, encoded for `GET /metrics`.
//!
//! Counters are atomics (`prometheus-client`), so bumping one takes no lock; the registry of
//! metric descriptions is only read when scraped.
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Labels of an admin API request.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdminLabels {
    /// HTTP method.
    pub method: String,
    /// Response status code.
    pub code: String,
}

/// Labels of a per-data-center gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DcLabels {
    /// Data center name.
    pub data_center: String,
}

/// Labels of a public request error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    /// What failed, e.g. `no_route`, `no_connector`, `bad_request`, `connector`, `origin`.
    pub cause: String,
}

/// The edge's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Tunnels created.
    pub tunnels_created: Counter,
    /// Tunnels deleted.
    pub tunnels_deleted: Counter,
    /// Tunnels that exist now.
    pub tunnels: Gauge,
    /// Connectors registered (first link of a connector).
    pub connectors_registered: Counter,
    /// Connector registrations refused (limit, unknown tunnel).
    pub connectors_rejected: Counter,
    /// Connectors connected now.
    pub connectors: Gauge,
    /// Admin API requests by method and status.
    pub admin_requests: Family<AdminLabels, Counter>,
    /// Live links per data center.
    pub links: Family<DcLabels, Gauge>,
    /// Public HTTP requests received.
    pub public_requests: Counter,
    /// Public TCP connections received.
    pub public_tcp_connections: Counter,
    /// Public connections handed to another worker (no link of their tunnel on theirs).
    pub public_handoffs: Counter,
    /// Public requests that failed, by cause.
    pub public_errors: Family<CauseLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ringtun_edge");
        let m = Metrics {
            registry: Registry::default(),
            tunnels_created: Counter::default(),
            tunnels_deleted: Counter::default(),
            tunnels: Gauge::default(),
            connectors_registered: Counter::default(),
            connectors_rejected: Counter::default(),
            connectors: Gauge::default(),
            admin_requests: Family::default(),
            links: Family::default(),
            public_requests: Counter::default(),
            public_tcp_connections: Counter::default(),
            public_handoffs: Counter::default(),
            public_errors: Family::default(),
        };
        registry.register(
            "tunnels_created",
            "Tunnels created",
            m.tunnels_created.clone(),
        );
        registry.register(
            "tunnels_deleted",
            "Tunnels deleted",
            m.tunnels_deleted.clone(),
        );
        registry.register("tunnels", "Tunnels that exist", m.tunnels.clone());
        registry.register(
            "connectors_registered",
            "Connectors registered",
            m.connectors_registered.clone(),
        );
        registry.register(
            "connectors_rejected",
            "Connector registrations refused",
            m.connectors_rejected.clone(),
        );
        registry.register("connectors", "Connectors connected", m.connectors.clone());
        registry.register(
            "admin_requests",
            "Admin API requests",
            m.admin_requests.clone(),
        );
        registry.register("links", "Live links per data center", m.links.clone());
        registry.register(
            "public_requests",
            "Public HTTP requests",
            m.public_requests.clone(),
        );
        registry.register(
            "public_tcp_connections",
            "Public TCP connections",
            m.public_tcp_connections.clone(),
        );
        registry.register(
            "public_handoffs",
            "Public connections handed to another worker",
            m.public_handoffs.clone(),
        );
        registry.register(
            "public_errors",
            "Public requests that failed, by cause",
            m.public_errors.clone(),
        );
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// Counts one admin API request.
    pub fn admin_request(&self, method: &str, code: u16) {
        self.admin_requests
            .get_or_create(&AdminLabels {
                method: method.to_owned(),
                code: code.to_string(),
            })
            .inc();
    }

    /// A link registered in `data_center`.
    pub fn link_up(&self, data_center: &str) {
        self.links
            .get_or_create(&DcLabels {
                data_center: data_center.to_owned(),
            })
            .inc();
    }

    /// A link of `data_center` ended.
    pub fn link_down(&self, data_center: &str) {
        self.links
            .get_or_create(&DcLabels {
                data_center: data_center.to_owned(),
            })
            .dec();
    }

    /// Counts one failed public request.
    pub fn public_error(&self, cause: &str) {
        self.public_errors
            .get_or_create(&CauseLabels {
                cause: cause.to_owned(),
            })
            .inc();
    }

    /// The metrics in the Prometheus text format (OpenMetrics flavour).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_counters() {
        let m = Metrics::default();
        m.tunnels_created.inc();
        m.admin_request("GET", 200);
        let text = m.encode();
        assert!(
            text.contains("ringtun_edge_tunnels_created_total 1"),
            "{text}"
        );
        assert!(
            text.contains("ringtun_edge_admin_requests_total{method=\"GET\",code=\"200\"} 1"),
            "{text}"
        );
    }
}
