//! `ringtun-edge`: the edge simulator binary. It parses flags, sets up tracing, and calls
//! [`ringtun_edge_sim::run`] until SIGINT or SIGTERM.
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use ringtun_edge_sim::settings::Overrides;
use ringtun_edge_sim::{Settings, Shutdown};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

#[global_allocator]
static ALLOCATOR: ringtun_core::alloc::CountingAllocator = ringtun_core::alloc::CountingAllocator;

/// ringtun edge simulator: data centers, registry, admin API, public ingress.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// TOML config file; flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// State directory (registry, admin token, TLS material) [default: ./ringtun-edge-state].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Admin API address [default: 127.0.0.1:7800]; port 0 picks a free port.
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Public HTTP address [default: 127.0.0.1:8080].
    #[arg(long)]
    public_http: Option<SocketAddr>,
    /// Connectors one tunnel may have at once [default: 100].
    #[arg(long)]
    connector_limit: Option<usize>,
    /// A data center as NAME=ADDR[,ADDR...]; repeat for more; replaces the default set.
    #[arg(long = "data-center", value_name = "NAME=ADDRS")]
    data_centers: Vec<String>,
    /// Data-plane worker threads [default: one per allowed core].
    #[arg(long)]
    workers: Option<usize>,
    /// Default replica choice: p2c (least outstanding per weight, power of two choices),
    /// round-robin (weighted), random (weighted) or same-dc-first; a tunnel may set its own.
    #[arg(long)]
    lb: Option<ringtun_edge_sim::settings::LbPolicy>,
    /// The data center the public listeners belong to, for same-dc-first [default: the first].
    #[arg(long, value_name = "NAME")]
    public_dc: Option<String>,
    /// Links without TLS. Benchmarks only: anyone on the path reads and forges the traffic.
    #[arg(long)]
    danger_plaintext_links: bool,
    /// Serve /ready, /healthcheck and /metrics on ADDR (port 0 picks a free port).
    #[arg(long, env = "RINGTUN_EDGE_METRICS", value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Seconds a public request body may stall before its connection is closed [default: 60].
    #[arg(long, value_name = "SECS")]
    request_body_timeout: Option<u64>,
    /// Seconds an admin API or metrics client has to send its request (head and body), and
    /// again to take the answer; past it: 408 and close [default: 10].
    #[arg(long, value_name = "SECS")]
    admin_timeout: Option<u64>,
    /// Connections the admin API and the metrics server each serve at once; more get 503
    /// [default: 64].
    #[arg(long, value_name = "N")]
    admin_max_connections: Option<usize>,
    /// Largest admin API or metrics request head in bytes; larger: 431 [default: 16384].
    #[arg(long, value_name = "BYTES")]
    admin_max_head_bytes: Option<usize>,
    /// Largest admin API request body in bytes; larger: 413 [default: 65536].
    #[arg(long, value_name = "BYTES")]
    admin_max_body_bytes: Option<usize>,
    /// Bytes per second a public request body must average after the first
    /// --request-body-timeout seconds; 0 turns it off [default: 1024].
    #[arg(long, value_name = "BYTES")]
    request_body_min_rate: Option<u64>,
    /// Seconds a response write to a public client may make no progress before the
    /// connection is closed [default: 30].
    #[arg(long, value_name = "SECS")]
    client_write_timeout: Option<u64>,
    /// Seconds a TCP-route connection may go without a byte either way [default: 300].
    #[arg(long, value_name = "SECS")]
    tcp_idle_timeout: Option<u64>,
    /// Seconds an upgraded (WebSocket) connection may go without a byte either way
    /// [default: 300].
    #[arg(long, value_name = "SECS")]
    upgrade_idle_timeout: Option<u64>,
    /// Concurrent public connections (HTTP and TCP routes) per client IP [default: 1024].
    #[arg(long, value_name = "N")]
    max_connections_per_ip: Option<usize>,
    /// Concurrent streams per tunnel at the edge; beyond it requests get 503 [default: 2048].
    #[arg(long, value_name = "N")]
    tunnel_stream_limit: Option<usize>,
    /// Link handshakes (TLS plus registration) in progress at once; a connection to a link
    /// port beyond it is closed at once [default: 256].
    #[arg(long, value_name = "N")]
    max_pending_handshakes: Option<usize>,
    /// Seconds a link's TLS plus registration may take [default: 5].
    #[arg(long, value_name = "SECS")]
    handshake_timeout: Option<u64>,
    /// Milliseconds an admin write waits for a registry database that another process holds
    /// locked, before it answers 503 [default: 2000].
    #[arg(long, value_name = "MS")]
    registry_busy_timeout_ms: Option<u64>,
    /// etcd client URLs, http://HOST:PORT[,...]: keep the registry in etcd, shared with the
    /// other edge nodes given the same URLs (see docs/cluster.md) [default: SQLite, one node].
    #[arg(long, value_name = "URLS")]
    etcd: Vec<String>,
    /// Prefix of every etcd key of this edge cluster [default: /ringtun/].
    #[arg(long, value_name = "PREFIX")]
    etcd_prefix: Option<String>,
    /// Milliseconds one etcd call may take before an admin write answers 503 [default: 2000].
    #[arg(long, value_name = "MS")]
    etcd_timeout_ms: Option<u64>,
    /// Seconds a node's presence in etcd (its record and its links) outlives its last lease
    /// renewal; renewed every third of it [default: 10].
    #[arg(long, value_name = "SECS")]
    etcd_lease_ttl: Option<u64>,
    /// Peer links between the nodes of a cluster (with --etcd; see docs/cluster.md).
    #[command(flatten)]
    peer: ringtun_edge_sim::peer::PeerFlags,
    /// Seconds in-flight requests may take to finish after SIGTERM/SIGINT [default: 30].
    #[arg(long, value_name = "SECS")]
    grace_period: Option<u64>,
    /// The public HTTPS listener and the HTTP/2 limits.
    #[command(flatten)]
    h2: ringtun_edge_sim::settings::H2Flags,
    /// Log format: text, or json (one JSON object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Same as --log-format json (kept for older scripts).
    #[arg(long, hide = true)]
    log_json: bool,
}

/// How log lines are written to stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Human-readable lines with `key=value` fields.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
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
    if cli.log_json || cli.log_format == LogFormat::Json {
        builder.json().with_ansi(false).init();
    } else {
        builder.init();
    }

    let settings = Settings::load(
        cli.config.as_deref(),
        Overrides {
            state_dir: cli.state_dir,
            admin: cli.admin,
            public_http: cli.public_http,
            connector_limit: cli.connector_limit,
            data_centers: cli.data_centers,
            workers: cli.workers,
            lb: cli.lb,
            danger_plaintext_links: cli.danger_plaintext_links,
            public_dc: cli.public_dc,
            request_body_timeout: cli.request_body_timeout,
            admin_timeout: cli.admin_timeout,
            admin_max_connections: cli.admin_max_connections,
            admin_max_head_bytes: cli.admin_max_head_bytes,
            admin_max_body_bytes: cli.admin_max_body_bytes,
            request_body_min_rate: cli.request_body_min_rate,
            client_write_timeout: cli.client_write_timeout,
            tcp_idle_timeout: cli.tcp_idle_timeout,
            upgrade_idle_timeout: cli.upgrade_idle_timeout,
            max_connections_per_ip: cli.max_connections_per_ip,
            tunnel_stream_limit: cli.tunnel_stream_limit,
            max_pending_handshakes: cli.max_pending_handshakes,
            handshake_timeout: cli.handshake_timeout,
            registry_busy_timeout_ms: cli.registry_busy_timeout_ms,
            grace_period: cli.grace_period,
            etcd: cli.etcd,
            etcd_prefix: cli.etcd_prefix,
            etcd_timeout_ms: cli.etcd_timeout_ms,
            etcd_lease_ttl: cli.etcd_lease_ttl,
            h2: cli.h2,
            peer: cli.peer,
        },
    )?;

    let shutdown = Shutdown::new();
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
    ringtun_edge_sim::edge::run_with_metrics(settings, cli.metrics, shutdown)?;
    Ok(())
}
