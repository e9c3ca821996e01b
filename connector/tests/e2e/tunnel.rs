//! The whole request path with real processes: public client → `ringtun-edge` → link →
//! `ringtun tunnel run` replicas → origin. Each test builds its own edge, tunnel and origins
//! with the harness in `test-support/src/e2e.rs` and asserts on responses and `tunnel info`, never on timings.
//!
//! The tunnel as a whole lives here (replicas, TCP routes, restarts, the connector limit, the
//! demo); the HTTP cases one by one are in `e2e/http.rs`.
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use e2e::{
    Connector, Edge, EdgeOptions, Origin, STEP_TIMEOUT, ServedTunnel, Service, TestOrigin, Tunnel,
    free_port, get_when_served, http_get, read_head,
};
use ringtun_core::http::CONNECTOR_ID_HEADER;

#[test]
fn get_through_the_public_listener() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start();
    let site = ServedTunnel::start(
        dir.path(),
        "web",
        &["web.ringtun.test"],
        &Service::Url(origin.url()),
        &[],
    );
    let (public, connector) = (site.public, &site.connector);

    let r = http_get(public, "web.ringtun.test", "/hello?x=1");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = r.text().to_ascii_lowercase();
    assert!(seen.starts_with("get /hello?x=1 http/1.1"), "{seen}");
    assert!(seen.contains("x-forwarded-for: 127.0.0.1"), "{seen}");
    assert!(seen.contains("x-forwarded-proto: http"), "{seen}");
    let id_header = format!(
        "{}: {}",
        CONNECTOR_ID_HEADER.to_ascii_lowercase(),
        connector.id
    );
    assert!(seen.contains(&id_header), "{seen}");

    // No route for the host: a clear 404 from the edge, not the origin.
    let r = http_get(public, "nope.ringtun.test", "/");
    assert_eq!(r.status, 404, "{}", r.text());
}

#[test]
fn two_replicas_both_serve_and_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let tunnel = Tunnel::create(&edge, "web");
    tunnel.route_dns(&edge, "web.ringtun.test");
    let origin = TestOrigin::start();
    let a = Connector::run(&edge, &tunnel, &Service::Url(origin.url()));
    let b = Connector::run(&edge, &tunnel, &Service::Url(origin.url()));
    let info = edge.wait_connectors("web", 2);
    let listed: Vec<&str> = info["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["id"].as_str())
        .collect();
    assert!(
        listed.contains(&a.id.as_str()) && listed.contains(&b.id.as_str()),
        "{info:#}"
    );
    let text = e2e::ok(edge.ringtun(&["tunnel", "info", "web"]));
    assert!(
        text.contains(&a.id) && text.contains(&b.id),
        "tunnel info lists both replicas:\n{text}"
    );

    // Every request names the replica that carried it; both carry some. With two idle replicas
    // the edge's choice is random, so 200 requests all landing on one is a 2^-199 event.
    let public = edge.public_http();
    let (mut by_a, mut by_b) = (0, 0);
    for i in 0..200 {
        let r = get_when_served(public, "web.ringtun.test", &format!("/{i}"));
        assert_eq!(r.status, 200, "{}", r.text());
        let seen = r.text();
        if seen.contains(&a.id) {
            by_a += 1;
        } else if seen.contains(&b.id) {
            by_b += 1;
        } else {
            panic!("no known connector ID in what the origin saw:\n{seen}");
        }
    }
    assert!(by_a > 0 && by_b > 0, "replica a: {by_a}, replica b: {by_b}");
}

#[test]
fn websocket_upgrade_echoes_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start();
    let site = ServedTunnel::start(
        dir.path(),
        "ws",
        &["ws.ringtun.test"],
        &Service::Url(origin.url()),
        &[],
    );
    let public = site.public;
    assert_eq!(http_get(public, "ws.ringtun.test", "/").status, 200);

    let mut s = TcpStream::connect(public).unwrap();
    s.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    s.write_all(
        b"GET /chat HTTP/1.1\r\nHost: ws.ringtun.test\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let head = read_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    for msg in [
        &b"ping"[..],
        &[0x81, 0x05, b'h', b'e', b'l', b'l', b'o'][..],
    ] {
        s.write_all(msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }
}

#[test]
fn tcp_route_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let tunnel = Tunnel::create(&edge, "ssh");
    let port = free_port();
    tunnel.route_tcp(&edge, port);
    let echo = Origin::start_tcp_echo(dir.path());
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!("ingress:\n  - service: tcp://{}\n", echo.tcp.unwrap()),
    )
    .unwrap();
    let _connector = Connector::run(&edge, &tunnel, &Service::Config(config));
    edge.wait_connectors("ssh", 1);

    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut s = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("the TCP route's listener on port {port}: {e}"),
        }
    };
    s.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    let payload: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    let mut writer = s.try_clone().unwrap();
    let sent = payload.clone();
    let w = std::thread::spawn(move || {
        writer.write_all(&sent).unwrap();
        writer.shutdown(std::net::Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    s.read_to_end(&mut back).unwrap();
    w.join().unwrap();
    assert_eq!(back.len(), payload.len());
    assert!(back == payload, "the echo differs from what was sent");
}

#[test]
fn tunnels_and_routes_survive_an_edge_restart() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start();
    let ServedTunnel {
        edge,
        tunnel,
        connector,
        public,
    } = ServedTunnel::start(
        dir.path(),
        "web",
        &["web.ringtun.test"],
        &Service::Url(origin.url()),
        &[],
    );
    assert_eq!(http_get(public, "web.ringtun.test", "/").status, 200);

    let edge = edge.restart();
    assert_eq!(edge.public_http(), public, "restarted on the same address");
    // The registry kept the tunnel and its route; the connector reconnects by itself.
    let info = edge.wait_connectors("web", 1);
    assert_eq!(info["id"], tunnel.id.as_str());
    assert_eq!(info["connectors"][0]["id"], connector.id.as_str());
    let r = get_when_served(public, "web.ringtun.test", "/again");
    assert_eq!(r.status, 200, "{}", r.text());
    // The same route again changes nothing: it is still there.
    let dup = e2e::ok(edge.ringtun(&["tunnel", "route", "dns", "web", "web.ringtun.test"]));
    assert!(
        dup.contains("already routes"),
        "the route survived the restart: {dup}"
    );
}

#[test]
fn the_connector_over_the_limit_exits_with_the_edges_message() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start_with(
        dir.path(),
        EdgeOptions {
            connector_limit: Some(1),
            ..EdgeOptions::default()
        },
    );
    let tunnel = Tunnel::create(&edge, "web");
    let origin = TestOrigin::start();
    let _first = Connector::run(&edge, &tunnel, &Service::Url(origin.url()));
    edge.wait_connectors("web", 1);
    let out = edge
        .ringtun_cmd(&["tunnel", "run", "web", "--url", &origin.url()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_ascii_lowercase();
    assert!(err.contains("limit"), "{err}");
    edge.wait_connectors("web", 1);
}

#[test]
fn the_demo_runs_and_leaves_nothing_behind() {
    // Make sure the sibling binaries exist so the demo does not build them.
    let bins = e2e::binaries();
    let out = Command::new(&bins.ringtun)
        .args(["demo", "--duration", "2s", "--connections", "4"])
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("CONNECTOR ID"),
        "tunnel info table:\n{stdout}"
    );
    let dir = stdout
        .lines()
        .find_map(|l| {
            l.split_once("state of every process): ")
                .map(|(_, d)| d.trim())
        })
        .unwrap();
    assert!(
        !std::path::Path::new(dir).exists(),
        "the demo removes its directory"
    );
}

/// `tunnel create` stores the edge CA in the credentials file and `tunnel run` serves with it; a
/// credentials file without `EdgeCA` is refused at start with a message that says how to fix it
/// (the edge's `/discovery` would offer its CA without a token: it is not asked for it); and
/// `--cacert` with the edge's `ca.pem` serves again.
#[test]
fn run_trusts_only_the_ca_from_create_or_cacert() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let public = edge.public_http();
    let tunnel = Tunnel::create(&edge, "ca");
    let host = "ca.ringtun.test";
    tunnel.route_dns(&edge, host);
    let origin = TestOrigin::start();
    let service = Service::Url(origin.url());

    let creds = edge
        .home()
        .join(".ringtun")
        .join(format!("{}.json", tunnel.id));
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    let ca = json["EdgeCA"].as_str().unwrap_or_default().to_owned();
    assert!(ca.contains("BEGIN CERTIFICATE"), "{json}");
    {
        let c = Connector::run(&edge, &tunnel, &service);
        c.wait_links(1);
        let r = get_when_served(public, host, "/");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    edge.wait_connectors("ca", 0);

    json.as_object_mut().unwrap().remove("EdgeCA");
    std::fs::write(&creds, json.to_string()).unwrap();
    let mut c = Connector::run(&edge, &tunnel, &service);
    let deadline = Instant::now() + STEP_TIMEOUT;
    let status = loop {
        if let Some(st) = c.proc.try_wait() {
            break st;
        }
        assert!(
            Instant::now() < deadline,
            "a run without a CA kept going: {}",
            c.proc.tail(20)
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    // The child has exited, but its last lines may still be on their way through the reader
    // thread: wait until its output is closed (no line is asked for, so this ends at EOF).
    let _ = c.proc.wait_line(STEP_TIMEOUT, None, |_| None::<()>);
    let log = c.proc.lines().join("\n");
    assert_eq!(status.code(), Some(1), "{log}");
    assert!(log.contains("has no EdgeCA"), "{log}");
    assert!(log.contains("ringtun tunnel create"), "{log}");
    assert!(log.contains("--cacert FILE"), "{log}");
    assert!(!log.contains("link registered"), "{log}");

    let ca_file = dir.path().join("state").join("ca.pem");
    assert_eq!(std::fs::read_to_string(&ca_file).unwrap(), ca);
    let c = Connector::run_args(
        &edge,
        &tunnel,
        &service,
        &["--cacert", &ca_file.to_string_lossy()],
    );
    c.wait_links(1);
    let r = get_when_served(public, host, "/");
    assert_eq!(r.status, 200, "{}", r.text());
}
