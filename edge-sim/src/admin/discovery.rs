//! `GET /discovery`: where connectors open their links.
//!
//! One node (no `--etcd`) answers `{data_centers: [{name, servers}], ca_pem}` from its own
//! bound addresses, as it always did. A node in an etcd cluster answers for the whole cluster,
//! from the presence its watch keeps (`nodes/{node}` records, `Registry::cluster_presence`):
//! every live node's servers, grouped by data center, each data center listing its nodes
//! (`nodes: [{id, servers}]`) and its `servers` interleaved over the nodes (the first server of
//! every node, then the second of every node, ...), so a connector that knows nothing of nodes
//! still puts its first links of a data center on distinct nodes. The top level adds this
//! node's `node` ID and `nodes: [{id, data_center, admin}]`. The answer only adds fields: an
//! older connector reads `data_centers[].servers` as before.
use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Deserialize;
use serde_json::{Value, json};

use super::handler::AdminContext;
use crate::settings::DataCenter;

/// What discovery reads of a `nodes/{node}` record (other fields are ignored; a record without
/// `data_centers`, from an older edge, lists no server).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeRecord {
    data_center: String,
    admin: String,
    data_centers: Vec<NodeDc>,
}

/// One data center of a node record.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NodeDc {
    name: String,
    servers: Vec<SocketAddr>,
}

/// The discovery answer (see the module doc).
pub(crate) fn answer(ctx: &AdminContext) -> Value {
    let (Some(presence), Some(me)) = (ctx.registry.cluster_presence(), ctx.registry.node_id())
    else {
        let dcs: Vec<Value> = ctx
            .data_centers
            .iter()
            .map(|dc| json!({ "name": dc.name, "servers": dc.servers }))
            .collect();
        return json!({ "data_centers": dcs, "ca_pem": ctx.ca_pem });
    };
    let mut records: BTreeMap<String, NodeRecord> = BTreeMap::new();
    for (node, value) in &presence.nodes {
        match serde_json::from_str::<NodeRecord>(value) {
            Ok(record) => {
                records.insert(node.clone(), record);
            }
            Err(e) => {
                tracing::debug!(node, error = %e, "node record does not decode; left out of discovery");
            }
        }
    }
    // This node answers with its own servers even before its record shows in its watch.
    records.entry(me.to_owned()).or_insert_with(|| NodeRecord {
        data_center: String::new(),
        admin: String::new(),
        data_centers: ctx
            .data_centers
            .iter()
            .map(|dc| NodeDc {
                name: dc.name.clone(),
                servers: dc.servers.clone(),
            })
            .collect(),
    });
    json!({
        "data_centers": cluster_data_centers(&ctx.data_centers, &records),
        "ca_pem": ctx.ca_pem,
        "node": me,
        "nodes": records
            .iter()
            .map(|(id, r)| json!({ "id": id, "data_center": r.data_center, "admin": r.admin }))
            .collect::<Vec<_>>(),
    })
}

/// Every data center of the cluster: this node's first, in its configured order, then the
/// others by name; in each, the nodes by ID and the servers interleaved over them.
fn cluster_data_centers(own: &[DataCenter], records: &BTreeMap<String, NodeRecord>) -> Vec<Value> {
    let mut by_dc: BTreeMap<&str, Vec<(&str, &[SocketAddr])>> = BTreeMap::new();
    for (node, record) in records {
        for dc in &record.data_centers {
            if !dc.servers.is_empty() && !dc.name.is_empty() {
                by_dc
                    .entry(dc.name.as_str())
                    .or_default()
                    .push((node.as_str(), dc.servers.as_slice()));
            }
        }
    }
    let mut order: Vec<&str> = own.iter().map(|dc| dc.name.as_str()).collect();
    order.retain(|name| by_dc.contains_key(name));
    let others: Vec<&str> = by_dc
        .keys()
        .copied()
        .filter(|name| !order.contains(name))
        .collect();
    order.extend(others);
    order
        .into_iter()
        .map(|name| {
            let nodes = by_dc.get(name).map(Vec::as_slice).unwrap_or_default();
            json!({
                "name": name,
                "servers": interleave(nodes),
                "nodes": nodes
                    .iter()
                    .map(|(id, servers)| json!({ "id": id, "servers": servers }))
                    .collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// The first server of every node, then the second of every node, and so on.
fn interleave(nodes: &[(&str, &[SocketAddr])]) -> Vec<SocketAddr> {
    let most = nodes.iter().map(|(_, s)| s.len()).max().unwrap_or(0);
    (0..most)
        .flat_map(|i| nodes.iter().filter_map(move |(_, s)| s.get(i).copied()))
        .collect()
}

/// This node's part of its `nodes/{node}` record that discovery reads: its servers by data
/// center (`Edge::start` adds it to the record it announces).
pub(crate) fn record_data_centers(dcs: &[DataCenter]) -> Value {
    json!(
        dcs.iter()
            .map(|dc| json!({ "name": dc.name, "servers": dc.servers }))
            .collect::<Vec<_>>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn servers_interleave_over_nodes_and_own_data_centers_come_first() {
        let mut records = BTreeMap::new();
        let record = |dcs: Vec<(&str, Vec<u16>)>| NodeRecord {
            data_center: String::new(),
            admin: String::new(),
            data_centers: dcs
                .into_iter()
                .map(|(name, ports)| NodeDc {
                    name: name.into(),
                    servers: ports.into_iter().map(addr).collect(),
                })
                .collect(),
        };
        records.insert(
            "a".to_owned(),
            record(vec![("dfw", vec![1, 2]), ("mci", vec![3])]),
        );
        records.insert(
            "b".to_owned(),
            record(vec![("dfw", vec![4]), ("mci", vec![5])]),
        );
        records.insert("c".to_owned(), record(vec![("ams", vec![6])]));
        let own = vec![
            DataCenter {
                name: "mci".into(),
                servers: vec![addr(3)],
            },
            DataCenter {
                name: "dfw".into(),
                servers: vec![addr(1), addr(2)],
            },
        ];
        let dcs = cluster_data_centers(&own, &records);
        let names: Vec<&str> = dcs.iter().filter_map(|d| d["name"].as_str()).collect();
        assert_eq!(names, ["mci", "dfw", "ams"]);
        assert_eq!(
            dcs[1]["servers"],
            json!(["127.0.0.1:1", "127.0.0.1:4", "127.0.0.1:2"])
        );
        assert_eq!(
            dcs[1]["nodes"][1],
            json!({"id": "b", "servers": ["127.0.0.1:4"]})
        );
    }

    #[test]
    fn an_old_or_bad_record_lists_no_server() {
        let r: NodeRecord =
            serde_json::from_str(r#"{"data_center":"dfw","admin":"x","servers":["1.2.3.4:1"]}"#)
                .unwrap_or_default();
        assert!(r.data_centers.is_empty());
        assert!(serde_json::from_str::<NodeRecord>(r#"{"data_centers": 7}"#).is_err());
    }
}
