//! The command line: clap definitions and their conversion into validated configs.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::schedule::parse_duration;

/// ringtun-load: open-loop load generator and test origin.
#[derive(Debug, Parser)]
#[command(
    name = "ringtun-load",
    version,
    about = "Open-loop load generator (wrk2 model, HdrHistogram) and test origin"
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// HTTP/1.1 keep-alive load.
    Http(HttpArgs),
    /// TCP request/response: send N bytes, wait for N echoed bytes.
    TcpRr(TcpRrArgs),
    /// TCP bulk transfer one way (to a sink); reports Gbit/s.
    TcpStream(TcpStreamArgs),
    /// Step the rate up until p99 breaks the SLO; print the highest passing rate.
    Capacity(CapacityArgs),
    /// A fast HTTP and TCP test origin.
    Origin(OriginArgs),
    /// Merge JSON reports of simultaneous runs into one.
    Merge(MergeArgs),
    /// One mux link over loopback with 1, 16 and 256 streams against plain TCP, same run.
    Link(crate::link_bench::LinkArgs),
    /// Open N connections, make one exchange on each, then hold them idle (memory per
    /// connection of whatever sits in between).
    Hold(HoldArgs),
    /// Overlay the corrected latency percentile curves of several JSON reports in one SVG.
    Overlay(OverlayArgs),
}

fn dur(s: &str) -> Result<Duration, String> {
    parse_duration(s)
}

/// Options shared by the load modes.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Worker threads (pinned, one io_uring each). Default: one per core.
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Connections in total.
    #[arg(short, long, default_value_t = 10)]
    pub connections: usize,
    /// Measured duration (e.g. 10s, 1m).
    #[arg(short, long, default_value = "10s", value_parser = dur)]
    pub duration: Duration,
    /// Unrecorded warmup before the measured window.
    #[arg(long, default_value = "0s", value_parser = dur)]
    pub warmup: Duration,
    /// A request without a response after this long is a timeout (recorded as latency).
    #[arg(long, default_value = "2s", value_parser = dur)]
    pub timeout: Duration,
    /// Spin this long before each send deadline instead of trusting the timer.
    #[arg(long, default_value = "50us", value_parser = dur)]
    pub spin: Duration,
    /// Do not pin worker threads to cores (pinning starts at the first allowed core; use
    /// `taskset` to choose the cores).
    #[arg(long)]
    pub no_pin: bool,
    /// Do not print the per-second progress line.
    #[arg(short, long, visible_alias = "no-progress")]
    pub quiet: bool,
    /// One exchange per connection: close it after the response and connect again (HTTP
    /// requests also carry `Connection: close`). Measures the new-connection rate.
    #[arg(long)]
    pub new_connection: bool,
    /// Write the corrected percentile spectrum (.hgrm) here.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
    /// Write the versioned JSON report (with encoded histograms) here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an SVG plot here.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

/// Options of `http`.
#[derive(Debug, Clone, Args)]
pub struct HttpArgs {
    /// Target URL, `http://host:port/path`.
    pub url: String,
    /// Requests per second in total; 0 runs closed loop.
    #[arg(short = 'R', long)]
    pub rate: f64,
    /// Common load options.
    #[command(flatten)]
    pub load: LoadArgs,
    /// Request shape.
    #[command(flatten)]
    pub request: RequestArgs,
}

/// HTTP request options.
#[derive(Debug, Clone, Args)]
pub struct RequestArgs {
    /// Method.
    #[arg(short = 'X', long, default_value = "GET")]
    pub method: String,
    /// Extra header `Name: value` (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,
    /// Request body.
    #[arg(long, conflicts_with = "body_file")]
    pub body: Option<String>,
    /// Request body from a file.
    #[arg(long)]
    pub body_file: Option<PathBuf>,
    /// Host header (default: the URL's authority).
    #[arg(long)]
    pub host: Option<String>,
}

/// Options of `tcp-rr`.
#[derive(Debug, Clone, Args)]
pub struct TcpRrArgs {
    /// Echo server `host:port`.
    pub addr: String,
    /// Requests per second in total; 0 runs closed loop.
    #[arg(short = 'R', long)]
    pub rate: f64,
    /// Bytes per request and response.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Common load options.
    #[command(flatten)]
    pub load: LoadArgs,
}

/// Options of `tcp-stream`.
#[derive(Debug, Clone, Args)]
pub struct TcpStreamArgs {
    /// Sink `host:port`.
    pub addr: String,
    /// Worker threads. Default: one per core.
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Connections.
    #[arg(short, long, default_value_t = 1)]
    pub connections: usize,
    /// Measured duration.
    #[arg(short, long, default_value = "10s", value_parser = dur)]
    pub duration: Duration,
    /// Unmeasured warmup.
    #[arg(long, default_value = "1s", value_parser = dur)]
    pub warmup: Duration,
    /// Bytes per write.
    #[arg(long, default_value_t = 64 * 1024)]
    pub chunk: usize,
    /// Do not pin worker threads to cores.
    #[arg(long)]
    pub no_pin: bool,
}

/// Protocol of a capacity search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    /// HTTP/1.1 to an URL.
    Http,
    /// TCP echo to `host:port`.
    TcpRr,
}

/// Options of `capacity`.
#[derive(Debug, Clone, Args)]
pub struct CapacityArgs {
    /// URL (http) or `host:port` (tcp-rr).
    pub target: String,
    /// Protocol.
    #[arg(long, value_enum, default_value = "http")]
    pub proto: Proto,
    /// The p99 (corrected) a rate must meet, e.g. 10ms.
    #[arg(long, value_parser = dur)]
    pub slo_p99: Duration,
    /// First rate tried.
    #[arg(long, default_value_t = 1000.0)]
    pub start_rate: f64,
    /// Each step multiplies the rate by this.
    #[arg(long, default_value_t = 1.25)]
    pub step_factor: f64,
    /// Stop after this rate.
    #[arg(long, default_value_t = 10_000_000.0)]
    pub max_rate: f64,
    /// Bytes per request (tcp-rr).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Common load options (`--duration` is per step).
    #[command(flatten)]
    pub load: LoadArgs,
    /// Request shape (http).
    #[command(flatten)]
    pub request: RequestArgs,
}

/// Options of `origin`.
#[derive(Debug, Clone, Args)]
pub struct OriginArgs {
    /// Serve HTTP/1.1 on this address (port 0 picks one; printed on stdout).
    #[arg(long)]
    pub http: Option<String>,
    /// Serve TCP echo on this address.
    #[arg(long)]
    pub tcp: Option<String>,
    /// Serve a TCP sink (read and discard) on this address.
    #[arg(long)]
    pub sink: Option<String>,
    /// HTTP response body size in bytes.
    #[arg(long, default_value_t = 13)]
    pub body_size: usize,
    /// Delay before each answer.
    #[arg(long, default_value = "0s", value_parser = dur)]
    pub delay: Duration,
    /// Answer HTTP requests with their own body.
    #[arg(long)]
    pub echo: bool,
    /// Worker threads. Default: one per core.
    #[arg(short, long)]
    pub threads: Option<usize>,
    /// Do not pin worker threads to cores.
    #[arg(long)]
    pub no_pin: bool,
}

/// Options of `merge`.
#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// JSON reports.
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Write the merged JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the merged spectrum here.
    #[arg(long)]
    pub hgrm: Option<PathBuf>,
}

/// What `hold` does on each connection before it goes idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HoldProto {
    /// One HTTP/1.1 keep-alive GET; the connection stays open after the response.
    Http,
    /// Send 16 bytes and wait for them echoed (a TCP echo behind the path).
    Echo,
    /// Connect only.
    Connect,
}

/// Options of `hold`.
#[derive(Debug, Clone, Args)]
pub struct HoldArgs {
    /// URL (http) or `host:port` (echo, connect).
    pub target: String,
    /// The exchange made on each connection before it goes idle.
    #[arg(long, value_enum, default_value = "http")]
    pub proto: HoldProto,
    /// Connections to open and hold.
    #[arg(short, long, default_value_t = 1000)]
    pub connections: usize,
    /// How long to hold them once all are open (`0s`: until killed).
    #[arg(short, long, default_value = "10s", value_parser = dur)]
    pub duration: Duration,
    /// Host header (http; default: the URL's authority).
    #[arg(long)]
    pub host: Option<String>,
    /// Give up on one connection's exchange after this long.
    #[arg(long, default_value = "5s", value_parser = dur)]
    pub timeout: Duration,
}

/// Options of `overlay`.
#[derive(Debug, Clone, Args)]
pub struct OverlayArgs {
    /// `label=report.json`, one per curve, in legend order.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Write the SVG here.
    #[arg(long)]
    pub svg: PathBuf,
    /// Title of the chart.
    #[arg(long, default_value = "Corrected latency by percentile")]
    pub title: String,
}
