//! `ringtun tunnel ...`: the edge-backed commands.
//!
//! Each management command is one or two calls to the edge's admin API through
//! [`AdminClient`], then cloudflared-like output on stdout. `tunnel run` gathers its settings
//! here, starts the `--metrics` server and runs [`crate::run::run`]; `tunnel ready` asks a
//! running connector's metrics server.

use std::path::PathBuf;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use super::{
    CleanupArgs, CreateArgs, DeleteArgs, GlobalArgs, InfoArgs, LbArgs, ListArgs, OutputFormat,
    ReadyArgs, RouteDeleteArgs, RouteDnsArgs, RouteListArgs, RouteTcpArgs, RunArgs, TokenArgs,
    table,
};
use crate::admin_client::{AdminClient, ConnectorInfo, TunnelDetail};
use crate::credentials::{Credentials, TunnelSecret, TunnelToken, default_credentials_path};
use crate::error::{Error, Result};
use crate::observe::Observer;

/// How long `tunnel ready` waits for the metrics server's answer.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// `tunnel create NAME [--credentials-file FILE]`: create the tunnel at the edge, print its ID and
/// write its credentials ([`crate::credentials::Credentials::write`]).
///
/// The edge CA is asked for first (`/discovery`, through the same admin client and token as the
/// creation) and stored in the credentials file as `EdgeCA`: it is the only CA `tunnel run`
/// trusts besides `--cacert`. It and a given `--credentials-file` are checked first, so that
/// the common failures leave no tunnel behind. If writing the file still fails, the new
/// tunnel is deleted again: without its secret nobody could run it.
pub fn create(global: &GlobalArgs, args: &CreateArgs) -> Result<()> {
    let client = AdminClient::from_global(global)?;
    if let Some(path) = &args.credentials_file
        && path.exists()
    {
        return Err(Error::CredentialsExist { path: path.clone() });
    }
    let discovery = client.discovery()?;
    let created = client.create_tunnel(&args.name)?;
    let secret = STANDARD
        .decode(created.secret.trim())
        .map_err(|e| Error::EdgeBadResponse {
            request: "POST /tunnels".to_owned(),
            source: format!("secret is not base64: {e}").into(),
        })?;
    let credentials = Credentials {
        account_tag: None,
        tunnel_id: created.id.clone(),
        tunnel_name: created.name.clone(),
        tunnel_secret: TunnelSecret::new(secret),
        edge_ca: Some(discovery.ca_pem),
    };
    let written = credentials_path(args, &created.id).and_then(|path| {
        credentials.write(&path)?;
        Ok(path)
    });
    let path = match written {
        Ok(path) => path,
        Err(e) => {
            // Roll back: a tunnel whose secret was never stored cannot be run.
            if let Err(undo) = client.delete_tunnel(&created.id, true) {
                tracing::warn!(tunnel = %created.id, error = %undo, "cannot delete the new tunnel after failing to write its credentials");
            }
            return Err(e);
        }
    };
    println!(
        "Tunnel credentials written to {}. Keep this file secret. To revoke these credentials, \
         delete the tunnel.",
        path.display()
    );
    println!();
    println!("Created tunnel {} with id {}", created.name, created.id);
    Ok(())
}

fn credentials_path(args: &CreateArgs, tunnel_id: &str) -> Result<PathBuf> {
    match &args.credentials_file {
        Some(p) => Ok(p.clone()),
        None => default_credentials_path(tunnel_id),
    }
}

/// `tunnel list`: ID, NAME, CREATED and CONNECTIONS (like `2xdfw, 2xmci`); with `-o json|yaml`
/// the edge's list as is.
pub fn list(global: &GlobalArgs, args: &ListArgs) -> Result<()> {
    let client = AdminClient::from_global(global)?;
    let tunnels = client.list_tunnels()?;
    if let Some(format) = args.output {
        let value = serde_json::to_value(&tunnels).map_err(|e| Error::EdgeBadResponse {
            request: "GET /tunnels".to_owned(),
            source: e.into(),
        })?;
        return print_structured(&value, format, "GET /tunnels");
    }
    if tunnels.is_empty() {
        println!("No tunnels were found. You can use `ringtun tunnel create NAME` to create one.");
        return Ok(());
    }
    println!(
        "You can obtain more detailed information for each tunnel with `ringtun tunnel info \
         NAME|ID`"
    );
    let rows: Vec<Vec<String>> = tunnels
        .into_iter()
        .map(|t| vec![t.id, t.name, t.created, t.connections])
        .collect();
    print!(
        "{}",
        table::render(&["ID", "NAME", "CREATED", "CONNECTIONS"], &rows)
    );
    Ok(())
}

/// `tunnel info NAME|ID [-o json|yaml]`.
pub fn info(global: &GlobalArgs, args: &InfoArgs) -> Result<()> {
    let client = AdminClient::from_global(global)?;
    if let Some(format) = args.output {
        let value = client.tunnel_json(&args.tunnel)?;
        return print_structured(&value, format, &format!("GET /tunnels/{}", args.tunnel));
    }
    print!("{}", render_info(&client.tunnel(&args.tunnel)?));
    Ok(())
}

/// Prints the edge's answer to `request` as pretty JSON or as YAML (`-o json|yaml`).
fn print_structured(value: &serde_json::Value, format: OutputFormat, request: &str) -> Result<()> {
    let bad = |source: crate::error::Cause| Error::EdgeBadResponse {
        request: request.to_owned(),
        source,
    };
    let text = match format {
        OutputFormat::Json => {
            serde_json::to_string_pretty(value).map_err(|e| bad(e.into()))? + "\n"
        }
        OutputFormat::Yaml => serde_yaml_ng::to_string(value).map_err(|e| bad(e.into()))?,
    };
    print!("{text}");
    Ok(())
}

/// `tunnel token NAME|ID [--credentials-file FILE]`: prints the token that `tunnel run --token`
/// (or `TUNNEL_TOKEN`) runs with ([`TunnelToken`]). The edge shows a tunnel's secret only when
/// it creates the tunnel, so the secret and the edge CA come from the tunnel's credentials file
/// (`--credentials-file`, the config's `credentials-file`, else `~/.ringtun/<ID>.json`); a NAME is
/// resolved through the admin API, and the file must be that tunnel's. The token's discovery
/// address is `--edge-api` as given here: give the address the connectors will reach.
pub fn token(global: &GlobalArgs, args: &TokenArgs) -> Result<()> {
    let id = if uuid::Uuid::parse_str(&args.tunnel).is_ok() {
        args.tunnel.clone()
    } else {
        AdminClient::from_global(global)?.tunnel(&args.tunnel)?.id
    };
    let configured = || {
        super::load_config(global)
            .ok()
            .and_then(|c| c.credentials_file)
    };
    let path = match args.credentials_file.clone().or_else(configured) {
        Some(p) => p,
        None => default_credentials_path(&id)?,
    };
    let credentials = Credentials::read(&path)?;
    if !credentials.tunnel_id.trim().eq_ignore_ascii_case(&id) {
        return Err(Error::CredentialsMismatch {
            path,
            wanted: id,
            found: credentials.tunnel_id,
        });
    }
    if !global.edge_api_given {
        tracing::warn!(
            edge_api = %global.edge_api,
            "the token holds the default edge address; pass --edge-api with the address the \
             connectors will reach"
        );
    }
    println!(
        "{}",
        TunnelToken::new(&credentials, &global.edge_api).encode()
    );
    Ok(())
}

/// The text form of `tunnel info`: the header, then one row per connector.
fn render_info(t: &TunnelDetail) -> String {
    let mut out = format!(
        "NAME:     {}\nID:       {}\nCREATED:  {}\n\n",
        t.name, t.id, t.created
    );
    if t.connectors.is_empty() {
        out.push_str(&format!(
            "Your tunnel {} does not have any active connectors.\n",
            t.name
        ));
        return out;
    }
    let mut header = vec![
        "CONNECTOR ID",
        "CREATED",
        "ARCHITECTURE",
        "VERSION",
        "ORIGIN IP",
        "EDGE",
        "LABEL",
        "STATE",
        "STREAMS",
        "REQUESTS",
    ];
    let mut rows: Vec<Vec<String>> = t.connectors.iter().map(connector_row).collect();
    // An edge cluster names the node of every link; one edge does not, and the table stays as
    // it was.
    let clustered = t
        .connectors
        .iter()
        .flat_map(|c| &c.links)
        .any(|l| l.node.is_some());
    if clustered {
        header.push("NODES");
        for (row, c) in rows.iter_mut().zip(&t.connectors) {
            row.push(link_nodes(c));
        }
    }
    out.push_str(&table::render(&header, &rows));
    out
}

/// The node of each link, `INDEX:NODE` with the node ID's first 8 characters (`-` unknown).
fn link_nodes(c: &ConnectorInfo) -> String {
    let mut parts: Vec<String> = c
        .links
        .iter()
        .map(|l| {
            let node = l.node.as_deref().unwrap_or("-");
            format!("{}:{}", l.index, node.get(..8).unwrap_or(node))
        })
        .collect();
    if parts.is_empty() {
        parts.push("-".to_owned());
    }
    parts.join(" ")
}

/// One connector's `tunnel info` row. Fields an older edge does not send show as `-` (STATE
/// falls back to the `draining` flag).
fn connector_row(c: &ConnectorInfo) -> Vec<String> {
    let dash = || "-".to_owned();
    let label = c
        .label
        .clone()
        .filter(|l| !l.trim().is_empty())
        .unwrap_or_else(dash);
    let state = match &c.state {
        Some(s) if !s.is_empty() => s.clone(),
        _ if c.draining => "draining".to_owned(),
        _ => dash(),
    };
    vec![
        c.id.clone(),
        c.created.clone(),
        c.arch.clone(),
        c.version.clone(),
        c.origin_ip.clone(),
        c.edge.clone(),
        label,
        state,
        c.active_streams.map_or_else(dash, |n| n.to_string()),
        c.requests.map_or_else(dash, |n| n.to_string()),
    ]
}

/// `tunnel ready --metrics ADDR`: `Ok` (exit 0) when the connector's `/ready` answers 200,
/// else [`Error::NotReady`] or [`Error::MetricsUnreachable`] (exit 1).
pub fn ready(args: &ReadyArgs) -> Result<()> {
    let addr = client_addr(&args.metrics);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(READY_TIMEOUT))
        .build()
        .into();
    let unreachable = |source: crate::error::Cause| Error::MetricsUnreachable {
        addr: addr.clone(),
        source,
    };
    let mut response = agent
        .get(&format!("http://{addr}/ready"))
        .call()
        .map_err(|e| unreachable(e.into()))?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| unreachable(format!("reading the answer: {e}").into()))?;
    if status != 200 {
        return Err(Error::NotReady {
            addr,
            status,
            body: body.trim().to_owned(),
        });
    }
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    println!(
        "connector {} is ready: {} link(s) registered",
        v["connectorId"].as_str().unwrap_or("?"),
        v["readyConnections"].as_u64().unwrap_or(0)
    );
    Ok(())
}

/// The address to dial for a `--metrics` value: `:PORT` (every interface) means this host.
fn client_addr(metrics: &str) -> String {
    let m = metrics
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/');
    match m.strip_prefix(':') {
        Some(port) => format!("127.0.0.1:{port}"),
        None => m.to_owned(),
    }
}

/// The address to bind for `--metrics`: `:PORT` means every interface, as in Go.
fn bind_addr(metrics: &str) -> String {
    let m = metrics.trim();
    match m.strip_prefix(':') {
        Some(port) => format!("0.0.0.0:{port}"),
        None => m.to_owned(),
    }
}

/// `tunnel lb NAME|ID POLICY`: `PUT /tunnels/{key}/lb`.
pub fn lb(global: &GlobalArgs, args: &LbArgs) -> Result<()> {
    let client = AdminClient::from_global(global)?;
    let policy = args.policy.api_name();
    let t = client.set_lb_policy(&args.tunnel, policy)?;
    let name = t["name"].as_str().unwrap_or(&args.tunnel);
    let id = t["id"].as_str().unwrap_or("?");
    match t["lb_policy"].as_str() {
        Some(p) => println!("Tunnel {name} ({id}) now uses load-balancing policy {p}"),
        None => println!("Tunnel {name} ({id}) now uses the edge's default load-balancing policy"),
    }
    Ok(())
}

/// `tunnel route dns NAME HOSTNAME [--overwrite-dns]`: the same route again succeeds and says
/// it exists; a hostname of another tunnel is an error unless `--overwrite-dns` moves it.
pub fn route_dns(global: &GlobalArgs, args: &RouteDnsArgs) -> Result<()> {
    let client = AdminClient::from_global(global)?;
    let route = client
        .route_dns(&args.tunnel, &args.hostname, args.overwrite_dns)
        .map_err(|e| match e {
            Error::EdgeRejected {
                status: 409,
                message,
            } => Error::EdgeRejected {
                status: 409,
                message: format!(
                    "{message} (`ringtun tunnel route dns --overwrite-dns {} {}` moves it)",
                    args.tunnel, args.hostname
                ),
            },
            e => e,
        })?;
    print_route(
        &format!("DNS route: {}", args.hostname),
        &route,
        &args.tunnel,
    );
    Ok(())
}

/// `tunnel route tcp NAME PORT`.
pub fn route_tcp(global: &GlobalArgs, args: &RouteTcpArgs) -> Result<()> {
    let client = AdminClient::from_global(global)?;
    let route = client.route_tcp(&args.tunnel, args.port)?;
    print_route(
        &format!("TCP route: edge port {}", args.port),
        &route,
        &args.tunnel,
    );
    Ok(())
}

/// `Added <what> routes to tunnel NAME (ID)` from the edge's answer (`tunnel` as given when
/// the answer lacks the name), or that it already existed, or that it moved.
fn print_route(what: &str, route: &serde_json::Value, tunnel: &str) {
    let name = route["tunnel_name"].as_str().unwrap_or(tunnel);
    let id = route["tunnel_id"].as_str().unwrap_or("?");
    if route["existed"].as_bool() == Some(true) {
        println!("{what} already routes to tunnel {name} ({id}); nothing changed");
    } else if route["replaced"].as_bool() == Some(true) {
        println!("{what} now routes to tunnel {name} ({id}) (moved from another tunnel)");
    } else {
        println!("Added {what} routes to tunnel {name} ({id})");
    }
}

/// `tunnel route list [-o json]`: the DNS and TCP routes, one table.
pub fn route_list(global: &GlobalArgs, args: &RouteListArgs) -> Result<()> {
    let client = AdminClient::from_global(global)?;
    let routes = client.routes()?;
    if let Some(format) = args.output {
        let value = serde_json::to_value(&routes).map_err(|e| Error::EdgeBadResponse {
            request: "GET /routes".to_owned(),
            source: e.into(),
        })?;
        return print_structured(&value, format, "GET /routes");
    }
    print!("{}", render_routes(&routes));
    Ok(())
}

/// The text form of `tunnel route list`.
fn render_routes(routes: &crate::admin_client::Routes) -> String {
    if routes.dns.is_empty() && routes.tcp.is_empty() {
        return "No routes were found. You can use `ringtun tunnel route dns NAME HOSTNAME` or \
                `ringtun tunnel route tcp NAME PORT` to add one.\n"
            .to_owned();
    }
    let dns = routes.dns.iter().map(|r| {
        vec![
            "dns".to_owned(),
            r.hostname.clone(),
            r.tunnel_name.clone(),
            r.tunnel_id.clone(),
        ]
    });
    let tcp = routes.tcp.iter().map(|r| {
        vec![
            "tcp".to_owned(),
            r.port.to_string(),
            r.tunnel_name.clone(),
            r.tunnel_id.clone(),
        ]
    });
    let rows: Vec<Vec<String>> = dns.chain(tcp).collect();
    table::render(&["TYPE", "ROUTE", "TUNNEL NAME", "TUNNEL ID"], &rows)
}

/// `tunnel route delete HOSTNAME|PORT`: a number is a TCP route's port, anything else a DNS
/// route's hostname.
pub fn route_delete(global: &GlobalArgs, args: &RouteDeleteArgs) -> Result<()> {
    let client = AdminClient::from_global(global)?;
    let key = args.route.trim();
    let (what, route) = match key.parse::<u16>() {
        Ok(port) => (
            format!("TCP route: edge port {port}"),
            client.delete_tcp_route(port)?,
        ),
        Err(_) => (format!("DNS route: {key}"), client.delete_dns_route(key)?),
    };
    println!(
        "Deleted {what} of tunnel {} ({})",
        route["tunnel_name"].as_str().unwrap_or("?"),
        route["tunnel_id"].as_str().unwrap_or("?"),
    );
    Ok(())
}

/// `tunnel delete NAME... [-f]`. Stops at the first tunnel the edge refuses to delete. With
/// `-f` the edge closes the tunnel's links at once: its connectors stop serving and exit, as
/// their credentials are no longer valid.
pub fn delete(global: &GlobalArgs, args: &DeleteArgs) -> Result<()> {
    let client = AdminClient::from_global(global)?;
    for tunnel in &args.tunnels {
        match client.delete_tunnel(tunnel, args.force) {
            Ok(v) => println!(
                "Deleted tunnel {} ({})",
                v["name"].as_str().unwrap_or(tunnel),
                v["id"].as_str().unwrap_or("?")
            ),
            Err(Error::EdgeRejected {
                status: 409,
                message,
            }) => {
                return Err(Error::EdgeRejected {
                    status: 409,
                    message: format!(
                        "cannot delete tunnel {tunnel}: {message} (`ringtun tunnel delete -f \
                         {tunnel}` deletes it anyway)"
                    ),
                });
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `tunnel cleanup NAME... [--connector-id ID] [--disconnect]`: the edge removes the records
/// without a live link; connected connectors are kept, or with `--disconnect` have their links
/// closed. Says which connector went which way.
pub fn cleanup(global: &GlobalArgs, args: &CleanupArgs) -> Result<()> {
    let client = AdminClient::from_global(global)?;
    for tunnel in &args.tunnels {
        let done = client.cleanup(tunnel, args.connector_id.as_deref(), args.disconnect)?;
        print!("{}", render_cleanup(tunnel, &done));
    }
    Ok(())
}

/// The text form of one tunnel's cleanup.
fn render_cleanup(tunnel: &str, done: &crate::admin_client::CleanupResult) -> String {
    let mut out = format!(
        "Removed {} stale connector(s) of tunnel {tunnel}\n",
        done.removed_connectors.len()
    );
    for id in &done.removed_connectors {
        out.push_str(&format!("  removed       {id}\n"));
    }
    for id in &done.disconnected_connectors {
        out.push_str(&format!("  disconnected  {id}\n"));
    }
    for id in &done.kept_connectors {
        out.push_str(&format!("  kept          {id} (connected)\n"));
    }
    if !done.kept_connectors.is_empty() {
        out.push_str(&format!(
            "{} connected connector(s) kept; `ringtun tunnel cleanup --disconnect {tunnel}` \
             closes their links\n",
            done.kept_connectors.len()
        ));
    }
    out
}

/// `tunnel run [NAME|ID] [--url URL] ...`: settles the ingress rules
/// ([`crate::config::Config::ingress_for`] with `--url`), the credentials (`--token` /
/// `TUNNEL_TOKEN`, else `--credentials-file`, the config's `credentials-file`, else
/// `~/.ringtun/<ID>.json`, a NAME being resolved to its ID through the admin API), the edge CA
/// ([`edge_ca`]) and the edge servers (`--edge`, else `GET /discovery` at `--edge-api` or the
/// token's address), then hands over to [`crate::run::run`]. While the admin API cannot be
/// reached, the name resolution and the discovery are retried with backoff
/// ([`crate::run::retry_at_start`]); a refusal (unknown tunnel, bad token) ends the run.
pub fn run(global: &GlobalArgs, args: &RunArgs) -> Result<()> {
    // First, so that a malformed token is the error even when more is missing.
    let token = run_token(args)?;
    let config = match super::load_config(global) {
        Ok(c) => c,
        Err(Error::ConfigNotFound { .. }) if args.url.is_some() => {
            crate::config::Config::from_yaml_str("{}")?
        }
        Err(e) => return Err(e),
    };
    let ingress = config.ingress_for(args.url.as_deref())?;
    let (credentials, path) = match &token {
        Some(t) => (t.credentials(), PathBuf::from("the tunnel token")),
        None => {
            let path = match (&args.credentials_file, &config.credentials_file) {
                (Some(p), _) | (None, Some(p)) => p.clone(),
                (None, None) => {
                    let tunnel = args
                        .tunnel
                        .clone()
                        .or_else(|| config.tunnel.clone())
                        .ok_or(Error::NoTunnel)?;
                    let id = if uuid::Uuid::parse_str(&tunnel).is_ok() {
                        tunnel
                    } else {
                        let client = AdminClient::from_global(global)?;
                        crate::run::retry_at_start("resolving the tunnel name", || {
                            client.tunnel(&tunnel)
                        })?
                        .id
                    };
                    default_credentials_path(&id)?
                }
            };
            (Credentials::read(&path)?, path)
        }
    };
    let tunnel_id =
        uuid::Uuid::parse_str(credentials.tunnel_id.trim()).map_err(|_| Error::BadTunnelId {
            id: credentials.tunnel_id.clone(),
        })?;
    // A token run has no admin API token to resolve a name with: there only an ID is checked.
    if let Some(given) = args.tunnel.as_deref().or(config.tunnel.as_deref())
        && (token.is_none() || uuid::Uuid::parse_str(given.trim()).is_ok())
    {
        check_tunnel(global, given, &credentials, tunnel_id, &path)?;
    }
    let connector_id = uuid::Uuid::new_v4();
    tracing::info!("Generated Connector ID: {connector_id}");
    let observer = std::sync::Arc::new(Observer::new(connector_id.to_string()));
    // Kept until the run ends: dropping it stops the server.
    let _metrics_server = match &args.metrics {
        Some(addr) => {
            let limits = args
                .metrics_limits()
                .map_err(|reason| Error::MetricsServer {
                    addr: addr.clone(),
                    source: reason.into(),
                })?;
            Some(crate::observe::server::start(
                &bind_addr(addr),
                limits,
                observer.clone(),
            )?)
        }
        None => None,
    };

    let ca_pem = edge_ca(args, &credentials, &path)?;
    let (dcs, rediscovery) = if args.edge.is_empty() {
        let api = discovery_api(global, token.as_ref());
        let answer =
            crate::run::retry_at_start("GET /discovery", || crate::admin_client::discover(api))?;
        (
            crate::run::edges::from_discovery(&answer),
            Some(crate::run::Rediscovery::new(api, &answer)),
        )
    } else {
        (crate::run::edges::from_flag(&args.edge)?, None)
    };
    let grace = crate::config::parse_duration(&args.grace_period)
        .map_err(|message| Error::ConfigField {
            field: "--grace-period".to_owned(),
            message,
        })?
        .min(std::time::Duration::from_secs(180));
    let origin_response_timeout = crate::config::parse_duration(&args.origin_response_timeout)
        .map_err(|message| Error::ConfigField {
            field: "--origin-response-timeout".to_owned(),
            message,
        })?;
    let origin_dns_refresh = crate::config::parse_duration(&args.origin_dns_refresh_interval)
        .map_err(|message| Error::ConfigField {
            field: "--origin-dns-refresh-interval".to_owned(),
            message,
        })
        .and_then(|d| {
            if d < crate::proxy::resolver::MIN_REFRESH_INTERVAL {
                Err(Error::ConfigField {
                    field: "--origin-dns-refresh-interval".to_owned(),
                    message: "must be at least 1s".to_owned(),
                })
            } else {
                Ok(d)
            }
        })?;
    let links = args
        .ha_connections
        .or(config.ha_connections)
        .unwrap_or(crate::config::DEFAULT_HA_CONNECTIONS);
    let plan = crate::run::LinkPlan::new(dcs, links)?;
    crate::run::run(crate::run::RunSettings {
        tunnel_id: *tunnel_id.as_bytes(),
        secret: credentials.tunnel_secret.clone(),
        connector_id: *connector_id.as_bytes(),
        ingress,
        plan,
        rediscovery,
        ca_pem,
        links,
        workers: args.workers,
        grace,
        origin_response_timeout,
        origin_dns_refresh,
        config_path: config.source.clone(),
        url: args.url.clone(),
        watch_config: args.watch_config,
        observer,
        label: args.label.clone(),
        weight: args.weight,
        standby: args.standby,
    })
}

/// The token of `--token`/`TUNNEL_TOKEN` or `--token-file`, if any.
fn run_token(args: &RunArgs) -> Result<Option<TunnelToken>> {
    let text = match (&args.token, &args.token_file) {
        (Some(t), _) => t.clone(),
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|source| Error::TokenFile {
            path: path.clone(),
            source,
        })?,
        (None, None) => return Ok(None),
    };
    TunnelToken::decode(&text).map(Some)
}

/// Where `tunnel run` asks `GET /discovery`: `--edge-api` when given, else the token's address,
/// else the default `--edge-api`.
fn discovery_api<'a>(global: &'a GlobalArgs, token: Option<&'a TunnelToken>) -> &'a str {
    match token.and_then(|t| t.endpoint.as_deref()) {
        Some(endpoint) if !global.edge_api_given => endpoint,
        _ => &global.edge_api,
    }
}

/// Checks that the tunnel asked for (`NAME|ID`) is the one the credentials file is for, as
/// cloudflared does: an ID is compared directly; a name with the file's `TunnelName`, or, when
/// the file has none, resolved through the admin API.
fn check_tunnel(
    global: &GlobalArgs,
    given: &str,
    credentials: &Credentials,
    tunnel_id: uuid::Uuid,
    path: &std::path::Path,
) -> Result<()> {
    let given = given.trim();
    let file_name = credentials.tunnel_name.trim();
    let matches = match uuid::Uuid::parse_str(given) {
        Ok(id) => id == tunnel_id,
        Err(_) if !file_name.is_empty() => given == file_name,
        Err(_) => {
            AdminClient::from_global(global)?.tunnel(given)?.id.trim() == tunnel_id.to_string()
        }
    };
    if matches {
        return Ok(());
    }
    let file_tunnel = if file_name.is_empty() {
        tunnel_id.to_string()
    } else {
        format!("{file_name} ({tunnel_id})")
    };
    Err(Error::TunnelMismatch {
        given: given.to_owned(),
        path: path.to_owned(),
        file_tunnel,
    })
}

/// The CA that links trust: `--cacert FILE` when given, else the credentials file's `EdgeCA`
/// (stored by `tunnel create`); `None` with `--danger-plaintext-links`. Never a CA fetched
/// from the edge's unauthenticated `/discovery`: whoever could answer that request could then
/// impersonate the edge. Checked here, so a bad CA stops the run before anything connects.
fn edge_ca(
    args: &RunArgs,
    credentials: &Credentials,
    path: &std::path::Path,
) -> Result<Option<String>> {
    if args.danger_plaintext_links {
        return Ok(None);
    }
    let (pem, from) = match &args.cacert {
        Some(file) => {
            let from = format!("--cacert {}", file.display());
            let pem = std::fs::read_to_string(file).map_err(|e| Error::EdgeCaUnusable {
                from: from.clone(),
                source: e.into(),
            })?;
            (pem, from)
        }
        None => match credentials
            .edge_ca
            .as_ref()
            .filter(|c| !c.trim().is_empty())
        {
            Some(ca) => (ca.clone(), format!("EdgeCA in {}", path.display())),
            None => {
                return Err(Error::EdgeCaMissing {
                    credentials: path.to_owned(),
                });
            }
        },
    };
    ringtun_core::tls::client_config(pem.as_bytes()).map_err(|e| Error::EdgeCaUnusable {
        from,
        source: e.into(),
    })?;
    Ok(Some(pem))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admin_client::ConnectorInfo;

    fn detail(connectors: Vec<ConnectorInfo>) -> TunnelDetail {
        TunnelDetail {
            id: "6ff42ae2-765d-4adf-8112-31c55c1551ef".into(),
            name: "web".into(),
            created: "2026-01-01T00:00:00Z".into(),
            connections: String::new(),
            connectors,
        }
    }

    #[test]
    fn info_without_connectors_says_so() {
        let text = render_info(&detail(vec![]));
        assert!(
            text.starts_with("NAME:     web\nID:       6ff42ae2"),
            "{text}"
        );
        assert!(
            text.contains("does not have any active connectors"),
            "{text}"
        );
    }

    #[test]
    fn info_lists_connectors_with_edge_summary() {
        let c = ConnectorInfo {
            id: "c1".into(),
            created: "2026-01-01T00:00:01Z".into(),
            arch: "linux_amd64".into(),
            version: "0.1.0".into(),
            origin_ip: "127.0.0.1".into(),
            links: vec![],
            draining: false,
            edge: "2xdfw, 2xmci".into(),
            label: Some("blue".into()),
            state: Some("ready".into()),
            active_streams: Some(3),
            requests: Some(1200),
        };
        let old = ConnectorInfo {
            id: "c2".into(),
            label: None,
            state: None,
            active_streams: None,
            requests: None,
            draining: true,
            ..c.clone()
        };
        let text = render_info(&detail(vec![c, old]));
        let mut lines = text.lines().skip(4);
        let header = lines.next().unwrap_or_default();
        assert_eq!(
            cells(header),
            [
                "CONNECTOR ID",
                "CREATED",
                "ARCHITECTURE",
                "VERSION",
                "ORIGIN IP",
                "EDGE",
                "LABEL",
                "STATE",
                "STREAMS",
                "REQUESTS"
            ],
            "{header}"
        );
        let row = lines.next().unwrap_or_default();
        assert_eq!(
            cells(row)[5..],
            ["2xdfw, 2xmci", "blue", "ready", "3", "1200"],
            "{row}"
        );
        // An edge without the new fields: dashes, and STATE from `draining`.
        let row = lines.next().unwrap_or_default();
        assert_eq!(cells(row)[0], "c2", "{row}");
        assert_eq!(
            cells(row)[5..],
            ["2xdfw, 2xmci", "-", "draining", "-", "-"],
            "{row}"
        );
    }

    #[test]
    fn info_shows_the_node_of_each_link_from_a_cluster() {
        let link = |index: u8, node: Option<&str>| crate::admin_client::LinkInfo {
            index,
            data_center: "dfw".into(),
            server: "127.0.0.1:1".into(),
            node: node.map(str::to_owned),
        };
        let c = ConnectorInfo {
            id: "c1".into(),
            created: "2026-01-01T00:00:01Z".into(),
            arch: "linux_amd64".into(),
            version: "0.1.0".into(),
            origin_ip: "127.0.0.1".into(),
            links: vec![
                link(0, Some("0a1b2c3d-aaaa")),
                link(1, Some("9f8e7d6c-bbbb")),
            ],
            draining: false,
            edge: "2xdfw".into(),
            label: None,
            state: Some("ready".into()),
            active_streams: None,
            requests: None,
        };
        let text = render_info(&detail(vec![c.clone()]));
        let mut lines = text.lines().skip(4);
        let header = lines.next().unwrap_or_default();
        assert_eq!(cells(header).last(), Some(&"NODES"), "{header}");
        let row = lines.next().unwrap_or_default();
        assert_eq!(cells(row).last(), Some(&"0:0a1b2c3d 1:9f8e7d6c"), "{row}");
        // One edge (no node): no NODES column.
        let single = ConnectorInfo {
            links: vec![link(0, None)],
            ..c
        };
        let text = render_info(&detail(vec![single]));
        assert!(!text.contains("NODES"), "{text}");
    }

    /// The cells of a table line (columns are separated by at least two spaces).
    fn cells(line: &str) -> Vec<&str> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect()
    }

    #[test]
    fn cleanup_says_which_connectors_went_and_which_stayed() {
        let done = crate::admin_client::CleanupResult {
            removed_connectors: vec!["a".into()],
            disconnected_connectors: vec![],
            kept_connectors: vec!["b".into(), "c".into()],
        };
        let text = render_cleanup("web", &done);
        assert!(
            text.starts_with("Removed 1 stale connector(s) of tunnel web"),
            "{text}"
        );
        assert!(text.contains("removed       a"), "{text}");
        assert!(text.contains("kept          b (connected)"), "{text}");
        assert!(text.contains("2 connected connector(s) kept"), "{text}");
    }

    #[test]
    fn route_list_shows_both_kinds() {
        use crate::admin_client::{DnsRoute, Routes, TcpRoute};
        let routes = Routes {
            dns: vec![DnsRoute {
                hostname: "app.example.com".into(),
                tunnel_id: "t1".into(),
                tunnel_name: "web".into(),
            }],
            tcp: vec![TcpRoute {
                port: 2222,
                tunnel_id: "t2".into(),
                tunnel_name: "ssh".into(),
            }],
        };
        let text = render_routes(&routes);
        let lines: Vec<Vec<&str>> = text.lines().map(cells).collect();
        assert_eq!(lines[0], ["TYPE", "ROUTE", "TUNNEL NAME", "TUNNEL ID"]);
        assert_eq!(lines[1], ["dns", "app.example.com", "web", "t1"]);
        assert_eq!(lines[2], ["tcp", "2222", "ssh", "t2"]);
        assert!(render_routes(&Routes::default()).starts_with("No routes were found"));
    }

    #[test]
    fn metrics_addresses() {
        assert_eq!(client_addr(":2000"), "127.0.0.1:2000");
        assert_eq!(client_addr("http://10.0.0.1:2000/"), "10.0.0.1:2000");
        assert_eq!(bind_addr(":0"), "0.0.0.0:0");
        assert_eq!(bind_addr("127.0.0.1:0"), "127.0.0.1:0");
    }
}
