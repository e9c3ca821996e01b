//! The connectors view of `GET /tunnels/{x}` and `GET /tunnels/{x}/connectors`: this node's
//! connectors and, in an etcd cluster, those whose links are on other nodes, so `ringtun tunnel
//! info` shows the same whichever node answers.
//!
//! This node's connectors come from its connector table, with their live counters. Another
//! node's links come from presence (`links/{tunnel}/{node}/{connector}.{index}`, a
//! [`LinkRecord`] each): a connector with links on several nodes is one entry with all its
//! links; a connector known only from presence has no live counters (`active_streams` and
//! `requests` are `null`). In a cluster every link carries its `node`; one node without etcd
//! answers as before (no `node` field).
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use crate::cluster::LinkRecord;
use crate::registry::{Connector, LinkInfo, Registry};

/// A connector as the admin API shows it.
#[derive(Debug, Clone)]
pub(crate) struct Shown {
    /// The record (links merged over nodes, by index).
    pub(crate) connector: Connector,
    /// Link index → the node holding it (cluster only).
    nodes: BTreeMap<u8, String>,
    /// Known only from another node's presence: no live counters.
    remote: bool,
}

impl Shown {
    /// The JSON of one connector: its record, `edge` (`2xdfw, 2xmci`), `state`, and each link's
    /// `node` in a cluster.
    pub(crate) fn to_json(&self) -> Value {
        let c = &self.connector;
        let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
        if let Some(map) = v.as_object_mut() {
            map.insert("edge".into(), Value::String(c.edge_summary()));
            map.insert("state".into(), json!(c.state()));
            if self.remote {
                map.insert("active_streams".into(), Value::Null);
                map.insert("requests".into(), Value::Null);
            }
            if let Some(Value::Array(links)) = map.get_mut("links") {
                for link in links {
                    let node = link
                        .get("index")
                        .and_then(Value::as_u64)
                        .and_then(|i| u8::try_from(i).ok())
                        .and_then(|i| self.nodes.get(&i));
                    if let (Some(node), Some(link)) = (node, link.as_object_mut()) {
                        link.insert("node".into(), json!(node));
                    }
                }
            }
        }
        v
    }
}

/// A tunnel's connectors over the cluster (see the module doc), oldest first.
pub(crate) fn of_tunnel(registry: &Registry, tunnel: Uuid) -> Vec<Shown> {
    let local = registry.connectors(tunnel);
    let (Some(me), Some(presence)) = (registry.node_id(), registry.cluster_presence()) else {
        return local
            .into_iter()
            .map(|connector| Shown {
                connector,
                nodes: BTreeMap::new(),
                remote: false,
            })
            .collect();
    };
    let mut by_id: BTreeMap<Uuid, Shown> = local
        .into_iter()
        .map(|connector| {
            let nodes = connector
                .links
                .iter()
                .map(|l| (l.index, me.to_owned()))
                .collect();
            (
                connector.id,
                Shown {
                    connector,
                    nodes,
                    remote: false,
                },
            )
        })
        .collect();
    for link in presence.links.iter().filter(|l| l.tunnel == tunnel) {
        if link.node == me {
            // This node's own links are in its table, live; presence may lag behind it.
            continue;
        }
        let Some((id, index)) = link.link.split_once('.') else {
            continue;
        };
        let (Ok(id), Ok(index)) = (Uuid::parse_str(id), index.parse::<u8>()) else {
            continue;
        };
        let Ok(record) = serde_json::from_str::<LinkRecord>(&link.value) else {
            continue;
        };
        let Ok(server) = record.server.parse::<SocketAddr>() else {
            continue;
        };
        let shown = by_id
            .entry(id)
            .or_insert_with(|| remote_connector(id, tunnel, &record));
        if shown.nodes.contains_key(&index) {
            // One index on two nodes: a link that moved; the old key goes with its node.
            continue;
        }
        shown.connector.links.push(LinkInfo {
            index,
            data_center: record.data_center.clone(),
            server,
        });
        shown.connector.links.sort_by_key(|l| l.index);
        shown.nodes.insert(index, link.node.clone());
    }
    let mut list: Vec<Shown> = by_id.into_values().collect();
    list.sort_by(|a, b| {
        a.connector
            .created
            .cmp(&b.connector.created)
            .then(a.connector.id.cmp(&b.connector.id))
    });
    list
}

/// A connector known only from another node's link record.
fn remote_connector(id: Uuid, tunnel: Uuid, record: &LinkRecord) -> Shown {
    Shown {
        connector: Connector {
            id,
            tunnel_id: tunnel,
            created: OffsetDateTime::parse(&record.created, &Rfc3339)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            arch: record.arch.clone(),
            version: record.version.clone(),
            origin_ip: record
                .origin_ip
                .parse()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            links: Vec::new(),
            draining: false,
            label: record.label.clone(),
            weight: record.weight.max(1),
            standby: record.standby,
            active_streams: 0,
            requests: 0,
        },
        nodes: BTreeMap::new(),
        remote: true,
    }
}
