//! The end-to-end harness against what runs today: the edge starts on port-0 listeners and logs
//! parseable addresses, tunnels and routes are made through the CLI, the test origin answers, and
//! a stopped process is gone. The full request path is in `e2e/tunnel.rs`.
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use e2e::{Edge, Origin, Tunnel, http_get, send_raw};

#[test]
fn edge_starts_on_port_zero_and_serves_discovery() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    assert!(edge.admin.ip().is_loopback());
    assert_ne!(edge.admin.port(), 0, "the log names the bound port");
    assert!(!edge.token.is_empty());
    // The contract says discovery needs no token; sending it keeps this test independent of that.
    let auth = format!("Bearer {}", edge.token);
    let r = e2e::http_get_with(
        edge.admin,
        "edge",
        "/discovery",
        &[("Authorization", &auth)],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let names: Vec<&str> = json["data_centers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|dc| dc["name"].as_str())
        .collect();
    assert_eq!(names, ["dfw", "mci"], "{json}");
}

#[test]
fn edge_logs_every_listener() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    assert_ne!(edge.public_http().port(), 0);
    let servers = edge.servers();
    assert_eq!(servers.len(), 4, "{servers:?}");
    assert!(servers.iter().all(|(_, a)| a.port() != 0), "{servers:?}");
    assert_eq!(servers.iter().filter(|(dc, _)| dc == "dfw").count(), 2);
}

#[test]
fn tunnel_and_routes_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let tunnel = Tunnel::create(&edge, "web");
    assert_eq!(tunnel.id.len(), 36, "{}", tunnel.id);
    assert!(
        edge.home()
            .join(".ringtun")
            .join(format!("{}.json", tunnel.id))
            .is_file()
    );
    tunnel.route_dns(&edge, "web.ringtun.test");
    tunnel.route_tcp(&edge, e2e::free_port());
    let info = edge.wait_connectors("web", 0);
    assert_eq!(info["id"], tunnel.id.as_str());
    assert_eq!(info["connectors"], serde_json::json!([]));
}

#[test]
fn test_origin_answers_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let mut origin = Origin::start(dir.path(), false);
    let addr = origin.http.unwrap();
    let r = http_get(addr, "origin.test", "/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(!r.body.is_empty());
    let echo = Origin::start(dir.path(), true);
    let raw = send_raw(
        echo.http.unwrap(),
        b"POST /x HTTP/1.1\r\nHost: o\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
    );
    let r = e2e::parse_response(&raw).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    // A stopped process is gone (its port may be reused at once by a parallel test, so the
    // process status is what is checked).
    let status = origin.proc.stop(ringtun_connector::process::STOP_GRACE);
    assert!(status.is_some(), "the origin was reaped");
    assert!(origin.proc.try_wait().is_some());
}
