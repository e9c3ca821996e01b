//! Several `ringtun-edge` nodes on one real etcd and a real `ringtun tunnel run`: the connector
//! spreads its links over the nodes of each data center, `tunnel info` on any node shows the node
//! of each link, and when a node is killed (`kill -9`) under load its presence goes within the
//! lease TTL and the connector moves its links to the other node.
//!
//! Two nodes, each with data centers `dfw` and `mci` of two servers (the harness's layout), and
//! a short `--etcd-lease-ttl`. `cargo test -p ringtun-connector --test e2e cluster::`.
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;
use ringtun_test_support::etcd;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{Connector, Edge, EdgeOptions, Load, Origin, STEP_TIMEOUT, Service, Tunnel};

const TTL: Duration = Duration::from_secs(3);

/// A node in `dir`. The second node gets the first's CA and admin token (`like`), as an
/// operator gives every node of a cluster the same (`docs/cluster.md`): connectors trust one CA
/// whichever node their link lands on, and the CLI's token works on every node.
fn node(dir: &Path, etcd: &etcd::Etcd, prefix: &str, like: Option<&Edge>) -> Edge {
    node_with(dir, etcd, prefix, like, &[])
}

/// [`node`] with `more` flags after the cluster's (and the lease TTL of this file, [`TTL`]).
pub(super) fn node_with(
    dir: &Path,
    etcd: &etcd::Etcd,
    prefix: &str,
    like: Option<&Edge>,
    more: &[&str],
) -> Edge {
    std::fs::create_dir_all(dir).unwrap();
    if let Some(first) = like {
        use std::os::unix::fs::PermissionsExt as _;
        let state = dir.join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
        for file in ["ca.pem", "ca-key.pem", "admin-token"] {
            std::fs::copy(first.dir.join("state").join(file), state.join(file)).unwrap();
        }
    }
    Edge::start_with(
        dir,
        EdgeOptions {
            workers: Some(1),
            extra: vec![
                "--etcd".into(),
                etcd.endpoints(),
                "--etcd-prefix".into(),
                prefix.into(),
                "--etcd-lease-ttl".into(),
                TTL.as_secs().to_string(),
            ]
            .into_iter()
            .chain(more.iter().map(|f| f.to_string()))
            .collect(),
            ..EdgeOptions::default()
        },
    )
}

fn discovery(edge: &Edge) -> serde_json::Value {
    let r = edge.admin_request("GET", "/discovery");
    assert_eq!(r.status, 200, "{}", r.text());
    serde_json::from_str(&r.text()).unwrap()
}

/// The cluster's two nodes as a connector would find them: waits until `edge`'s discovery
/// lists two nodes in every data center; returns (`edge`'s node ID, the other's).
fn two_nodes(edge: &Edge) -> (String, String) {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let d = discovery(edge);
        let dcs = d["data_centers"].as_array().cloned().unwrap_or_default();
        let full = dcs.len() == 2
            && dcs
                .iter()
                .all(|dc| dc["nodes"].as_array().map(Vec::len) == Some(2));
        if full {
            let me = d["node"].as_str().unwrap().to_owned();
            let other = d["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(|n| n["id"].as_str())
                .find(|id| *id != me)
                .unwrap()
                .to_owned();
            return (me, other);
        }
        assert!(
            Instant::now() < deadline,
            "discovery never listed both nodes: {d:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The connector's links in `tunnel info` (from `edge`): (index, data center, node).
fn links(edge: &Edge, tunnel: &str) -> Vec<(u64, String, String)> {
    let info = edge.tunnel_info(tunnel);
    let mut out = Vec::new();
    for c in info["connectors"].as_array().into_iter().flatten() {
        for l in c["links"].as_array().into_iter().flatten() {
            out.push((
                l["index"].as_u64().unwrap_or(99),
                l["data_center"].as_str().unwrap_or("").to_owned(),
                l["node"].as_str().unwrap_or("").to_owned(),
            ));
        }
    }
    out.sort();
    out
}

/// Waits until `tunnel info` on `edge` shows links that `done` accepts; returns them.
fn wait_links(
    edge: &Edge,
    tunnel: &str,
    what: &str,
    done: impl Fn(&[(u64, String, String)]) -> bool,
) -> Vec<(u64, String, String)> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let l = links(edge, tunnel);
        if done(&l) {
            return l;
        }
        assert!(Instant::now() < deadline, "{what}; last links: {l:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Every data center's links on distinct nodes, four links in all.
fn spread(l: &[(u64, String, String)]) -> bool {
    let mut by_dc: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (_, dc, node) in l {
        by_dc.entry(dc).or_default().insert(node);
    }
    l.len() == 4 && by_dc.len() == 2 && by_dc.values().all(|nodes| nodes.len() == 2)
}

#[test]
fn links_spread_over_distinct_nodes_and_tunnel_info_shows_each_links_node() {
    let etcd = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("/e2e-{}/", std::process::id());
    let a = node(&dir.path().join("a"), &etcd, &prefix, None);
    let b = node(&dir.path().join("b"), &etcd, &prefix, Some(&a));
    let (id_a, id_b) = two_nodes(&a);
    let origin = Origin::start(dir.path(), false);
    let tunnel = Tunnel::create(&a, "web");
    tunnel.route_dns(&a, "web.example.com");
    let _connector = Connector::run(&a, &tunnel, &Service::Url(origin.url()));
    // Asked of the other node: the same view.
    let l = wait_links(&b, "web", "links never spread over both nodes", spread);
    let nodes: BTreeSet<&str> = l.iter().map(|(_, _, n)| n.as_str()).collect();
    assert_eq!(
        nodes,
        BTreeSet::from([id_a.as_str(), id_b.as_str()]),
        "{l:?}"
    );
    assert_eq!(links(&a, "web"), l, "tunnel info is the same on both nodes");
    // Both nodes serve the tunnel from their own links.
    for edge in [&a, &b] {
        e2e::get_ok(edge.public_http(), "web.example.com", STEP_TIMEOUT);
    }
    // The table names each link's node (short IDs).
    let text = e2e::ok(b.ringtun(&["tunnel", "info", "web"]));
    assert!(text.contains("NODES"), "{text}");
    for id in [&id_a, &id_b] {
        assert!(text.contains(&id[..8]), "{id} in {text}");
    }
}

#[test]
fn a_killed_node_loses_its_presence_within_the_ttl_and_its_links_move_to_the_other_node() {
    let etcd = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().unwrap();
    let prefix = format!("/e2e-kill-{}/", std::process::id());
    let a = node(&dir.path().join("a"), &etcd, &prefix, None);
    let b = node(&dir.path().join("b"), &etcd, &prefix, Some(&a));
    let (id_a, id_b) = two_nodes(&a);
    let origin = Origin::start(dir.path(), false);
    let tunnel = Tunnel::create(&a, "web");
    tunnel.route_dns(&a, "web.example.com");
    let _connector = Connector::run(&a, &tunnel, &Service::Url(origin.url()));
    wait_links(&b, "web", "links never spread over both nodes", spread);
    e2e::get_ok(b.public_http(), "web.example.com", STEP_TIMEOUT);

    // Load on the node that stays up, then kill -9 the other.
    let load = Load::start(b.public_http(), "web.example.com");
    std::thread::sleep(Duration::from_secs(1));
    let killed_at = load.now();
    e2e::signal(&a.proc, "KILL");
    let killed = Instant::now();
    let links_prefix = format!("{prefix}links/{}/{id_a}/", tunnel.id);
    loop {
        let left = etcd.keys(&links_prefix).unwrap_or_default();
        if left.is_empty() {
            break;
        }
        assert!(
            killed.elapsed() <= TTL + Duration::from_secs(1),
            "the killed node's link keys outlived its lease TTL + 1 s: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let gone = killed.elapsed();
    let moved = wait_links(&b, "web", "the links never moved to the other node", |l| {
        l.len() == 4 && l.iter().all(|(_, _, n)| *n == id_b)
    });
    let served = killed.elapsed();
    // Requests through the node that stayed succeed again.
    e2e::get_ok(b.public_http(), "web.example.com", STEP_TIMEOUT);
    let answered_at = load.now();
    std::thread::sleep(Duration::from_secs(1));
    let end = load.now();
    let totals = load.finish();
    let window = totals.failed_between(killed_at, end);
    // Full service: every request that started after the last failed one succeeded.
    let full_service = window
        .iter()
        .map(|f| f.started.saturating_sub(killed_at))
        .max()
        .unwrap_or_default();
    println!(
        "kill -9 of one node of two: link keys gone after {gone:?} (TTL {TTL:?}); all 4 links on \
         the other node after {served:?}; load to the surviving node: {} ok, {} failed in the \
         window ({:?}); every request succeeded from {full_service:?} after the kill on (the \
         start of the last failed one; 0: none failed)",
        totals.ok,
        window.len(),
        window.iter().take(5).collect::<Vec<_>>()
    );
    assert_eq!(moved.len(), 4);
    assert!(totals.ok > 0, "the surviving node served nothing");
    let after = totals.failed_between(answered_at, end);
    assert!(
        after.is_empty(),
        "requests still failed once the surviving node answered: {after:?}"
    );
}
