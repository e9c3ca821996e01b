//! The registry's keys in etcd and how their values are encoded.
//!
//! Every key starts with the prefix (`/ringtun/` by default, `--etcd-prefix`):
//!
//! | key | value |
//! | --- | --- |
//! | `tunnels/{id}` | JSON `{"id", "name", "created" (RFC 3339), "lb_policy" (name or null)}` |
//! | `secrets/{id}` | the tunnel secret, standard base64 (what registration proofs check) |
//! | `names/{name}` | the tunnel ID: a name is taken by creating this key (compare-and-set) |
//! | `routes/dns/{hostname}` | the tunnel ID: a hostname is routed by creating this key |
//! | `routes/tcp/{port}` | the tunnel ID: a port is routed by creating this key |
//! | `nodes/{node}` | JSON [`NodeRecord`], under the node's lease |
//! | `links/{tunnel}/{node}/{connector}.{index}` | JSON [`LinkRecord`], under the node's lease |
//! | `cluster/ca.pem`, `cluster/ca.key` | the cluster CA of peer links (PEM), created once |
//!
//! A tunnel and its secret and name are written in one transaction, and deleted in one with the
//! tunnel's routes. A value that does not decode (written by a newer edge, or by hand) is left
//! out of the view with a warning, never a panic.
use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::registry::{DnsRoute, TcpRoute, Tunnel, TunnelSecret, View};

/// The default key prefix (`--etcd-prefix`).
pub const DEFAULT_PREFIX: &str = "/ringtun/";

/// The key layout under one prefix.
#[derive(Debug, Clone)]
pub(crate) struct Keys {
    prefix: String,
}

/// Every node's record and every live link in the cluster, as the watch last saw them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterPresence {
    /// Node ID → its record (JSON: data center, addresses).
    pub nodes: BTreeMap<String, String>,
    /// Every live link of every node.
    pub links: Vec<ClusterLink>,
}

/// One live link as a node announced it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterLink {
    /// Its tunnel.
    pub tunnel: Uuid,
    /// The node holding it.
    pub node: String,
    /// `{connector}.{index}`.
    pub link: String,
    /// JSON: data center and edge server of the link.
    pub value: String,
}

/// A `nodes/{node}` value: where a node is. [`Edge::start`](crate::Edge::start) writes it,
/// forwarding reads `data_center` and `peer`, discovery `data_center`, `admin` and
/// `data_centers`. `data_center` is required (a value without it is not a node record); every
/// other field came later or is optional, so a value without it (an older edge) decodes with it
/// empty, and fields this edge does not know (a newer edge) are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRecord {
    /// The node's data center (its public listeners').
    pub data_center: String,
    /// Its admin API, `IP:PORT` (shown by discovery as written; empty when not known).
    #[serde(default)]
    pub admin: String,
    /// Its edge servers (link listeners), every data center's.
    #[serde(default)]
    pub servers: Vec<SocketAddr>,
    /// Where it accepts peer links (`--peer-listen`, or `--peer-advertise`); absent in the
    /// record of an edge without peer links.
    #[serde(default)]
    pub peer: Option<SocketAddr>,
    /// Its edge servers by data center: what discovery lists.
    #[serde(default)]
    pub data_centers: Vec<NodeDataCenter>,
}

/// One data center of a [`NodeRecord`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct NodeDataCenter {
    /// Its name.
    pub name: String,
    /// The node's edge servers in it.
    pub servers: Vec<SocketAddr>,
}

impl NodeRecord {
    /// Decodes a node's record, or says why it is not one.
    pub fn parse(value: &str) -> std::result::Result<NodeRecord, String> {
        serde_json::from_str(value).map_err(|e| format!("not a node record: {e}"))
    }

    /// Decodes a node's record; `None` when it is not one (logged by the caller if needed).
    pub fn decode(value: &str) -> Option<NodeRecord> {
        NodeRecord::parse(value).ok()
    }

    /// The value put under `nodes/{node}`.
    pub fn encode(&self) -> String {
        // Addresses, strings and lists only: serialising cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A `links/{tunnel}/{node}/{connector}.{index}` value: where the link is, and what `tunnel
/// info` on another node shows of its connector. Every field but `data_center` and `server`
/// came later: a value without them (an older edge) decodes with them empty, and fields this
/// edge does not know are ignored.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinkRecord {
    /// The data center the link landed in.
    pub data_center: String,
    /// The edge server it is connected to, `IP:PORT`.
    pub server: String,
    /// When its connector's first link registered on this node, RFC 3339.
    pub created: String,
    /// The connector's architecture.
    pub arch: String,
    /// The connector's version.
    pub version: String,
    /// The link's source IP.
    pub origin_ip: String,
    /// The connector's `--label`.
    pub label: String,
    /// The connector's load-balancing weight (0: not known).
    pub weight: u16,
    /// A standby connector.
    pub standby: bool,
}

/// A tunnel's value.
#[derive(Debug, Serialize, Deserialize)]
struct TunnelRecord {
    id: Uuid,
    name: String,
    created: String,
    lb_policy: Option<String>,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    /// The prefix every key of the cluster starts with.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn tunnel(&self, id: Uuid) -> String {
        format!("{}tunnels/{id}", self.prefix)
    }

    pub(crate) fn secret(&self, id: Uuid) -> String {
        format!("{}secrets/{id}", self.prefix)
    }

    pub(crate) fn name(&self, name: &str) -> String {
        format!("{}names/{name}", self.prefix)
    }

    /// Every route, DNS and TCP.
    pub(crate) fn routes(&self) -> String {
        format!("{}routes/", self.prefix)
    }

    pub(crate) fn dns(&self, hostname: &str) -> String {
        format!("{}routes/dns/{hostname}", self.prefix)
    }

    pub(crate) fn tcp(&self, port: u16) -> String {
        format!("{}routes/tcp/{port}", self.prefix)
    }

    /// A node's presence record (under its lease).
    pub(crate) fn node(&self, node: &str) -> String {
        format!("{}nodes/{node}", self.prefix)
    }

    /// A live link's presence key (under its node's lease).
    pub(crate) fn link(&self, tunnel: Uuid, node: &str, link: &str) -> String {
        format!("{}links/{tunnel}/{node}/{link}", self.prefix)
    }

    /// The cluster CA's certificate (PEM); created with [`Keys::ca_key`] in one transaction.
    pub(crate) fn ca_cert(&self) -> String {
        format!("{}cluster/ca.pem", self.prefix)
    }

    /// The cluster CA's private key (PEM).
    pub(crate) fn ca_key(&self) -> String {
        format!("{}cluster/ca.key", self.prefix)
    }

    /// Whether `key` is a presence key (`nodes/`, `links/`) rather than a registry record.
    pub(crate) fn is_presence(&self, key: &[u8]) -> bool {
        let Some(rest) = key.strip_prefix(self.prefix.as_bytes()) else {
            return false;
        };
        rest.starts_with(b"nodes/") || rest.starts_with(b"links/")
    }

    /// The cluster's presence: every node's record and every live link.
    pub(crate) fn presence(&self, kvs: &BTreeMap<Vec<u8>, Vec<u8>>) -> ClusterPresence {
        let mut out = ClusterPresence::default();
        for (key, value) in kvs {
            let (Ok(key), Ok(value)) = (std::str::from_utf8(key), std::str::from_utf8(value))
            else {
                continue;
            };
            let Some(rest) = key.strip_prefix(&self.prefix) else {
                continue;
            };
            if let Some(node) = rest.strip_prefix("nodes/") {
                out.nodes.insert(node.to_owned(), value.to_owned());
            } else if let Some(link) = rest.strip_prefix("links/") {
                let mut parts = link.splitn(3, '/');
                let (Some(tunnel), Some(node), Some(link)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                let Ok(tunnel) = Uuid::parse_str(tunnel) else {
                    continue;
                };
                out.links.push(ClusterLink {
                    tunnel,
                    node: node.to_owned(),
                    link: link.to_owned(),
                    value: value.to_owned(),
                });
            }
        }
        out
    }

    /// A tunnel's value.
    pub(crate) fn encode_tunnel(tunnel: &Tunnel) -> Result<String> {
        let record = TunnelRecord {
            id: tunnel.id,
            name: tunnel.name.clone(),
            created: tunnel
                .created
                .format(&Rfc3339)
                .map_err(|e| Error::Invalid(format!("cannot format time: {e}")))?,
            lb_policy: tunnel.lb_policy.map(|p| p.as_str().to_owned()),
        };
        serde_json::to_string(&record)
            .map_err(|e| Error::Invalid(format!("cannot encode tunnel: {e}")))
    }

    /// A secret's value.
    pub(crate) fn encode_secret(secret: &TunnelSecret) -> String {
        crate::registry::secret_base64(secret)
    }

    /// The view of every key under the prefix (`kvs`: key → value).
    pub(crate) fn view(&self, kvs: &BTreeMap<Vec<u8>, Vec<u8>>) -> View {
        let mut tunnels = Vec::new();
        let mut secrets: BTreeMap<Uuid, TunnelSecret> = BTreeMap::new();
        let mut dns = Vec::new();
        let mut tcp = Vec::new();
        for (key, value) in kvs {
            let (Ok(key), Ok(value)) = (std::str::from_utf8(key), std::str::from_utf8(value))
            else {
                continue;
            };
            let Some(rest) = key.strip_prefix(&self.prefix) else {
                continue;
            };
            let parsed = if let Some(id) = rest.strip_prefix("tunnels/") {
                decode_tunnel(id, value).map(|t| tunnels.push(t))
            } else if let Some(id) = rest.strip_prefix("secrets/") {
                decode_secret(id, value).map(|(id, s)| {
                    secrets.insert(id, s);
                })
            } else if let Some(host) = rest.strip_prefix("routes/dns/") {
                parse_id(value).map(|id| dns.push((host.to_owned(), id)))
            } else if let Some(port) = rest.strip_prefix("routes/tcp/") {
                port.parse::<u16>()
                    .map_err(|_| "port is not a number".to_owned())
                    .and_then(|port| parse_id(value).map(|id| tcp.push((port, id))))
            } else {
                Ok(())
            };
            if let Err(reason) = parsed {
                tracing::warn!(
                    key,
                    reason,
                    "etcd key does not decode; left out of the registry"
                );
            }
        }
        let tunnels: Vec<(Tunnel, TunnelSecret)> = tunnels
            .into_iter()
            .filter_map(|t| secrets.remove(&t.id).map(|s| (t, s)))
            .collect();
        let name_of = |id: Uuid| {
            tunnels
                .iter()
                .find(|(t, _)| t.id == id)
                .map(|(t, _)| t.name.clone())
        };
        let dns = dns
            .into_iter()
            .filter_map(|(hostname, tunnel_id)| {
                name_of(tunnel_id).map(|tunnel_name| DnsRoute {
                    hostname,
                    tunnel_id,
                    tunnel_name,
                })
            })
            .collect();
        let tcp = tcp
            .into_iter()
            .filter_map(|(port, tunnel_id)| {
                name_of(tunnel_id).map(|tunnel_name| TcpRoute {
                    port,
                    tunnel_id,
                    tunnel_name,
                })
            })
            .collect();
        View::new(tunnels, dns, tcp)
    }
}

fn parse_id(s: &str) -> std::result::Result<Uuid, String> {
    Uuid::parse_str(s).map_err(|e| format!("not a tunnel ID: {e}"))
}

fn decode_tunnel(id: &str, value: &str) -> std::result::Result<Tunnel, String> {
    let record: TunnelRecord =
        serde_json::from_str(value).map_err(|e| format!("not a tunnel record: {e}"))?;
    if parse_id(id)? != record.id {
        return Err("the key's ID and the record's differ".into());
    }
    let created = OffsetDateTime::parse(&record.created, &Rfc3339)
        .map_err(|e| format!("bad created time: {e}"))?;
    Ok(Tunnel {
        id: record.id,
        name: record.name,
        created,
        // An unknown policy (written by a newer edge) falls back to the edge's default.
        lb_policy: record.lb_policy.and_then(|p| p.parse().ok()),
    })
}

fn decode_secret(id: &str, value: &str) -> std::result::Result<(Uuid, TunnelSecret), String> {
    use base64::Engine as _;
    let id = parse_id(id)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .map_err(|e| format!("secret is not base64: {e}"))?;
    if bytes.len() != ringtun_core::handshake::SECRET_LEN {
        let want = ringtun_core::handshake::SECRET_LEN;
        return Err(format!("secret is not {want} bytes"));
    }
    Ok((id, TunnelSecret::new(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_values_are_left_out() {
        let keys = Keys::new("/t/");
        let now = OffsetDateTime::now_utc()
            .replace_nanosecond(0)
            .expect("time");
        let tunnel = Tunnel {
            id: Uuid::new_v4(),
            name: "web".into(),
            created: now,
            lb_policy: Some(crate::settings::LbPolicy::Random),
        };
        let secret = crate::registry::new_secret();
        let orphan = Uuid::new_v4();
        let mut kvs = BTreeMap::new();
        let mut put = |k: String, v: String| kvs.insert(k.into_bytes(), v.into_bytes());
        put(
            keys.tunnel(tunnel.id),
            Keys::encode_tunnel(&tunnel).expect("encode"),
        );
        put(keys.secret(tunnel.id), Keys::encode_secret(&secret));
        put(keys.dns("a.example.com"), tunnel.id.to_string());
        put(keys.dns("b.example.com"), orphan.to_string());
        put(keys.tcp(9000), tunnel.id.to_string());
        put(keys.tcp(1).replace("/1", "/x"), tunnel.id.to_string());
        put(keys.tunnel(Uuid::new_v4()), "{not json".into());
        let view = keys.view(&kvs);
        assert_eq!(view.tunnels(), vec![tunnel.clone()]);
        assert_eq!(view.secret(tunnel.id), Some(&secret));
        let hosts: Vec<_> = view
            .dns_routes()
            .iter()
            .map(|r| r.hostname.as_str())
            .collect();
        assert_eq!(
            hosts,
            ["a.example.com"],
            "a route to a missing tunnel is left out"
        );
        assert_eq!(view.tcp_routes().len(), 1);
        assert_eq!(view.tcp_routes()[0].tunnel_name, "web");
    }

    #[test]
    fn a_node_record_round_trips_and_old_or_new_records_decode() {
        let addr = |port: u16| SocketAddr::from(([127, 0, 1, 1], port));
        let record = NodeRecord {
            data_center: "dfw".into(),
            admin: addr(1).to_string(),
            servers: vec![addr(2), addr(3)],
            peer: Some(addr(4)),
            data_centers: vec![NodeDataCenter {
                name: "dfw".into(),
                servers: vec![addr(2), addr(3)],
            }],
        };
        assert_eq!(NodeRecord::parse(&record.encode()), Ok(record.clone()));

        // An older edge: no peer links, no `data_centers`, no `admin`.
        let old = NodeRecord::parse(r#"{"data_center":"dfw","servers":["127.0.0.1:9"]}"#)
            .expect("an older record decodes");
        assert_eq!(old.peer, None);
        assert_eq!(old.admin, "");
        assert!(old.data_centers.is_empty());
        assert_eq!(old.servers, [SocketAddr::from(([127, 0, 0, 1], 9))]);

        // A newer edge: fields this one does not know are ignored, the known ones read.
        let mut newer: serde_json::Value = serde_json::from_str(&record.encode()).expect("json");
        newer["weight"] = serde_json::json!(3);
        newer["data_centers"][0]["zone"] = serde_json::json!("a");
        assert_eq!(NodeRecord::parse(&newer.to_string()), Ok(record));

        // Not a record: a clear error, never a panic.
        for bad in [
            "",
            "{not json",
            "[]",
            r#"{"admin":"127.0.0.1:1"}"#,
            r#"{"data_center":7}"#,
            r#"{"data_center":"dfw","peer":"not an address"}"#,
            r#"{"data_center":"dfw","data_centers":7}"#,
        ] {
            let err = NodeRecord::parse(bad).expect_err(bad);
            assert!(err.starts_with("not a node record"), "{bad}: {err}");
            assert_eq!(NodeRecord::decode(bad), None);
        }
    }
}
