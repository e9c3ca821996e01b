//! Several `ringtun-edge` processes sharing their registry in real etcd members (`--etcd`):
//! what one node writes, the others show; a route is taken once across nodes; with etcd gone the
//! data plane keeps serving and admin writes answer 503 promptly; with three members, losing
//! the leader keeps writes working.
use ringtun_test_support::etcd;

use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use ringtun_test_support::cluster::{ClusterNode as Node, unique_prefix};
use ringtun_test_support::edge::json;
use ringtun_test_support::fake_connector::{Client, FakeConnector};
use uuid::Uuid;

/// Generous: the machine may be busy.
const DEADLINE: Duration = Duration::from_secs(60);

const BIN: &str = env!("CARGO_BIN_EXE_ringtun-edge");

fn start(dir: &Path, name: &str, endpoints: &str, prefix: &str, extra: &[&str]) -> Node {
    Node::start(BIN, dir, name, endpoints, prefix, extra)
}

#[test]
fn a_tunnel_and_route_made_on_one_node_are_seen_on_another() {
    let etcd = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = unique_prefix();
    let a = start(dir.path(), "a", &etcd.endpoints(), &prefix, &[]);
    let b = start(dir.path(), "b", &etcd.endpoints(), &prefix, &[]);
    let (status, body) = a.admin("POST", "/tunnels", Some(r#"{"name":"web"}"#));
    assert_eq!(status, 201, "{body}");
    let id = json(&body)["id"].as_str().expect("id").to_owned();
    let seen = json(&b.wait_for("/tunnels/web", "web"));
    assert_eq!(seen["id"].as_str(), Some(id.as_str()));
    let (status, body) = a.admin(
        "POST",
        "/routes/dns",
        Some(r#"{"tunnel":"web","hostname":"web.example.com"}"#),
    );
    assert_eq!(status, 201, "{body}");
    b.wait_for("/routes", "web.example.com");
    // And back: B deletes the route, A stops showing it.
    let (status, body) = b.admin("DELETE", "/routes/dns/web.example.com", None);
    assert_eq!(status, 200, "{body}");
    let deadline = Instant::now() + DEADLINE;
    while a
        .admin("GET", "/routes", None)
        .1
        .contains("web.example.com")
    {
        assert!(
            Instant::now() < deadline,
            "node A still shows the deleted route"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn two_nodes_creating_one_route_at_once_exactly_one_gets_201_the_other_409() {
    let etcd = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = unique_prefix();
    let a = start(dir.path(), "a", &etcd.endpoints(), &prefix, &[]);
    let b = start(dir.path(), "b", &etcd.endpoints(), &prefix, &[]);
    for (node, name) in [(&a, "one"), (&b, "two")] {
        let (status, body) =
            node.admin("POST", "/tunnels", Some(&format!(r#"{{"name":"{name}"}}"#)));
        assert_eq!(status, 201, "{body}");
    }
    a.wait_for("/tunnels", "two");
    b.wait_for("/tunnels", "one");
    // Several rounds, each with a fresh hostname, so the race really happens at least once.
    for round in 0..5 {
        let host = format!("race{round}.example.com");
        let barrier = Barrier::new(2);
        let statuses: Vec<(u16, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = [(&a, "one"), (&b, "two")]
                .into_iter()
                .map(|(node, tunnel)| {
                    let barrier = &barrier;
                    let body = format!(r#"{{"tunnel":"{tunnel}","hostname":"{host}"}}"#);
                    s.spawn(move || {
                        barrier.wait();
                        node.admin("POST", "/routes/dns", Some(&body))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("thread"))
                .collect()
        });
        let mut codes: Vec<u16> = statuses.iter().map(|(s, _)| *s).collect();
        codes.sort_unstable();
        assert_eq!(codes, [201, 409], "round {round}: {statuses:?}");
        // Both nodes agree on the winner.
        let winner = if statuses[0].0 == 201 { "one" } else { "two" };
        for node in [&a, &b] {
            let routes = json(&node.wait_for("/routes", &host));
            let route = routes["dns"]
                .as_array()
                .expect("dns")
                .iter()
                .find(|r| r["hostname"] == host.as_str())
                .cloned()
                .expect("route");
            assert_eq!(route["tunnel_name"], winner);
        }
    }
}

#[test]
fn etcd_down_admin_writes_503_data_plane_keeps_serving_and_writes_resume() {
    let mut etcd = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "a", &etcd.endpoints(), &unique_prefix(), &[]);
    let (tunnel, secret) = node.create_tunnel("web");
    let (status, body) = node.admin(
        "POST",
        "/routes/dns",
        Some(r#"{"tunnel":"web","hostname":"app.example.com"}"#),
    );
    assert_eq!(status, 201, "{body}");
    let connector = node.link("c", tunnel, &secret, Uuid::new_v4(), 0);
    let get = || Client::connect(node.0.public).get("app.example.com", "/hello");
    assert_eq!(get().status, 200);

    etcd.kill_all();
    let started = Instant::now();
    let (status, body) = node.admin("POST", "/tunnels", Some(r#"{"name":"other"}"#));
    let took = started.elapsed();
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("retry later"), "{body}");
    assert!(
        took < Duration::from_secs(10),
        "a write must not hang: {took:?}"
    );
    let (status, body) = node.admin("GET", "/tunnels/web", None);
    assert_eq!(status, 200, "reads answer from the view: {body}");
    // The data plane of the running tunnel keeps serving, several requests over a while.
    for _ in 0..5 {
        let resp = get();
        assert_eq!(resp.status, 200, "{}", resp.text());
        std::thread::sleep(Duration::from_millis(300));
    }

    etcd.restart_all();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (status, body) = node.admin("POST", "/tunnels", Some(r#"{"name":"other"}"#));
        if status == 201 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "writes did not resume: {body}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(get().status, 200);
    connector.stop();
}

#[test]
fn with_three_members_killing_the_leader_keeps_writes_working() {
    let mut etcd = etcd::Etcd::start(3);
    let dir = tempfile::tempdir().expect("temp dir");
    let node = start(dir.path(), "a", &etcd.endpoints(), &unique_prefix(), &[]);
    let (status, body) = node.admin("POST", "/tunnels", Some(r#"{"name":"before"}"#));
    assert_eq!(status, 201, "{body}");
    let leader = etcd.leader().expect("a leader");
    etcd.kill(leader);
    // The first write may meet the election (503, retryable); once a new leader is there,
    // every write succeeds. A 503 only says etcd did not answer in time: the write may still
    // have been committed (the new leader took it just after the node stopped waiting), and
    // then the retry finds the name taken. That counts only after a 503, and only when the
    // tunnel is there.
    let deadline = Instant::now() + DEADLINE;
    let mut unanswered = false;
    loop {
        let (status, body) = node.admin("POST", "/tunnels", Some(r#"{"name":"after"}"#));
        if status == 201 {
            break;
        }
        if status == 409 && unanswered {
            node.wait_for("/tunnels", "\"after\"");
            break;
        }
        assert_eq!(status, 503, "{body}");
        unanswered = true;
        assert!(
            Instant::now() < deadline,
            "writes did not resume after the leader died: {body}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for i in 0..5 {
        let (status, body) = node.admin("POST", "/tunnels", Some(&format!(r#"{{"name":"t{i}"}}"#)));
        assert_eq!(status, 201, "{body}");
    }
    node.wait_for("/tunnels", "t4");
}

/// A tunnel on `node` and a fake connector's link to it; returns the connector (keep it).
fn link_a_connector(node: &Node, tunnel_name: &str) -> (Uuid, FakeConnector) {
    let (tunnel, secret) = node.create_tunnel(tunnel_name);
    let connector = node.link("c", tunnel, &secret, Uuid::new_v4(), 0);
    (tunnel, connector)
}

/// Waits until the keys under `prefix` satisfy `done`; returns them.
fn wait_keys(
    etcd: &etcd::Etcd,
    prefix: &str,
    what: &str,
    done: impl Fn(&[String]) -> bool,
) -> Vec<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(keys) = etcd.keys(prefix)
            && done(&keys)
        {
            return keys;
        }
        assert!(Instant::now() < deadline, "{what}: {:?}", etcd.keys(prefix));
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_killed_nodes_presence_vanishes_within_its_lease_ttl() {
    const TTL: Duration = Duration::from_secs(4);
    let etcd = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = unique_prefix();
    let ttl = TTL.as_secs().to_string();
    let extra = ["--etcd-lease-ttl", ttl.as_str()];
    let mut a = start(dir.path(), "a", &etcd.endpoints(), &prefix, &extra);
    let b = start(dir.path(), "b", &etcd.endpoints(), &prefix, &extra);
    let (tunnel, connector) = link_a_connector(&a, "web");
    let links = format!("{prefix}links/{tunnel}/");
    let nodes = format!("{prefix}nodes/");
    let held = wait_keys(
        &etcd,
        &links,
        "the link's presence key never appeared",
        |k| k.len() == 1,
    );
    wait_keys(&etcd, &nodes, "both nodes' records never appeared", |k| {
        k.len() == 2
    });
    // The link key names node A: links/{tunnel}/{node}/{connector}.0
    let node_a = held[0][links.len()..]
        .split('/')
        .next()
        .expect("node")
        .to_owned();
    assert!(held[0].ends_with(".0"), "{held:?}");

    // Stay longer than a TTL: renewals keep the keys.
    std::thread::sleep(TTL + Duration::from_secs(1));
    assert_eq!(
        etcd.keys(&links).map(|k| k.len()),
        Some(1),
        "renewed presence must stay"
    );

    // kill -9: no goodbye; the lease expires.
    a.0.child.kill().expect("kill");
    let killed = Instant::now();
    let _ = a.0.child.wait();
    let deadline = TTL + Duration::from_secs(1);
    loop {
        let keys = etcd.keys(&prefix).unwrap_or_default();
        let left: Vec<&String> = keys.iter().filter(|k| k.contains(&node_a)).collect();
        if left.is_empty() {
            break;
        }
        assert!(
            killed.elapsed() <= deadline,
            "node A's keys outlived its lease TTL + 1 s: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Node B is still there.
    assert_eq!(etcd.keys(&nodes).map(|k| k.len()), Some(1));
    drop(connector);
    drop(b);
}
