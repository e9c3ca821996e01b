//! Registry tests on real SQLite files in temporary directories.
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use uuid::Uuid;

use super::*;
use crate::settings::LbPolicy;

fn open(dir: &Path, limit: usize) -> Registry {
    Registry::open(
        &dir.join("registry.db"),
        limit,
        Arc::new(Metrics::default()),
    )
    .expect("open registry")
}

fn reg(id: Uuid) -> ConnectorRegistration {
    ConnectorRegistration {
        connector_id: id,
        arch: "linux_amd64".into(),
        version: "0.1.0".into(),
        origin_ip: IpAddr::from([127, 0, 0, 1]),
        label: String::new(),
        weight: 1,
        standby: false,
    }
}

/// Registers a link as the link server does, with signals nobody waits on.
fn register(
    r: &Registry,
    tunnel: Uuid,
    registration: ConnectorRegistration,
    link: LinkInfo,
) -> Result<u64> {
    r.register_link(tunnel, registration, link, LinkSlot::default())
}

fn link(index: u8, dc: &str) -> LinkInfo {
    LinkInfo {
        index,
        data_center: dc.into(),
        server: SocketAddr::from(([127, 0, 1, index + 1], 7844)),
    }
}

#[test]
fn crud_and_persistence_across_reopen() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (tunnel, secret) = {
        let r = open(tmp.path(), 100);
        let (t, s) = r.create_tunnel("web").expect("create");
        assert!(matches!(
            r.create_tunnel("web"),
            Err(Error::TunnelExists(_))
        ));
        assert!(matches!(
            r.create_tunnel("bad name"),
            Err(Error::Invalid(_))
        ));
        r.route_dns("web", "App.Example.com").expect("route dns");
        r.route_dns(&t.id.to_string(), "*.example.com")
            .expect("route wildcard");
        r.route_tcp("web", 2222).expect("route tcp");
        assert_eq!(r.tunnel(&t.id.to_string()).expect("by id"), t);
        assert_eq!(r.tunnel("web").expect("by name"), t);
        (t, s)
    };
    let r = open(tmp.path(), 100);
    assert_eq!(r.tunnels().expect("list"), vec![tunnel.clone()]);
    assert_eq!(r.tunnel_secret(tunnel.id).expect("secret"), secret);
    let hosts: Vec<_> = r
        .dns_routes()
        .expect("dns")
        .into_iter()
        .map(|d| d.hostname)
        .collect();
    assert_eq!(hosts, ["*.example.com", "app.example.com"]);
    assert_eq!(r.tcp_routes().expect("tcp")[0].port, 2222);
    let table = r.route_table().expect("table");
    assert_eq!(table.tunnel_for_host("x.example.com"), Some(tunnel.id));
    assert_eq!(table.tunnel_for_port(2222), Some(tunnel.id));

    let v = r.routes_version();
    r.delete_tunnel("web", false).expect("delete");
    assert!(r.routes_version() > v);
    assert!(matches!(r.tunnel("web"), Err(Error::TunnelNotFound(_))));
    assert!(r.dns_routes().expect("dns").is_empty(), "routes cascade");
    drop(r);
    assert!(open(tmp.path(), 100).tunnels().expect("list").is_empty());
}

#[test]
fn routes_are_unique() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = open(tmp.path(), 100);
    r.create_tunnel("a").expect("a");
    r.create_tunnel("b").expect("b");
    r.route_dns("a", "x.example.com").expect("first");
    let err = r.route_dns("b", "X.EXAMPLE.COM").expect_err("taken");
    assert!(matches!(err, Error::DnsRouteExists { .. }));
    assert_eq!(
        err.to_string(),
        "hostname x.example.com is already routed to tunnel a"
    );
    r.route_tcp("a", 9000).expect("first");
    assert!(matches!(
        r.route_tcp("b", 9000),
        Err(Error::TcpRouteExists { port: 9000, .. })
    ));
    assert!(matches!(r.route_tcp("b", 0), Err(Error::Invalid(_))));
    assert!(matches!(
        r.route_dns("nope", "y.example.com"),
        Err(Error::TunnelNotFound(_))
    ));
}

#[test]
fn connector_limit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = open(tmp.path(), 2);
    let (t, _) = r.create_tunnel("web").expect("create");
    let (other, _) = r.create_tunnel("other").expect("create");
    let (c1, c2, c3) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    for i in 0..4 {
        let dc = if i < 2 { "dfw" } else { "mci" };
        register(&r, t.id, reg(c1), link(i, dc)).expect("links of one connector count once");
    }
    let c2_link = r
        .register_link(t.id, reg(c2), link(0, "dfw"), LinkSlot::default())
        .expect("second");
    let err = register(&r, t.id, reg(c3), link(0, "dfw")).expect_err("over the limit");
    assert_eq!(
        err.to_string(),
        "tunnel web has reached its limit of 2 connectors"
    );
    // Another tunnel has its own budget; a connector ID cannot switch tunnels.
    register(&r, other.id, reg(c3), link(0, "dfw")).expect("other tunnel");
    assert!(matches!(
        register(&r, other.id, reg(c1), link(0, "dfw")),
        Err(Error::ConnectorConflict(_))
    ));

    let list = r.connectors(t.id);
    assert_eq!(list.len(), 2);
    let first = r.connector(c1).expect("c1");
    assert_eq!(first.edge_summary(), "2xdfw, 2xmci");
    assert_eq!(
        edge_summary(list.iter().flat_map(|c| c.links.iter())),
        "3xdfw, 2xmci"
    );

    assert!(r.set_draining(c1));
    assert!(r.connector(c1).expect("c1").draining);
    assert!(
        !r.unregister_link_id(c2, 1, c2_link),
        "unknown index leaves it"
    );
    assert!(r.unregister_link_id(c2, 0, c2_link), "last link removes it");
    register(&r, t.id, reg(c3), link(0, "dfw")).expect_err("c3 belongs to the other tunnel");
    register(&r, t.id, reg(Uuid::new_v4()), link(0, "dfw")).expect("room again");
    assert!(matches!(
        register(&r, Uuid::new_v4(), reg(Uuid::new_v4()), link(0, "dfw")),
        Err(Error::TunnelNotFound(_))
    ));
}

#[test]
fn delete_refuses_while_connected_unless_forced() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = open(tmp.path(), 100);
    let (t, _) = r.create_tunnel("web").expect("create");
    let c = Uuid::new_v4();
    register(&r, t.id, reg(c), link(0, "dfw")).expect("register");
    let err = r.delete_tunnel("web", false).expect_err("refused");
    assert!(matches!(err, Error::TunnelHasConnectors { count: 1, .. }));
    assert!(
        err.to_string()
            .contains("tunnel web has 1 connected connector")
    );
    r.delete_tunnel("web", true).expect("forced");
    assert!(r.connector(c).is_none());
    assert_eq!(r.metrics().connectors.get(), 0);
}

#[test]
fn cleanup_keeps_live_connectors_unless_asked_to_disconnect_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = open(tmp.path(), 1);
    let (t, _) = r.create_tunnel("web").expect("create");
    let live = Uuid::new_v4();
    let slot = LinkSlot::default();
    r.register_link(t.id, reg(live), link(0, "dfw"), slot.clone())
        .expect("live");
    let done = r.cleanup("web", None, false).expect("cleanup");
    assert_eq!(done.kept, vec![live]);
    assert!(!slot.revoked.is_triggered());
    // The limit of 1 still holds: a live connector was not forgotten.
    assert!(matches!(
        register(&r, t.id, reg(Uuid::new_v4()), link(0, "dfw")),
        Err(Error::ConnectorLimit { .. })
    ));
    let done = r.cleanup("web", None, true).expect("disconnect");
    assert_eq!(done.disconnected, vec![live]);
    assert!(
        slot.revoked.is_triggered(),
        "the link server is told to close"
    );
    // The record goes with the link, when its server unregisters it.
    assert_eq!(r.connector_count(t.id), 1);
}

#[test]
fn forced_delete_revokes_the_tunnels_links() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = open(tmp.path(), 100);
    let (t, _) = r.create_tunnel("web").expect("create");
    let slot = LinkSlot::default();
    r.register_link(t.id, reg(Uuid::new_v4()), link(0, "dfw"), slot.clone())
        .expect("live");
    r.delete_tunnel("web", true).expect("forced");
    assert!(slot.revoked.is_triggered());
    // Its credentials no longer register anything.
    assert!(matches!(
        r.register_link(
            t.id,
            reg(Uuid::new_v4()),
            link(0, "dfw"),
            LinkSlot::default()
        ),
        Err(Error::TunnelNotFound(_))
    ));
}

#[test]
fn dns_routes_are_idempotent_and_move_only_when_overwritten() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = open(tmp.path(), 100);
    r.create_tunnel("a").expect("a");
    r.create_tunnel("b").expect("b");
    let (_, change) = r.route_dns_with("a", "x.example.com", false).expect("new");
    assert_eq!(change, RouteChange::Added);
    let (_, change) = r
        .route_dns_with("a", "X.example.com", false)
        .expect("again");
    assert_eq!(change, RouteChange::Exists);
    assert!(matches!(
        r.route_dns_with("b", "x.example.com", false),
        Err(Error::DnsRouteExists { .. })
    ));
    let (route, change) = r.route_dns_with("b", "x.example.com", true).expect("moved");
    assert_eq!(
        (change, route.tunnel_name.as_str()),
        (RouteChange::Replaced, "b")
    );
    assert_eq!(r.dns_routes().expect("list").len(), 1);
    let table = r.route_table().expect("table");
    assert_eq!(
        table.tunnel_for_host("x.example.com"),
        Some(route.tunnel_id)
    );
    r.delete_dns_route("x.example.com").expect("delete");
    assert!(matches!(
        r.delete_dns_route("x.example.com"),
        Err(Error::RouteNotFound(_))
    ));
    r.route_tcp("a", 2222).expect("tcp");
    r.delete_tcp_route(2222).expect("delete tcp");
    assert!(r.tcp_routes().expect("list").is_empty());
}

/// The schema an edge before per-tunnel policies wrote (migration 1, user_version 1), with a
/// tunnel and a route in it.
fn write_old_database(path: &Path) -> Uuid {
    let conn = rusqlite::Connection::open(path).expect("create old db");
    conn.execute_batch(
        "CREATE TABLE tunnels (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            secret BLOB NOT NULL,
            created TEXT NOT NULL
         );
         CREATE TABLE dns_routes (
            hostname TEXT PRIMARY KEY,
            tunnel_id TEXT NOT NULL REFERENCES tunnels(id) ON DELETE CASCADE
         );
         CREATE TABLE tcp_routes (
            port INTEGER PRIMARY KEY,
            tunnel_id TEXT NOT NULL REFERENCES tunnels(id) ON DELETE CASCADE
         );
         PRAGMA user_version = 1;",
    )
    .expect("old schema");
    let id = Uuid::new_v4();
    conn.execute(
        "INSERT INTO tunnels (id, name, secret, created) VALUES (?1, 'old', ?2, '2026-01-02T03:04:05Z')",
        rusqlite::params![id.to_string(), &[7u8; 32][..]],
    )
    .expect("old tunnel");
    conn.execute(
        "INSERT INTO dns_routes (hostname, tunnel_id) VALUES ('old.example.com', ?1)",
        [id.to_string()],
    )
    .expect("old route");
    id
}

#[test]
fn a_database_from_before_lb_policies_is_migrated() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("registry.db");
    let id = write_old_database(&path);
    let r = open(tmp.path(), 100);
    let t = r.tunnel("old").expect("old tunnel still there");
    assert_eq!(t.id, id);
    assert_eq!(t.lb_policy, None);
    assert_eq!(*r.tunnel_secret(id).expect("secret").expose(), [7u8; 32]);
    assert_eq!(r.dns_routes().expect("routes").len(), 1);
    let v = r.routes_version();
    let set = r
        .set_lb_policy("old", Some(LbPolicy::RoundRobin))
        .expect("set on a migrated db");
    assert_eq!(set.lb_policy, Some(LbPolicy::RoundRobin));
    assert!(r.routes_version() > v, "workers must see the change");
    let json = serde_json::to_value(&set).expect("json");
    assert_eq!(json["lb_policy"], "round-robin");
    drop(r);
    // Reopening the migrated database neither fails nor loses the policy.
    let r = open(tmp.path(), 100);
    assert_eq!(
        r.tunnel(&id.to_string()).expect("by id").lb_policy,
        Some(LbPolicy::RoundRobin)
    );
    assert_eq!(
        r.route_table().expect("table").policy(id),
        Some(LbPolicy::RoundRobin)
    );
}

#[test]
fn lb_policy_set_clear_and_default() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = open(tmp.path(), 100);
    let (t, _) = r.create_tunnel("web").expect("create");
    assert_eq!(t.lb_policy, None);
    assert_eq!(
        serde_json::to_value(&t).expect("json")["lb_policy"],
        serde_json::Value::Null
    );
    for p in LbPolicy::ALL {
        r.set_lb_policy("web", Some(p)).expect("set");
        assert_eq!(r.tunnel("web").expect("get").lb_policy, Some(p));
        assert_eq!(r.route_table().expect("table").policy(t.id), Some(p));
    }
    r.set_lb_policy("web", None).expect("clear");
    assert_eq!(r.tunnel("web").expect("get").lb_policy, None);
    assert_eq!(r.route_table().expect("table").policy(t.id), None);
    assert!(matches!(
        r.set_lb_policy("nope", None),
        Err(Error::TunnelNotFound(_))
    ));
}

#[test]
fn connectors_keep_label_weight_standby_and_drain_state() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = open(tmp.path(), 100);
    let (t, _) = r.create_tunnel("web").expect("create");
    let c = Uuid::new_v4();
    let registration = ConnectorRegistration {
        label: "blue".into(),
        weight: 5,
        standby: true,
        ..reg(c)
    };
    register(&r, t.id, registration, link(0, "dfw")).expect("register");
    let got = r.connector(c).expect("known");
    assert_eq!(
        (got.label.as_str(), got.weight, got.standby),
        ("blue", 5, true)
    );
    assert_eq!(got.state(), "ready");
    assert_eq!((got.active_streams, got.requests), (0, 0));
    assert!(r.set_draining(c));
    assert_eq!(r.connector(c).expect("known").state(), "draining");
    assert!(!r.set_draining(Uuid::new_v4()));
}

#[test]
fn a_replaced_link_leaves_its_successor_registered() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = open(tmp.path(), 100);
    let (t, _) = r.create_tunnel("web").expect("create");
    let c = Uuid::new_v4();
    let displaced = LinkInfo {
        index: 0,
        data_center: "mci".into(),
        server: SocketAddr::from(([127, 0, 2, 1], 7844)),
    };
    let displaced_id = r
        .register_link(t.id, reg(c), displaced, LinkSlot::default())
        .expect("displaced");
    // The replacement (same index, home data center) comes up first...
    let replacement_id = r
        .register_link(t.id, reg(c), link(0, "dfw"), LinkSlot::default())
        .expect("replacement");
    // ...then the displaced link ends: the replacement's record stays.
    assert!(!r.unregister_link_id(c, 0, displaced_id));
    let got = r.connector(c).expect("still registered");
    assert_eq!(got.links, vec![link(0, "dfw")]);
    assert!(r.unregister_link_id(c, 0, replacement_id));
    assert!(r.connector(c).is_none());
}

#[test]
fn a_reregistered_index_signals_the_old_link_and_keeps_the_new_record() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = open(tmp.path(), 100);
    let (t, _) = r.create_tunnel("web").expect("create");
    let c = Uuid::new_v4();
    let slot = |n| LinkSlot {
        ha_connections: n,
        ..LinkSlot::default()
    };
    let first = slot(2);
    let a = r
        .register_link(t.id, reg(c), link(0, "dfw"), first.clone())
        .expect("first link");
    // The same index again, on the same server: the first link is told to go.
    let b = r
        .register_link(t.id, reg(c), link(0, "dfw"), slot(2))
        .expect("second link");
    assert!(first.replaced.is_triggered());
    // The replaced link going away leaves its successor's record alone.
    assert!(!r.unregister_link_id(c, 0, a));
    assert_eq!(r.connector(c).expect("connector").links.len(), 1);
    // Out of range: index 2 of 2, more than 16 declared, more than the first link declared.
    for (index, n) in [(2, 2), (0, 17), (5, 16)] {
        assert!(matches!(
            r.register_link(t.id, reg(c), link(index, "dfw"), slot(n)),
            Err(Error::LinkLimit { .. })
        ));
    }
    assert_eq!(
        r.metrics()
            .limits
            .count(crate::limit::Limit::ConnectorLinks),
        3
    );
    assert!(
        r.unregister_link_id(c, 0, b),
        "the last link takes the connector"
    );
}

#[test]
fn reads_come_from_memory_and_follow_writes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let r = open(tmp.path(), 100);
    let (t, secret) = r.create_tunnel("web").expect("create");
    r.route_dns("web", "a.example.com").expect("route");
    r.route_tcp("web", 2222).expect("tcp");
    // Another connection locks the database: reads (and registration lookups) still answer.
    let other = rusqlite::Connection::open(tmp.path().join("registry.db")).expect("open");
    other.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    assert_eq!(r.tunnel_secret(t.id).expect("secret"), secret);
    assert_eq!(r.tunnel("web").expect("by name").id, t.id);
    assert_eq!(r.dns_routes().expect("dns").len(), 1);
    let table = r.route_table().expect("table");
    assert_eq!(table.tunnel_for_host("a.example.com"), Some(t.id));
    assert_eq!(table.tunnel_for_port(2222), Some(t.id));
    other.execute_batch("COMMIT").expect("unlock");
    r.delete_tunnel("web", false).expect("delete");
    assert!(matches!(
        r.tunnel_secret(t.id),
        Err(Error::TunnelNotFound(_))
    ));
    assert!(
        r.route_table()
            .expect("table")
            .tunnel_for_port(2222)
            .is_none()
    );
}
