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

use serde_json::{Value, json};

use super::handler::AdminContext;
use crate::cluster::{NodeDataCenter, NodeRecord};
use crate::settings::DataCenter;

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
        match NodeRecord::parse(value) {
            Ok(record) => {
                records.insert(node.clone(), record);
            }
            Err(reason) => {
                tracing::debug!(node, reason, "left out of discovery");
            }
        }
    }
    // This node answers with its own servers even before its record shows in its watch.
    records.entry(me.to_owned()).or_insert_with(|| NodeRecord {
        data_centers: record_data_centers(&ctx.data_centers),
        ..NodeRecord::default()
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

/// This node's servers by data center, as its `nodes/{node}` record lists them for discovery.
pub(crate) fn record_data_centers(dcs: &[DataCenter]) -> Vec<NodeDataCenter> {
    dcs.iter()
        .map(|dc| NodeDataCenter {
            name: dc.name.clone(),
            servers: dc.servers.clone(),
        })
        .collect()
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
            data_centers: dcs
                .into_iter()
                .map(|(name, ports)| NodeDataCenter {
                    name: name.into(),
                    servers: ports.into_iter().map(addr).collect(),
                })
                .collect(),
            ..NodeRecord::default()
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
}
