//! A `ringtun-edge --etcd` node as the edge's cluster tests start one: a real process on
//! loopback, on port 0 everywhere, under an etcd key prefix of its own test, killed when dropped.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::edge::{Spawned, json, request, spawn_edge};
use crate::fake_connector::{FakeConnector, FakeOpts};

/// A key prefix no other test uses, so that tests can share one etcd member.
pub fn unique_prefix() -> String {
    format!("/test-{}/", uuid::Uuid::new_v4())
}

/// The flags every test node gets: etcd's `endpoints` and `prefix`, etcd calls bounded to 1.5 s,
/// then `extra`. Unless `extra` names them, also one worker and an edge server on `127.0.1.1`
/// (port 0: nodes on one machine each get their own).
pub fn node_args<'a>(endpoints: &'a str, prefix: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--etcd",
        endpoints,
        "--etcd-prefix",
        prefix,
        "--etcd-timeout-ms",
        "1500",
    ];
    if !extra.contains(&"--workers") {
        args.extend(["--workers", "1"]);
    }
    if !extra.contains(&"--data-center") {
        args.extend(["--data-center", "dfw=127.0.1.1:0"]);
    }
    args.extend_from_slice(extra);
    args
}

/// A running node (see the module doc); the process is killed (SIGKILL) when dropped.
pub struct ClusterNode(pub Spawned);

impl Drop for ClusterNode {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

impl ClusterNode {
    /// Starts `bin` (the `ringtun-edge` binary) with its state directory `dir/name` and the
    /// flags of [`node_args`]; returns once its listeners are up.
    pub fn start(
        bin: &str,
        dir: &Path,
        name: &str,
        endpoints: &str,
        prefix: &str,
        extra: &[&str],
    ) -> ClusterNode {
        let args = node_args(endpoints, prefix, extra);
        ClusterNode(spawn_edge(bin, &dir.join(name), &args))
    }

    /// One admin API call with the node's token: the status and the body.
    pub fn admin(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        request(self.0.admin, method, path, Some(&self.0.token), body)
    }

    /// Sends `signal` to the node's process.
    pub fn signal(&self, signal: ringtun_core::signal::Signal) {
        ringtun_core::signal::send(self.0.child.id(), signal).expect("signal the node");
    }

    /// The value of the node's metric line that starts with `line_start`, 0 when absent.
    pub fn metric(&self, line_start: &str) -> f64 {
        let (status, text) = self.admin("GET", "/metrics", None);
        assert_eq!(status, 200, "{text}");
        text.lines()
            .find_map(|l| l.strip_prefix(line_start))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Creates tunnel `name` through the admin API; returns its ID and secret.
    pub fn create_tunnel(&self, name: &str) -> (uuid::Uuid, Vec<u8>) {
        use base64::Engine as _;
        let body = format!(r#"{{"name":"{name}"}}"#);
        let (status, body) = self.admin("POST", "/tunnels", Some(&body));
        assert_eq!(status, 201, "{body}");
        let created = json(&body);
        let id = created["id"].as_str().expect("id").parse().expect("uuid");
        let secret = base64::engine::general_purpose::STANDARD
            .decode(created["secret"].as_str().expect("secret"))
            .expect("base64");
        (id, secret)
    }

    /// A fake connector's link `index` to the node's edge server (TLS, trusting the CA the
    /// node's discovery names), answering as `name`; asserts that it registered.
    pub fn link(
        &self,
        name: &'static str,
        tunnel: uuid::Uuid,
        secret: &[u8],
        connector: uuid::Uuid,
        index: u8,
    ) -> FakeConnector {
        let ca_pem = json(&self.admin("GET", "/discovery", None).1)["ca_pem"]
            .as_str()
            .expect("ca_pem")
            .to_owned();
        let c = FakeConnector::start(FakeOpts {
            name,
            server: self.0.server.expect("edge server"),
            ca_pem: Some(ca_pem),
            tunnel,
            secret: secret.to_vec(),
            connector,
            link_index: index,
            refuse: false,
        });
        assert!(c.registered.is_ok(), "{:?}", c.registered.as_ref().err());
        c
    }

    /// Waits (up to a minute: the machine may be busy) until `GET path` answers 200 with a body
    /// containing `needle`; returns the body.
    pub fn wait_for(&self, path: &str, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) = self.admin("GET", path, None);
            if status == 200 && body.contains(needle) {
                return body;
            }
            assert!(
                Instant::now() < deadline,
                "GET {path} never showed {needle:?}: {status} {body}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The value of field `name=` in the first log line containing `line`.
    fn logged(&self, line: &str, name: &str) -> Option<String> {
        let log = self.0.log.lock().expect("log lock");
        let prefix = format!("{name}=");
        log.iter().find(|l| l.contains(line)).and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(prefix.as_str()))
                .map(str::to_owned)
        })
    }

    /// The node's ID, from its start-up log line.
    pub fn id(&self) -> String {
        self.logged("edge node in the etcd cluster", "node")
            .expect("the node logs its ID")
    }

    /// The peer listener's address, from its start-up log line.
    pub fn peer_addr(&self) -> SocketAddr {
        self.logged("peer links listening", "peer")
            .and_then(|a| a.parse().ok())
            .expect("the node logs its peer address")
    }
}
