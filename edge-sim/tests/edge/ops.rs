//! Operations features of the edge: the `--metrics` server (`/ready`, `/healthcheck`,
//! `/metrics`) and `--log-format json` on the real binary; retries on another replica (refused
//! requests with small bodies, idempotent requests whose link died) and the request metrics,
//! against an in-process edge with fake connectors over TLS links; the stalled body timeout.

use std::io::{BufRead, BufReader, Read};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringtun_edge_sim::Edge;
use ringtun_edge_sim::registry::Registry;
use ringtun_edge_sim::settings::Overrides;
use ringtun_test_support::edge::{self, json, request};
use ringtun_test_support::fake_connector::{Behavior, Client, FakeConnector, FakeOpts, Response};
use uuid::Uuid;

const HOST: &str = "app.example.com";

/// Sends one plain GET and returns status and body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path, None, None)
}

#[test]
fn binary_serves_ready_healthcheck_metrics_and_logs_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringtun-edge"))
        .arg("--state-dir")
        .arg(&state)
        .args(["--admin", "127.0.0.1:0", "--public-http", "127.0.0.1:0"])
        .args(["--data-center", "dfw=127.0.1.1:0"])
        .args(["--workers", "1", "--metrics", "127.0.0.1:0"])
        .args(["--log-format", "json"])
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start ringtun-edge");
    let stderr = child.stderr.take().expect("stderr");
    let mut lines = BufReader::new(stderr).lines();
    let mut metrics: Option<SocketAddr> = None;
    let mut admin: Option<SocketAddr> = None;
    while metrics.is_none() || admin.is_none() {
        let line = lines
            .next()
            .expect("the edge logs its addresses before exiting")
            .expect("read stderr");
        // Every line is one JSON object.
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        let fields = &v["fields"];
        let addr = |k: &str| fields[k].as_str().and_then(|a| a.parse().ok());
        match fields["message"].as_str() {
            Some("metrics server listening") => metrics = addr("metrics"),
            Some("admin API listening") => admin = addr("admin"),
            _ => {}
        }
        assert!(v["level"].is_string(), "{line}");
    }
    let drain = std::thread::spawn(move || {
        lines
            .map_while(Result::ok)
            .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
            .collect::<Vec<String>>()
    });
    let (metrics, admin) = (metrics.expect("metrics addr"), admin.expect("admin addr"));
    assert_ne!(metrics.port(), 0);

    let (status, body) = get(metrics, "/ready");
    assert_eq!(status, 200, "{body}");
    assert_eq!(json(&body)["ready"], true);
    let (status, body) = get(metrics, "/healthcheck");
    assert_eq!((status, body.as_str()), (200, "OK\n"));
    let (status, body) = get(metrics, "/metrics");
    assert_eq!(status, 200);
    for family in [
        "ringtun_edge_retries_total{reason=\"refused\"} 0",
        "ringtun_edge_bytes_total{direction=\"out\"} 0",
        "ringtun_edge_request_duration_seconds_count 0",
        "ringtun_edge_draining_connectors 0",
        "ringtun_edge_servers_down 0",
    ] {
        assert!(body.contains(family), "{family} missing in\n{body}");
    }
    let (status, _) = get(metrics, "/nope");
    assert_eq!(status, 404);
    // The admin API serves the same families (with its token).
    let token = std::fs::read_to_string(state.join("admin-token")).expect("token file");
    let (status, admin_body) = request(admin, "GET", "/metrics", Some(token.trim()), None);
    assert_eq!(status, 200);
    assert!(admin_body.contains("ringtun_edge_retries_total{reason=\"refused\"} 0"));

    ringtun_core::signal::send(child.id(), ringtun_core::signal::Signal::Term).expect("SIGTERM");
    let status = child.wait().expect("wait for the edge");
    assert!(status.success(), "exit status {status:?}");
    let not_json = drain.join().expect("drain thread");
    assert!(not_json.is_empty(), "non-JSON log lines: {not_json:#?}");
}

#[test]
fn ready_follows_the_edge_state() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let registry = Arc::new(
        Registry::open(
            &tmp.path().join("registry.db"),
            10,
            Arc::new(ringtun_edge_sim::metrics::Metrics::default()),
        )
        .expect("registry"),
    );
    let server = ringtun_edge_sim::metrics_server::start(
        SocketAddr::from(([127, 0, 0, 1], 0)),
        ringtun_core::control::Limits::default(),
        registry,
    )
    .expect("start");
    let addr = server.local_addr();
    let (status, body) = get(addr, "/ready");
    assert_eq!(status, 503, "not ready before set_ready: {body}");
    assert_eq!(json(&body)["ready"], false);
    server.probes().set_ready(true);
    assert_eq!(get(addr, "/ready").0, 200);
    server.probes().set_ready(false);
    assert_eq!(get(addr, "/ready").0, 503);
    assert_eq!(get(addr, "/healthcheck").0, 200);
    server.stop();

    // A real edge with --metrics: ready once started, and the address is bound.
    let edge = start(
        tmp.path(),
        2,
        None,
        Some(SocketAddr::from(([127, 0, 0, 1], 0))),
    );
    let addr = edge.metrics_addr().expect("metrics server");
    assert_eq!(get(addr, "/ready").0, 200);
    edge.stop();
    assert!(TcpStream::connect(addr).is_err(), "metrics server stopped");
}

fn start(
    dir: &Path,
    workers: usize,
    body_timeout: Option<u64>,
    metrics: Option<SocketAddr>,
) -> Edge {
    let settings = edge::settings(Overrides {
        data_centers: vec!["dfw=127.0.1.1:0,127.0.1.2:0".into()],
        workers: Some(workers),
        request_body_timeout: body_timeout,
        ..edge::overrides(dir)
    });
    Edge::start_with_metrics(settings, metrics).expect("edge starts")
}

struct Setup {
    edge: Edge,
    tunnel: Uuid,
    secret: Vec<u8>,
}

fn setup(dir: &Path, body_timeout: Option<u64>) -> Setup {
    // Two workers: replicas' links and public connections land on either, so retries also
    // cross workers (hand-off with the buffered request).
    let edge = start(dir, 2, body_timeout, None);
    let (tunnel, secret) = edge::tunnel(&edge, "web", HOST);
    Setup {
        edge,
        tunnel,
        secret,
    }
}

impl Setup {
    fn connect(&self, name: &'static str, refuse: bool, behavior: Behavior) -> FakeConnector {
        let f = FakeConnector::start_with(
            FakeOpts {
                name,
                server: self.edge.servers()[0].addr,
                ca_pem: Some(self.edge.state().tls().ca_pem.clone()),
                tunnel: self.tunnel,
                secret: self.secret.clone(),
                connector: Uuid::new_v4(),
                link_index: 0,
                refuse,
            },
            behavior,
        );
        f.registered.as_ref().expect("registered");
        f
    }

    fn connectors(&self) -> usize {
        self.edge.registry().connectors(self.tunnel).len()
    }

    fn metric(&self, line_start: &str) -> f64 {
        let text = self.edge.registry().metrics().encode();
        text.lines()
            .find_map(|l| l.strip_prefix(line_start))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn post(addr: SocketAddr, body: &[u8], chunked: bool) -> Response {
    let mut c = Client::connect(addr);
    let mut req = if chunked {
        format!("POST /echo HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\r\n")
            .into_bytes()
    } else {
        format!(
            "POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes()
    };
    if chunked {
        for piece in body.chunks(4000) {
            req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
            req.extend_from_slice(piece);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
    } else {
        req.extend_from_slice(body);
    }
    c.send(&req);
    c.read("POST")
}

fn payload(n: usize) -> Vec<u8> {
    (0..n).map(|i| b'a' + (i % 26) as u8).collect()
}

#[test]
fn a_refused_request_with_a_small_body_is_resent_to_another_replica() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = setup(tmp.path(), None);
    let refuser = s.connect("refuser", true, Behavior::default());
    let good = s.connect("good", false, Behavior::default());
    let public = s.edge.public_http_addr();
    let body = payload(10 * 1024);
    // p2c picks the refusing replica first about half the time; every request must succeed.
    for i in 0..12 {
        let r = post(public, &body, i % 2 == 1);
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.header("x-replica"), Some("good"));
        assert_eq!(r.body, body, "request {i}: the body arrived whole");
    }
    let retried = s.metric("ringtun_edge_retries_total{reason=\"refused\"} ");
    assert!(
        retried >= 1.0,
        "no request went to the refusing replica first"
    );
    assert_eq!(
        s.metric("ringtun_edge_retries_total{reason=\"link_lost\"} "),
        0.0
    );
    // The request metrics moved.
    assert_eq!(
        s.metric("ringtun_edge_requests_total{hostname=\"app.example.com\"} "),
        12.0
    );
    assert!(s.metric("ringtun_edge_bytes_total{direction=\"in\"} ") >= (12 * body.len()) as f64);
    assert!(s.metric("ringtun_edge_bytes_total{direction=\"out\"} ") >= (12 * body.len()) as f64);
    // Observed once the response is sent, maybe just after the client read it.
    wait_until("12 latencies observed", || {
        s.metric("ringtun_edge_request_duration_seconds_count ") == 12.0
    });

    // Only the refusing replica left: a small body fails after the retry finds no one else,
    // a body over 64 KiB is not buffered and fails with a 502 that says why.
    good.stop();
    wait_until("the good replica to go", || s.connectors() == 1);
    let r = post(public, &body, false);
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("refused"), "{}", r.text());
    let big = payload(100 * 1024);
    let r = post(public, &big, false);
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("over 64 KiB"), "{}", r.text());
    assert!(s.metric("ringtun_edge_public_errors_total{cause=\"refused_large_body\"} ") >= 1.0);
    refuser.stop();
    s.edge.stop();
}

#[test]
fn an_idempotent_request_whose_link_dies_is_retried() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = setup(tmp.path(), None);
    let crasher = s.connect(
        "crasher",
        false,
        Behavior {
            crash_on_request: true,
        },
    );
    let good = s.connect("good", false, Behavior::default());
    let public = s.edge.public_http_addr();
    // Until a GET reached the crashing replica (its link then ends), every GET succeeds.
    let mut sent = 0;
    while !crasher.link_ended() {
        assert!(sent < 60, "no GET reached the crashing replica");
        let r = Client::connect(public).get(HOST, "/item");
        assert_eq!(r.status, 200, "GET {sent}: {}", r.text());
        assert_eq!(r.text(), "hello from good");
        sent += 1;
    }
    assert_eq!(
        s.metric("ringtun_edge_retries_total{reason=\"link_lost\"} "),
        1.0
    );
    wait_until("the crashed replica to go", || s.connectors() == 1);
    crasher.stop();
    good.stop();
    s.edge.stop();
}

#[test]
fn a_stalled_request_body_closes_the_connection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = setup(tmp.path(), Some(1));
    let good = s.connect("good", false, Behavior::default());
    let public = s.edge.public_http_addr();
    for len in [100usize, 200 * 1024] {
        let mut c = TcpStream::connect(public).expect("connect");
        c.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let head = format!("POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {len}\r\n\r\n");
        std::io::Write::write_all(&mut c, head.as_bytes()).expect("send head");
        std::io::Write::write_all(&mut c, b"only a few bytes").expect("send part");
        let t = Instant::now();
        let mut rest = Vec::new();
        // The edge closes the connection (no full response can come: the body never ended).
        let _ = c.read_to_end(&mut rest);
        assert!(t.elapsed() < Duration::from_secs(8), "closed in time");
        assert!(
            !String::from_utf8_lossy(&rest).contains(" 200 "),
            "{rest:?}"
        );
    }
    // Counted by the connection's task as it ends, maybe just after the client saw the close.
    wait_until("both timeouts counted", || {
        s.edge
            .registry()
            .metrics()
            .encode()
            .contains("ringtun_edge_public_errors_total{cause=\"body_timeout\"} 2")
    });
    good.stop();
    s.edge.stop();
}
