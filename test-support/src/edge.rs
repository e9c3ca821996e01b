//! The edge's test fixtures: the settings an in-process edge starts from ([`overrides`],
//! [`start`]), a routed tunnel ([`tunnel`]), both together with what a test asks of them
//! ([`TunnelEdge`]: fake connectors' options, admin calls, metrics), a `ringtun-edge` process
//! on port 0 whose addresses are read from its log ([`spawn_edge`]), and one admin API call
//! ([`request`]) on the one HTTP client ([`crate::http`]).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use ringtun_edge_sim::settings::Overrides;
use ringtun_edge_sim::{Edge, Settings};
use uuid::Uuid;

use crate::fake_connector::FakeOpts;
use crate::http::{parse_response, send_raw};

/// The host a [`TunnelEdge`]'s tunnel is routed at.
pub const HOST: &str = "app.example.com";

/// The settings an in-process test edge starts from: its state in `DIR/state`, the admin API and
/// public HTTP on `127.0.0.1:0`, one data center `dfw` with one link server on `127.0.1.1:0`,
/// and everything else at its default. A test sets what it is about with struct update syntax:
/// `Overrides { workers: Some(2), ..edge::overrides(dir) }`.
pub fn overrides(dir: &Path) -> Overrides {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    Overrides {
        state_dir: Some(dir.join("state")),
        admin: Some(any),
        public_http: Some(any),
        data_centers: vec!["dfw=127.0.1.1:0".into()],
        ..Overrides::default()
    }
}

/// The validated settings of `overrides` (no config file); panics when they are invalid.
pub fn settings(overrides: Overrides) -> Settings {
    Settings::load(None, overrides).expect("settings")
}

/// An edge started in this process with `overrides`.
pub fn start(overrides: Overrides) -> Edge {
    Edge::start(settings(overrides)).expect("edge starts")
}

/// Creates tunnel `name` routed at `host` in the edge's registry; returns its ID and secret.
pub fn tunnel(edge: &Edge, name: &str, host: &str) -> (Uuid, Vec<u8>) {
    let (t, secret) = edge.registry().create_tunnel(name).expect("tunnel");
    edge.registry().route_dns(name, host).expect("route");
    (t.id, secret.expose().to_vec())
}

/// An in-process edge with tunnel `web` routed at [`HOST`]: what the edge's data-plane tests
/// start from, with the tunnel's secret and the admin token.
pub struct TunnelEdge {
    /// The edge.
    pub edge: Edge,
    /// Tunnel `web`'s ID.
    pub tunnel: Uuid,
    /// Its secret.
    pub secret: Vec<u8>,
    /// The admin API's token.
    pub token: String,
}

impl TunnelEdge {
    /// Starts an edge with `overrides` and creates the tunnel.
    pub fn start(overrides: Overrides) -> TunnelEdge {
        TunnelEdge::on(start(overrides))
    }

    /// Creates the tunnel on an edge started otherwise.
    pub fn on(edge: Edge) -> TunnelEdge {
        let (tunnel, secret) = tunnel(&edge, "web", HOST);
        let token = edge.state().admin_token().expose().to_owned();
        TunnelEdge {
            edge,
            tunnel,
            secret,
            token,
        }
    }

    /// A fake connector's options for link 0 of a new connector named `name` (in its answers)
    /// on the edge's server `server`: over TLS, trusting the edge's CA, unless the edge runs
    /// with `--danger-plaintext-links`. A test changes the rest with struct update syntax.
    pub fn link(&self, name: &'static str, server: usize) -> FakeOpts {
        FakeOpts {
            name,
            server: self.edge.servers()[server].addr,
            ca_pem: (!self.edge.settings().danger_plaintext_links)
                .then(|| self.edge.state().tls().ca_pem.clone()),
            tunnel: self.tunnel,
            secret: self.secret.clone(),
            connector: Uuid::new_v4(),
            link_index: 0,
            refuse: false,
        }
    }

    /// One admin API call with the token ([`request`]).
    pub fn admin(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String) {
        request(
            self.edge.admin_addr(),
            method,
            path,
            Some(&self.token),
            body,
        )
    }

    /// How many connectors the tunnel has in the registry.
    pub fn connectors(&self) -> usize {
        self.edge.registry().connectors(self.tunnel).len()
    }

    /// The value of the first metric line starting with `line_start` (name and labels).
    pub fn metric(&self, line_start: &str) -> f64 {
        let text = self.edge.registry().metrics().encode();
        text.lines()
            .find_map(|l| l.strip_prefix(line_start))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
    }
}

/// Waits until `f` holds, checking every 20 ms; panics naming `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Sends one request to the admin API (`Connection: close`, a JSON body when given, the bearer
/// `token` when given) and returns the status code and body.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    head.push_str(&format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ));
    let raw = send_raw(addr, head.as_bytes());
    let r = parse_response(&raw).unwrap_or_else(|e| {
        panic!(
            "bad admin API response to {method} {path}: {e}\n{}",
            String::from_utf8_lossy(&raw)
        )
    });
    (r.status, r.text())
}

/// The JSON of an admin API body; panics when it is not JSON.
pub fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("invalid JSON {body:?}: {e}"))
}

/// A `ringtun-edge` process started by [`spawn_edge`], with the addresses it logged.
pub struct Spawned {
    /// The process (not stopped on drop: the test kills it).
    pub child: std::process::Child,
    /// The admin API.
    pub admin: SocketAddr,
    /// The public HTTP listener.
    pub public: SocketAddr,
    /// The first edge server's address (when a `--data-center` was given).
    pub server: Option<SocketAddr>,
    /// The `--metrics` server's address (when one was asked for).
    pub metrics: Option<SocketAddr>,
    /// The admin token.
    pub token: String,
    /// Every line the edge printed on stderr so far.
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    /// The thread that reads stderr into [`Spawned::log`]; it ends when the process has exited
    /// (join it to have every line).
    pub reader: std::thread::JoinHandle<()>,
}

/// Starts the edge binary `bin` with its state in `state`, its admin API and public HTTP on port
/// 0, and `args`; waits until it has logged every address those ask for (in text or JSON logs), then keeps reading its
/// stderr (so it never blocks on a full pipe) into [`Spawned::log`].
pub fn spawn_edge(bin: &str, state: &std::path::Path, args: &[&str]) -> Spawned {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let mut child = Command::new(bin)
        .arg("--state-dir")
        .arg(state)
        .args(["--admin", "127.0.0.1:0", "--public-http", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringtun-edge");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    // A text line has `name=ADDR`; a `--log-format json` line has `"fields": {name: ADDR}`.
    let field = |line: &str, name: &str| -> Option<SocketAddr> {
        match serde_json::from_str::<serde_json::Value>(line) {
            Ok(v) => v["fields"][name].as_str().and_then(|a| a.parse().ok()),
            Err(_) => line
                .split_whitespace()
                .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.parse().ok()),
        }
    };
    let want_server = args.contains(&"--data-center");
    let want_metrics = args.contains(&"--metrics");
    let (mut admin, mut public, mut server, mut metrics) = (None, None, None, None);
    let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    while admin.is_none()
        || public.is_none()
        || (want_server && server.is_none())
        || (want_metrics && metrics.is_none())
    {
        let line = lines
            .next()
            .expect("the edge logs its addresses before exiting")
            .expect("read stderr");
        admin = admin.or_else(|| field(&line, "admin"));
        public = public.or_else(|| field(&line, "public_http"));
        server = server.or_else(|| field(&line, "server"));
        metrics = metrics.or_else(|| field(&line, "metrics"));
        log.lock().expect("log lock").push(line);
    }
    let sink = std::sync::Arc::clone(&log);
    let reader = std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().expect("log lock").push(line);
        }
    });
    let token = std::fs::read_to_string(state.join("admin-token")).expect("token file");
    Spawned {
        child,
        admin: admin.expect("admin address"),
        public: public.expect("public HTTP address"),
        server,
        metrics,
        token: token.trim().to_owned(),
        log,
        reader,
    }
}
