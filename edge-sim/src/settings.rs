//! Edge configuration: the operator's file and flags, validated once into [`Settings`].
//!
//! The embedded default needs no file: two data centers `dfw` and `mci` with two servers each on
//! their own loopback addresses, public HTTP on `127.0.0.1:8080`, the admin API on
//! `127.0.0.1:7800`, state in `./ringtun-edge-state`. A TOML file (`--config`) overrides any of
//! these, and flags ([`Overrides`]) override the file.
//!
//! ```toml
//! state-dir = "/var/lib/ringtun-edge"
//! admin = "127.0.0.1:7800"
//! public-http = "127.0.0.1:8080"
//! connector-limit = 100
//! request-body-timeout = 60   # seconds a public request body may stall
//! admin-timeout = 10          # seconds an admin or metrics client has to send its request
//! admin-max-connections = 64  # admin (and metrics) connections served at once
//! client-write-timeout = 30   # see docs/limits.md for these and the other limits
//!
//! [h2]                        # HTTP/2 from public clients (names as the flags)
//! public-https = "127.0.0.1:8443"
//! h2-max-concurrent-streams = 100
//!
//! [[data-centers]]
//! name = "dfw"
//! servers = ["127.0.1.1:7844", "127.0.1.2:7844"]
//! ```
use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

mod h2;
mod limits;
mod policy;
pub use h2::{H2_RESET_WINDOW, H2File, H2Flags, H2Settings};
pub use limits::PublicLimits;
pub use policy::LbPolicy;

/// Default state directory, relative to the working directory.
pub const DEFAULT_STATE_DIR: &str = "./ringtun-edge-state";
/// Default admin API address.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:7800";
/// Default public HTTP address.
pub const DEFAULT_PUBLIC_HTTP: &str = "127.0.0.1:8080";
/// Default seconds a public request body may stall.
pub const DEFAULT_REQUEST_BODY_TIMEOUT_SECS: u64 = 60;
/// Default number of connectors one tunnel may have at once.
pub const DEFAULT_CONNECTOR_LIMIT: usize = 100;
/// Default link handshakes (TLS plus registration) in progress at once, per edge.
pub const DEFAULT_MAX_PENDING_HANDSHAKES: usize = 256;
/// Default seconds a link's TLS plus registration may take.
pub const DEFAULT_HANDSHAKE_TIMEOUT_SECS: u64 = 5;
/// Default milliseconds a registry write waits for a database locked by another process.
pub const DEFAULT_REGISTRY_BUSY_TIMEOUT_MS: u64 = 2000;
/// Default IP address TCP routes listen on (`--public-tcp-ip`).
pub const DEFAULT_PUBLIC_TCP_IP: std::net::IpAddr =
    std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
/// Default seconds in-flight requests may take to finish at shutdown.
pub const DEFAULT_GRACE_PERIOD_SECS: u64 = 30;

/// The operator's config file, as written. Every field is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// State directory (registry, admin token, TLS material).
    pub state_dir: Option<PathBuf>,
    /// Admin API listen address.
    pub admin: Option<SocketAddr>,
    /// Public HTTP listen address.
    pub public_http: Option<SocketAddr>,
    /// The IP address TCP routes listen on (each route's port).
    pub public_tcp_ip: Option<std::net::IpAddr>,
    /// Per-tunnel connector limit.
    pub connector_limit: Option<usize>,
    /// Data centers; when present they replace the default set entirely.
    pub data_centers: Option<Vec<DataCenterConfig>>,
    /// Seconds a public request body may stall (no bytes arriving) before the connection is
    /// closed.
    pub request_body_timeout: Option<u64>,
    /// Seconds an admin API or metrics client has to send its request, and to take the answer.
    pub admin_timeout: Option<u64>,
    /// Connections the admin API (and the metrics server) serve at once.
    pub admin_max_connections: Option<usize>,
    /// The largest admin API (and metrics server) request head, in bytes.
    pub admin_max_head_bytes: Option<usize>,
    /// The largest admin API request body, in bytes.
    pub admin_max_body_bytes: Option<usize>,
    /// Bytes per second a public request body must average (0: no minimum).
    pub request_body_min_rate: Option<u64>,
    /// Seconds a response write to a public client may make no progress.
    pub client_write_timeout: Option<u64>,
    /// Seconds a TCP-route connection may be idle.
    pub tcp_idle_timeout: Option<u64>,
    /// Seconds an upgraded (WebSocket) connection may be idle.
    pub upgrade_idle_timeout: Option<u64>,
    /// Concurrent public connections per client IP.
    pub max_connections_per_ip: Option<usize>,
    /// Concurrent streams per tunnel at the edge.
    pub tunnel_stream_limit: Option<usize>,
    /// The `[h2]` table: the public HTTPS listener and the HTTP/2 limits.
    pub h2: H2File,
}

/// One data center in the config file.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataCenterConfig {
    /// Short name, e.g. `dfw`.
    pub name: String,
    /// The edge servers' link listen addresses.
    pub servers: Vec<SocketAddr>,
}

/// Command-line overrides; `None` (or empty) keeps the file's or the default value.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    /// `--state-dir`.
    pub state_dir: Option<PathBuf>,
    /// `--admin`.
    pub admin: Option<SocketAddr>,
    /// `--public-http`.
    pub public_http: Option<SocketAddr>,
    /// `--public-tcp-ip IP`.
    pub public_tcp_ip: Option<std::net::IpAddr>,
    /// `--connector-limit`.
    pub connector_limit: Option<usize>,
    /// `--data-center NAME=ADDR[,ADDR...]`, repeatable; when non-empty they replace the set.
    pub data_centers: Vec<String>,
    /// `--workers N`: data-plane worker threads (default: one per allowed core).
    pub workers: Option<usize>,
    /// `--lb`: how public requests choose a replica.
    pub lb: Option<LbPolicy>,
    /// `--danger-plaintext-links`: links without TLS (benchmarks only).
    pub danger_plaintext_links: bool,
    /// `--public-dc NAME`: the data center the public listeners belong to (`same-dc-first`).
    pub public_dc: Option<String>,
    /// `--request-body-timeout SECS`.
    pub request_body_timeout: Option<u64>,
    /// `--admin-timeout SECS`.
    pub admin_timeout: Option<u64>,
    /// `--admin-max-connections N`.
    pub admin_max_connections: Option<usize>,
    /// `--admin-max-head-bytes N`.
    pub admin_max_head_bytes: Option<usize>,
    /// `--admin-max-body-bytes N`.
    pub admin_max_body_bytes: Option<usize>,
    /// `--request-body-min-rate BYTES`.
    pub request_body_min_rate: Option<u64>,
    /// `--client-write-timeout SECS`.
    pub client_write_timeout: Option<u64>,
    /// `--tcp-idle-timeout SECS`.
    pub tcp_idle_timeout: Option<u64>,
    /// `--upgrade-idle-timeout SECS`.
    pub upgrade_idle_timeout: Option<u64>,
    /// `--max-connections-per-ip N`.
    pub max_connections_per_ip: Option<usize>,
    /// `--tunnel-stream-limit N`.
    pub tunnel_stream_limit: Option<usize>,
    /// `--max-pending-handshakes N`.
    pub max_pending_handshakes: Option<usize>,
    /// `--handshake-timeout SECS`.
    pub handshake_timeout: Option<u64>,
    /// `--registry-busy-timeout-ms MS`.
    pub registry_busy_timeout_ms: Option<u64>,
    /// `--grace-period SECS`.
    pub grace_period: Option<u64>,
    /// `--etcd URL[,URL...]` and the other `--etcd-*` flags: the registry in etcd.
    pub etcd: crate::cluster::EtcdFlags,
    /// `--public-https` and the `--h2-*` limits.
    pub h2: H2Flags,
    /// `--peer-*`: peer links between the nodes of a cluster.
    pub peer: crate::peer::PeerFlags,
}

/// A validated data center.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataCenter {
    /// Short lowercase name, e.g. `dfw`.
    pub name: String,
    /// The edge servers' link listen addresses (at least one).
    pub servers: Vec<SocketAddr>,
}

/// Validated edge settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// State directory.
    pub state_dir: PathBuf,
    /// Admin API listen address (port 0 picks a free port).
    pub admin: SocketAddr,
    /// Public HTTP listen address.
    pub public_http: SocketAddr,
    /// The IP address TCP routes listen on, on each route's port (default 127.0.0.1).
    pub public_tcp_ip: std::net::IpAddr,
    /// Per-tunnel connector limit (at least 1).
    pub connector_limit: usize,
    /// Data centers, in configured order; names and server addresses are unique.
    pub data_centers: Vec<DataCenter>,
    /// Data-plane worker threads; `None` is one per allowed core.
    pub workers: Option<usize>,
    /// Replica choice for public traffic.
    pub lb: LbPolicy,
    /// Links without TLS (benchmarks only; logged as a warning).
    pub danger_plaintext_links: bool,
    /// The data center of the public listeners (`same-dc-first`); one of `data_centers`.
    pub public_dc: String,
    /// How long a public request body may stall before its connection is closed.
    pub request_body_timeout: std::time::Duration,
    /// Deadlines and caps of the admin API and the metrics server.
    pub admin_limits: crate::admin::Limits,
    /// What one public client or one tunnel may hold (see `docs/limits.md`).
    pub public_limits: PublicLimits,
    /// Link handshakes in progress at once (per edge, at least 1); a connection beyond it is
    /// closed at once.
    pub max_pending_handshakes: usize,
    /// How long a link's TLS plus registration may take.
    pub handshake_timeout: std::time::Duration,
    /// How long a registry write waits for a database another process holds locked.
    pub registry_busy_timeout: std::time::Duration,
    /// How long in-flight requests may take to finish at shutdown.
    pub grace_period: std::time::Duration,
    /// The registry in etcd, shared by several edge nodes; `None` is SQLite (one node).
    pub etcd: Option<crate::cluster::EtcdSettings>,
    /// The public HTTPS listener and the limits of HTTP/2 connections.
    pub h2: H2Settings,
    /// Peer links between the nodes of a cluster (used with `etcd`).
    pub peer: crate::peer::PeerSettings,
}

impl Default for Settings {
    fn default() -> Self {
        // The embedded default is valid by construction; `validate` is the single gate anyway.
        let file = FileConfig::default();
        match Settings::from_parts(file, Overrides::default()) {
            Ok(settings) => settings,
            Err(e) => unreachable!("embedded default settings are invalid: {e}"),
        }
    }
}

fn default_data_centers() -> Vec<DataCenter> {
    let dc = |name: &str, a: [u8; 4], b: [u8; 4]| DataCenter {
        name: name.to_owned(),
        servers: vec![SocketAddr::from((a, 7844)), SocketAddr::from((b, 7844))],
    };
    vec![
        dc("dfw", [127, 0, 1, 1], [127, 0, 1, 2]),
        dc("mci", [127, 0, 2, 1], [127, 0, 2, 2]),
    ]
}

impl Settings {
    /// Loads the optional config file, applies the overrides and validates the result.
    pub fn load(config: Option<&Path>, overrides: Overrides) -> Result<Settings> {
        let file = match config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        Settings::from_parts(file, overrides)
    }

    /// Merges a parsed file with overrides and validates.
    pub fn from_parts(file: FileConfig, overrides: Overrides) -> Result<Settings> {
        let public_limits = PublicLimits::from_parts(&file, &overrides)?;
        let h2 = H2Settings::from_parts(&file.h2, &overrides.h2)?;
        let data_centers = if !overrides.data_centers.is_empty() {
            overrides
                .data_centers
                .iter()
                .map(|s| parse_data_center_flag(s))
                .collect::<Result<Vec<_>>>()?
        } else if let Some(dcs) = file.data_centers {
            dcs.into_iter()
                .map(|dc| DataCenter {
                    name: dc.name,
                    servers: dc.servers,
                })
                .collect()
        } else {
            default_data_centers()
        };
        let public_dc = match overrides.public_dc {
            Some(dc) => dc,
            None => data_centers
                .first()
                .map(|dc| dc.name.clone())
                .unwrap_or_default(),
        };
        let etcd = crate::cluster::EtcdSettings::from_flags(&overrides.etcd)?;
        let peer = crate::peer::PeerSettings::from_flags(&overrides.peer, etcd.is_some())?;
        let settings = Settings {
            state_dir: overrides
                .state_dir
                .or(file.state_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR)),
            admin: overrides
                .admin
                .or(file.admin)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 7800))),
            public_http: overrides
                .public_http
                .or(file.public_http)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            public_tcp_ip: overrides
                .public_tcp_ip
                .or(file.public_tcp_ip)
                .unwrap_or(DEFAULT_PUBLIC_TCP_IP),
            connector_limit: overrides
                .connector_limit
                .or(file.connector_limit)
                .unwrap_or(DEFAULT_CONNECTOR_LIMIT),
            data_centers,
            workers: overrides.workers,
            lb: overrides.lb.unwrap_or_default(),
            danger_plaintext_links: overrides.danger_plaintext_links,
            public_dc,
            request_body_timeout: std::time::Duration::from_secs(
                overrides
                    .request_body_timeout
                    .or(file.request_body_timeout)
                    .unwrap_or(DEFAULT_REQUEST_BODY_TIMEOUT_SECS),
            ),
            admin_limits: crate::admin::Limits::from_options(
                overrides.admin_timeout.or(file.admin_timeout),
                overrides
                    .admin_max_connections
                    .or(file.admin_max_connections),
                overrides.admin_max_head_bytes.or(file.admin_max_head_bytes),
                overrides.admin_max_body_bytes.or(file.admin_max_body_bytes),
            ),
            public_limits,
            max_pending_handshakes: overrides
                .max_pending_handshakes
                .unwrap_or(DEFAULT_MAX_PENDING_HANDSHAKES),
            handshake_timeout: std::time::Duration::from_secs(
                overrides
                    .handshake_timeout
                    .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT_SECS),
            ),
            registry_busy_timeout: std::time::Duration::from_millis(
                overrides
                    .registry_busy_timeout_ms
                    .unwrap_or(DEFAULT_REGISTRY_BUSY_TIMEOUT_MS),
            ),
            grace_period: std::time::Duration::from_secs(
                overrides.grace_period.unwrap_or(DEFAULT_GRACE_PERIOD_SECS),
            ),
            etcd,
            h2,
            peer,
        };
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<()> {
        if self.connector_limit == 0 {
            return Err(Error::Config("connector-limit must be at least 1".into()));
        }
        if self.max_pending_handshakes == 0 {
            return Err(Error::Config(
                "max-pending-handshakes must be at least 1".into(),
            ));
        }
        if self.handshake_timeout.is_zero() {
            return Err(Error::Config("handshake-timeout must be at least 1".into()));
        }
        if self.data_centers.is_empty() {
            return Err(Error::Config("at least one data center is needed".into()));
        }
        let mut names = HashSet::new();
        let mut addrs = HashSet::new();
        for dc in &self.data_centers {
            let valid_name = !dc.name.is_empty()
                && dc
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !valid_name {
                return Err(Error::Config(format!(
                    "data center name {:?} must be lowercase letters, digits and '-'",
                    dc.name
                )));
            }
            if !names.insert(dc.name.as_str()) {
                return Err(Error::Config(format!(
                    "data center {} is listed twice",
                    dc.name
                )));
            }
            if dc.servers.is_empty() {
                return Err(Error::Config(format!(
                    "data center {} has no servers",
                    dc.name
                )));
            }
            for server in &dc.servers {
                if !addrs.insert(*server) {
                    return Err(Error::Config(format!(
                        "edge server {server} is listed twice"
                    )));
                }
            }
        }
        if !self.data_centers.iter().any(|dc| dc.name == self.public_dc) {
            return Err(Error::Config(format!(
                "public data center {:?} is not a configured data center",
                self.public_dc
            )));
        }
        if self.request_body_timeout.is_zero() {
            return Err(Error::Config(
                "request-body-timeout must be at least 1 second".into(),
            ));
        }
        self.admin_limits.validate("admin").map_err(Error::Config)?;
        if self.workers == Some(0) {
            return Err(Error::Config("workers must be at least 1".into()));
        }
        if self.h2.public_https == Some(self.public_http) && self.public_http.port() != 0 {
            return Err(Error::Config(format!(
                "public HTTP and public HTTPS both use {}",
                self.public_http
            )));
        }
        if self.admin == self.public_http && self.admin.port() != 0 {
            return Err(Error::Config(format!(
                "admin API and public HTTP both use {}",
                self.admin
            )));
        }
        Ok(())
    }

    /// Every edge server address, across data centers, in configured order.
    pub fn server_addrs(&self) -> impl Iterator<Item = SocketAddr> + '_ {
        self.data_centers
            .iter()
            .flat_map(|dc| dc.servers.iter().copied())
    }
}

impl FileConfig {
    /// Reads and parses a TOML config file.
    pub fn read(path: &Path) -> Result<FileConfig> {
        if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yml" | "yaml")
        ) {
            return Err(Error::Config(format!(
                "{}: the edge reads TOML config files; YAML is not supported",
                path.display()
            )));
        }
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
        FileConfig::parse(&text).map_err(|e| Error::Config(format!("{}: {e}", path.display())))
    }

    /// Parses TOML config text.
    pub fn parse(text: &str) -> std::result::Result<FileConfig, toml::de::Error> {
        toml::from_str(text)
    }
}

/// Parses `NAME=ADDR[,ADDR...]`.
fn parse_data_center_flag(s: &str) -> Result<DataCenter> {
    let (name, addrs) = s.split_once('=').ok_or_else(|| {
        Error::Config(format!("--data-center {s:?}: expected NAME=ADDR[,ADDR...]"))
    })?;
    let servers = addrs
        .split(',')
        .map(|a| {
            a.trim()
                .parse::<SocketAddr>()
                .map_err(|e| Error::Config(format!("--data-center {s:?}: bad address {a:?}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(DataCenter {
        name: name.trim().to_owned(),
        servers,
    })
}

#[cfg(test)]
mod tests;
