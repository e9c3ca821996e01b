//! The `ringtun` command line, cloudflared style, and one handler function per command.
//!
//! `main.rs` parses [`Cli`], sets up tracing and calls [`run`]. The commands that need no edge
//! (`ingress validate`, `ingress rule`) are complete here. The edge-backed `tunnel ...` handlers
//! in [`tunnel`] call the edge's admin API through [`crate::admin_client`]; `tunnel run` answers
//! [`crate::Error::NotImplemented`] (exit code 2) until it lands.
//!
//! Global options (accepted before or after the subcommand):
//! - `--config FILE` (`$RINGTUN_CONFIG`); without it the file is found as [`crate::config::discover`]
//!   describes;
//! - `--edge-api ADDR` (`$RINGTUN_EDGE_API`, default `127.0.0.1:7800`);
//! - `--api-token TOKEN` (`$RINGTUN_API_TOKEN`, else `./ringtun-edge-state/admin-token`).

pub mod edge;
pub mod ingress;
pub mod table;
pub mod tunnel;

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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
    List,
    /// Show a tunnel and its connectors.
    Info(InfoArgs),
    /// Route public traffic to a tunnel.
    #[command(subcommand)]
    Route(RouteCommand),
    /// Delete tunnels.
    Delete(DeleteArgs),
    /// Remove stale connectors of tunnels.
    Cleanup(CleanupArgs),
    /// Run a tunnel: connect to the edge and serve the ingress rules.
    Run(RunArgs),
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

/// Output formats of `tunnel info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// JSON.
    Json,
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
}

/// `tunnel route dns NAME HOSTNAME`.
#[derive(Debug, Args)]
pub struct RouteDnsArgs {
    /// The tunnel's name or ID.
    pub tunnel: String,
    /// The public hostname.
    pub hostname: String,
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
}

/// `tunnel run [NAME] [--url URL]`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The tunnel's name or ID (default: `tunnel` from the config file).
    pub tunnel: Option<String>,
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
    /// Plaintext links, no TLS. DANGER: for benchmarks only; the edge must agree.
    #[arg(long)]
    pub danger_plaintext_links: bool,
    /// Worker threads (default: one per core).
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// How many links to the edge.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub ha_connections: usize,
    /// How long links may drain at shutdown (like `30s`, at most 3m).
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub grace_period: String,
    /// How long an origin may take to start answering a request (its response head) before
    /// the client gets 504, like `100s`; restarted while the request body is still being
    /// written. cloudflared has no such setting; the default matches Cloudflare's proxy read
    /// timeout.
    #[arg(long, default_value = "100s", value_name = "DURATION")]
    pub origin_response_timeout: String,
    /// Also reload the config file's ingress rules when the file changes (polled once a
    /// second), as SIGHUP does.
    #[arg(long)]
    pub watch_config: bool,
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
        Command::Tunnel(t) => match t {
            TunnelCommand::Create(a) => tunnel::create(g, a),
            TunnelCommand::List => tunnel::list(g),
            TunnelCommand::Info(a) => tunnel::info(g, a),
            TunnelCommand::Route(RouteCommand::Dns(a)) => tunnel::route_dns(g, a),
            TunnelCommand::Route(RouteCommand::Tcp(a)) => tunnel::route_tcp(g, a),
            TunnelCommand::Delete(a) => tunnel::delete(g, a),
            TunnelCommand::Cleanup(a) => tunnel::cleanup(g, a),
            TunnelCommand::Run(a) => tunnel::run(g, a),
        },
    }
}

/// Loads the config named by `--config`/`$RINGTUN_CONFIG` or found in the default places.
pub fn load_config(global: &GlobalArgs) -> Result<crate::config::Config> {
    let path = crate::config::discover(global.config.as_deref())?;
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
}
