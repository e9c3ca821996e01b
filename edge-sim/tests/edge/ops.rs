//! Operations features of the edge: the `--metrics` server (`/ready`, `/healthcheck`,
//! `/metrics`) and `--log-format json` on the real binary; retries on another replica (refused
//! requests with small bodies, idempotent requests whose link died) and the request metrics,
//! against an in-process edge with fake connectors over TLS links; the stalled body timeout.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ringtun_edge_sim::Edge;
use ringtun_edge_sim::registry::Registry;
use ringtun_edge_sim::settings::Overrides;
use ringtun_test_support::edge::{self, HOST, TunnelEdge, json, request, wait_until};
use ringtun_test_support::fake_connector::{Behavior, Client, FakeConnector, FakeOpts, Response};

/// Sends one plain GET and returns status and body.
fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    request(addr, "GET", path, None, None)
}

#[test]
fn binary_serves_ready_healthcheck_metrics_and_logs_json() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let state = tmp.path().join("state");
    let mut spawned = edge::spawn_edge(
        env!("CARGO_BIN_EXE_ringtun-edge"),
        &state,
        &[
            "--data-center",
            "dfw=127.0.1.1:0",
            "--workers",
            "1",
            "--metrics",
            "127.0.0.1:0",
            "--log-format",
            "json",
        ],
    );
    // Every line is one JSON object (those logged so far; the rest are checked at the end).
    let all_json = |log: &[String]| {
        for line in log {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
            assert!(v["level"].is_string(), "{line}");
        }
    };
    all_json(&spawned.log.lock().expect("log lock"));
    let (metrics, admin) = (spawned.metrics.expect("metrics addr"), spawned.admin);
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
    let (status, admin_body) = request(admin, "GET", "/metrics", Some(&spawned.token), None);
    assert_eq!(status, 200);
    assert!(admin_body.contains("ringtun_edge_retries_total{reason=\"refused\"} 0"));

    ringtun_core::signal::send(spawned.child.id(), ringtun_core::signal::Signal::Term)
        .expect("SIGTERM");
    let status = spawned.child.wait().expect("wait for the edge");
    assert!(status.success(), "exit status {status:?}");
    spawned.reader.join().expect("stderr reader");
    let not_json: Vec<String> = (spawned.log.lock().expect("log lock").iter())
        .filter(|l| serde_json::from_str::<serde_json::Value>(l).is_err())
        .cloned()
        .collect();
    assert!(not_json.is_empty(), "non-JSON log lines: {not_json:#?}");
    all_json(&spawned.log.lock().expect("log lock"));
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

fn setup(dir: &Path, body_timeout: Option<u64>) -> TunnelEdge {
    // Two workers: replicas' links and public connections land on either, so retries also
    // cross workers (hand-off with the buffered request).
    TunnelEdge::on(start(dir, 2, body_timeout, None))
}

/// A fake connector on server 0, registered, refusing every stream when `refuse`.
fn connect(s: &TunnelEdge, name: &'static str, refuse: bool, behavior: Behavior) -> FakeConnector {
    let f = FakeConnector::start_with(
        FakeOpts {
            refuse,
            ..s.link(name, 0)
        },
        behavior,
    );
    f.registered.as_ref().expect("registered");
    f
}

const WAIT: Duration = Duration::from_secs(10);

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
    let refuser = connect(&s, "refuser", true, Behavior::default());
    let good = connect(&s, "good", false, Behavior::default());
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
    wait_until("12 latencies observed", WAIT, || {
        s.metric("ringtun_edge_request_duration_seconds_count ") == 12.0
    });

    // Only the refusing replica left: a small body fails after the retry finds no one else,
    // a body over 64 KiB is not buffered and fails with a 502 that says why.
    good.stop();
    wait_until("the good replica to go", WAIT, || s.connectors() == 1);
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
    let crasher = connect(
        &s,
        "crasher",
        false,
        Behavior {
            crash_on_request: true,
        },
    );
    let good = connect(&s, "good", false, Behavior::default());
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
    wait_until("the crashed replica to go", WAIT, || s.connectors() == 1);
    crasher.stop();
    good.stop();
    s.edge.stop();
}

#[test]
fn a_stalled_request_body_closes_the_connection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let s = setup(tmp.path(), Some(1));
    let good = connect(&s, "good", false, Behavior::default());
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
    wait_until("both timeouts counted", WAIT, || {
        s.edge
            .registry()
            .metrics()
            .encode()
            .contains("ringtun_edge_public_errors_total{cause=\"body_timeout\"} 2")
    });
    good.stop();
    s.edge.stop();
}
