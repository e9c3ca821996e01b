//! One registry test suite, run against both stores: SQLite (one edge) and etcd (several edge
//! nodes, `--etcd`). The same test bodies run on each; a "second node" is a second registry on
//! the same store (the same database file, or the same etcd and prefix).
use ringtun_test_support::etcd;

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use ringtun_edge_sim::Error;
use ringtun_edge_sim::admin::status_of;
use ringtun_edge_sim::cluster::EtcdSettings;
use ringtun_edge_sim::metrics::Metrics;
use ringtun_edge_sim::registry::{Registry, RouteChange};

/// A store and how to open a registry on it (each call: another node).
struct Fixture {
    open: Box<dyn Fn() -> Registry>,
    _keep: Box<dyn std::any::Any>,
}

impl Fixture {
    fn node(&self) -> Registry {
        (self.open)()
    }
}

fn sqlite_store() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("registry.db");
    Fixture {
        open: Box::new(move || {
            Registry::open(&path, 100, Arc::new(Metrics::default())).expect("open sqlite")
        }),
        _keep: Box::new(dir),
    }
}

fn etcd_settings(etcd: &etcd::Etcd) -> EtcdSettings {
    EtcdSettings {
        endpoints: etcd.endpoints().split(',').map(str::to_owned).collect(),
        prefix: format!("/test-{}/", uuid::Uuid::new_v4()),
        timeout: Duration::from_secs(2),
        lease_ttl: Duration::from_secs(10),
        ..EtcdSettings::default()
    }
}

fn etcd_store() -> Fixture {
    let etcd = etcd::Etcd::start(1);
    let settings = etcd_settings(&etcd);
    Fixture {
        open: Box::new(move || {
            Registry::open_etcd(&settings, 100, Arc::new(Metrics::default())).expect("open etcd")
        }),
        _keep: Box::new(etcd),
    }
}

macro_rules! suite {
    ($module:ident, $store:ident) => {
        mod $module {
            #[test]
            fn tunnels_are_created_found_and_deleted() {
                super::tunnels_are_created_found_and_deleted(&super::$store());
            }
            #[test]
            fn dns_routes_are_unique_idempotent_and_moved_only_when_overwritten() {
                super::dns_routes_are_unique_idempotent_and_moved_only_when_overwritten(
                    &super::$store(),
                );
            }
            #[test]
            fn tcp_routes_are_unique() {
                super::tcp_routes_are_unique(&super::$store());
            }
            #[test]
            fn a_deleted_tunnel_takes_its_routes_and_secret() {
                super::a_deleted_tunnel_takes_its_routes_and_secret(&super::$store());
            }
            #[test]
            fn lb_policies_are_stored_and_bump_the_routes_version() {
                super::lb_policies_are_stored_and_bump_the_routes_version(&super::$store());
            }
            #[test]
            fn another_node_on_the_same_store_sees_the_records() {
                super::another_node_on_the_same_store_sees_the_records(&super::$store());
            }
            #[test]
            fn two_nodes_routing_one_host_at_once_one_wins() {
                super::two_nodes_routing_one_host_at_once_one_wins(&super::$store());
            }
        }
    };
}

suite!(sqlite, sqlite_store);
suite!(etcd_store, etcd_store);

fn tunnels_are_created_found_and_deleted(f: &Fixture) {
    let r = f.node();
    let (web, secret) = r.create_tunnel("web").expect("create");
    let (api, _) = r.create_tunnel("api").expect("create");
    assert_eq!(r.tunnel("web").expect("by name"), web);
    assert_eq!(r.tunnel(&web.id.to_string()).expect("by id"), web);
    assert_eq!(r.tunnel_secret(web.id).expect("secret"), secret);
    let names: Vec<String> = r
        .tunnels()
        .expect("list")
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names.len(), 2);
    assert!(names.contains(&"web".into()) && names.contains(&"api".into()));
    let err = r.create_tunnel("web").expect_err("a name is taken once");
    assert!(matches!(err, Error::TunnelExists(_)), "{err}");
    assert_eq!(status_of(&err), 409, "{err}");
    assert!(r.create_tunnel("Not Valid").is_err());
    assert_eq!(r.delete_tunnel("api", false).expect("delete"), api);
    assert!(matches!(r.tunnel("api"), Err(Error::TunnelNotFound(_))));
    assert!(matches!(
        r.delete_tunnel("api", false),
        Err(Error::TunnelNotFound(_))
    ));
    // A deleted name may be taken again.
    r.create_tunnel("api").expect("the name is free again");
}

fn dns_routes_are_unique_idempotent_and_moved_only_when_overwritten(f: &Fixture) {
    let r = f.node();
    let (a, _) = r.create_tunnel("a").expect("create");
    let (b, _) = r.create_tunnel("b").expect("create");
    let (route, change) = r
        .route_dns_with("a", "App.Example.com", false)
        .expect("route");
    assert_eq!(change, RouteChange::Added);
    assert_eq!(route.hostname, "app.example.com");
    let (_, change) = r
        .route_dns_with("a", "app.example.com", false)
        .expect("again");
    assert_eq!(change, RouteChange::Exists);
    let err = r
        .route_dns_with("b", "app.example.com", false)
        .expect_err("taken by a");
    match &err {
        Error::DnsRouteExists { tunnel, .. } => assert_eq!(tunnel, "a"),
        other => panic!("expected DnsRouteExists, got {other}"),
    }
    assert_eq!(status_of(&err), 409, "{err}");
    let (_, change) = r
        .route_dns_with("b", "app.example.com", true)
        .expect("overwrite");
    assert_eq!(change, RouteChange::Replaced);
    let table = r.route_table().expect("table");
    assert_eq!(table.tunnel_for_host("app.example.com"), Some(b.id));
    r.route_dns("a", "*.example.com").expect("wildcard");
    let table = r.route_table().expect("table");
    assert_eq!(table.tunnel_for_host("x.example.com"), Some(a.id));
    r.delete_dns_route("app.example.com").expect("delete");
    assert!(matches!(
        r.delete_dns_route("app.example.com"),
        Err(Error::RouteNotFound(_))
    ));
    let hosts: Vec<String> = r
        .dns_routes()
        .expect("list")
        .into_iter()
        .map(|r| r.hostname)
        .collect();
    assert_eq!(hosts, ["*.example.com"]);
}

fn tcp_routes_are_unique(f: &Fixture) {
    let r = f.node();
    r.create_tunnel("a").expect("create");
    r.create_tunnel("b").expect("create");
    let (_, change) = r.route_tcp_with("a", 9001).expect("route");
    assert_eq!(change, RouteChange::Added);
    let (_, change) = r.route_tcp_with("a", 9001).expect("again");
    assert_eq!(change, RouteChange::Exists);
    let err = r.route_tcp_with("b", 9001).expect_err("taken");
    assert!(matches!(err, Error::TcpRouteExists { .. }), "{err}");
    assert!(r.route_tcp_with("a", 0).is_err());
    assert_eq!(r.delete_tcp_route(9001).expect("delete").tunnel_name, "a");
    assert!(r.tcp_routes().expect("list").is_empty());
    r.route_tcp_with("b", 9001).expect("free again");
}

fn a_deleted_tunnel_takes_its_routes_and_secret(f: &Fixture) {
    let r = f.node();
    let (a, _) = r.create_tunnel("a").expect("create");
    r.create_tunnel("b").expect("create");
    r.route_dns("a", "a.example.com").expect("route");
    r.route_dns("b", "b.example.com").expect("route");
    r.route_tcp("a", 9002).expect("route");
    r.delete_tunnel("a", false).expect("delete");
    assert!(r.tunnel_secret(a.id).is_err());
    let hosts: Vec<String> = r
        .dns_routes()
        .expect("list")
        .into_iter()
        .map(|r| r.hostname)
        .collect();
    assert_eq!(hosts, ["b.example.com"]);
    assert!(r.tcp_routes().expect("list").is_empty());
    assert_eq!(
        r.route_table()
            .expect("table")
            .tunnel_for_host("a.example.com"),
        None
    );
    // The hostname is free for another tunnel.
    r.route_dns("b", "a.example.com").expect("free again");
}

fn lb_policies_are_stored_and_bump_the_routes_version(f: &Fixture) {
    let r = f.node();
    let (a, _) = r.create_tunnel("a").expect("create");
    let before = r.routes_version();
    let t = r
        .set_lb_policy("a", Some(ringtun_edge_sim::settings::LbPolicy::RoundRobin))
        .expect("set");
    assert_eq!(
        t.lb_policy,
        Some(ringtun_edge_sim::settings::LbPolicy::RoundRobin)
    );
    assert!(r.routes_version() > before, "the workers must refresh");
    assert_eq!(r.tunnel("a").expect("find").lb_policy, t.lb_policy);
    assert!(r.route_table().expect("table").policy(a.id).is_some());
    r.set_lb_policy("a", None).expect("clear");
    assert_eq!(r.tunnel("a").expect("find").lb_policy, None);
    assert!(r.set_lb_policy("nope", None).is_err());
}

fn another_node_on_the_same_store_sees_the_records(f: &Fixture) {
    let first = f.node();
    let (web, secret) = first.create_tunnel("web").expect("create");
    first.route_dns("web", "web.example.com").expect("route");
    // A registry opened afterwards (a restart, or another node) reads the same records.
    let second = f.node();
    assert_eq!(second.tunnel("web").expect("find"), web);
    assert_eq!(second.tunnel_secret(web.id).expect("secret"), secret);
    assert_eq!(
        second
            .route_table()
            .expect("table")
            .tunnel_for_host("web.example.com"),
        Some(web.id)
    );
    // The name is taken for the second node too, whatever its own view says.
    assert!(matches!(
        second.create_tunnel("web"),
        Err(Error::TunnelExists(_))
    ));
}

fn two_nodes_routing_one_host_at_once_one_wins(f: &Fixture) {
    let setup = f.node();
    setup.create_tunnel("a").expect("create");
    setup.create_tunnel("b").expect("create");
    let nodes = [f.node(), f.node()];
    let barrier = Barrier::new(2);
    let results: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = nodes
            .iter()
            .zip(["a", "b"])
            .map(|(node, tunnel)| {
                let barrier = &barrier;
                s.spawn(move || {
                    barrier.wait();
                    node.route_dns_with(tunnel, "race.example.com", false)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let added = results
        .iter()
        .filter(|r| matches!(r, Ok((_, RouteChange::Added))))
        .count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(Error::DnsRouteExists { .. })))
        .count();
    assert_eq!((added, refused), (1, 1), "{results:?}");
}

/// etcd only: with etcd gone, writes fail promptly with 503's fault and reads answer from the
/// last view; once etcd is back, writes work again and a node that missed changes catches up.
#[test]
fn etcd_down_writes_fail_promptly_reads_still_answer_and_writes_resume() {
    let mut etcd = etcd::Etcd::start(1);
    let settings = etcd_settings(&etcd);
    let node = Registry::open_etcd(&settings, 100, Arc::new(Metrics::default())).expect("open");
    let (web, _) = node.create_tunnel("web").expect("create");
    node.route_dns("web", "web.example.com").expect("route");
    etcd.kill_all();
    let started = Instant::now();
    let err = node.create_tunnel("other").expect_err("etcd is down");
    assert_eq!(status_of(&err), 503, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "a write must not hang: {:?}",
        started.elapsed()
    );
    assert_eq!(node.tunnel("web").expect("read from the view"), web);
    assert_eq!(
        node.route_table()
            .expect("table")
            .tunnel_for_host("web.example.com"),
        Some(web.id)
    );
    etcd.restart_all();
    // Writes work again (the client reconnects; allow it a while on a busy machine).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match node.create_tunnel("other") {
            Ok(_) => break,
            Err(e) if status_of(&e) == 503 && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => panic!("write after etcd returned: {e}"),
        }
    }
    // A second node's change reaches the first through its resumed watch.
    let second = Registry::open_etcd(&settings, 100, Arc::new(Metrics::default())).expect("open");
    second
        .route_dns("other", "other.example.com")
        .expect("route");
    let deadline = Instant::now() + Duration::from_secs(30);
    while node
        .route_table()
        .expect("table")
        .tunnel_for_host("other.example.com")
        .is_none()
    {
        assert!(
            Instant::now() < deadline,
            "the first node's watch did not resume"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// etcd only: a tunnel deleted on one node closes its connectors' links on every other node
/// (its credentials stop working everywhere, as on the node that deleted it).
#[test]
fn a_tunnel_deleted_on_another_node_revokes_its_links_here() {
    use ringtun_edge_sim::registry::{ConnectorRegistration, LinkInfo, LinkSlot};
    let etcd = etcd::Etcd::start(1);
    let settings = etcd_settings(&etcd);
    let here = Registry::open_etcd(&settings, 100, Arc::new(Metrics::default())).expect("open");
    let there = Registry::open_etcd(&settings, 100, Arc::new(Metrics::default())).expect("open");
    let (web, _) = here.create_tunnel("web").expect("create");
    let connector = uuid::Uuid::new_v4();
    let slot = LinkSlot::default();
    let revoked = slot.revoked.clone();
    here.register_link(
        web.id,
        ConnectorRegistration {
            connector_id: connector,
            arch: "linux_amd64".into(),
            version: "0.1.0".into(),
            origin_ip: [127, 0, 0, 1].into(),
            label: String::new(),
            weight: 1,
            standby: false,
        },
        LinkInfo {
            index: 0,
            data_center: "dfw".into(),
            server: ([127, 0, 1, 1], 7844).into(),
        },
        slot,
    )
    .expect("register");
    // The other node has no connector of it: its delete goes through without force.
    let deadline = Instant::now() + Duration::from_secs(30);
    while there.tunnel("web").is_err() {
        assert!(
            Instant::now() < deadline,
            "the other node never saw the tunnel"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    there.delete_tunnel("web", false).expect("delete there");
    while !revoked.is_triggered() {
        assert!(Instant::now() < deadline, "the link here was not revoked");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(here.connector_count(web.id), 0);
    assert!(here.connector(connector).is_none());
}

/// etcd only: a node's links are announced under its lease and watched into every node's view;
/// when etcd was away past the TTL (the lease is lost), the node takes a new lease and puts its
/// links again, so they outlive the old lease.
#[test]
fn presence_is_watched_and_put_again_after_the_lease_is_lost() {
    use ringtun_edge_sim::registry::{ConnectorRegistration, LinkInfo, LinkSlot};
    const TTL: Duration = Duration::from_secs(2);
    let mut etcd = etcd::Etcd::start(1);
    let mut settings = etcd_settings(&etcd);
    settings.lease_ttl = TTL;
    let here = Registry::open_etcd(&settings, 100, Arc::new(Metrics::default())).expect("open");
    let there = Registry::open_etcd(&settings, 100, Arc::new(Metrics::default())).expect("open");
    let (web, _) = here.create_tunnel("web").expect("create");
    let connector = uuid::Uuid::new_v4();
    here.register_link(
        web.id,
        ConnectorRegistration {
            connector_id: connector,
            arch: "linux_amd64".into(),
            version: "0.1.0".into(),
            origin_ip: [127, 0, 0, 1].into(),
            label: String::new(),
            weight: 1,
            standby: false,
        },
        LinkInfo {
            index: 2,
            data_center: "dfw".into(),
            server: ([127, 0, 1, 1], 7844).into(),
        },
        LinkSlot::default(),
    )
    .expect("register");
    let node = here.node_id().expect("a node ID").to_owned();
    let link_key = format!("{}links/{}/{node}/{connector}.2", settings.prefix, web.id);
    let seen_there = |deadline: Instant| loop {
        let presence = there.cluster_presence().expect("etcd has presence");
        if presence
            .links
            .iter()
            .any(|l| l.tunnel == web.id && l.node == node && l.link == format!("{connector}.2"))
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the other node never saw the link: {presence:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    seen_there(Instant::now() + Duration::from_secs(30));

    etcd.kill_all();
    std::thread::sleep(TTL * 2);
    etcd.restart_all();
    // The old lease is gone for good after a TTL or so from the restart; the link must be
    // there under a new lease well after that.
    std::thread::sleep(TTL * 3);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if etcd
            .keys(&link_key)
            .is_some_and(|k| k.iter().any(|k| k == &link_key))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the link was not put again after the lease was lost"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(TTL * 2);
    assert!(
        etcd.keys(&link_key).is_some_and(|k| k.contains(&link_key)),
        "the link must stay under its new, renewed lease"
    );
    seen_there(Instant::now() + Duration::from_secs(30));
}
