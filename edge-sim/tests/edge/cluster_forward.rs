//! Forwarding between edge nodes over peer links, with real processes: one etcd member, three
//! `ringtun-edge` nodes, fake connectors linked to some of them. A request that arrives on a
//! node without a link of its tunnel is forwarded to a node that has one and answered; a
//! forwarded request is never forwarded again; a node that is down is skipped for the next
//! one, and with none left the answer is a 502 that names them.

use ringtun_test_support::etcd;

use std::path::Path;
use std::time::{Duration, Instant};

use ringtun_test_support::cluster::{ClusterNode as Node, unique_prefix};
use ringtun_test_support::fake_connector::{Client, Response};
use uuid::Uuid;

/// Generous: the machine may be busy.
const DEADLINE: Duration = Duration::from_secs(60);
const HOST: &str = "web.example.com";

const BIN: &str = env!("CARGO_BIN_EXE_ringtun-edge");

/// A node with one worker.
fn start(dir: &Path, name: &str, endpoints: &str, prefix: &str) -> Node {
    start_args(dir, name, endpoints, prefix, &[])
}

/// A node with `more` flags. Presence outlives a killed node for a while (a 60 s lease): the
/// forwarding node must cope. Its breaker opens after 2 failures and stays open.
fn start_args(dir: &Path, name: &str, endpoints: &str, prefix: &str, more: &[&str]) -> Node {
    let mut args = vec![
        "--etcd-lease-ttl",
        "60",
        "--peer-breaker-failures",
        "2",
        "--peer-breaker-cooldown-ms",
        "600000",
    ];
    args.extend_from_slice(more);
    Node::start(BIN, dir, name, endpoints, prefix, &args)
}

/// A node's public side as these tests use it.
trait Public {
    /// One GET for the tunnel's host on a fresh connection.
    fn get(&self, path: &str) -> Response;
    /// Waits until a GET answers 200 (the node sees the route and a node with a link).
    fn wait_served(&self) -> Response;
}

impl Public for Node {
    fn get(&self, path: &str) -> Response {
        Client::connect(self.0.public).get(HOST, path)
    }

    fn wait_served(&self) -> Response {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let r = self.get("/");
            if r.status == 200 {
                return r;
            }
            assert!(
                Instant::now() < deadline,
                "never answered 200: {} {}",
                r.status,
                r.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// One GET for [`HOST`] over h2c with prior knowledge: status and body.
fn h2_get(addr: std::net::SocketAddr) -> (u16, Vec<u8>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
        tokio::spawn(conn);
        let req = http::Request::builder()
            .uri(format!("http://{HOST}/"))
            .body(())
            .expect("request");
        let (resp, _) = client.send_request(req, true).expect("send request");
        let resp = resp.await.expect("response");
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut got = Vec::new();
        while let Some(d) = body.data().await {
            let d = d.expect("response data");
            let _ = body.flow_control().release_capacity(d.len());
            got.extend_from_slice(&d);
        }
        (status, got)
    })
}

/// The tunnel `web` routed at [`HOST`], made through `node`; returns its ID and secret.
fn tunnel(node: &Node) -> (Uuid, Vec<u8>) {
    let (id, secret) = node.create_tunnel("web");
    let (status, body) = node.admin(
        "POST",
        "/routes/dns",
        Some(&format!(r#"{{"tunnel":"web","hostname":"{HOST}"}}"#)),
    );
    assert_eq!(status, 201, "{body}");
    (id, secret)
}

#[test]
fn requests_to_nodes_without_a_link_are_forwarded_to_the_node_that_has_one() {
    let etcd = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = unique_prefix();
    let nodes: Vec<Node> = ["n1", "n2", "n3"]
        .into_iter()
        .map(|n| start(dir.path(), n, &etcd.endpoints(), &prefix))
        .collect();
    let (id, secret) = tunnel(&nodes[0]);
    let _c = nodes[0].link("c1", id, &secret, Uuid::new_v4(), 0);

    // Node 1 serves its own link; nodes 2 and 3 forward to it.
    for node in &nodes {
        let r = node.wait_served();
        assert_eq!(r.text(), "hello from c1");
    }
    for node in &nodes[1..] {
        for _ in 0..5 {
            let r = node.get("/");
            assert_eq!((r.status, r.text()), (200, "hello from c1".to_owned()));
        }
        // A body both ways through the peer link (echoed back in pieces).
        let mut c = Client::connect(node.0.public);
        let body = "x".repeat(100_000);
        c.send(
            format!(
                "POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let r = c.read("POST");
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len(), body.len());
        // HTTP/2 (h2c) goes the same way.
        let (status, body) = h2_get(node.0.public);
        assert_eq!(
            (status, body.as_slice()),
            (200, b"hello from c1".as_slice())
        );
        assert!(node.metric("ringtun_edge_peer_forwarded_total ") >= 7.0);
        assert_eq!(
            node.metric("ringtun_edge_peer_streams_total{reason=\"served\"} "),
            0.0
        );
    }
    // Node 1 served every forwarded one from its own link and forwarded nothing itself.
    assert!(nodes[0].metric("ringtun_edge_peer_streams_total{reason=\"served\"} ") >= 14.0);
    assert_eq!(nodes[0].metric("ringtun_edge_peer_forwarded_total "), 0.0);

    // Something that is not a node of the cluster (no certificate of the cluster CA) is
    // refused at the TLS handshake, and counted.
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(nodes[0].peer_addr()).expect("connect");
    s.set_read_timeout(Some(DEADLINE)).expect("timeout");
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    let deadline = Instant::now() + DEADLINE;
    while nodes[0].metric("ringtun_edge_peer_rejected_total{reason=\"tls\"} ") < 1.0 {
        assert!(
            Instant::now() < deadline,
            "the peer listener never counted the refusal"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_forwarded_stream_reaches_the_link_on_whichever_worker_of_the_node_holds_it() {
    // Node 1 runs 8 workers and its one link of the tunnel sits on one of them; the peer
    // links of nodes 2 and 3 land on whichever worker accepted them. A forwarded stream that
    // arrives on a worker without the link is carried by the worker with it.
    let etcd = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = unique_prefix();
    let nodes = [
        start_args(
            dir.path(),
            "n1",
            &etcd.endpoints(),
            &prefix,
            &["--workers", "8"],
        ),
        start(dir.path(), "n2", &etcd.endpoints(), &prefix),
        start(dir.path(), "n3", &etcd.endpoints(), &prefix),
    ];
    let (id, secret) = tunnel(&nodes[0]);
    let _c = nodes[0].link("c1", id, &secret, Uuid::new_v4(), 0);
    nodes[0].wait_served();
    for node in &nodes[1..] {
        // The first answer may wait for the route and presence to reach this node.
        node.wait_served();
        for _ in 0..10 {
            let r = node.get("/");
            assert_eq!((r.status, r.text()), (200, "hello from c1".to_owned()));
        }
        let mut c = Client::connect(node.0.public);
        let body = "y".repeat(300_000);
        c.send(
            format!(
                "POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        );
        let r = c.read("POST");
        assert_eq!(r.status, 200);
        assert_eq!(r.body, body.as_bytes());
    }
    for reason in ["no_link", "refused"] {
        assert_eq!(
            nodes[0].metric(&format!(
                "ringtun_edge_peer_streams_total{{reason=\"{reason}\"}} "
            )),
            0.0,
            "node 1 refused a forwarded stream ({reason})"
        );
    }
    assert!(nodes[0].metric("ringtun_edge_peer_streams_total{reason=\"served\"} ") >= 22.0);
}

#[test]
fn a_forwarded_request_is_never_forwarded_again() {
    let etcd = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = unique_prefix();
    let nodes: Vec<Node> = ["n1", "n2", "n3"]
        .into_iter()
        .map(|n| start(dir.path(), n, &etcd.endpoints(), &prefix))
        .collect();
    let (id, secret) = tunnel(&nodes[0]);
    let _c = nodes[0].link("c1", id, &secret, Uuid::new_v4(), 0);
    nodes[2].wait_served();
    // Node 2 now claims a link of the tunnel it does not hold (stale presence). Node 3 picks
    // it about half of the time; node 2 must refuse rather than pass the stream on to node 1,
    // and node 3 then tries node 1.
    let key = format!("{prefix}links/{id}/{}/stale.0", nodes[1].id());
    assert!(etcd.put(&key, r#"{"data_center":"dfw","server":"127.0.1.1:1"}"#));
    let deadline = Instant::now() + DEADLINE;
    let mut sent = 0;
    while nodes[1].metric("ringtun_edge_peer_streams_total{reason=\"no_link\"} ") < 1.0 {
        let r = nodes[2].get("/");
        assert_eq!((r.status, r.text()), (200, "hello from c1".to_owned()));
        sent += 1;
        assert!(
            Instant::now() < deadline,
            "node 3 never tried node 2 in {sent} requests"
        );
    }
    assert_eq!(
        nodes[1].metric("ringtun_edge_peer_forwarded_total "),
        0.0,
        "node 2 forwarded a stream it received from a peer"
    );
    assert_eq!(
        nodes[1].metric("ringtun_edge_peer_streams_total{reason=\"served\"} "),
        0.0
    );
}

#[test]
fn a_node_down_is_skipped_for_the_next_and_with_none_left_the_502_names_them() {
    let etcd = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = unique_prefix();
    let mut nodes: Vec<Node> = ["n1", "n2", "n3"]
        .into_iter()
        .map(|n| start(dir.path(), n, &etcd.endpoints(), &prefix))
        .collect();
    let (id, secret) = tunnel(&nodes[0]);
    let c1 = nodes[0].link("c1", id, &secret, Uuid::new_v4(), 0);
    let c3 = nodes[2].link("c3", id, &secret, Uuid::new_v4(), 0);
    let (id1, id3) = (nodes[0].id(), nodes[2].id());
    // Node 2 knows both: wait until it has been answered by each.
    let deadline = Instant::now() + DEADLINE;
    let mut seen = std::collections::HashSet::new();
    while seen.len() < 2 {
        let r = nodes[1].get("/");
        if r.status == 200 {
            seen.insert(r.text());
        }
        assert!(
            Instant::now() < deadline,
            "node 2 never reached both: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // kill -9 node 1: its presence stays in etcd (lease TTL 60 s), so node 2 still picks it
    // and finds it unreachable; every request goes on to node 3.
    let _ = nodes[0].0.child.kill();
    let _ = nodes[0].0.child.wait();
    drop(c1);
    let deadline = Instant::now() + DEADLINE;
    while nodes[1].metric("ringtun_edge_peer_failures_total{reason=\"connect\"} ") < 1.0 {
        let r = nodes[1].get("/");
        assert_eq!((r.status, r.text()), (200, "hello from c3".to_owned()));
        assert!(Instant::now() < deadline, "node 2 never tried node 1");
    }
    // Two failures in a row open node 1's breaker: it is skipped from then on, not dialed.
    let deadline = Instant::now() + DEADLINE;
    while nodes[1].metric("ringtun_edge_peer_breaker_opened_total ") < 1.0 {
        let r = nodes[1].get("/");
        assert_eq!((r.status, r.text()), (200, "hello from c3".to_owned()));
        assert!(Instant::now() < deadline, "node 1's breaker never opened");
    }
    let failures = nodes[1].metric("ringtun_edge_peer_failures_total{reason=\"connect\"} ");
    for _ in 0..10 {
        let r = nodes[1].get("/");
        assert_eq!((r.status, r.text()), (200, "hello from c3".to_owned()));
    }
    assert_eq!(
        nodes[1].metric("ringtun_edge_peer_failures_total{reason=\"connect\"} "),
        failures,
        "a node whose breaker is open was dialed again"
    );

    // Node 3 down too: nothing left; the 502 names both nodes.
    let _ = nodes[2].0.child.kill();
    let _ = nodes[2].0.child.wait();
    drop(c3);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = nodes[1].get("/");
        if r.status == 502 {
            let text = r.text();
            assert!(text.contains("no edge node"), "{text}");
            assert!(text.contains(&id1) && text.contains(&id3), "{text}");
            break;
        }
        assert_eq!(r.status, 200, "{}", r.text());
        assert!(Instant::now() < deadline, "never a 502 with node 3 down");
    }
    assert!(nodes[1].metric("ringtun_edge_public_errors_total{cause=\"peer\"} ") >= 1.0);
    assert!(nodes[1].metric("ringtun_edge_limit_hits_total{reason=\"peer_breaker_open\"} ") >= 1.0);
}

/// A request whose every candidate node refused it (before any byte reached an origin) waits
/// for the presence view to change instead of answering 502 at once: node 3's only candidate
/// is node 2, which claims a link it does not hold (stale presence) and refuses; the request
/// is answered once the connector's link comes up on node 1 (a link moving between nodes).
#[test]
fn a_request_no_node_could_take_waits_for_a_link_to_appear_elsewhere() {
    let etcd = etcd::Etcd::start(1);
    let dir = tempfile::tempdir().expect("temp dir");
    let prefix = unique_prefix();
    let nodes: Vec<Node> = ["n1", "n2", "n3"]
        .into_iter()
        .map(|n| {
            // A generous wait: the link's presence must reach node 3 however busy the machine.
            start_args(
                dir.path(),
                n,
                &etcd.endpoints(),
                &prefix,
                &["--peer-wait-ms", "30000"],
            )
        })
        .collect();
    let (id, secret) = tunnel(&nodes[0]);
    let c1 = nodes[0].link("c1", id, &secret, Uuid::new_v4(), 0);
    nodes[2].wait_served();
    let key = format!("{prefix}links/{id}/{}/stale.0", nodes[1].id());
    assert!(etcd.put(&key, r#"{"data_center":"dfw","server":"127.0.1.1:1"}"#));
    // The link goes: node 2's claim is all that is left of the tunnel in presence.
    c1.stop();
    let gone = format!("{prefix}links/{id}/{}/", nodes[0].id());
    let deadline = Instant::now() + DEADLINE;
    while !etcd.keys(&gone).unwrap_or_default().is_empty() {
        assert!(Instant::now() < deadline, "node 1's link key never went");
        std::thread::sleep(Duration::from_millis(20));
    }
    let refused = nodes[1].metric("ringtun_edge_peer_streams_total{reason=\"no_link\"} ");
    let public = nodes[2].0.public;
    let request = std::thread::spawn(move || {
        let r = Client::connect(public).get(HOST, "/");
        (r.status, r.text())
    });
    // Node 2 refused it: every candidate failed, the request waits now.
    let deadline = Instant::now() + DEADLINE;
    while nodes[1].metric("ringtun_edge_peer_streams_total{reason=\"no_link\"} ") <= refused {
        assert!(Instant::now() < deadline, "node 3 never tried node 2");
        std::thread::sleep(Duration::from_millis(20));
    }
    let _c2 = nodes[0].link("c2", id, &secret, Uuid::new_v4(), 0);
    let answer = request.join().expect("request thread");
    assert_eq!(answer, (200, "hello from c2".to_owned()));
    assert_eq!(
        nodes[2].metric("ringtun_edge_limit_hits_total{reason=\"peer_wait\"} "),
        0.0
    );
}
