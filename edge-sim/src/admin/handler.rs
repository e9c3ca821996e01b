//! Admin API routing: one request in, one JSON response out, no IO.
//!
//! Keeping this free of the HTTP server makes every route testable as a function, and lets the
//! server be swapped without touching the routes.
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::Error;
use crate::registry::{Registry, RouteChange, Tunnel, edge_summary};
use crate::settings::{DataCenter, LbPolicy};
use crate::state_dir::AdminToken;

/// What the admin routes need.
#[derive(Debug, Clone)]
pub struct AdminContext {
    /// The registry.
    pub registry: Arc<Registry>,
    /// The bearer token every request must carry.
    pub token: AdminToken,
    /// Data centers, for `/discovery`.
    pub data_centers: Vec<DataCenter>,
    /// The edge CA in PEM, for `/discovery`.
    pub ca_pem: String,
    /// Fault injection (`/faults`).
    pub faults: Arc<crate::dataplane::faults::Faults>,
}

pub use ringtun_core::control::Reply;

/// The admin API's answers are JSON.
trait JsonReply {
    fn json(status: u16, value: Value) -> Reply;
}

impl JsonReply for Reply {
    fn json(status: u16, value: Value) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: value.to_string(),
        }
    }
}

impl From<Error> for Reply {
    fn from(e: Error) -> Reply {
        let status = super::status_of(&e);
        if status == 500 {
            tracing::error!(error = %e, "admin API: edge failure");
        }
        Reply::error(status, e.to_string())
    }
}

fn authorized(ctx: &AdminContext, authorization: Option<&str>) -> bool {
    let Some(value) = authorization else {
        return false;
    };
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return false;
    };
    scheme.eq_ignore_ascii_case("bearer") && ctx.token.matches(token.trim())
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Reply> {
    serde_json::from_slice(body).map_err(|e| Reply::error(400, format!("invalid JSON body: {e}")))
}

fn query_param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// A path segment with its `%XX` escapes decoded (`%2A.example.com` is `*.example.com`);
/// `None` when an escape is malformed or the result is not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// Whether a flag is set in the query: `NAME`, `NAME=true` or `NAME=1`.
fn flag(query: &str, name: &str) -> bool {
    matches!(query_param(query, name), Some("true" | "1" | ""))
}

/// A route request's answer: 201 with the route when it is new; 200 when it already existed
/// (`"existed": true`) or was moved from another tunnel (`"replaced": true`).
fn route_reply(mut route: Value, change: RouteChange) -> Reply {
    let status = match change {
        RouteChange::Added => 201,
        RouteChange::Exists | RouteChange::Replaced => 200,
    };
    if let Some(map) = route.as_object_mut() {
        map.insert("existed".into(), json!(change == RouteChange::Exists));
        map.insert("replaced".into(), json!(change == RouteChange::Replaced));
    }
    Reply::json(status, route)
}

/// `{"policy": "round-robin"}` or `{"policy": null}` (clear: the edge default applies).
fn parse_lb_policy(body: &[u8]) -> Result<Option<LbPolicy>, Reply> {
    #[derive(Deserialize)]
    struct Lb {
        policy: Option<String>,
    }
    let req: Lb = parse_body(body)?;
    req.policy
        .map(|p| p.parse::<LbPolicy>())
        .transpose()
        .map_err(|e| Reply::error(400, e))
}

/// `{id, name, created}` plus the connector count and the `2xdfw, 2xmci` summary.
fn tunnel_summary(registry: &Registry, t: &Tunnel) -> Value {
    let connectors = super::connectors::of_tunnel(registry, t.id);
    let mut v = tunnel_json(t);
    if let Some(map) = v.as_object_mut() {
        map.insert("connectors".into(), json!(connectors.len()));
        map.insert(
            "connections".into(),
            json!(edge_summary(
                connectors.iter().flat_map(|c| c.connector.links.iter())
            )),
        );
    }
    v
}

/// `{id, name, created}` (created in RFC 3339).
fn tunnel_json(t: &Tunnel) -> Value {
    serde_json::to_value(t).unwrap_or(Value::Null)
}

/// A tunnel's connectors over the cluster, as JSON (`super::connectors`).
fn connectors_json(registry: &Registry, tunnel: Uuid) -> Vec<Value> {
    super::connectors::of_tunnel(registry, tunnel)
        .iter()
        .map(super::connectors::Shown::to_json)
        .collect()
}

/// `POST /faults/servers/{ip:port}/down|up` and `POST /faults/data-centers/{name}/down|up`.
fn faults_route(
    ctx: &AdminContext,
    target: &str,
    name: &str,
    action: &str,
) -> Result<Reply, Reply> {
    use crate::dataplane::faults::FaultAction;
    let action = match action {
        "down" => FaultAction::Down,
        "up" => FaultAction::Up,
        other => {
            return Err(Reply::error(
                404,
                format!("no such fault action {other:?}; use down or up"),
            ));
        }
    };
    let res = if target == "servers" {
        ctx.faults.set_server(name, action)
    } else {
        ctx.faults.set_data_center(name, action)
    };
    res.map(|list| Reply::json(200, json!(list)))
        .map_err(Reply::from)
}

/// The path's segments (`/tunnels/web/` gives `["tunnels", "web"]`) and the query.
fn split_url(url: &str) -> (Vec<&str>, &str) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    (path.trim_matches('/').split('/').collect(), query)
}

/// The 401 answer when the request needs the token and lacks it, from the head alone: the
/// server calls this before it reads any body. `authorization` is the `Authorization` header.
pub fn check_token(
    ctx: &AdminContext,
    method: &str,
    url: &str,
    authorization: Option<&str>,
) -> Option<Reply> {
    let (segments, _) = split_url(url);
    // Discovery is public: server addresses and the CA certificate are no secret.
    let public = method == "GET" && segments == ["discovery"];
    (!public && !authorized(ctx, authorization))
        .then(|| Reply::error(401, "missing or wrong bearer token"))
}

/// Serves one admin request. `authorization` is the `Authorization` header, if any.
pub fn handle(
    ctx: &AdminContext,
    method: &str,
    url: &str,
    authorization: Option<&str>,
    body: &[u8],
) -> Reply {
    if let Some(denied) = check_token(ctx, method, url, authorization) {
        return denied;
    }
    let (segments, query) = split_url(url);
    match route(ctx, method, &segments, query, body) {
        Ok(reply) | Err(reply) => reply,
    }
}

fn route(
    ctx: &AdminContext,
    method: &str,
    segments: &[&str],
    query: &str,
    body: &[u8],
) -> Result<Reply, Reply> {
    let registry = &ctx.registry;
    match (method, segments) {
        ("POST", ["tunnels"]) => {
            #[derive(Deserialize)]
            struct Create {
                name: String,
            }
            let req: Create = parse_body(body)?;
            let (t, secret) = registry.create_tunnel(&req.name)?;
            tracing::info!(tunnel = %t.id, name = %t.name, "tunnel created");
            let mut v = tunnel_json(&t);
            if let Some(map) = v.as_object_mut() {
                map.insert(
                    "secret".into(),
                    json!(crate::registry::secret_base64(&secret)),
                );
            }
            Ok(Reply::json(201, v))
        }
        ("GET", ["tunnels"]) => {
            let list: Vec<Value> = registry
                .tunnels()?
                .iter()
                .map(|t| tunnel_summary(registry, t))
                .collect();
            Ok(Reply::json(200, Value::Array(list)))
        }
        ("GET", ["tunnels", key]) => {
            let t = registry.tunnel(key)?;
            let mut v = tunnel_summary(registry, &t);
            let connectors = connectors_json(registry, t.id);
            if let Some(map) = v.as_object_mut() {
                map.insert("connectors".into(), Value::Array(connectors));
            }
            Ok(Reply::json(200, v))
        }
        ("DELETE", ["tunnels", key]) => {
            let force = flag(query, "force");
            let t = registry.delete_tunnel(key, force)?;
            tracing::info!(tunnel = %t.id, name = %t.name, force, "tunnel deleted");
            Ok(Reply::json(
                200,
                json!({ "id": t.id, "name": t.name, "deleted": true }),
            ))
        }
        ("POST", ["tunnels", key, "cleanup"]) => {
            let only = match query_param(query, "connector_id") {
                Some(id) => Some(Uuid::parse_str(id).map_err(|_| {
                    Reply::error(400, format!("invalid connector_id {id:?}: not a UUID"))
                })?),
                None => None,
            };
            let disconnect = flag(query, "disconnect");
            let t = registry.tunnel(key)?;
            let done = registry.cleanup(&t.id.to_string(), only, disconnect)?;
            tracing::info!(
                tunnel = %t.id, name = %t.name, disconnected = done.disconnected.len(), kept = done.kept.len(), "tunnel cleanup"
            );
            Ok(Reply::json(
                200,
                json!({
                    "id": t.id,
                    "name": t.name,
                    // Always empty: every record has a live link (see `Registry::cleanup`).
                    // Kept in the answer for the clients that read it.
                    "removed_connectors": [],
                    "disconnected_connectors": done.disconnected,
                    "kept_connectors": done.kept,
                }),
            ))
        }
        ("PUT", ["tunnels", key, "lb"]) => {
            let policy = parse_lb_policy(body)?;
            let t = registry.set_lb_policy(key, policy)?;
            let shown = policy.map_or("edge default", LbPolicy::as_str);
            tracing::info!(tunnel = %t.id, name = %t.name, policy = shown, "tunnel lb policy set");
            Ok(Reply::json(200, tunnel_summary(registry, &t)))
        }
        ("GET", ["tunnels", key, "connectors"]) => {
            let t = registry.tunnel(key)?;
            Ok(Reply::json(
                200,
                Value::Array(connectors_json(registry, t.id)),
            ))
        }
        ("POST", ["routes", "dns"]) => {
            #[derive(Deserialize)]
            struct Dns {
                tunnel: String,
                hostname: String,
                #[serde(default)]
                overwrite: bool,
            }
            let req: Dns = parse_body(body)?;
            let (route, change) =
                registry.route_dns_with(&req.tunnel, &req.hostname, req.overwrite)?;
            Ok(route_reply(json!(route), change))
        }
        ("POST", ["routes", "tcp"]) => {
            #[derive(Deserialize)]
            struct Tcp {
                tunnel: String,
                port: u16,
            }
            let req: Tcp = parse_body(body)?;
            let (route, change) = registry.route_tcp_with(&req.tunnel, req.port)?;
            Ok(route_reply(json!(route), change))
        }
        ("DELETE", ["routes", "dns", hostname]) => {
            let hostname = percent_decode(hostname)
                .ok_or_else(|| Reply::error(400, format!("invalid hostname {hostname:?}")))?;
            let route = registry.delete_dns_route(&hostname)?;
            tracing::info!(hostname = %route.hostname, tunnel = %route.tunnel_id, "DNS route deleted");
            Ok(Reply::json(200, json!(route)))
        }
        ("DELETE", ["routes", "tcp", port]) => {
            let port: u16 = port
                .parse()
                .map_err(|_| Reply::error(400, format!("invalid tcp port {port:?}")))?;
            let route = registry.delete_tcp_route(port)?;
            tracing::info!(port, tunnel = %route.tunnel_id, "TCP route deleted");
            Ok(Reply::json(200, json!(route)))
        }
        ("GET", ["routes"]) => Ok(Reply::json(
            200,
            json!({ "dns": registry.dns_routes()?, "tcp": registry.tcp_routes()? }),
        )),
        ("GET", ["discovery"]) => Ok(Reply::json(200, super::discovery::answer(ctx))),
        ("GET", ["metrics"]) => Ok(Reply {
            status: 200,
            content_type: crate::metrics::CONTENT_TYPE,
            body: crate::metrics::scrape(registry),
        }),
        ("GET", ["faults"]) => Ok(Reply::json(200, json!(ctx.faults.list()))),
        (
            "POST",
            [
                "faults",
                target @ ("servers" | "data-centers"),
                name,
                action,
            ],
        ) => faults_route(ctx, target, name, action),
        (
            _,
            ["tunnels"]
            | ["tunnels", _]
            | ["tunnels", _, "cleanup" | "connectors" | "lb"]
            | ["routes"]
            | ["routes", "dns" | "tcp"]
            | ["routes", "dns" | "tcp", _]
            | ["discovery"]
            | ["metrics"]
            | ["faults"]
            | ["faults", "servers" | "data-centers", _, "down" | "up"],
        ) => Err(Reply::error(
            405,
            format!("method {method} not allowed on /{}", segments.join("/")),
        )),
        _ => Err(Reply::error(
            404,
            format!("no such route: {method} /{}", segments.join("/")),
        )),
    }
}
