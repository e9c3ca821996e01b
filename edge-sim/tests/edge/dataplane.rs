//! The data plane over real loopback sockets: fake connectors (TLS and plaintext links)
//! register with an in-process edge, and public HTTP and TCP go through them.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use ringtun_core::handshake::{HandshakeError, RejectCode};
use ringtun_edge_sim::settings::Overrides;
use ringtun_test_support::edge::{self, HOST, TunnelEdge, wait_until};
use ringtun_test_support::fake_connector::{Client, FakeConnector, FakeOpts};

const WAIT: Duration = Duration::from_secs(10);

fn start(dir: &Path, plaintext: bool, limit: usize) -> TunnelEdge {
    start_with(dir, plaintext, limit, 2)
}

fn start_with(dir: &Path, plaintext: bool, limit: usize, workers: usize) -> TunnelEdge {
    TunnelEdge::start(Overrides {
        data_centers: vec![
            "dfw=127.0.1.1:0,127.0.1.2:0".into(),
            "mci=127.0.2.1:0".into(),
        ],
        connector_limit: Some(limit),
        // Two workers: a link and a public connection often land on different ones.
        workers: Some(workers),
        danger_plaintext_links: plaintext,
        ..edge::overrides(dir)
    })
}

fn http_round_trips(plaintext: bool) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = start(tmp.path(), plaintext, 100);
    let (edge, t) = (&site.edge, site.tunnel);
    let public = edge.public_http_addr();

    // Routed, but nobody connected: 503. Unknown host: 404.
    let mut c = Client::connect(public);
    let r = c.get(HOST, "/");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(
        r.text().contains("tunnel has no live connector"),
        "{}",
        r.text()
    );
    let r = c.get("nope.example.com", "/");
    assert_eq!(r.status, 404);
    assert!(
        r.text()
            .contains("no tunnel route for host nope.example.com"),
        "{}",
        r.text()
    );

    let conn = FakeConnector::start(site.link("a", 0));
    let acc = conn.registered.as_ref().expect("registered");
    assert_eq!(acc.data_center, "dfw");
    let connectors = edge.registry().connectors(t);
    assert_eq!(connectors.len(), 1);
    assert_eq!(connectors[0].links[0].data_center, "dfw");
    assert_eq!(connectors[0].links[0].server, edge.servers()[0].addr);
    assert!(connectors[0].origin_ip.is_loopback());

    // Keep-alive: several requests on one connection, and on fresh ones (either worker).
    let mut c = Client::connect(public);
    for _ in 0..5 {
        let r = c.get(HOST, "/hello");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "hello from a");
        assert_eq!(r.header("x-seen-xff"), Some("127.0.0.1"));
        assert_eq!(r.header("x-seen-proto"), Some("http"));
        assert_eq!(r.header("x-seen-connection"), Some("no"));
    }
    for _ in 0..6 {
        let r = Client::connect(public).get(HOST, "/fresh");
        assert_eq!(r.status, 200, "{}", r.text());
    }

    // A chunked request body arrives intact and comes back chunked.
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut raw = format!(
        "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n"
    )
    .into_bytes();
    for piece in payload.chunks(30_000) {
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    c.send(&raw);
    let r = c.read("POST");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("x-seen-body-framing"), Some("Chunked"));
    assert_eq!(r.body, payload);

    // A large Content-Length body streams through (link flow control, not one buffer).
    let large: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 241) as u8).collect();
    c.send(
        format!(
            "POST /large HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n\r\n",
            large.len()
        )
        .as_bytes(),
    );
    c.send(&large);
    let r = c.read("POST");
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("x-seen-body-framing"),
        Some(&*format!("Length({})", large.len()))
    );
    assert!(r.body == large, "large body differs");

    // Content-Length body with Expect: 100-continue.
    c.send(
        format!(
            "PUT /x HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        .as_bytes(),
    );
    let cont = c.read("PUT");
    assert_eq!(cont.status, 100);
    c.send(b"abcde");
    let r = c.read("PUT");
    assert_eq!(r.status, 200);
    assert_eq!(r.text(), "abcde");

    // HEAD: a head, no body; the connection stays usable.
    c.send(format!("HEAD / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes());
    let r = c.read("HEAD");
    assert_eq!(r.status, 200);
    let r = c.get(HOST, "/after-head");
    assert_eq!(r.text(), "hello from a");

    // Smuggling shape: 400. Oversized head: 431.
    let mut bad = Client::connect(public);
    bad.send(
        format!("POST / HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            .as_bytes(),
    );
    assert_eq!(bad.read("POST").status, 400);
    let mut big = Client::connect(public);
    let filler = "a".repeat(70 * 1024);
    big.send(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nX-Big: {filler}\r\n\r\n").as_bytes());
    assert_eq!(big.read("GET").status, 431);

    // Errors the connector reports become 502 / 504 with what failed.
    let r = c.get(HOST, "/refused");
    assert_eq!(r.status, 502);
    assert!(
        r.text()
            .contains("origin refused the connection (127.0.0.1:9)"),
        "{}",
        r.text()
    );
    let r = c.get(HOST, "/timeout");
    assert_eq!(r.status, 504);
    assert!(r.text().contains("origin timed out"), "{}", r.text());

    // WebSocket: 101, then raw bytes both ways until the client half-closes.
    let mut ws = Client::connect(public);
    ws.send(
        format!("GET /ws HTTP/1.1\r\nHost: {HOST}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
            .as_bytes(),
    );
    let r = ws.read("GET");
    assert_eq!(r.status, 101);
    assert_eq!(r.header("upgrade"), Some("websocket"));
    ws.send(b"frame one");
    assert_eq!(ws.read_exact(9), b"frame one");
    ws.send(b"frame two");
    assert_eq!(ws.read_exact(9), b"frame two");
    ws.half_close();
    assert!(ws.read_to_end().is_empty());

    // The link closes: the connector is unregistered and the tunnel answers 503 again.
    conn.stop();
    wait_until("the connector to be unregistered", WAIT, || {
        edge.registry().connectors(t).is_empty()
    });
    let r = Client::connect(public).get(HOST, "/");
    assert_eq!(r.status, 503);
    let metrics = edge.registry().metrics().encode();
    assert!(
        metrics.contains("ringtun_edge_public_requests_total"),
        "{metrics}"
    );
    site.edge.stop();
}

#[test]
fn http_through_tls_links() {
    http_round_trips(false);
}

#[test]
fn http_through_plaintext_links() {
    http_round_trips(true);
}

#[test]
fn wrong_secret_and_connector_limit_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = start(tmp.path(), false, 1);
    let (edge, t) = (&site.edge, site.tunnel);

    let wrong = FakeConnector::start(FakeOpts {
        secret: b"not the secret".to_vec(),
        ..site.link("w", 0)
    });
    match &wrong.registered {
        Err(HandshakeError::Rejected(r)) => assert_eq!(r.code, RejectCode::BadSecret),
        other => panic!("expected a bad-secret refusal, got {other:?}"),
    }
    wrong.stop();
    assert!(edge.registry().connectors(t).is_empty());

    let first = FakeConnector::start(site.link("a", 0));
    assert!(first.registered.is_ok(), "{:?}", first.registered);
    let second = FakeConnector::start(site.link("b", 0));
    match &second.registered {
        Err(HandshakeError::Rejected(r)) => {
            assert_eq!(r.code, RejectCode::ConnectorLimit);
            assert_eq!(
                r.message,
                "tunnel web has reached its limit of 1 connectors"
            );
        }
        other => panic!("expected a connector-limit refusal, got {other:?}"),
    }
    second.stop();
    assert_eq!(edge.registry().connectors(t).len(), 1);
    first.stop();
    site.edge.stop();
}

#[test]
fn two_replicas_both_serve_under_p2c() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = start(tmp.path(), true, 100);
    let (edge, t) = (&site.edge, site.tunnel);
    let a = FakeConnector::start(site.link("a", 0));
    let b = FakeConnector::start(site.link("b", 2));
    assert!(a.registered.is_ok() && b.registered.is_ok());
    assert_eq!(edge.registry().connectors(t).len(), 2);
    let mut seen = HashSet::new();
    for _ in 0..60 {
        let r = Client::connect(edge.public_http_addr()).get(HOST, "/");
        assert_eq!(r.status, 200, "{}", r.text());
        seen.insert(r.header("x-replica").unwrap_or_default().to_owned());
    }
    assert_eq!(seen, HashSet::from(["a".to_owned(), "b".to_owned()]));
    a.stop();
    b.stop();
    site.edge.stop();
}

#[test]
fn tcp_route_round_trip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = start(tmp.path(), false, 100);
    let edge = &site.edge;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("probe");
        l.local_addr().expect("addr").port()
    };
    edge.registry().route_tcp("web", port).expect("tcp route");
    let conn = FakeConnector::start(site.link("a", 0));
    assert!(conn.registered.is_ok());
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = None;
    wait_until("the TCP route listener", WAIT, || {
        s = TcpStream::connect(addr).ok();
        s.is_some()
    });
    let mut s = s.expect("connected");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(b"ping over the tunnel").expect("write");
    s.shutdown(std::net::Shutdown::Write).expect("half-close");
    let mut back = Vec::new();
    s.read_to_end(&mut back).expect("read");
    assert_eq!(back, b"ping over the tunnel");
    conn.stop();
    site.edge.stop();
}

#[test]
fn refused_requests_move_to_another_replica() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // One worker: both links are local, so the retry path is what is measured.
    let site = start_with(tmp.path(), true, 100, 1);
    let edge = &site.edge;
    let bad = FakeConnector::start(FakeOpts {
        refuse: true,
        ..site.link("refuser", 0)
    });
    let good = FakeConnector::start(site.link("good", 0));
    assert!(bad.registered.is_ok() && good.registered.is_ok());
    let mut c = Client::connect(edge.public_http_addr());
    for _ in 0..30 {
        let r = c.get(HOST, "/");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.header("x-replica"), Some("good"));
    }
    bad.stop();
    good.stop();
    site.edge.stop();
}

#[test]
fn connections_without_a_local_link_are_handed_off() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let site = start_with(tmp.path(), true, 100, 2);
    let edge = &site.edge;
    let conn = FakeConnector::start(site.link("a", 0));
    assert!(conn.registered.is_ok());
    // One link on one of two workers; fresh connections spread over both by SO_REUSEPORT.
    for _ in 0..40 {
        let mut c = Client::connect(edge.public_http_addr());
        let r = c.get(HOST, "/");
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "hello from a");
        // Keep-alive continues on the worker the connection was handed to.
        assert_eq!(c.get(HOST, "/again").status, 200);
    }
    let metrics = edge.registry().metrics().encode();
    let handoffs: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ringtun_edge_handoffs_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the hand-off counter");
    assert!(handoffs > 0, "{metrics}");
    conn.stop();
    site.edge.stop();
}
