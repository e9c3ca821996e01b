//! Fault injection through the admin API, against an in-process edge with fake connectors over
//! real TLS links: a downed server ends its links like a crash and closes new link connections
//! at accept until it is up; a downed data center does that on all its servers.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use ringtun_edge_sim::settings::Overrides;
use ringtun_test_support::edge::{self, HOST, TunnelEdge, json, request, wait_until};
use ringtun_test_support::fake_connector::{Client, FakeConnector};

const WAIT: Duration = Duration::from_secs(10);

/// An edge with two link servers in dfw and one in mci, and tunnel `web`.
fn setup(dir: &Path) -> TunnelEdge {
    TunnelEdge::start(Overrides {
        data_centers: vec![
            "dfw=127.0.1.1:0,127.0.1.2:0".into(),
            "mci=127.0.2.1:0".into(),
        ],
        workers: Some(2),
        ..edge::overrides(dir)
    })
}

/// A fake connector linked to server `i` of the edge.
fn connect(s: &TunnelEdge, name: &'static str, i: usize) -> FakeConnector {
    FakeConnector::start(s.link(name, i))
}

/// A raw connection to a link server: the edge closes it at once (EOF or reset, no data).
fn closed_at_accept(addr: SocketAddr) -> bool {
    let mut s = TcpStream::connect(addr).expect("the listener still accepts");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut b = [0u8; 16];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

#[test]
fn a_downed_server_ends_its_links_and_refuses_new_ones_until_up() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = setup(tmp.path());
    let down_addr = s.edge.servers()[0].addr;
    let a = connect(&s, "a", 0);
    a.registered.as_ref().expect("a registered");
    let b = connect(&s, "b", 1);
    b.registered.as_ref().expect("b registered");
    assert_eq!(s.connectors(), 2);

    let (status, body) = s.admin("POST", &format!("/faults/servers/{down_addr}/down"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["servers"][0], down_addr.to_string());
    // The connector sees its connection end; the registry forgets it; the other stays.
    wait_until("a's link to end", WAIT, || a.link_ended());
    wait_until("the registry to drop a", WAIT, || s.connectors() == 1);
    assert!(!b.link_ended(), "b's server is up");
    // Public traffic goes on through b.
    let r = Client::connect(s.edge.public_http_addr()).get(HOST, "/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "hello from b");

    // New link connections are closed right after accept; registration fails.
    assert!(closed_at_accept(down_addr));
    let again = connect(&s, "a2", 0);
    assert!(again.registered.is_err(), "registered on a downed server");
    assert!(again.link_ended());

    let (status, body) = s.admin("GET", "/faults", None);
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["servers"], serde_json::json!([down_addr.to_string()]));
    assert_eq!(v["data_centers"], serde_json::json!([]));

    // Up again: links register there again.
    let (status, body) = s.admin("POST", &format!("/faults/servers/{down_addr}/up"), None);
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["servers"], serde_json::json!([]));
    let c = connect(&s, "c", 0);
    c.registered.as_ref().expect("registered after up");
    assert_eq!(s.connectors(), 2);

    assert_eq!(s.metric("ringtun_edge_fault_links_closed_total "), 1.0);
    assert!(s.metric("ringtun_edge_fault_links_refused_total ") >= 2.0);
    assert_eq!(
        s.metric("ringtun_edge_faults_total{target=\"server\",action=\"down\"} "),
        1.0
    );
    assert_eq!(s.metric("ringtun_edge_servers_down "), 0.0);
    for f in [a, b, again, c] {
        f.stop();
    }
    s.edge.stop();
}

#[test]
fn a_downed_data_center_takes_all_its_servers() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = setup(tmp.path());
    let dfw1 = connect(&s, "dfw1", 0);
    let dfw2 = connect(&s, "dfw2", 1);
    let mci = connect(&s, "mci", 2);
    for f in [&dfw1, &dfw2, &mci] {
        f.registered.as_ref().expect("registered");
    }
    let (status, body) = s.admin("POST", "/faults/data-centers/dfw/down", None);
    assert_eq!(status, 200, "{body}");
    wait_until("both dfw links to end", WAIT, || {
        dfw1.link_ended() && dfw2.link_ended()
    });
    wait_until("the registry to keep only mci", WAIT, || {
        s.connectors() == 1
    });
    assert!(!mci.link_ended());
    assert!(closed_at_accept(s.edge.servers()[1].addr));
    assert_eq!(s.metric("ringtun_edge_servers_down "), 2.0);

    let (status, body) = s.admin("GET", "/faults", None);
    assert_eq!(status, 200, "{body}");
    let v = json(&body);
    assert_eq!(v["data_centers"], serde_json::json!(["dfw"]));
    assert_eq!(v["servers"], serde_json::json!([]));
    let r = Client::connect(s.edge.public_http_addr()).get(HOST, "/");
    assert_eq!(r.text(), "hello from mci");

    let (status, _) = s.admin("POST", "/faults/data-centers/dfw/up", None);
    assert_eq!(status, 200);
    let back = connect(&s, "back", 1);
    back.registered.as_ref().expect("registered after up");
    assert_eq!(
        s.metric("ringtun_edge_faults_total{target=\"data_center\",action=\"up\"} "),
        1.0
    );
    for f in [dfw1, dfw2, mci, back] {
        f.stop();
    }
    s.edge.stop();
}

#[test]
fn unknown_fault_targets_are_404_and_the_token_is_required() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = setup(tmp.path());
    let (status, body) = s.admin("POST", "/faults/servers/127.9.9.9:1/down", None);
    assert_eq!(status, 404, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .is_some_and(|e| e.contains("127.9.9.9:1"))
    );
    let (status, body) = s.admin("POST", "/faults/servers/not-an-address/down", None);
    assert_eq!(status, 404, "{body}");
    let (status, body) = s.admin("POST", "/faults/data-centers/ams/down", None);
    assert_eq!(status, 404, "{body}");
    assert!(
        json(&body)["error"]
            .as_str()
            .is_some_and(|e| e.contains("ams"))
    );
    let addr = s.edge.servers()[0].addr;
    let (status, _) = s.admin("POST", &format!("/faults/servers/{addr}/sideways"), None);
    assert_eq!(status, 404);
    let (status, _) = s.admin("GET", &format!("/faults/servers/{addr}/down"), None);
    assert_eq!(status, 405);
    let (status, _) = request(s.edge.admin_addr(), "GET", "/faults", None, None);
    assert_eq!(status, 401);
    let (status, body) = s.admin("GET", "/faults", None);
    assert_eq!(status, 200);
    assert_eq!(
        json(&body),
        serde_json::json!({"servers": [], "data_centers": []})
    );
    s.edge.stop();
}
