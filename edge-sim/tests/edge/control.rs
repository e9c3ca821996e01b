//! The edge's control plane against a real `ringtun-edge` process: links per connector, pending
//! link handshakes, and a registry database that another process holds locked. Connectors are
//! the fake ones of `fake/` (real TCP links, real registration handshakes).

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use ringtun_core::handshake::{HandshakeError, RejectCode};
use ringtun_test_support::edge::{json, request, spawn_edge};
use ringtun_test_support::fake_connector::{Client, FakeConnector, FakeOpts, FakeReplica};
use uuid::Uuid;

const HOST: &str = "app.example.com";
/// Every wait is bounded by this (the machine is shared; nothing asserts how long it took).
const WAIT: Duration = Duration::from_secs(60);

/// A running `ringtun-edge` with plaintext links, one data center with one server.
struct EdgeProc {
    child: Child,
    state: PathBuf,
    admin: SocketAddr,
    public: SocketAddr,
    server: SocketAddr,
    metrics: SocketAddr,
    token: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl EdgeProc {
    fn start(dir: &Path, extra: &[&str]) -> EdgeProc {
        let state = dir.join("state");
        let mut args = vec!["--metrics", "127.0.0.1:0"];
        args.extend(["--data-center", "dfw=127.0.1.1:0", "--workers", "2"]);
        args.push("--danger-plaintext-links");
        args.extend(extra);
        let e = spawn_edge(env!("CARGO_BIN_EXE_ringtun-edge"), &state, &args);
        EdgeProc {
            child: e.child,
            state,
            admin: e.admin,
            public: e.public,
            server: e.server.expect("server"),
            metrics: e.metrics.expect("metrics"),
            token: e.token,
            log: e.log,
        }
    }

    fn api(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        request(self.admin, method, path, Some(&self.token), body)
    }

    /// Creates tunnel `name` routed at `host`; returns its ID and secret.
    fn tunnel(&self, name: &str, host: &str) -> (Uuid, Vec<u8>) {
        let (status, body) = self.api("POST", "/tunnels", Some(&format!(r#"{{"name":"{name}"}}"#)));
        assert_eq!(status, 201, "{body}");
        let created = json(&body);
        let id: Uuid = created["id"].as_str().expect("id").parse().expect("uuid");
        let secret = base64::engine::general_purpose::STANDARD
            .decode(created["secret"].as_str().expect("secret"))
            .expect("base64 secret");
        let (status, body) = self.api(
            "POST",
            "/routes/dns",
            Some(&format!(r#"{{"tunnel":"{id}","hostname":"{host}"}}"#)),
        );
        assert_eq!(status, 201, "{body}");
        (id, secret)
    }

    fn opts(&self, tunnel: Uuid, secret: &[u8], connector: Uuid, index: u8) -> FakeOpts {
        FakeOpts {
            name: "c",
            server: self.server,
            ca_pem: None,
            tunnel,
            secret: secret.to_vec(),
            connector,
            link_index: index,
            refuse: false,
        }
    }

    /// `ringtun_edge_limit_hits_total{reason="…"}` from `/metrics`.
    fn limit_hits(&self, reason: &str) -> u64 {
        let (status, body) = request(self.metrics, "GET", "/metrics", None, None);
        assert_eq!(status, 200, "{body}");
        let key = format!("ringtun_edge_limit_hits_total{{reason=\"{reason}\"}}");
        body.lines()
            .find_map(|l| l.strip_prefix(&key))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    fn links_of(&self, tunnel: Uuid, connector: Uuid) -> usize {
        let (status, body) = self.api("GET", &format!("/tunnels/{tunnel}/connectors"), None);
        assert_eq!(status, 200, "{body}");
        let list = json(&body);
        list.as_array()
            .or_else(|| list["connectors"].as_array())
            .expect("a list of connectors")
            .iter()
            .find(|c| c["id"] == connector.to_string())
            .map(|c| c["links"].as_array().map_or(0, Vec::len))
            .unwrap_or(0)
    }

    fn logged(&self, what: &str) -> usize {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .filter(|l| l.contains(what))
            .count()
    }
}

impl Drop for EdgeProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn rejected(c: &FakeConnector) -> Option<RejectCode> {
    match &c.registered {
        Err(HandshakeError::Rejected(r)) => Some(r.code),
        _ => None,
    }
}

/// Registering index 0 of one connector twice drains and ends the first link; the registry
/// shows one link, not two.
#[test]
fn a_reregistered_index_closes_the_link_it_replaces() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let edge = EdgeProc::start(tmp.path(), &[]);
    let (t, secret) = edge.tunnel("web", HOST);
    let id = Uuid::new_v4();
    let first = FakeConnector::start(edge.opts(t, &secret, id, 0));
    assert!(
        first.registered.is_ok(),
        "{:?}",
        first.registered.as_ref().err()
    );
    let second = FakeConnector::start(edge.opts(t, &secret, id, 0));
    assert!(
        second.registered.is_ok(),
        "{:?}",
        second.registered.as_ref().err()
    );
    wait_until("the replaced link to end", || first.link_ended());
    assert!(!second.link_ended(), "the new link stays up");
    assert_eq!(edge.links_of(t, id), 1);
    // Requests go to the link that replaced it.
    let mut client = Client::connect(edge.public);
    assert_eq!(client.get(HOST, "/").status, 200);
    second.stop();
    first.stop();
}

/// A link index at or above the declared ha-connections, a declaration above 16, or an index
/// above 15 is refused with `LinkLimit` and counted; the declared links themselves register.
#[test]
fn links_beyond_the_declared_count_are_refused_and_counted() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let edge = EdgeProc::start(tmp.path(), &[]);
    let (t, secret) = edge.tunnel("web", HOST);
    let id = Uuid::new_v4();
    let two = FakeReplica {
        ha_connections: 2,
        ..FakeReplica::default()
    };
    let mut links = Vec::new();
    for index in 0..2 {
        let c = FakeConnector::start_replica(edge.opts(t, &secret, id, index), two.clone());
        assert!(c.registered.is_ok(), "{:?}", c.registered.as_ref().err());
        links.push(c);
    }
    let third = FakeConnector::start_replica(edge.opts(t, &secret, id, 2), two.clone());
    assert_eq!(rejected(&third), Some(RejectCode::LinkLimit));
    // A later link cannot raise the count the connector declared first.
    let more = FakeReplica {
        ha_connections: 16,
        ..FakeReplica::default()
    };
    let raised = FakeConnector::start_replica(edge.opts(t, &secret, id, 5), more.clone());
    assert_eq!(rejected(&raised), Some(RejectCode::LinkLimit));
    // Another connector: 17 declared, or index 16 of 16.
    let other = Uuid::new_v4();
    let too_many = FakeReplica {
        ha_connections: 17,
        ..FakeReplica::default()
    };
    let c = FakeConnector::start_replica(edge.opts(t, &secret, other, 0), too_many);
    assert_eq!(rejected(&c), Some(RejectCode::LinkLimit));
    let c = FakeConnector::start_replica(edge.opts(t, &secret, other, 16), more);
    assert_eq!(rejected(&c), Some(RejectCode::LinkLimit));
    assert_eq!(edge.limit_hits("connector_links"), 4);
    assert_eq!(edge.links_of(t, id), 2);
    for c in links {
        c.stop();
    }
}

/// Idle connections to a link port beyond `--max-pending-handshakes` are closed at once and
/// counted; once the idle ones go, a real connector registers.
#[test]
fn pending_handshakes_are_capped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // A long handshake deadline, so the idle connections hold their slots for the whole test.
    let edge = EdgeProc::start(
        tmp.path(),
        &[
            "--max-pending-handshakes",
            "4",
            "--handshake-timeout",
            "600",
        ],
    );
    let (t, secret) = edge.tunnel("web", HOST);
    let idle: Vec<TcpStream> = (0..4)
        .map(|_| TcpStream::connect(edge.server).expect("connect"))
        .collect();
    // Each idle connection gets the edge's challenge: its handshake is running.
    for mut s in &idle {
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut prefix = [0u8; 2];
        s.read_exact(&mut prefix).expect("a challenge");
    }
    let mut closed = 0;
    for _ in 0..12 {
        let mut s = TcpStream::connect(edge.server).expect("connect");
        s.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut buf = [0u8; 64];
        // Closed by the edge before any challenge: end of stream or a reset.
        if matches!(s.read(&mut buf), Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert_eq!(
        closed, 12,
        "every connection over the cap is closed at once"
    );
    assert_eq!(edge.limit_hits("pending_handshakes"), 12);
    assert!(edge.logged("limit reached") >= 1);
    assert!(
        edge.logged("limit reached") < 12,
        "not one log line per hit"
    );
    drop(idle);
    let mut ok = None;
    wait_until(
        "a connector to register once the idle connections left",
        || {
            let c = FakeConnector::start(edge.opts(t, &secret, Uuid::new_v4(), 0));
            let registered = c.registered.is_ok();
            if registered {
                ok = Some(c);
            } else {
                c.stop();
            }
            registered
        },
    );
    if let Some(c) = ok {
        c.stop();
    }
}

/// Holds `BEGIN EXCLUSIVE` on the registry database from this process, as another process
/// would.
fn lock_registry(state: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(state.join("registry.db")).expect("open registry.db");
    conn.busy_timeout(WAIT).expect("busy timeout");
    conn.execute_batch("BEGIN EXCLUSIVE").expect("lock");
    conn
}

/// While another connection holds the registry locked and an admin write waits on it, link
/// registrations of existing tunnels and public requests are served: they never wait on the
/// database. The write completes once the lock is released.
#[test]
fn a_locked_registry_does_not_stall_links_or_requests() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let edge = EdgeProc::start(tmp.path(), &["--registry-busy-timeout-ms", "120000"]);
    let (t, secret) = edge.tunnel("web", HOST);
    let first = FakeConnector::start(edge.opts(t, &secret, Uuid::new_v4(), 0));
    assert!(first.registered.is_ok());
    let lock = lock_registry(&edge.state);
    let (admin, token) = (edge.admin, edge.token.clone());
    let write = std::thread::spawn(move || {
        request(
            admin,
            "POST",
            "/tunnels",
            Some(&token),
            Some(r#"{"name":"blocked"}"#),
        )
    });
    // Give the write time to reach the database (it then waits on the lock).
    std::thread::sleep(Duration::from_millis(500));
    let second = FakeConnector::start(edge.opts(t, &secret, Uuid::new_v4(), 0));
    assert!(
        second.registered.is_ok(),
        "{:?}",
        second.registered.as_ref().err()
    );
    let mut client = Client::connect(edge.public);
    for _ in 0..4 {
        assert_eq!(client.get(HOST, "/").status, 200);
    }
    assert!(
        !write.is_finished(),
        "the admin write must still be waiting on the lock while links and requests were served"
    );
    drop(lock);
    let (status, body) = write.join().expect("admin write");
    assert_eq!(status, 201, "{body}");
    first.stop();
    second.stop();
}

/// An admin write under a locked database answers 503 after the bounded busy wait, and reads
/// are still served (from memory).
#[test]
fn an_admin_write_under_a_locked_registry_is_503() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let edge = EdgeProc::start(tmp.path(), &["--registry-busy-timeout-ms", "200"]);
    edge.tunnel("web", HOST);
    let lock = lock_registry(&edge.state);
    let (status, body) = edge.api("POST", "/tunnels", Some(r#"{"name":"other"}"#));
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("busy"), "{body}");
    let (status, body) = edge.api("GET", "/tunnels/web", None);
    assert_eq!(status, 200, "{body}");
    drop(lock);
    let (status, body) = edge.api("POST", "/tunnels", Some(r#"{"name":"other"}"#));
    assert_eq!(status, 201, "{body}");
}
