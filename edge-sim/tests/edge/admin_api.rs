//! The admin API over real loopback HTTP, with the edge started in-process on port 0.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use ringtun_edge_sim::Edge;
use ringtun_edge_sim::registry::{ConnectorRegistration, LinkInfo, LinkSlot};
use ringtun_edge_sim::settings::Overrides;
use ringtun_test_support::edge::{self, json, request};
use uuid::Uuid;

/// The default layout (two data centers, two servers each) on port 0.
fn port0_data_centers() -> Vec<String> {
    vec![
        "dfw=127.0.1.1:0,127.0.1.2:0".into(),
        "mci=127.0.2.1:0,127.0.2.2:0".into(),
    ]
}

fn start(dir: &Path) -> Edge {
    edge::start(Overrides {
        data_centers: port0_data_centers(),
        workers: Some(1),
        connector_limit: Some(2),
        ..edge::overrides(dir)
    })
}

#[test]
fn unauthorized_without_or_with_wrong_token() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let edge = start(tmp.path());
    let addr = edge.admin_addr();
    let (status, _) = request(addr, "GET", "/discovery", None, None);
    assert_eq!(status, 200, "discovery needs no token");
    for path in ["/tunnels", "/metrics", "/nope"] {
        let (status, body) = request(addr, "GET", path, None, None);
        assert_eq!(status, 401, "{path}");
        assert_eq!(json(&body)["error"], "missing or wrong bearer token");
        let (status, _) = request(addr, "GET", path, Some("wrong"), None);
        assert_eq!(status, 401, "{path}");
    }
    edge.stop();
}

#[test]
fn tunnel_and_route_flows() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let edge = start(tmp.path());
    let addr = edge.admin_addr();
    let token = edge.state().admin_token().expose().to_owned();
    let t = Some(token.as_str());

    let (status, body) = request(addr, "POST", "/tunnels", t, Some(r#"{"name":"web"}"#));
    assert_eq!(status, 201, "{body}");
    let created = json(&body);
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["name"], "web");
    assert!(created["created"].as_str().expect("created").ends_with('Z'));
    assert_eq!(created["secret"].as_str().expect("secret").len(), 44);

    let (status, body) = request(addr, "POST", "/tunnels", t, Some(r#"{"name":"web"}"#));
    assert_eq!(status, 409, "{body}");
    assert_eq!(json(&body)["error"], "tunnel name web is already taken");
    let (status, _) = request(addr, "POST", "/tunnels", t, Some("{"));
    assert_eq!(status, 400);
    let (status, _) = request(addr, "POST", "/tunnels", t, Some(r#"{"name":"a b"}"#));
    assert_eq!(status, 400);

    let (status, body) = request(
        addr,
        "POST",
        "/routes/dns",
        t,
        Some(r#"{"tunnel":"web","hostname":"App.Example.com"}"#),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(json(&body)["hostname"], "app.example.com");
    let (status, _) = request(
        addr,
        "POST",
        "/routes/dns",
        t,
        Some(r#"{"tunnel":"web","hostname":"app.example.com"}"#),
    );
    // The same route again: nothing changes, and the answer says so.
    assert_eq!(status, 200);
    // The route's port listens once the answer is in: take a free one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let (status, body) = request(
        addr,
        "POST",
        "/routes/tcp",
        t,
        Some(&format!(r#"{{"tunnel":"{id}","port":{port}}}"#)),
    );
    assert_eq!(status, 201, "{body}");
    let (status, _) = request(
        addr,
        "POST",
        "/routes/tcp",
        t,
        Some(r#"{"tunnel":"nope","port":2223}"#),
    );
    assert_eq!(status, 404);
    let (status, body) = request(addr, "GET", "/routes", t, None);
    assert_eq!(status, 200);
    let routes = json(&body);
    assert_eq!(routes["dns"][0]["tunnel_name"], "web");
    assert_eq!(routes["tcp"][0]["port"], port);

    // Two connectors with four links each, as `tunnel run` would register them.
    let tunnel_id = Uuid::parse_str(&id).expect("uuid");
    let registry = edge.registry();
    for _ in 0..2 {
        let connector = Uuid::new_v4();
        for index in 0..4u8 {
            let dc = if index % 2 == 0 { "dfw" } else { "mci" };
            registry
                .register_link(
                    tunnel_id,
                    ConnectorRegistration {
                        connector_id: connector,
                        arch: "linux_amd64".into(),
                        version: "0.1.0".into(),
                        origin_ip: IpAddr::from([127, 0, 0, 1]),
                        label: String::new(),
                        weight: 1,
                        standby: false,
                    },
                    LinkInfo {
                        index,
                        data_center: dc.into(),
                        server: SocketAddr::from(([127, 0, 1, 1], 7844)),
                    },
                    LinkSlot::default(),
                )
                .expect("register");
        }
    }

    let (status, body) = request(addr, "GET", "/tunnels", t, None);
    assert_eq!(status, 200);
    let list = json(&body);
    assert_eq!(list[0]["name"], "web");
    assert_eq!(list[0]["connectors"], 2);
    assert_eq!(list[0]["connections"], "4xdfw, 4xmci");

    let (status, body) = request(addr, "GET", "/tunnels/web", t, None);
    assert_eq!(status, 200);
    let info = json(&body);
    assert_eq!(info["id"], id.as_str());
    let connectors = info["connectors"].as_array().expect("connectors");
    assert_eq!(connectors.len(), 2);
    assert_eq!(connectors[0]["edge"], "2xdfw, 2xmci");
    assert_eq!(connectors[0]["arch"], "linux_amd64");
    assert_eq!(connectors[0]["origin_ip"], "127.0.0.1");
    assert_eq!(connectors[0]["draining"], false);
    assert_eq!(connectors[0]["links"][0]["data_center"], "dfw");

    let (status, body) = request(addr, "GET", &format!("/tunnels/{id}/connectors"), t, None);
    assert_eq!(status, 200);
    assert_eq!(json(&body).as_array().expect("array").len(), 2);

    let (status, body) = request(addr, "DELETE", "/tunnels/web", t, None);
    assert_eq!(status, 409);
    assert!(
        json(&body)["error"]
            .as_str()
            .expect("error")
            .contains("tunnel web has 2 connected connector(s)")
    );

    // Both have live links (as every registered connector has): cleanup keeps them.
    let (status, body) = request(addr, "POST", "/tunnels/web/cleanup", t, None);
    assert_eq!(status, 200);
    assert_eq!(
        json(&body)["kept_connectors"]
            .as_array()
            .expect("kept")
            .len(),
        2
    );
    assert_eq!(json(&body)["removed_connectors"], serde_json::json!([]));
    let (status, body) = request(addr, "DELETE", "/tunnels/web?force=true", t, None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["deleted"], true);
    let (status, _) = request(addr, "GET", "/tunnels/web", t, None);
    assert_eq!(status, 404);
    let (status, _) = request(addr, "PUT", "/tunnels", t, None);
    assert_eq!(status, 405);
    let (status, _) = request(addr, "GET", "/nope", t, None);
    assert_eq!(status, 404);

    let (status, body) = request(addr, "GET", "/metrics", t, None);
    assert_eq!(status, 200);
    assert!(
        body.contains("ringtun_edge_tunnels_created_total 1"),
        "{body}"
    );
    assert!(
        body.contains("ringtun_edge_tunnels_deleted_total 1"),
        "{body}"
    );
    assert!(body.contains("ringtun_edge_admin_requests_total"), "{body}");
    edge.stop();
}

#[test]
fn delete_forced_while_connected() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let edge = start(tmp.path());
    let addr = edge.admin_addr();
    let token = edge.state().admin_token().expose().to_owned();
    let t = Some(token.as_str());
    let (_, body) = request(addr, "POST", "/tunnels", t, Some(r#"{"name":"api"}"#));
    let id = Uuid::parse_str(json(&body)["id"].as_str().expect("id")).expect("uuid");
    edge.registry()
        .register_link(
            id,
            ConnectorRegistration {
                connector_id: Uuid::new_v4(),
                arch: "linux_arm64".into(),
                version: "0.1.0".into(),
                origin_ip: IpAddr::from([127, 0, 0, 9]),
                label: String::new(),
                weight: 1,
                standby: false,
            },
            LinkInfo {
                index: 0,
                data_center: "mci".into(),
                server: SocketAddr::from(([127, 0, 2, 1], 7844)),
            },
            LinkSlot::default(),
        )
        .expect("register");
    let (status, _) = request(addr, "DELETE", "/tunnels/api", t, None);
    assert_eq!(status, 409);
    let (status, _) = request(addr, "DELETE", "/tunnels/api?force=true", t, None);
    assert_eq!(status, 200);
    assert_eq!(edge.registry().connector_count(id), 0);
    edge.stop();
}

#[test]
fn discovery_and_restart_keep_state() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (token, ca) = {
        let edge = start(tmp.path());
        let token = edge.state().admin_token().expose().to_owned();
        let (status, body) = request(edge.admin_addr(), "GET", "/discovery", Some(&token), None);
        assert_eq!(status, 200);
        let d = json(&body);
        assert_eq!(d["data_centers"][0]["name"], "dfw");
        let bound: Vec<SocketAddr> = edge.servers().iter().map(|s| s.addr).collect();
        let s00: SocketAddr = d["data_centers"][0]["servers"][0]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("a bound address");
        assert_eq!(s00.ip(), IpAddr::from([127, 0, 1, 1]));
        assert_ne!(s00.port(), 0);
        assert_eq!(s00, bound[0]);
        let s11: SocketAddr = d["data_centers"][1]["servers"][1]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("a bound address");
        assert_eq!(s11, bound[3]);
        let ca = d["ca_pem"].as_str().expect("ca").to_owned();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"));
        let (status, _) = request(
            edge.admin_addr(),
            "POST",
            "/tunnels",
            Some(&token),
            Some(r#"{"name":"kept"}"#),
        );
        assert_eq!(status, 201);
        edge.stop();
        (token, ca)
    };
    let edge = start(tmp.path());
    assert_eq!(edge.state().admin_token().expose(), token);
    assert_eq!(edge.state().tls().ca_pem, ca);
    let (status, body) = request(
        edge.admin_addr(),
        "GET",
        "/tunnels/kept",
        Some(&token),
        None,
    );
    assert_eq!(status, 200, "{body}");
    edge.stop();
}

#[test]
fn bind_error_is_clear() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let edge = start(tmp.path());
    let taken = edge.admin_addr();
    let settings = edge::settings(Overrides {
        admin: Some(taken),
        data_centers: port0_data_centers(),
        workers: Some(1),
        ..edge::overrides(tmp.path())
    });
    let err = Edge::start(settings).expect_err("address in use");
    assert_eq!(
        err.to_string(),
        format!("admin API: cannot bind {taken}: address in use")
    );
    edge.stop();
}
