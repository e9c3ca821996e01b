//! The `ringtun-edge` command line: its flags ([`Cli`]), the logging they ask for, and what
//! the binary does with them ([`run`]: load [`Settings`], stop on SIGINT/SIGTERM, run the
//! edge). `main.rs` only parses and calls in here.
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::settings::Overrides;
use crate::{Settings, StopRequest};

/// ringtun edge simulator: data centers, registry, admin API, public listeners.
#[derive(Parser)]
#[command(version, about)]
pub struct Cli {
    /// TOML config file; flags override it.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// State directory (registry, admin token, TLS material) [default: ./ringtun-edge-state].
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// Admin API address [default: 127.0.0.1:7800]; port 0 picks a free port.
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Public HTTP address [default: 127.0.0.1:8080].
    #[arg(long)]
    pub public_http: Option<SocketAddr>,
    /// IP address TCP routes listen on, each on its route's port; nodes of a cluster on one
    /// host each need their own [default: 127.0.0.1].
    #[arg(long, value_name = "IP")]
    pub public_tcp_ip: Option<std::net::IpAddr>,
    /// Connectors one tunnel may have at once [default: 100].
    #[arg(long)]
    pub connector_limit: Option<usize>,
    /// A data center as NAME=ADDR[,ADDR...]; repeat for more; replaces the default set.
    #[arg(long = "data-center", value_name = "NAME=ADDRS")]
    pub data_centers: Vec<String>,
    /// Data-plane worker threads [default: one per allowed core].
    #[arg(long)]
    pub workers: Option<usize>,
    /// Default replica choice: p2c (least outstanding per weight, power of two choices),
    /// round-robin (weighted), random (weighted) or same-dc-first; a tunnel may set its own.
    #[arg(long)]
    pub lb: Option<crate::settings::LbPolicy>,
    /// The data center the public listeners belong to, for same-dc-first [default: the first].
    #[arg(long, value_name = "NAME")]
    pub public_dc: Option<String>,
    /// Links without TLS. Benchmarks only: anyone on the path reads and forges the traffic.
    #[arg(long)]
    pub danger_plaintext_links: bool,
    /// Serve /ready, /healthcheck and /metrics on ADDR (port 0 picks a free port).
    #[arg(long, env = "RINGTUN_EDGE_METRICS", value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Seconds a public request body may stall before its connection is closed [default: 60].
    #[arg(long, value_name = "SECS")]
    pub request_body_timeout: Option<u64>,
    /// Seconds an admin API or metrics client has to send its request (head and body), and
    /// again to take the answer; past it: 408 and close [default: 10].
    #[arg(long, value_name = "SECS")]
    pub admin_timeout: Option<u64>,
    /// Connections the admin API and the metrics server each serve at once; more get 503
    /// [default: 64].
    #[arg(long, value_name = "N")]
    pub admin_max_connections: Option<usize>,
    /// Largest admin API or metrics request head in bytes; larger: 431 [default: 16384].
    #[arg(long, value_name = "BYTES")]
    pub admin_max_head_bytes: Option<usize>,
    /// Largest admin API request body in bytes; larger: 413 [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub admin_max_body_bytes: Option<usize>,
    /// Bytes per second a public request body must average after the first
    /// --request-body-timeout seconds; 0 turns it off [default: 1024].
    #[arg(long, value_name = "BYTES")]
    pub request_body_min_rate: Option<u64>,
    /// Seconds a response write to a public client may make no progress before the
    /// connection is closed [default: 30].
    #[arg(long, value_name = "SECS")]
    pub client_write_timeout: Option<u64>,
    /// Seconds a TCP-route connection may go without a byte either way [default: 300].
    #[arg(long, value_name = "SECS")]
    pub tcp_idle_timeout: Option<u64>,
    /// Seconds an upgraded (WebSocket) connection may go without a byte either way
    /// [default: 300].
    #[arg(long, value_name = "SECS")]
    pub upgrade_idle_timeout: Option<u64>,
    /// Concurrent public connections (HTTP and TCP routes) per client IP [default: 1024].
    #[arg(long, value_name = "N")]
    pub max_connections_per_ip: Option<usize>,
    /// Concurrent streams per tunnel at the edge; beyond it requests get 503 [default: 2048].
    #[arg(long, value_name = "N")]
    pub tunnel_stream_limit: Option<usize>,
    /// Link handshakes (TLS plus registration) in progress at once; a connection to a link
    /// port beyond it is closed at once [default: 256].
    #[arg(long, value_name = "N")]
    pub max_pending_handshakes: Option<usize>,
    /// Seconds a link's TLS plus registration may take [default: 5].
    #[arg(long, value_name = "SECS")]
    pub handshake_timeout: Option<u64>,
    /// Milliseconds an admin write waits for a registry database that another process holds
    /// locked, before it answers 503 [default: 2000].
    #[arg(long, value_name = "MS")]
    pub registry_busy_timeout_ms: Option<u64>,
    /// The registry in etcd, shared by several edge nodes (see docs/cluster.md).
    #[command(flatten)]
    pub etcd: crate::cluster::EtcdFlags,
    /// Peer links between the nodes of a cluster (with --etcd; see docs/cluster.md).
    #[command(flatten)]
    pub peer: crate::peer::PeerFlags,
    /// Seconds in-flight requests may take to finish after SIGTERM/SIGINT [default: 30].
    #[arg(long, value_name = "SECS")]
    pub grace_period: Option<u64>,
    /// The public HTTPS listener and the HTTP/2 limits.
    #[command(flatten)]
    pub h2: crate::settings::H2Flags,
    /// Log format: text, or json (one JSON object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Same as --log-format json (kept for older scripts).
    #[arg(long, hide = true)]
    pub log_json: bool,
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines with `key=value` fields.
    Text,
    /// One JSON object per line.
    Json,
}

impl Cli {
    /// Sets up tracing to stderr: text or JSON lines (`--log-format`), filtered by `RUST_LOG`
    /// [default: info].
    pub fn init_tracing(&self) {
        let mut filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
        // The `h2` crate warns once per hostile HTTP/2 connection (its reset limits); the edge counts
        // those and logs them at most once per interval (`limit.rs`). Unless RUST_LOG says
        // otherwise for it, only its errors are shown.
        if !std::env::var("RUST_LOG").is_ok_and(|v| v.contains("h2"))
            && let Ok(quiet) = "h2=error".parse()
        {
            filter = filter.add_directive(quiet);
        }
        let builder = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal());
        if self.log_json || self.log_format == LogFormat::Json {
            builder.json().with_ansi(false).init();
        } else {
            builder.init();
        }
    }

    /// The edge's [`Settings`]: the config file (`--config`) with the flags over it.
    pub fn load_settings(self) -> crate::Result<Settings> {
        Settings::load(
            self.config.as_deref(),
            Overrides {
                state_dir: self.state_dir,
                admin: self.admin,
                public_http: self.public_http,
                public_tcp_ip: self.public_tcp_ip,
                connector_limit: self.connector_limit,
                data_centers: self.data_centers,
                workers: self.workers,
                lb: self.lb,
                danger_plaintext_links: self.danger_plaintext_links,
                public_dc: self.public_dc,
                request_body_timeout: self.request_body_timeout,
                admin_timeout: self.admin_timeout,
                admin_max_connections: self.admin_max_connections,
                admin_max_head_bytes: self.admin_max_head_bytes,
                admin_max_body_bytes: self.admin_max_body_bytes,
                request_body_min_rate: self.request_body_min_rate,
                client_write_timeout: self.client_write_timeout,
                tcp_idle_timeout: self.tcp_idle_timeout,
                upgrade_idle_timeout: self.upgrade_idle_timeout,
                max_connections_per_ip: self.max_connections_per_ip,
                tunnel_stream_limit: self.tunnel_stream_limit,
                max_pending_handshakes: self.max_pending_handshakes,
                handshake_timeout: self.handshake_timeout,
                registry_busy_timeout_ms: self.registry_busy_timeout_ms,
                grace_period: self.grace_period,
                etcd: self.etcd,
                h2: self.h2,
                peer: self.peer,
            },
        )
    }
}

/// Runs the edge the flags describe until SIGINT or SIGTERM (a second signal exits at once).
pub fn run(cli: Cli) -> anyhow::Result<()> {
    let metrics = cli.metrics;
    let settings = cli.load_settings()?;

    let shutdown = StopRequest::new();
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("cannot install signal handlers")?;
    {
        let shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut seen = 0;
                for signal in signals.forever() {
                    seen += 1;
                    if seen > 1 {
                        tracing::warn!(signal, "second signal: exiting at once");
                        std::process::exit(1);
                    }
                    tracing::info!(signal, "signal received, stopping");
                    shutdown.trigger();
                }
            })
            .context("cannot start the signal thread")?;
    }
    crate::edge::run_with_metrics(settings, metrics, shutdown)?;
    Ok(())
}
