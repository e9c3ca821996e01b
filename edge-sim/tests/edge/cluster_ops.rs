//! Operating several `ringtun-edge` nodes on one real etcd: discovery lists every live node's
//! servers; `GET /tunnels/{x}` on any node shows the links held by the others, with their node;
//! a graceful stop revokes the node's presence at once; a node stopped (SIGSTOP) past its lease
//! TTL puts its links again when it resumes, and etcd then holds exactly the links it has.

use ringtun_test_support::etcd;

use std::path::Path;
use std::time::{Duration, Instant};

use ringtun_core::signal::Signal;
use ringtun_test_support::cluster::{ClusterNode as Node, unique_prefix};
use ringtun_test_support::edge::{json, spawn_edge};
use uuid::Uuid;

/// Generous: the machine may be busy.
const DEADLINE: Duration = Duration::from_secs(60);

const BIN: &str = env!("CARGO_BIN_EXE_ringtun-edge");

/// A node whose presence lease lives `ttl` seconds.
fn start(dir: &Path, name: &str, endpoints: &str, prefix: &str, ttl: &str) -> Node {
    Node::start(
        BIN,
        dir,
        name,
        endpoints,
        prefix,
        &["--etcd-lease-ttl", ttl],
    )
}

/// What a node's discovery is to these tests.
trait Ops {
    fn discovery(&self) -> serde_json::Value;
}

impl Ops for Node {
    fn discovery(&self) -> serde_json::Value {
        let (status, body) = self.admin("GET", "/discovery", None);
        assert_eq!(status, 200, "{body}");
        json(&body)
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics with `what` after `within`.
fn wait<T>(within: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn discovery_lists_every_live_node_and_one_node_answers_as_before() {
    let etcd = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = unique_prefix();
    let a = start(dir.path(), "a", &etcd.endpoints(), &prefix, "10");
    let b = start(dir.path(), "b", &etcd.endpoints(), &prefix, "10");
    let (id_a, id_b) = (a.id(), b.id());
    assert_ne!(id_a, id_b);
    // A node of a cluster names itself in discovery, with the ID it logged.
    assert_eq!(a.discovery()["node"], id_a.as_str());
    assert_eq!(b.discovery()["node"], id_b.as_str());
    let servers = [a.0.server.expect("server"), b.0.server.expect("server")];
    for node in [&a, &b] {
        let answer = wait(DEADLINE, "discovery never listed both nodes", || {
            let d = node.discovery();
            (d["data_centers"][0]["nodes"].as_array().map(Vec::len) == Some(2)).then_some(d)
        });
        let dc = &answer["data_centers"][0];
        assert_eq!(dc["name"], "dfw", "{answer:#}");
        let listed: Vec<String> = dc["servers"]
            .as_array()
            .expect("servers")
            .iter()
            .filter_map(|s| s.as_str().map(str::to_owned))
            .collect();
        for s in servers {
            assert!(listed.contains(&s.to_string()), "{s} in {answer:#}");
        }
        let mut ids: Vec<&str> = dc["nodes"]
            .as_array()
            .expect("nodes")
            .iter()
            .filter_map(|n| n["id"].as_str())
            .collect();
        ids.sort_unstable();
        let mut want = vec![id_a.as_str(), id_b.as_str()];
        want.sort_unstable();
        assert_eq!(ids, want, "{answer:#}");
        assert_eq!(answer["nodes"].as_array().map(Vec::len), Some(2));
        assert!(
            answer["ca_pem"]
                .as_str()
                .is_some_and(|p| p.contains("BEGIN"))
        );
    }

    // A node that stops is no longer listed.
    drop(b);
    wait(DEADLINE, "a stopped node stayed in discovery", || {
        (a.discovery()["data_centers"][0]["nodes"]
            .as_array()
            .map(Vec::len)
            == Some(1))
        .then_some(())
    });

    // One node without etcd: the same fields as ever, no more.
    let single = Node(spawn_edge(
        BIN,
        &dir.path().join("single"),
        &["--workers", "1", "--data-center", "dfw=127.0.1.1:0"],
    ));
    let answer = single.discovery();
    let mut keys: Vec<&String> = answer.as_object().expect("object").keys().collect();
    keys.sort();
    assert_eq!(keys, ["ca_pem", "data_centers"], "{answer:#}");
    let dc = answer["data_centers"][0].as_object().expect("dc");
    let mut keys: Vec<&String> = dc.keys().collect();
    keys.sort();
    assert_eq!(keys, ["name", "servers"], "{answer:#}");
}

#[test]
fn tunnel_info_on_any_node_shows_every_nodes_links_with_their_node() {
    let etcd = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = unique_prefix();
    let a = start(dir.path(), "a", &etcd.endpoints(), &prefix, "10");
    let b = start(dir.path(), "b", &etcd.endpoints(), &prefix, "10");
    let (id_a, id_b) = (a.id(), b.id());
    let (tunnel, secret) = a.create_tunnel("web");
    let connector = Uuid::new_v4();
    // One connector, link 0 on node A and link 1 on node B.
    let _l0 = a.link("c", tunnel, &secret, connector, 0);
    wait(DEADLINE, "node B never saw the tunnel", || {
        (b.admin("GET", "/tunnels/web", None).0 == 200).then_some(())
    });
    let _l1 = b.link("c", tunnel, &secret, connector, 1);
    for node in [&a, &b] {
        let info = wait(DEADLINE, "tunnel info never showed both links", || {
            let (status, body) = node.admin("GET", "/tunnels/web", None);
            let v = json(&body);
            (status == 200 && v["connectors"][0]["links"].as_array().map(Vec::len) == Some(2))
                .then_some(v)
        });
        let connectors = info["connectors"].as_array().expect("connectors");
        assert_eq!(
            connectors.len(),
            1,
            "one connector over two nodes: {info:#}"
        );
        let c = &connectors[0];
        assert_eq!(c["id"], connector.to_string());
        assert_eq!(c["links"][0]["node"], id_a.as_str(), "{info:#}");
        assert_eq!(c["links"][1]["node"], id_b.as_str(), "{info:#}");
        assert_eq!(c["version"].as_str().map(str::is_empty), Some(false));
        // The tunnel list counts it once, with both links.
        let (_, list) = node.admin("GET", "/tunnels", None);
        let list = json(&list);
        assert_eq!(list[0]["connectors"], 1, "{list:#}");
        assert_eq!(list[0]["connections"], "2xdfw", "{list:#}");
    }
}

#[test]
fn a_graceful_stop_revokes_the_nodes_presence_at_once() {
    // A TTL far longer than the test waits: only a revoked lease makes the keys go in time.
    let etcd = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = unique_prefix();
    let mut a = start(dir.path(), "a", &etcd.endpoints(), &prefix, "300");
    let b = start(dir.path(), "b", &etcd.endpoints(), &prefix, "300");
    let id_a = a.id();
    let (tunnel, secret) = a.create_tunnel("web");
    let _c = a.link("c", tunnel, &secret, Uuid::new_v4(), 0);
    let mine = |keys: &[String]| -> Vec<String> {
        keys.iter().filter(|k| k.contains(&id_a)).cloned().collect()
    };
    wait(DEADLINE, "node A's record and link never appeared", || {
        let keys = etcd.keys(&prefix)?;
        (mine(&keys).len() == 2).then_some(())
    });
    a.signal(Signal::Term);
    wait(DEADLINE, "node A did not exit on SIGTERM", || {
        a.0.child.try_wait().ok().flatten()
    });
    // Gone within seconds of the exit, where the lease's TTL is five minutes.
    let left = wait(
        Duration::from_secs(10),
        "node A's presence outlived its graceful stop",
        || {
            let keys = etcd.keys(&prefix)?;
            mine(&keys).is_empty().then_some(keys)
        },
    );
    assert!(
        left.iter().any(|k| k.contains("/nodes/")),
        "node B's record stays: {left:?}"
    );
    drop(b);
}

#[test]
fn a_node_stopped_past_its_ttl_puts_its_links_again_and_etcd_holds_exactly_its_links() {
    const TTL: u64 = 3;
    let etcd = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = unique_prefix();
    let ttl = TTL.to_string();
    let a = start(dir.path(), "a", &etcd.endpoints(), &prefix, &ttl);
    let b = start(dir.path(), "b", &etcd.endpoints(), &prefix, &ttl);
    let id_a = a.id();
    let (tunnel, secret) = a.create_tunnel("web");
    let connector = Uuid::new_v4();
    let _c = a.link("c", tunnel, &secret, connector, 0);
    let link_keys = |etcd: &etcd::Etcd| -> Option<Vec<String>> {
        let keys = etcd.keys(&format!("{prefix}links/"))?;
        Some(keys.into_iter().filter(|k| k.contains(&id_a)).collect())
    };
    wait(DEADLINE, "node A's link key never appeared", || {
        (link_keys(&etcd)?.len() == 1).then_some(())
    });

    a.signal(Signal::Stop);
    // Its lease runs out while it is stopped (the other node sees it gone).
    wait(DEADLINE, "a stopped node's presence did not expire", || {
        let keys = etcd.keys(&prefix)?;
        (!keys.iter().any(|k| k.contains(&id_a))).then_some(())
    });
    wait(DEADLINE, "node B still shows node A's link", || {
        let (_, body) = b.admin("GET", "/tunnels/web", None);
        (json(&body)["connectors"].as_array().map(Vec::len) == Some(0)).then_some(())
    });
    a.signal(Signal::Cont);

    // Back: its record again, and exactly the links it holds (whatever the link did meanwhile).
    wait(DEADLINE, "node A's record never came back", || {
        let keys = etcd.keys(&format!("{prefix}nodes/"))?;
        keys.iter().any(|k| k.ends_with(&id_a)).then_some(())
    });
    let held = |a: &Node| -> Vec<String> {
        let (_, body) = a.admin("GET", "/tunnels/web", None);
        let v = json(&body);
        let mut out = Vec::new();
        for c in v["connectors"].as_array().into_iter().flatten() {
            for l in c["links"].as_array().into_iter().flatten() {
                if l["node"] == id_a.as_str() {
                    out.push(format!(
                        "{prefix}links/{tunnel}/{id_a}/{}.{}",
                        c["id"].as_str().unwrap_or_default(),
                        l["index"]
                    ));
                }
            }
        }
        out.sort();
        out
    };
    let settled = wait(
        DEADLINE,
        "etcd never held exactly node A's links after SIGCONT",
        || {
            let mut keys = link_keys(&etcd)?;
            keys.sort();
            (keys == held(&a)).then_some(keys)
        },
    );
    // The fake connector's link survives a few seconds' stop: it is put again.
    assert_eq!(
        settled,
        [format!("{prefix}links/{tunnel}/{id_a}/{connector}.0")],
        "the link still held is put again"
    );
    // And node B shows it again, on node A.
    wait(DEADLINE, "node B never showed node A's link again", || {
        let (_, body) = b.admin("GET", "/tunnels/web", None);
        let v = json(&body);
        (v["connectors"][0]["links"][0]["node"] == id_a.as_str()).then_some(())
    });
}
