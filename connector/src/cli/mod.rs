//! The `ringtun` command line, cloudflared style, and one handler function per command.
//!
//! `main.rs` parses [`Cli`], sets up tracing and calls [`run`]. The commands that need no edge
//! (`ingress validate`, `ingress rule`) are complete here. The edge-backed `tunnel ...` handlers
//! in [`tunnel`] call the edge's admin API through [`crate::admin_client`] (`tunnel lb` sets a
//! tunnel's load-balancing policy there); `tunnel run` runs the connector, and `tunnel ready`
//! asks a running connector's `--metrics` server whether it is ready.
//!
//! Global options (accepted before or after the subcommand):
//! - `--config FILE` (`$RINGTUN_CONFIG`); without it the file is found as [`crate::config::find_config_file`]
//!   describes;
//! - `--edge-api ADDR` (`$RINGTUN_EDGE_API`, default `127.0.0.1:7800`);
//! - `--api-token TOKEN` (`$RINGTUN_API_TOKEN`, else `./ringtun-edge-state/admin-token`);
//! - `--log-format text|json` (`$RINGTUN_LOG_FORMAT`, default `text`);
//! - `--loglevel debug|info|warn|error|fatal` and `--logfile FILE`, as in cloudflared;
//! - cloudflared's flags that have no meaning here (`--no-autoupdate`, `--protocol`, ...):
//!   accepted, with one warning ([`CloudflaredOnly`]).
//!
//! Every flag can also be written as a key of the config file (`metrics: 127.0.0.1:2000`,
//! `loglevel: debug`, `no-autoupdate: true`), as cloudflared allows; a flag on the command line
//! or in the environment wins over the key ([`parse_args`]).

pub mod edge;
pub mod ingress;
mod keys;
pub mod table;
pub mod tunnel;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use keys::{StartupNote, is_flag_key, parse_args};

pub use edge::ApiToken;

use crate::error::Result;

/// ringtun connector: dials out to an edge and serves origin services through it.
#[derive(Debug, Parser)]
#[command(name = "ringtun", version, about)]
pub struct Cli {
    /// Options every command accepts.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The config file (default: ~/.ringtun/config.yml, ~/.cloudflared/config.yml,
    /// /etc/ringtun/config.yml, first found).
    #[arg(long, global = true, env = "RINGTUN_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The edge's admin API address.
    #[arg(
        long,
        global = true,
        env = "RINGTUN_EDGE_API",
        default_value = "127.0.0.1:7800",
        value_name = "ADDR"
    )]
    pub edge_api: String,
    /// The edge's admin API token (default: ./ringtun-edge-state/admin-token).
    #[arg(
        long,
        global = true,
        env = "RINGTUN_API_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub api_token: Option<ApiToken>,
    /// The log format on stderr.
    #[arg(
        long,
        global = true,
        env = "RINGTUN_LOG_FORMAT",
        value_enum,
        default_value_t = LogFormat::Text,
        value_name = "FORMAT"
    )]
    pub log_format: LogFormat,
    /// The least severe log level written (default: `info`, or `RUST_LOG` when set).
    #[arg(
        long,
        global = true,
        env = "TUNNEL_LOGLEVEL",
        value_enum,
        value_name = "LEVEL"
    )]
    pub loglevel: Option<LogLevel>,
    /// Also append the log to FILE (created if missing).
    #[arg(long, global = true, env = "TUNNEL_LOGFILE", value_name = "FILE")]
    pub logfile: Option<PathBuf>,
    /// cloudflared's flags that mean nothing here.
    #[command(flatten)]
    pub cloudflared_only: CloudflaredOnly,
    /// Whether `--edge-api` (or `$RINGTUN_EDGE_API`, or the `edge-api` key) was given rather
    /// than defaulted: a token run otherwise uses the address in its token. Set by
    /// [`parse_args`].
    #[arg(skip)]
    pub edge_api_given: bool,
}

/// cloudflared flags that have no meaning in ringtun: accepted so that a cloudflared command
/// line or config file works unchanged, and named in one warning ([`CloudflaredOnly::given`]).
#[derive(Debug, Default, Args)]
pub struct CloudflaredOnly {
    /// ringtun never updates itself.
    #[arg(long, global = true, hide = true)]
    pub no_autoupdate: bool,
    /// ringtun never updates itself.
    #[arg(long, global = true, hide = true, value_name = "DURATION")]
    pub autoupdate_freq: Option<String>,
    /// Links always speak ringtun's own protocol over TLS.
    #[arg(long, global = true, hide = true, value_name = "PROTOCOL")]
    pub protocol: Option<String>,
    /// Edge addresses come from `--edge` or discovery.
    #[arg(long, global = true, hide = true, value_name = "VERSION")]
    pub edge_ip_version: Option<String>,
    /// Links use the system's source address.
    #[arg(long, global = true, hide = true, value_name = "IP")]
    pub edge_bind_address: Option<String>,
    /// Data centers come from the edge's discovery.
    #[arg(long, global = true, hide = true, value_name = "REGION")]
    pub region: Option<String>,
    /// Links reconnect without limit, with backoff.
    #[arg(long, global = true, hide = true, value_name = "N")]
    pub retries: Option<String>,
    /// Links are not compressed.
    #[arg(long, global = true, hide = true, value_name = "N")]
    pub compression_quality: Option<String>,
    /// Links' TLS is fixed.
    #[arg(long, global = true, hide = true)]
    pub post_quantum: bool,
    /// There is no separate transport log.
    #[arg(long, global = true, hide = true, value_name = "LEVEL")]
    pub transport_loglevel: Option<String>,
    /// There is no management service.
    #[arg(long, global = true, hide = true, value_name = "BOOL")]
    pub management_diagnostics: Option<String>,
    /// Tags are not sent to the edge (use `--label`).
    #[arg(long, global = true, hide = true, value_name = "KEY=VALUE")]
    pub tag: Vec<String>,
}

impl CloudflaredOnly {
    /// The flags given, as `--name`.
    pub fn given(&self) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut note = |given: bool, name: &'static str| {
            if given {
                out.push(name);
            }
        };
        note(self.no_autoupdate, "--no-autoupdate");
        note(self.autoupdate_freq.is_some(), "--autoupdate-freq");
        note(self.protocol.is_some(), "--protocol");
        note(self.edge_ip_version.is_some(), "--edge-ip-version");
        note(self.edge_bind_address.is_some(), "--edge-bind-address");
        note(self.region.is_some(), "--region");
        note(self.retries.is_some(), "--retries");
        note(self.compression_quality.is_some(), "--compression-quality");
        note(self.post_quantum, "--post-quantum");
        note(self.transport_loglevel.is_some(), "--transport-loglevel");
        note(
            self.management_diagnostics.is_some(),
            "--management-diagnostics",
        );
        note(!self.tag.is_empty(), "--tag");
        out
    }
}

/// Log levels of `--loglevel` (cloudflared's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, including per-request detail.
    Debug,
    /// Start-up, links, reloads, shutdown.
    Info,
    /// Problems that were handled.
    #[value(alias = "warning")]
    Warn,
    /// Failures.
    Error,
    /// Failures (cloudflared's name; the same as `error`).
    Fatal,
}

impl LogLevel {
    /// The `tracing` filter directive for this level.
    pub fn directive(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error | LogLevel::Fatal => "error",
        }
    }
}

/// Formats of the log on stderr (`--log-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines with `key=value` fields.
    Text,
    /// One JSON object per line.
    Json,
}

/// The top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, list, inspect, route, delete and run tunnels.
    #[command(subcommand)]
    Tunnel(TunnelCommand),
    /// Check the config's ingress rules.
    #[command(subcommand)]
    Ingress(IngressCommand),
    /// Run the whole system locally: an edge, a tunnel, an origin, two replicas and some load.
    Demo(DemoArgs),
    /// Print the version.
    Version,
}

/// What `ringtun version` prints: the version, the target and the build profile.
pub fn version_line() -> String {
    format!(
        "ringtun version {} ({}_{}{})",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        if cfg!(debug_assertions) {
            ", debug build"
        } else {
            ""
        }
    )
}

/// `ringtun demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How long to send traffic through the tunnel.
    #[arg(long, default_value = "5s", value_parser = crate::config::parse_duration)]
    pub duration: std::time::Duration,
    /// Concurrent connections of the load generator (closed loop).
    #[arg(long, default_value_t = 16)]
    pub connections: u32,
    /// The most any one step (a process starting, the replicas registering) may take.
    #[arg(long, default_value = "30s", value_parser = crate::config::parse_duration)]
    pub timeout: std::time::Duration,
}

/// `ringtun tunnel ...`.
#[derive(Debug, Subcommand)]
pub enum TunnelCommand {
    /// Create a tunnel and write its credentials file.
    Create(CreateArgs),
    /// List tunnels.
    List(ListArgs),
    /// Show a tunnel and its connectors.
    Info(InfoArgs),
    /// Route public traffic to a tunnel.
    #[command(subcommand)]
    Route(RouteCommand),
    /// Delete tunnels.
    Delete(DeleteArgs),
    /// Remove stale connectors of tunnels (those without a live link); `--disconnect` also
    /// closes the links of live ones.
    Cleanup(CleanupArgs),
    /// Run a tunnel: connect to the edge and serve the ingress rules.
    Run(Box<RunArgs>),
    /// Ask a running connector whether it is ready (its `--metrics` server's `/ready`): exit 0
    /// when it is, 1 otherwise.
    Ready(ReadyArgs),
    /// Set how the edge spreads a tunnel's requests over its replicas.
    Lb(LbArgs),
    /// Print a token that runs the tunnel with nothing else on the host: `tunnel run --token T`
    /// or `TUNNEL_TOKEN=T tunnel run`.
    Token(TokenArgs),
    /// The same as `ringtun ingress ...` (cloudflared's spelling).
    #[command(subcommand)]
    Ingress(IngressCommand),
}

/// `tunnel list [-o json|yaml]`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print machine-readable output instead of a table.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputFormat>,
}

/// `tunnel token NAME|ID [--credentials-file FILE]`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The tunnel's name or ID.
    pub tunnel: String,
    /// The tunnel's credentials file, which holds its secret (default: `credentials-file` from
    /// the config, else ~/.ringtun/TUNNEL-ID.json).
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,
}

/// `tunnel ready --metrics ADDR`.
#[derive(Debug, Args)]
pub struct ReadyArgs {
    /// The connector's metrics server (its `tunnel run --metrics ADDR`).
    #[arg(long, env = "RINGTUN_METRICS", value_name = "ADDR")]
    pub metrics: String,
}

/// Load-balancing policies of `tunnel lb` (replicas-contract.md, "Replica choice").
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LbPolicy {
    /// Power of two choices: of two random replicas, the less loaded per unit of weight.
    P2c,
    /// Smooth weighted round-robin.
    RoundRobin,
    /// Random, proportional to weight.
    Random,
    /// p2c among the replicas linked to the public listener's data center, else all.
    SameDcFirst,
    /// Clear the tunnel's policy: the edge's `--lb` default applies.
    Default,
}

impl LbPolicy {
    /// The policy's name in the admin API, `None` for [`LbPolicy::Default`].
    pub fn api_name(self) -> Option<&'static str> {
        match self {
            LbPolicy::P2c => Some("p2c"),
            LbPolicy::RoundRobin => Some("round-robin"),
            LbPolicy::Random => Some("random"),
            LbPolicy::SameDcFirst => Some("same-dc-first"),
            LbPolicy::Default => None,
        }
    }
}

/// `tunnel lb NAME|ID POLICY`.
#[derive(Debug, Args)]
pub struct LbArgs {
    /// The tunnel's name or ID.
    pub tunnel: String,
    /// The policy (`default` clears it).
    #[arg(value_enum)]
    pub policy: LbPolicy,
}

/// `tunnel create NAME`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The new tunnel's name.
    pub name: String,
    /// Where to write the credentials (default: ~/.ringtun/TUNNEL-ID.json).
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,
}

/// Output formats of `tunnel info`, `tunnel list` and `tunnel route list`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// JSON.
    Json,
    /// YAML.
    Yaml,
}

/// `tunnel info NAME|ID`.
#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The tunnel's name or ID.
    pub tunnel: String,
    /// Print machine-readable output instead of tables.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputFormat>,
}

/// `tunnel route ...`.
#[derive(Debug, Subcommand)]
pub enum RouteCommand {
    /// Send HTTP requests for HOSTNAME to the tunnel.
    Dns(RouteDnsArgs),
    /// Carry connections to the edge's public TCP PORT to the tunnel.
    Tcp(RouteTcpArgs),
    /// List the DNS and TCP routes.
    List(RouteListArgs),
    /// Delete a route: a HOSTNAME (DNS route) or a PORT (TCP route).
    Delete(RouteDeleteArgs),
}

/// `tunnel route list [-o json]`.
#[derive(Debug, Args)]
pub struct RouteListArgs {
    /// Print machine-readable output instead of a table.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<OutputFormat>,
}

/// `tunnel route delete HOSTNAME|PORT`.
#[derive(Debug, Args)]
pub struct RouteDeleteArgs {
    /// The routed hostname, or the routed TCP port (a number).
    pub route: String,
}

/// `tunnel route dns NAME HOSTNAME`.
#[derive(Debug, Args)]
pub struct RouteDnsArgs {
    /// The tunnel's name or ID.
    pub tunnel: String,
    /// The public hostname.
    pub hostname: String,
    /// Move the hostname to this tunnel when another tunnel has it.
    #[arg(long)]
    pub overwrite_dns: bool,
}

/// `tunnel route tcp NAME PORT`.
#[derive(Debug, Args)]
pub struct RouteTcpArgs {
    /// The tunnel's name or ID.
    pub tunnel: String,
    /// The edge's public TCP port.
    pub port: u16,
}

/// `tunnel delete NAME... [-f]`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The tunnels' names or IDs.
    #[arg(required = true)]
    pub tunnels: Vec<String>,
    /// Delete even while connectors are connected.
    #[arg(short, long)]
    pub force: bool,
}

/// `tunnel cleanup NAME...`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The tunnels' names or IDs.
    #[arg(required = true)]
    pub tunnels: Vec<String>,
    /// Remove only this connector (by its ID) instead of all of the tunnel's connectors.
    #[arg(long, value_name = "ID")]
    pub connector_id: Option<String>,
    /// Also disconnect connectors that are connected (close their links; they may reconnect).
    #[arg(long)]
    pub disconnect: bool,
}

/// `tunnel run [NAME] [--url URL]`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The tunnel's name or ID (default: `tunnel` from the config file).
    pub tunnel: Option<String>,
    /// Run with this token (from `ringtun tunnel token`) instead of a credentials file: it
    /// holds the tunnel ID, the secret, the edge's CA and its discovery address.
    #[arg(
        long,
        env = "TUNNEL_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Read the token from FILE (like a mounted secret), so it is neither in the process's
    /// arguments nor in its environment.
    #[arg(
        long,
        env = "TUNNEL_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "token"
    )]
    pub token_file: Option<PathBuf>,
    /// Write the process ID to FILE at start (removed at exit).
    #[arg(long, env = "TUNNEL_PIDFILE", value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Serve everything from this origin instead of the config's ingress rules.
    #[arg(long, env = "RINGTUN_URL", value_name = "URL")]
    pub url: Option<String>,
    /// The credentials file (default: `credentials-file` from the config, else
    /// ~/.ringtun/TUNNEL-ID.json).
    #[arg(long, value_name = "FILE")]
    pub credentials_file: Option<PathBuf>,
    /// Edge server addresses (`IP:PORT`, comma-separated) instead of asking `/discovery`.
    #[arg(long, value_delimiter = ',', value_name = "ADDR,...")]
    pub edge: Vec<String>,
    /// The edge's CA certificate (PEM) to verify links with, instead of the credentials
    /// file's `EdgeCA` (which `tunnel create` stores).
    #[arg(long, env = "RINGTUN_CACERT", value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// Plaintext links, no TLS. DANGER: for benchmarks only; the edge must agree.
    #[arg(long)]
    pub danger_plaintext_links: bool,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// How many links to the edge, 1 to 16 (default: `ha-connections` from the config file,
    /// else 4).
    #[arg(long, value_name = "N", value_parser = parse_ha_connections)]
    pub ha_connections: Option<usize>,
    /// How long links may drain at shutdown (like `30s`, at most 3m).
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub grace_period: String,
    /// How long an origin may take to start answering a request (its response head) before
    /// the client gets 504, like `100s`; restarted while the request body is still being
    /// written. cloudflared has no such setting; the default matches Cloudflare's proxy read
    /// timeout.
    #[arg(long, default_value = "100s", value_name = "DURATION")]
    pub origin_response_timeout: String,
    /// How often origin names (like `localhost` in `http://localhost:8080`) are resolved again,
    /// like `60s` (at least `1s`). Requests never wait on DNS: they use the addresses resolved
    /// at start, at reload and by these refreshes; a connect failure brings the next refresh
    /// forward.
    #[arg(long, default_value = "60s", value_name = "DURATION")]
    pub origin_dns_refresh_interval: String,
    /// Also reload the config file's ingress rules when the file changes (polled once a
    /// second), as SIGHUP does.
    #[arg(long)]
    pub watch_config: bool,
    /// A free-form label for this replica, shown by `tunnel info` (at most 256 bytes).
    #[arg(long, default_value = "", value_name = "NAME", value_parser = parse_label)]
    pub label: String,
    /// This replica's load-balancing weight, 1 to 1000.
    #[arg(
        long,
        default_value_t = ringtun_core::handshake::DEFAULT_WEIGHT,
        value_name = "N",
        value_parser = parse_weight
    )]
    pub weight: u16,
    /// Get traffic only when no active (non-standby) replica of the tunnel is ready.
    #[arg(long)]
    pub standby: bool,
    /// Serve `/ready`, `/healthcheck` and `/metrics` on ADDR (like `127.0.0.1:2000`; port 0
    /// picks one, `:PORT` means every interface).
    #[arg(long, env = "RINGTUN_METRICS", value_name = "ADDR")]
    pub metrics: Option<String>,
    /// Seconds a `--metrics` client has to send its request (head and body), and again to take
    /// the answer; past it: 408 and close [default: 10].
    #[arg(long, value_name = "SECS")]
    pub metrics_timeout: Option<u64>,
    /// Connections the `--metrics` server serves at once; more get 503 [default: 64].
    #[arg(long, value_name = "N")]
    pub metrics_max_connections: Option<usize>,
    /// Largest `--metrics` request head in bytes (at least 1024); larger: 431 [default: 16384].
    #[arg(long, value_name = "BYTES")]
    pub metrics_max_head_bytes: Option<usize>,
    /// Largest `--metrics` request body in bytes; larger: 413 [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub metrics_max_body_bytes: Option<usize>,
}

impl RunArgs {
    /// The `--metrics` server's limits from the `--metrics-*` flags, checked.
    pub fn metrics_limits(&self) -> std::result::Result<ringtun_core::control::Limits, String> {
        let limits = ringtun_core::control::Limits::from_options(
            self.metrics_timeout,
            self.metrics_max_connections,
            self.metrics_max_head_bytes,
            self.metrics_max_body_bytes,
        );
        limits.validate("--metrics")?;
        Ok(limits)
    }
}

/// The most `--weight` may be.
pub const MAX_WEIGHT: u16 = 1000;

/// Parses `--weight`: an integer from 1 to [`MAX_WEIGHT`].
fn parse_weight(s: &str) -> std::result::Result<u16, String> {
    let n: u64 = s
        .trim()
        .parse()
        .map_err(|_| format!("weight must be a whole number from 1 to {MAX_WEIGHT}, not {s:?}"))?;
    match u16::try_from(n) {
        Ok(w) if (1..=MAX_WEIGHT).contains(&w) => Ok(w),
        _ => Err(format!("weight must be from 1 to {MAX_WEIGHT}, not {n}")),
    }
}

/// Parses `--ha-connections`: a whole number from 1 to 16
/// ([`crate::config::check_ha_connections`]).
fn parse_ha_connections(s: &str) -> std::result::Result<usize, String> {
    let n: i128 = s.trim().parse().map_err(|_| {
        format!(
            "ha-connections must be a whole number from 1 to {}, not {s:?}",
            crate::config::MAX_HA_CONNECTIONS
        )
    })?;
    crate::config::check_ha_connections(n)
}

/// Parses `--label`: at most 256 bytes (what the registration carries).
fn parse_label(s: &str) -> std::result::Result<String, String> {
    let max = ringtun_core::handshake::MAX_STRING;
    if s.len() > max {
        return Err(format!(
            "label is {} bytes; at most {max} are allowed",
            s.len()
        ));
    }
    Ok(s.to_owned())
}

/// `ringtun ingress ...`.
#[derive(Debug, Subcommand)]
pub enum IngressCommand {
    /// Check the config's ingress rules; print OK or the first error.
    Validate,
    /// Print which ingress rule a URL matches.
    Rule(RuleArgs),
}

/// `ingress rule URL`.
#[derive(Debug, Args)]
pub struct RuleArgs {
    /// The request URL, like `https://app.example.com/path`.
    pub url: String,
}

/// Runs the parsed command. Output goes to stdout; the caller prints the error.
pub fn run(cli: &Cli) -> Result<()> {
    let g = &cli.global;
    match &cli.command {
        Command::Ingress(IngressCommand::Validate) => ingress::validate(g),
        Command::Ingress(IngressCommand::Rule(a)) => ingress::rule(g, a),
        Command::Demo(a) => crate::demo::run(a),
        Command::Version => {
            println!("{}", version_line());
            Ok(())
        }
        Command::Tunnel(t) => match t {
            TunnelCommand::Create(a) => tunnel::create(g, a),
            TunnelCommand::List(a) => tunnel::list(g, a),
            TunnelCommand::Info(a) => tunnel::info(g, a),
            TunnelCommand::Route(RouteCommand::Dns(a)) => tunnel::route_dns(g, a),
            TunnelCommand::Route(RouteCommand::Tcp(a)) => tunnel::route_tcp(g, a),
            TunnelCommand::Route(RouteCommand::List(a)) => tunnel::route_list(g, a),
            TunnelCommand::Route(RouteCommand::Delete(a)) => tunnel::route_delete(g, a),
            TunnelCommand::Delete(a) => tunnel::delete(g, a),
            TunnelCommand::Cleanup(a) => tunnel::cleanup(g, a),
            TunnelCommand::Run(a) => {
                let _pidfile = a.pidfile.as_deref().map(PidFile::write).transpose()?;
                tunnel::run(g, a)
            }
            TunnelCommand::Ready(a) => tunnel::ready(a),
            TunnelCommand::Lb(a) => tunnel::lb(g, a),
            TunnelCommand::Token(a) => tunnel::token(g, a),
            TunnelCommand::Ingress(IngressCommand::Validate) => ingress::validate(g),
            TunnelCommand::Ingress(IngressCommand::Rule(a)) => ingress::rule(g, a),
        },
    }
}

/// `--pidfile FILE`: holds this process's ID while `tunnel run` runs; removed when dropped.
#[derive(Debug)]
struct PidFile(PathBuf);

impl PidFile {
    fn write(path: &std::path::Path) -> Result<PidFile> {
        std::fs::write(path, format!("{}\n", std::process::id())).map_err(|source| {
            crate::error::Error::PidFile {
                path: path.to_owned(),
                source,
            }
        })?;
        Ok(PidFile(path.to_owned()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        // Only our own file: another process may have written its ID there since.
        let ours = std::fs::read_to_string(&self.0)
            .is_ok_and(|t| t.trim() == std::process::id().to_string());
        if ours && let Err(e) = std::fs::remove_file(&self.0) {
            tracing::warn!(file = %self.0.display(), error = %e, "cannot remove the pidfile");
        }
    }
}

/// Loads the config named by `--config`/`$RINGTUN_CONFIG` or found in the default places
/// ([`parse_args`] has already put a file found there into `--config`, and said which).
pub fn load_config(global: &GlobalArgs) -> Result<crate::config::Config> {
    let path = crate::config::find_config_file(global.config.as_deref())?;
    crate::config::Config::load(&path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(args).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn parses_cloudflared_shapes() {
        let c = parse(&["ringtun", "tunnel", "info", "web", "-o", "json"]);
        assert!(matches!(
            c.command,
            Command::Tunnel(TunnelCommand::Info(InfoArgs {
                output: Some(OutputFormat::Json),
                ..
            }))
        ));
        let c = parse(&["ringtun", "tunnel", "route", "tcp", "web", "2222"]);
        assert!(matches!(
            c.command,
            Command::Tunnel(TunnelCommand::Route(RouteCommand::Tcp(RouteTcpArgs {
                port: 2222,
                ..
            })))
        ));
        let c = parse(&["ringtun", "tunnel", "delete", "-f", "web"]);
        assert!(matches!(
            c.command,
            Command::Tunnel(TunnelCommand::Delete(DeleteArgs { force: true, .. }))
        ));
        let c = parse(&[
            "ringtun",
            "tunnel",
            "run",
            "--config",
            "c.yml",
            "--url",
            "http://x:1",
            "web",
        ]);
        assert_eq!(c.global.config, Some(PathBuf::from("c.yml")));
        let c = parse(&["ringtun", "--edge-api", "10.0.0.1:7800", "tunnel", "list"]);
        assert_eq!(c.global.edge_api, "10.0.0.1:7800");
    }

    fn run_args(c: Cli) -> RunArgs {
        match c.command {
            Command::Tunnel(TunnelCommand::Run(a)) => *a,
            other => panic!("not tunnel run: {other:?}"),
        }
    }

    #[test]
    fn parses_replica_flags() {
        let a = run_args(parse(&[
            "ringtun",
            "tunnel",
            "run",
            "web",
            "--label",
            "blue",
            "--weight",
            "1000",
            "--standby",
            "--metrics",
            "127.0.0.1:0",
        ]));
        assert_eq!(
            (a.label.as_str(), a.weight, a.standby, a.metrics.as_deref()),
            ("blue", 1000, true, Some("127.0.0.1:0"))
        );
        let a = run_args(parse(&["ringtun", "tunnel", "run", "web"]));
        assert_eq!((a.label.as_str(), a.weight, a.standby), ("", 1, false));
    }

    #[test]
    fn bad_weights_and_labels_are_refused_clearly() {
        for bad in ["0", "1001", "-1", "x", "70000"] {
            let flag = format!("--weight={bad}");
            let e = Cli::try_parse_from(["ringtun", "tunnel", "run", flag.as_str()])
                .err()
                .unwrap_or_else(|| panic!("--weight {bad} was accepted"));
            assert!(e.to_string().contains("weight must be"), "{bad}: {e}");
        }
        let long = "x".repeat(257);
        let e = Cli::try_parse_from(["ringtun", "tunnel", "run", "--label", &long])
            .err()
            .unwrap_or_else(|| panic!("a 257-byte label was accepted"));
        assert!(e.to_string().contains("at most 256"), "{e}");
    }

    #[test]
    fn log_format_goes_before_or_after_the_subcommand() {
        let c = parse(&["ringtun", "--log-format", "json", "tunnel", "list"]);
        assert_eq!(c.global.log_format, LogFormat::Json);
        let c = parse(&["ringtun", "tunnel", "run", "web", "--log-format", "json"]);
        assert_eq!(c.global.log_format, LogFormat::Json);
        let c = parse(&["ringtun", "tunnel", "list"]);
        assert_eq!(c.global.log_format, LogFormat::Text);
        assert!(Cli::try_parse_from(["ringtun", "--log-format", "xml", "tunnel", "list"]).is_err());
    }

    #[test]
    fn parses_ready_and_lb() {
        let c = parse(&["ringtun", "tunnel", "ready", "--metrics", "127.0.0.1:2000"]);
        assert!(matches!(
            c.command,
            Command::Tunnel(TunnelCommand::Ready(ReadyArgs { ref metrics })) if metrics == "127.0.0.1:2000"
        ));
        let c = parse(&["ringtun", "tunnel", "lb", "web", "round-robin"]);
        assert!(matches!(
            c.command,
            Command::Tunnel(TunnelCommand::Lb(LbArgs {
                policy: LbPolicy::RoundRobin,
                ..
            }))
        ));
        assert!(Cli::try_parse_from(["ringtun", "tunnel", "lb", "web", "fastest"]).is_err());
    }
}
