//! A blocking client for the edge's admin API (HTTP/1.1 + JSON, bearer token).
//!
//! The `tunnel ...` commands make one or two calls each and then exit, so a synchronous client
//! (`ureq`, plain HTTP, no TLS: the admin API listens on loopback) keeps them simple and off the
//! io_uring runtime that `tunnel run` uses. The response types mirror the edge's JSON
//! (`edge-sim/src/admin/mod.rs` lists the routes) and ignore fields they do not know, so an edge
//! that adds fields does not break older connectors.
//!
//! Every failure becomes one [`Error`] that says what to do: the edge unreachable, the token
//! refused (and where it came from), or the edge's own `{"error": ...}` text for a 4xx.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::cli::{ApiToken, GlobalArgs};
use crate::error::{Error, Result};

/// How long one admin call may take in all before it is reported as unreachable.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A tunnel as `GET /tunnels` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelSummary {
    /// The tunnel's ID (a UUID).
    pub id: String,
    /// The tunnel's name.
    pub name: String,
    /// When it was created, RFC 3339.
    pub created: String,
    /// How many connectors are connected.
    #[serde(default)]
    pub connectors: usize,
    /// The links per data center, like `2xdfw, 2xmci`.
    #[serde(default)]
    pub connections: String,
}

/// The answer to `POST /tunnels`: the only time the edge shows the secret.
#[derive(Deserialize)]
pub struct CreatedTunnel {
    /// The tunnel's ID (a UUID).
    pub id: String,
    /// The tunnel's name.
    pub name: String,
    /// When it was created, RFC 3339.
    pub created: String,
    /// The tunnel secret, standard base64.
    pub secret: String,
}

impl std::fmt::Debug for CreatedTunnel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedTunnel")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("created", &self.created)
            .field("secret", &"***")
            .finish()
    }
}

/// One link of a connector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkInfo {
    /// The link's index within its connector.
    pub index: u8,
    /// The data center it landed in.
    pub data_center: String,
    /// The edge server's address.
    pub server: String,
    /// The edge node holding it (edge cluster only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A connector (one replica of a tunnel) as the edge records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorInfo {
    /// The connector's ID (a UUID, new on every start).
    pub id: String,
    /// When it registered, RFC 3339.
    pub created: String,
    /// Its architecture, like `linux_amd64`.
    pub arch: String,
    /// Its version.
    pub version: String,
    /// The source address of its links.
    pub origin_ip: String,
    /// Its links.
    #[serde(default)]
    pub links: Vec<LinkInfo>,
    /// Whether it is shutting down.
    #[serde(default)]
    pub draining: bool,
    /// Its links per data center, like `2xdfw, 2xmci`.
    #[serde(default)]
    pub edge: String,
    /// Its `--label` (`None` from an edge that does not report labels).
    #[serde(default)]
    pub label: Option<String>,
    /// `ready` or `draining` (`None` from an older edge).
    #[serde(default)]
    pub state: Option<String>,
    /// Streams open to it now, across the edge's workers.
    #[serde(default)]
    pub active_streams: Option<u64>,
    /// Streams opened to it since it connected.
    #[serde(default)]
    pub requests: Option<u64>,
}

/// A tunnel with its connectors, as `GET /tunnels/{x}` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelDetail {
    /// The tunnel's ID (a UUID).
    pub id: String,
    /// The tunnel's name.
    pub name: String,
    /// When it was created, RFC 3339.
    pub created: String,
    /// The links per data center over all connectors, like `4xdfw, 4xmci`.
    #[serde(default)]
    pub connections: String,
    /// The connected connectors.
    #[serde(default)]
    pub connectors: Vec<ConnectorInfo>,
}

/// The answer to `POST /tunnels/{x}/cleanup`: connector IDs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CleanupResult {
    /// Records without a live link, removed.
    #[serde(default)]
    pub removed_connectors: Vec<String>,
    /// Connected connectors whose links were closed (`--disconnect`).
    #[serde(default)]
    pub disconnected_connectors: Vec<String>,
    /// Connected connectors, kept.
    #[serde(default)]
    pub kept_connectors: Vec<String>,
}

/// A DNS route, as `GET /routes` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsRoute {
    /// The hostname (`*.example.com` for a wildcard).
    pub hostname: String,
    /// The tunnel's ID.
    pub tunnel_id: String,
    /// The tunnel's name.
    pub tunnel_name: String,
}

/// A TCP route, as `GET /routes` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TcpRoute {
    /// The edge's public TCP port.
    pub port: u16,
    /// The tunnel's ID.
    pub tunnel_id: String,
    /// The tunnel's name.
    pub tunnel_name: String,
}

/// Every route, from `GET /routes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Routes {
    /// DNS routes, by hostname.
    #[serde(default)]
    pub dns: Vec<DnsRoute>,
    /// TCP routes, by port.
    #[serde(default)]
    pub tcp: Vec<TcpRoute>,
}

/// The edge's answer to `GET /discovery` (`edge-sim/src/admin/discovery.rs`): its data centers
/// and their servers, its CA and, from a node of an etcd cluster, the cluster's nodes. Fields
/// an older edge does not send are empty. `tunnel run` does not trust `ca_pem` (`/discovery`
/// needs no token): its CA comes from the credentials file or `--cacert`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Discovery {
    /// The data centers.
    #[serde(default)]
    pub data_centers: Vec<DiscoveredDc>,
    /// The edge CA certificate in PEM.
    #[serde(default)]
    pub ca_pem: String,
    /// The node that answered (edge cluster only).
    #[serde(default)]
    pub node: Option<String>,
    /// Every live node of the cluster (edge cluster only).
    #[serde(default)]
    pub nodes: Vec<DiscoveredNode>,
}

/// One data center in a discovery answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DiscoveredDc {
    /// Its name.
    pub name: String,
    /// Its servers as `IP:PORT` strings (from a cluster: interleaved over its nodes).
    #[serde(default)]
    pub servers: Vec<String>,
    /// Its nodes and each node's servers (edge cluster only).
    #[serde(default)]
    pub nodes: Vec<DcNode>,
}

/// One node's servers in a data center.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DcNode {
    /// The node's ID.
    pub id: String,
    /// Its servers in this data center, `IP:PORT`.
    #[serde(default)]
    pub servers: Vec<String>,
}

/// One node of an edge cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct DiscoveredNode {
    /// The node's ID.
    pub id: String,
    /// The data center of its public listeners.
    #[serde(default)]
    pub data_center: String,
    /// Its admin API address.
    #[serde(default)]
    pub admin: String,
}

/// `GET /discovery` on the admin API at `api` (`HOST:PORT` or a URL). It needs no token: the
/// server addresses are public. The one client of that route (`tunnel create` and `tunnel run`
/// both call it).
pub fn discover(api: &str) -> Result<Discovery> {
    let base = api.trim().trim_end_matches('/');
    let url = if base.starts_with("http://") || base.starts_with("https://") {
        format!("{base}/discovery")
    } else {
        format!("http://{base}/discovery")
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(DISCOVERY_TIMEOUT))
        .build()
        .into();
    let unreachable = |source: crate::error::Cause| Error::EdgeUnreachable {
        addr: api.to_owned(),
        source,
    };
    let mut response = agent.get(&url).call().map_err(|e| unreachable(e.into()))?;
    let text = response
        .body_mut()
        .read_to_string()
        .map_err(|e| unreachable(e.into()))?;
    serde_json::from_str(&text).map_err(|e| Error::EdgeBadResponse {
        request: "GET /discovery".to_owned(),
        source: e.into(),
    })
}

/// How long `GET /discovery` may take in all.
const DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// A client for one edge's admin API.
#[derive(Debug)]
pub struct AdminClient {
    agent: ureq::Agent,
    addr: String,
    token: ApiToken,
    token_source: String,
}

/// Where the token in `global` came from, for the "token refused" message.
fn token_source(global: &GlobalArgs, token: &ApiToken) -> String {
    match &global.api_token {
        None => format!("file {}", crate::cli::edge::default_token_file().display()),
        Some(_) => {
            let from_env = std::env::var("RINGTUN_API_TOKEN")
                .map(|v| v.trim() == token.expose())
                .unwrap_or(false);
            if from_env {
                "RINGTUN_API_TOKEN".to_owned()
            } else {
                "--api-token".to_owned()
            }
        }
    }
}

impl AdminClient {
    /// A client for the admin API named by `--edge-api`, with the token from `--api-token`,
    /// `$RINGTUN_API_TOKEN` or the edge's default token file.
    pub fn from_global(global: &GlobalArgs) -> Result<AdminClient> {
        let token = global.api_token()?;
        let token_source = token_source(global, &token);
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(CALL_TIMEOUT))
            .build();
        Ok(AdminClient {
            agent: config.into(),
            addr: global.edge_api.trim().to_owned(),
            token,
            token_source,
        })
    }

    fn url(&self, path: &str) -> String {
        let base = self.addr.trim_end_matches('/');
        if base.starts_with("http://") || base.starts_with("https://") {
            format!("{base}{path}")
        } else {
            format!("http://{base}{path}")
        }
    }

    /// Sends one request and returns the parsed success body, or the matching [`Error`].
    fn call<T: DeserializeOwned>(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<T> {
        let url = self.url(path);
        let auth = format!("Bearer {}", self.token.expose());
        let sent = match (method, body) {
            ("GET", _) => self.agent.get(&url).header("Authorization", &auth).call(),
            ("DELETE", _) => self
                .agent
                .delete(&url)
                .header("Authorization", &auth)
                .call(),
            ("PUT", body) => self
                .agent
                .put(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(body.unwrap_or(Value::Null).to_string()),
            (_, Some(body)) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(body.to_string()),
            (_, None) => self
                .agent
                .post(&url)
                .header("Authorization", &auth)
                .send_empty(),
        };
        let mut response = sent.map_err(|e| Error::EdgeUnreachable {
            addr: self.addr.clone(),
            source: e.into(),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| Error::EdgeUnreachable {
                addr: self.addr.clone(),
                source: format!("reading the response: {e}").into(),
            })?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| Error::EdgeBadResponse {
                request: format!("{method} {path}"),
                source: e.into(),
            });
        }
        let message = serde_json::from_str::<Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| text.trim().to_owned());
        Err(match status {
            401 => Error::ApiTokenRefused {
                source_name: self.token_source.clone(),
            },
            400..=499 => Error::EdgeRejected { status, message },
            _ => Error::EdgeFailed { status, message },
        })
    }

    /// `POST /tunnels`: creates a tunnel; the answer carries its secret.
    pub fn create_tunnel(&self, name: &str) -> Result<CreatedTunnel> {
        self.call(
            "POST",
            "/tunnels",
            Some(serde_json::json!({ "name": name })),
        )
    }

    /// `GET /tunnels`.
    pub fn list_tunnels(&self) -> Result<Vec<TunnelSummary>> {
        self.call("GET", "/tunnels", None)
    }

    /// `GET /tunnels/{name-or-id}`, as the edge's raw JSON (for `-o json`).
    pub fn tunnel_json(&self, tunnel: &str) -> Result<Value> {
        self.call("GET", &format!("/tunnels/{}", path_segment(tunnel)), None)
    }

    /// `GET /tunnels/{name-or-id}`.
    pub fn tunnel(&self, tunnel: &str) -> Result<TunnelDetail> {
        let value = self.tunnel_json(tunnel)?;
        serde_json::from_value(value).map_err(|e| Error::EdgeBadResponse {
            request: format!("GET /tunnels/{tunnel}"),
            source: e.into(),
        })
    }

    /// `DELETE /tunnels/{name-or-id}[?force=true]`.
    pub fn delete_tunnel(&self, tunnel: &str, force: bool) -> Result<Value> {
        let query = if force { "?force=true" } else { "" };
        self.call(
            "DELETE",
            &format!("/tunnels/{}{query}", path_segment(tunnel)),
            None,
        )
    }

    /// `POST /tunnels/{name-or-id}/cleanup[?connector_id=][&disconnect=true]`: which
    /// connectors were removed, disconnected and kept.
    pub fn cleanup(
        &self,
        tunnel: &str,
        connector_id: Option<&str>,
        disconnect: bool,
    ) -> Result<CleanupResult> {
        let mut query: Vec<String> = Vec::new();
        if let Some(id) = connector_id {
            query.push(format!("connector_id={}", path_segment(id)));
        }
        if disconnect {
            query.push("disconnect=true".to_owned());
        }
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{}", query.join("&"))
        };
        self.call(
            "POST",
            &format!("/tunnels/{}/cleanup{query}", path_segment(tunnel)),
            None,
        )
    }

    /// `POST /routes/dns` (`overwrite` moves a hostname another tunnel has).
    pub fn route_dns(&self, tunnel: &str, hostname: &str, overwrite: bool) -> Result<Value> {
        self.call(
            "POST",
            "/routes/dns",
            Some(
                serde_json::json!({ "tunnel": tunnel, "hostname": hostname, "overwrite": overwrite }),
            ),
        )
    }

    /// `GET /routes`.
    pub fn routes(&self) -> Result<Routes> {
        self.call("GET", "/routes", None)
    }

    /// `DELETE /routes/dns/{hostname}`.
    pub fn delete_dns_route(&self, hostname: &str) -> Result<Value> {
        self.call(
            "DELETE",
            &format!("/routes/dns/{}", path_segment(hostname)),
            None,
        )
    }

    /// `DELETE /routes/tcp/{port}`.
    pub fn delete_tcp_route(&self, port: u16) -> Result<Value> {
        self.call("DELETE", &format!("/routes/tcp/{port}"), None)
    }

    /// `POST /routes/tcp`.
    pub fn route_tcp(&self, tunnel: &str, port: u16) -> Result<Value> {
        self.call(
            "POST",
            "/routes/tcp",
            Some(serde_json::json!({ "tunnel": tunnel, "port": port })),
        )
    }

    /// `PUT /tunnels/{name-or-id}/lb` with `{"policy": P}` (`None` clears the tunnel's policy,
    /// so the edge's default applies); returns the tunnel object.
    pub fn set_lb_policy(&self, tunnel: &str, policy: Option<&str>) -> Result<Value> {
        let (path, body) = lb_request(tunnel, policy);
        self.call("PUT", &path, Some(body))
    }

    /// `GET /discovery` ([`discover`]).
    pub fn discovery(&self) -> Result<Discovery> {
        discover(&self.addr)
    }
}

/// The path and body of `PUT /tunnels/{key}/lb` (replicas-contract.md, "Admin API additions").
fn lb_request(tunnel: &str, policy: Option<&str>) -> (String, Value) {
    (
        format!("/tunnels/{}/lb", path_segment(tunnel)),
        serde_json::json!({ "policy": policy }),
    )
}

/// Percent-encodes everything but unreserved characters, so a name cannot change the path.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(path_segment("web-1.x_y~"), "web-1.x_y~");
        assert_eq!(path_segment("a/b?c d"), "a%2Fb%3Fc%20d");
    }

    #[test]
    fn lb_requests_name_the_tunnel_and_policy() {
        let (path, body) = lb_request("web app", Some("round-robin"));
        assert_eq!(path, "/tunnels/web%20app/lb");
        assert_eq!(body.to_string(), r#"{"policy":"round-robin"}"#);
        let (_, body) = lb_request("web", None);
        assert_eq!(body.to_string(), r#"{"policy":null}"#);
    }

    #[test]
    fn parses_the_replica_fields_when_present() {
        let body = r#"{"id":"c1","created":"x","arch":"a","version":"v","origin_ip":"i",
            "label":"blue","weight":5,"standby":false,"state":"draining","active_streams":2,
            "requests":40}"#;
        let c: ConnectorInfo = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.label.as_deref(), Some("blue"));
        assert_eq!(c.state.as_deref(), Some("draining"));
        assert_eq!((c.active_streams, c.requests), (Some(2), Some(40)));
    }

    #[test]
    fn parses_the_edge_tunnel_json() {
        let body = r#"{"id":"6ff42ae2-765d-4adf-8112-31c55c1551ef","name":"web",
            "created":"2026-01-01T00:00:00Z","connections":"2xdfw, 2xmci","connectors":[
            {"id":"c1","tunnel_id":"t","created":"2026-01-01T00:00:01Z","arch":"linux_amd64",
             "version":"0.1.0","origin_ip":"127.0.0.1","links":[{"index":0,"data_center":"dfw",
             "server":"127.0.1.1:7844"}],"draining":false,"edge":"1xdfw","future":1}]}"#;
        let t: TunnelDetail = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.connectors.len(), 1);
        assert_eq!(t.connectors[0].edge, "1xdfw");
        assert_eq!(t.connectors[0].links[0].data_center, "dfw");
    }
}
