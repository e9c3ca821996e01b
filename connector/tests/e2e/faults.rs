//! Edge faults with real processes (replicas-contract.md, "Reconnects and data centers" and the
//! edge's fault injection): one edge server taken down under load, then a whole data center,
//! through the edge's admin API (`POST /faults/...`), while two `ringtun tunnel run` replicas
//! serve a `ringtun-load origin` and a bounded client keeps sending GETs.
//!
//! What is checked is what an operator would see: where `tunnel info -o json` says the links
//! are (each replica keeps 4 links, 2 per data center, none on a server that is down), the
//! connectors' own log lines (`data center unreachable; link placed elsewhere`, `link moved
//! back`), `GET /faults`, and how many client requests failed (only requests in flight on a
//! link that died may fail, and the edge retries idempotent GETs whose link died, so the
//! count is printed and held to at most the client's concurrency).
//!
//! `cargo test -p ringtun-connector --test e2e faults:: -- --nocapture`
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use e2e::{Connector, Edge, Load, Origin, Proc, STEP_TIMEOUT, Service, Totals, Tunnel, get_ok};
use serde_json::Value;

/// The public hostname of every test's tunnel.
const HOST: &str = "app.ringtun.test";
/// Load threads on one keep-alive connection each.
const KEEPALIVE_THREADS: usize = 2;
/// Load threads opening a new connection per request.
const FRESH_THREADS: usize = 2;
/// The most client requests in flight at once.
const CONCURRENCY: usize = KEEPALIVE_THREADS + FRESH_THREADS;
/// Links per connector (`--ha-connections` default).
const LINKS: usize = 4;
/// How long links may take to settle after a fault. Normally a few seconds (reconnect backoff
/// is 1 s doubling, with jitter, across a data center's servers), but on a loaded machine a
/// handshake can time out and send a link one step further: the harness's generous bound.
const SETTLE: Duration = STEP_TIMEOUT;
/// How long displaced links may take to move back once home is up: the home probe interval
/// (10 s), a probe whose handshake hangs until the connector's 15 s handshake timeout, the
/// next probe, and slack. Normally about 8 s.
const MOVE_BACK: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------------------------------------
// Fixture
// ---------------------------------------------------------------------------------------------

/// An edge, tunnel `web` routed from [`HOST`], an origin and two replicas with 4 links each.
struct ReplicaSite {
    edge: Edge,
    replicas: Vec<Connector>,
    public: SocketAddr,
    _origin: Origin,
}

impl ReplicaSite {
    fn start(dir: &Path) -> ReplicaSite {
        let edge = Edge::start(dir);
        let tunnel = Tunnel::create(&edge, "web");
        tunnel.route_dns(&edge, HOST);
        let origin = Origin::start(dir, false);
        let replicas: Vec<Connector> = (0..2)
            .map(|_| {
                let c = Connector::run(&edge, &tunnel, &Service::Url(origin.url()));
                c.wait_links(LINKS);
                c
            })
            .collect();
        edge.wait_connectors("web", 2);
        let public = edge.public_http();
        get_ok(public, HOST, STEP_TIMEOUT);
        ReplicaSite {
            edge,
            replicas,
            public,
            _origin: origin,
        }
    }

    /// The link servers of data center `dc`.
    fn servers_of(&self, dc: &str) -> Vec<SocketAddr> {
        self.edge
            .servers()
            .into_iter()
            .filter(|(d, _)| d == dc)
            .map(|(_, a)| a)
            .collect()
    }

    /// `POST /faults/{what}/{action}` must answer 200; returns the fault list it answered.
    #[track_caller]
    fn fault(&self, what: &str, action: &str) -> Value {
        let path = format!("/faults/{what}/{action}");
        let r = self.edge.admin_request("POST", &path);
        assert_eq!(r.status, 200, "POST {path}: {}", r.text());
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// `GET /faults`.
    fn faults(&self) -> Value {
        let r = self.edge.admin_request("GET", "/faults");
        assert_eq!(r.status, 200, "GET /faults: {}", r.text());
        serde_json::from_slice(&r.body).unwrap_or_else(|e| panic!("GET /faults: {e}"))
    }

    /// The connectors' logs, for failure messages.
    fn logs(&self) -> String {
        self.replicas
            .iter()
            .map(|c| format!("\n{}:{}", c.proc.name(), c.proc.tail(15)))
            .collect()
    }
}

/// A fault list as `GET /faults` answers it.
fn fault_list(servers: &[SocketAddr], data_centers: &[&str]) -> Value {
    let servers: Vec<String> = servers.iter().map(|s| s.to_string()).collect();
    serde_json::json!({"servers": servers, "data_centers": data_centers})
}

// ---------------------------------------------------------------------------------------------
// Where the links are
// ---------------------------------------------------------------------------------------------

/// One registered link as `tunnel info -o json` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LinkAt {
    index: u64,
    data_center: String,
    server: String,
}

/// Each connector's ID and links, from `tunnel info -o json`.
fn placement(info: &Value) -> Vec<(String, Vec<LinkAt>)> {
    info["connectors"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let links = c["links"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|l| LinkAt {
                    index: l["index"].as_u64().unwrap_or(u64::MAX),
                    data_center: l["data_center"].as_str().unwrap_or("").to_owned(),
                    server: l["server"].as_str().unwrap_or("").to_owned(),
                })
                .collect();
            (c["id"].as_str().unwrap_or("").to_owned(), links)
        })
        .collect()
}

/// Whether there are `connectors` connectors, each with [`LINKS`] links of distinct indexes,
/// `per_dc` of them in every data center named, and none on a server in `avoid`.
fn placed(
    links: &[(String, Vec<LinkAt>)],
    connectors: usize,
    per_dc: &[(&str, usize)],
    avoid: &[SocketAddr],
) -> bool {
    let avoid: Vec<String> = avoid.iter().map(|a| a.to_string()).collect();
    links.len() == connectors
        && links.iter().all(|(_, ls)| {
            let mut indexes: Vec<u64> = ls.iter().map(|l| l.index).collect();
            indexes.sort_unstable();
            indexes.dedup();
            ls.len() == LINKS
                && indexes.len() == LINKS
                && per_dc
                    .iter()
                    .all(|(dc, n)| ls.iter().filter(|l| l.data_center == *dc).count() == *n)
                && ls.iter().all(|l| !avoid.contains(&l.server))
        })
}

/// Polls `tunnel info` until `ok` holds for the placement, for at most `within`; returns the
/// placement and how long it took.
#[track_caller]
fn wait_placement(
    site: &ReplicaSite,
    what: &str,
    within: Duration,
    ok: impl Fn(&[(String, Vec<LinkAt>)]) -> bool,
) -> (Vec<(String, Vec<LinkAt>)>, Duration) {
    let start = Instant::now();
    loop {
        let links = placement(&site.edge.tunnel_info("web"));
        if ok(&links) {
            return (links, start.elapsed());
        }
        assert!(
            start.elapsed() < within,
            "waited {within:?} for {what}; last placement: {links:#?}\nedge log:{}\nconnector logs:{}",
            site.edge.proc.tail(15),
            site.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits up to `within` until `proc` has logged `n` lines that `matches` accepts (earlier lines
/// count too).
#[track_caller]
fn wait_lines(proc: &Proc, what: &str, n: usize, within: Duration, matches: impl Fn(&str) -> bool) {
    let mut seen = 0;
    proc.wait_line(within, None, |l| {
        if matches(l) {
            seen += 1;
        }
        (seen >= n).then_some(())
    })
    .unwrap_or_else(|why| {
        panic!(
            "waiting for {n} × {what} from {}: {why}; last lines:{}",
            proc.name(),
            proc.tail(20)
        )
    });
}

// ---------------------------------------------------------------------------------------------
// Load
// ---------------------------------------------------------------------------------------------

/// [`KEEPALIVE_THREADS`] keep-alive and [`FRESH_THREADS`] new-connection GET threads.
fn start_load(site: &ReplicaSite) -> Load {
    Load::start_mixed(site.public, HOST, KEEPALIVE_THREADS, FRESH_THREADS)
}

/// Prints the totals and asserts: requests were served, at most [`CONCURRENCY`] failed (those
/// in flight on links that died), and none that started after `settled` (load time).
#[track_caller]
fn check_load(what: &str, totals: &Totals, settled: Duration) {
    println!(
        "{what}: ok={} failed={} (connection errors {}), concurrency {CONCURRENCY}: {:?}",
        totals.ok,
        totals.failed.len(),
        totals.connection_errors(),
        totals.failed
    );
    assert!(totals.ok > 0, "{what}: the load made no request");
    assert!(
        totals.failed.len() <= CONCURRENCY,
        "{what}: more failures than requests in flight: {:?}",
        totals.failed
    );
    let late = totals.failed_between(settled, Duration::MAX);
    assert!(
        late.is_empty(),
        "{what}: requests failed after the links had settled ({settled:?}): {late:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// One `dfw` server down under load: its links end, the replicas register them again on the
/// other `dfw` server (still 2 links per data center), traffic goes on with at most the
/// requests in flight failing; `GET /faults` says so and unknown targets are 404. Up again, the
/// server takes links again: with the other `dfw` server down next, every `dfw` link lands on it.
#[test]
fn one_server_down_moves_its_links_within_the_data_center() {
    let dir = tempfile::tempdir().unwrap();
    let site = ReplicaSite::start(dir.path());
    let dfw = site.servers_of("dfw");
    assert_eq!(dfw.len(), 2, "the harness starts two dfw servers");
    let (victim, other) = (dfw[0], dfw[1]);
    let spread = [("dfw", 2), ("mci", 2)];
    let (before, _) = wait_placement(
        &site,
        "4 links per replica, 2 per data center",
        SETTLE,
        |l| placed(l, 2, &spread, &[]),
    );
    let on_victim = |links: &[(String, Vec<LinkAt>)]| -> usize {
        links
            .iter()
            .flat_map(|(_, ls)| ls)
            .filter(|l| l.server == victim.to_string())
            .count()
    };
    assert!(
        on_victim(&before) >= 2,
        "each replica should have a link on {victim} to lose: {before:#?}"
    );

    // The fault API: empty, unknown targets are 404 and change nothing.
    assert_eq!(site.faults(), fault_list(&[], &[]));
    for path in [
        "/faults/servers/127.9.9.9:1/down",
        "/faults/servers/not-an-address/down",
        "/faults/data-centers/ams/down",
    ] {
        let r = site.edge.admin_request("POST", path);
        assert_eq!(r.status, 404, "POST {path}: {}", r.text());
    }
    assert_eq!(site.faults(), fault_list(&[], &[]));

    // Down under load.
    let load = start_load(&site);
    std::thread::sleep(Duration::from_secs(2));
    let answer = site.fault(&format!("servers/{victim}"), "down");
    assert_eq!(answer, fault_list(&[victim], &[]));
    assert_eq!(site.faults(), fault_list(&[victim], &[]));
    let (after, took) = wait_placement(
        &site,
        &format!("every link off {victim}, 2 per data center"),
        SETTLE,
        |l| placed(l, 2, &spread, &[victim]),
    );
    let settled = load.now();
    println!("links off {victim} after {took:?}");
    // The links that were on the victim are on the other dfw server now, same index.
    for (id, ls) in &before {
        for l in ls.iter().filter(|l| l.server == victim.to_string()) {
            let now = after
                .iter()
                .find(|(c, _)| c == id)
                .and_then(|(_, ls)| ls.iter().find(|n| n.index == l.index));
            assert_eq!(
                now.map(|n| n.server.clone()),
                Some(other.to_string()),
                "link {} of {id} should have moved to {other}: {after:#?}",
                l.index
            );
        }
    }
    for c in &site.replicas {
        assert!(
            c.proc
                .lines()
                .iter()
                .any(|l| l.contains("link lost; reconnecting")),
            "{} should have lost a link:{}",
            c.proc.name(),
            c.proc.tail(20)
        );
    }
    std::thread::sleep(Duration::from_secs(2));
    let answer = site.fault(&format!("servers/{victim}"), "up");
    assert_eq!(answer, fault_list(&[], &[]));
    assert_eq!(site.faults(), fault_list(&[], &[]));
    std::thread::sleep(Duration::from_secs(1));
    check_load("one server down", &load.finish(), settled);

    // Up again, it accepts links: take the other dfw server down, every dfw link lands on it.
    let load = start_load(&site);
    std::thread::sleep(Duration::from_secs(1));
    site.fault(&format!("servers/{other}"), "down");
    let (after, took) =
        wait_placement(&site, &format!("every dfw link on {victim}"), SETTLE, |l| {
            placed(l, 2, &spread, &[other])
                && l.iter()
                    .flat_map(|(_, ls)| ls)
                    .filter(|x| x.data_center == "dfw")
                    .all(|x| x.server == victim.to_string())
        });
    let settled = load.now();
    println!("dfw links on {victim} again after {took:?}");
    assert_eq!(on_victim(&after), 4, "{after:#?}");
    site.fault(&format!("servers/{other}"), "up");
    std::thread::sleep(Duration::from_secs(1));
    check_load("the other server down", &load.finish(), settled);
    assert_eq!(site.faults(), fault_list(&[], &[]));
    get_ok(site.public, HOST, STEP_TIMEOUT);
}

/// `dfw` down under load: each replica's `dfw` links are placed in `mci` with the warning line,
/// traffic goes on; `dfw` up: within the probe interval plus a backoff step the links move back
/// (2 per data center again) without a single failed request.
#[test]
fn data_center_down_moves_links_away_and_back_when_it_is_up() {
    let dir = tempfile::tempdir().unwrap();
    let site = ReplicaSite::start(dir.path());
    let dfw = site.servers_of("dfw");
    let spread = [("dfw", 2), ("mci", 2)];
    wait_placement(
        &site,
        "4 links per replica, 2 per data center",
        SETTLE,
        |l| placed(l, 2, &spread, &[]),
    );

    let load = start_load(&site);
    std::thread::sleep(Duration::from_secs(1));
    let answer = site.fault("data-centers/dfw", "down");
    assert_eq!(answer, fault_list(&[], &["dfw"]));
    assert_eq!(site.faults(), fault_list(&[], &["dfw"]));
    let down_at = Instant::now();
    // Links 0 and 2 have dfw as home (index mod 2 data centers).
    for c in &site.replicas {
        for index in [0, 2] {
            let want = format!("index={index} home=dfw placed=mci");
            wait_lines(
                &c.proc,
                &format!("placed elsewhere ({want})"),
                1,
                SETTLE,
                |l| {
                    l.contains("data center unreachable; link placed elsewhere")
                        && l.contains(&want)
                },
            );
        }
    }
    let (_, took) = wait_placement(&site, "every link in mci", SETTLE, |l| {
        placed(l, 2, &[("mci", LINKS)], &dfw)
    });
    let settled = load.now();
    println!(
        "all links in mci {:?} after dfw went down (placement seen after {took:?})",
        down_at.elapsed()
    );
    std::thread::sleep(Duration::from_secs(1));
    check_load("data center down", &load.finish(), settled);

    // Back up: the displaced links probe home every 10 s and move back.
    let load = start_load(&site);
    std::thread::sleep(Duration::from_millis(500));
    let answer = site.fault("data-centers/dfw", "up");
    assert_eq!(answer, fault_list(&[], &[]));
    let up_at = Instant::now();
    for c in &site.replicas {
        wait_lines(&c.proc, "link moved back", 2, MOVE_BACK, |l| {
            l.contains("home data center answers again; link moved back")
        });
        wait_lines(&c.proc, "displaced link closed", 2, MOVE_BACK, |l| {
            l.contains("displaced link closed")
        });
    }
    let (_, took) = wait_placement(&site, "2 links per data center again", MOVE_BACK, |l| {
        placed(l, 2, &spread, &[])
    });
    println!(
        "links back home {:?} after dfw came up (placement seen after {took:?})",
        up_at.elapsed()
    );
    std::thread::sleep(Duration::from_secs(1));
    let totals = load.finish();
    check_load("moving back home", &totals, Duration::ZERO);
    assert!(
        totals.failed.is_empty(),
        "requests failed while links moved back: {:?}",
        totals.failed
    );
    // The placement holds once the displaced links are gone.
    let links = placement(&site.edge.tunnel_info("web"));
    assert!(
        placed(&links, 2, &spread, &[]),
        "2 links per data center after the move back: {links:#?}"
    );
}
