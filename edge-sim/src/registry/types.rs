//! The registry's records.
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::settings::LbPolicy;

pub(crate) use ringtun_core::handshake::SECRET_LEN;
/// A tunnel's secret: the handshake's own type. The registry stores [`SECRET_LEN`] bytes; the
/// stores check that length when they read one back.
pub use ringtun_core::handshake::TunnelSecret;

/// A fresh random secret of [`SECRET_LEN`] bytes, for a new tunnel.
pub(crate) fn new_secret() -> TunnelSecret {
    let mut bytes = vec![0u8; SECRET_LEN];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    TunnelSecret::new(bytes)
}

/// A secret in standard base64: its form in a credentials file, in the admin API's answer to
/// a tunnel's creation, and in etcd.
pub(crate) fn secret_base64(secret: &TunnelSecret) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(secret.expose())
}

/// A tunnel (its secret is kept apart, see [`super::Registry::tunnel_secret`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tunnel {
    /// Tunnel ID (UUID v4).
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// Creation time, serialized as RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// The tunnel's own replica choice; `None` (JSON `null`) uses the edge's `--lb` default.
    #[serde(serialize_with = "policy_name")]
    pub lb_policy: Option<LbPolicy>,
}

fn policy_name<S: serde::Serializer>(p: &Option<LbPolicy>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_str(p.as_str()),
        None => s.serialize_none(),
    }
}

/// A DNS route: public hostname (or `*.` wildcard) → tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DnsRoute {
    /// Lowercase hostname, possibly `*.example.com`.
    pub hostname: String,
    /// The tunnel.
    pub tunnel_id: Uuid,
    /// The tunnel's name.
    pub tunnel_name: String,
}

/// A TCP route: public port → tunnel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TcpRoute {
    /// Public TCP port on the edge.
    pub port: u16,
    /// The tunnel.
    pub tunnel_id: Uuid,
    /// The tunnel's name.
    pub tunnel_name: String,
}

/// What a connector says about itself when it registers a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorRegistration {
    /// Connector ID (UUID v4, new on every connector start).
    pub connector_id: Uuid,
    /// Architecture, e.g. `linux_amd64`.
    pub arch: String,
    /// Connector version.
    pub version: String,
    /// The link's source IP as the edge saw it.
    pub origin_ip: IpAddr,
    /// Free-form label (`--label`; empty = none).
    pub label: String,
    /// Load-balancing weight (`--weight`, at least 1).
    pub weight: u16,
    /// Gets traffic only when no active (non-standby) replica is ready (`--standby`).
    pub standby: bool,
}

/// One registered link of a connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkInfo {
    /// The connector's link index (0..4 by default).
    pub index: u8,
    /// The data center the link landed in.
    pub data_center: String,
    /// The edge server address the link is connected to.
    pub server: SocketAddr,
}

/// A connected connector (ephemeral: in memory only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Connector {
    /// Connector ID.
    pub id: Uuid,
    /// Its tunnel.
    pub tunnel_id: Uuid,
    /// When its first link registered, RFC 3339.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// Architecture.
    pub arch: String,
    /// Version.
    pub version: String,
    /// Source IP of its first link.
    pub origin_ip: IpAddr,
    /// Its registered links, by index.
    pub links: Vec<LinkInfo>,
    /// Draining: gets no new streams.
    pub draining: bool,
    /// Free-form label (empty = none).
    pub label: String,
    /// Load-balancing weight.
    pub weight: u16,
    /// A standby replica.
    pub standby: bool,
    /// Streams open to it now, across workers (filled in from the data plane when read).
    pub active_streams: usize,
    /// Streams opened to it since it connected (filled in from the data plane when read).
    pub requests: u64,
}

impl Connector {
    /// `"draining"` or `"ready"`, as the admin API's `state` shows it.
    pub fn state(&self) -> &'static str {
        if self.draining { "draining" } else { "ready" }
    }
}

/// What the data plane knows live about one connector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LiveLoad {
    /// Streams open to it now.
    pub active_streams: usize,
    /// Streams opened to it since it connected.
    pub requests: u64,
    /// It sent a GOAWAY on some link.
    pub draining: bool,
}

/// The data plane's side of the connector table: live counters, read when the admin API
/// answers. Implemented by the data plane; the registry holds it weakly (no cycle).
pub trait LiveLoads: Send + Sync + fmt::Debug {
    /// The live counters of `connector`, if the data plane knows it.
    fn live_load(&self, connector: Uuid) -> Option<LiveLoad>;
}

/// The data plane's listeners of TCP routes: the registry stores a route only once its port
/// listens, and a removed route's port stops listening. Implemented by the data plane; the
/// registry holds it weakly (no cycle).
pub trait TcpPorts: Send + Sync + fmt::Debug {
    /// Listens on `port` on every worker (nothing to do when it already does); the reason when
    /// the port cannot be listened on (another process holds it, or another listener of the
    /// edge does).
    fn open(&self, port: u16) -> std::result::Result<(), String>;
    /// Stops listening on `port`.
    fn close(&self, port: u16);
}

/// What [`Registry::cleanup`](super::Registry::cleanup) did to a tunnel's connectors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Cleanup {
    /// Connectors with live links whose links were closed (asked for); their records go with
    /// their links.
    pub disconnected: Vec<Uuid>,
    /// Connectors with live links, kept.
    pub kept: Vec<Uuid>,
}

/// What a route request did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteChange {
    /// The route is new.
    Added,
    /// The same route already existed; nothing changed.
    Exists,
    /// The host was routed to another tunnel and now routes to this one (`overwrite`).
    Replaced,
}

impl Connector {
    /// Links per data center, like `2xdfw, 2xmci`.
    pub fn edge_summary(&self) -> String {
        edge_summary(self.links.iter())
    }
}

/// Counts links per data center, sorted by name: `2xdfw, 2xmci` (empty when there are none).
pub fn edge_summary<'a>(links: impl Iterator<Item = &'a LinkInfo>) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for link in links {
        *counts.entry(link.data_center.as_str()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(dc, n)| format!("{n}x{dc}"))
        .collect::<Vec<_>>()
        .join(", ")
}
