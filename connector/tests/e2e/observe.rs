//! The connector's `--metrics` server with real processes (edge, connector, origins on
//! loopback): `/ready` follows the links and turns 503 the moment SIGTERM arrives while the
//! drain is still going, `/healthcheck` answers, `/metrics` counts what went through the public
//! listener, and `--log-format json` prints JSON lines.
//! `cargo test -p ringtun-connector --test e2e observe::`.
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::{
    Connector, Edge, Origin, STEP_TIMEOUT, Service, Tunnel, get_when_served, http_get, log_field,
    wait_for,
};

/// The metrics address a connector logged (`metrics server listening metrics=IP:PORT`).
fn metrics_addr(c: &Connector) -> SocketAddr {
    wait_for(&c.proc, "the metrics server address", |l| {
        if l.contains("metrics server listening") {
            log_field(l, "metrics")?.parse().ok()
        } else {
            None
        }
    })
}

/// Polls `check` every 100 ms until it returns `Ok`, or panics after [`STEP_TIMEOUT`] with
/// its last `Err`.
#[track_caller]
fn wait_until<T>(what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        match check() {
            Ok(v) => return v,
            Err(last) if Instant::now() >= deadline => panic!("waiting for {what}: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

/// `GET /ready`: status and JSON body.
fn ready(addr: SocketAddr) -> (u16, serde_json::Value) {
    let r = http_get(addr, "localhost", "/ready");
    let body = serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("/ready body is not JSON ({e}): {}", r.text()));
    (r.status, body)
}

/// `GET /metrics`, as `name{labels}` → value.
fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let r = http_get(addr, "localhost", "/metrics");
    assert_eq!(r.status, 200, "{}", r.text());
    r.text()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

fn sigterm(pid: u32) {
    let sent = ringtun_core::signal::send(pid, ringtun_core::signal::Signal::Term);
    assert!(sent.is_ok(), "SIGTERM to {pid}: {sent:?}");
}

/// An origin that answers a request only once the test says so: it reports each arrived
/// request on the first channel, then waits for one message on the release channel.
fn held_origin() -> (SocketAddr, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (arrived_tx, arrived) = mpsc::channel();
    let (release, release_rx) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().map_while(Result::ok) {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let _ = arrived_tx.send(());
            if release_rx.recv().is_err() {
                return;
            }
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\nConnection: close\r\n\r\nslow done",
            );
        }
    });
    (addr, arrived, release)
}

#[test]
fn ready_follows_links_and_turns_503_at_sigterm_while_draining() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let public = edge.public_http();
    let tunnel = Tunnel::create(&edge, "drain");
    tunnel.route_dns(&edge, "slow.ringtun.test");
    let (origin, arrived, release) = held_origin();
    let mut c = Connector::run_args(
        &edge,
        &tunnel,
        &Service::Url(format!("http://{origin}")),
        &["--metrics", "127.0.0.1:0", "--grace-period", "30s"],
    );
    let metrics = metrics_addr(&c);
    let health = http_get(metrics, "localhost", "/healthcheck");
    assert_eq!((health.status, health.text().as_str()), (200, "OK\n"));
    let body = wait_until("/ready 200 with 4 links", || match ready(metrics) {
        (200, b) if b["readyConnections"] == 4 => Ok(b),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(body["status"], 200);
    assert_eq!(body["connectorId"], c.id.as_str());
    assert_eq!(body["draining"], false);

    // A request the origin holds keeps the drain going.
    let client = std::thread::spawn(move || http_get(public, "slow.ringtun.test", "/"));
    arrived
        .recv_timeout(STEP_TIMEOUT)
        .expect("the request never reached the origin");
    sigterm(c.proc.id());
    let (status, body) = wait_until("/ready 503 after SIGTERM", || match ready(metrics) {
        (503, b) => Ok((503, b)),
        other => Err(format!("{other:?}")),
    });
    assert_eq!(status, 503);
    assert_eq!(body["status"], 503);
    assert_eq!(body["draining"], true);
    // Still draining: the process runs and the request is still held.
    assert!(
        c.proc.try_wait().is_none(),
        "the connector exited before the drain ended"
    );
    assert!(
        !client.is_finished(),
        "the held request ended before it was released"
    );
    let m = scrape(metrics);
    assert_eq!(m.get("ringtun_draining"), Some(&1.0), "{m:?}");
    assert_eq!(m.get("ringtun_active_streams"), Some(&1.0), "{m:?}");
    let h = http_get(metrics, "localhost", "/healthcheck");
    assert_eq!(h.status, 200);

    release.send(()).unwrap();
    let r = client.join().unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "slow done"));
    let status = wait_until("the connector to exit", || {
        c.proc.try_wait().ok_or_else(|| "still running".to_owned())
    });
    assert!(
        status.success(),
        "exit status {status:?}; log:{}",
        c.proc.tail(20)
    );
}

#[test]
fn metrics_count_requests_bytes_errors_and_links() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let public = edge.public_http();
    let tunnel = Tunnel::create(&edge, "counted");
    for host in [
        "m.ringtun.test",
        "refused.ringtun.test",
        "other.ringtun.test",
    ] {
        tunnel.route_dns(&edge, host);
    }
    let origin = Origin::start(dir.path(), true);
    let closed = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "ingress:\n  - hostname: m.ringtun.test\n    service: {}\n  \
             - hostname: refused.ringtun.test\n    service: http://{closed}\n  \
             - service: http_status:404\n",
            origin.url()
        ),
    )
    .unwrap();
    let c = Connector::run_args(
        &edge,
        &tunnel,
        &Service::Config(config),
        &["--metrics", "127.0.0.1:0"],
    );
    let metrics = metrics_addr(&c);
    wait_until("4 ready links", || match ready(metrics) {
        (200, b) if b["readyConnections"] == 4 => Ok(()),
        other => Err(format!("{other:?}")),
    });
    let m = scrape(metrics);
    assert_eq!(
        m.get("ringtun_links{data_center=\"dfw\"}"),
        Some(&2.0),
        "{m:?}"
    );
    assert_eq!(
        m.get("ringtun_links{data_center=\"mci\"}"),
        Some(&2.0),
        "{m:?}"
    );
    assert_eq!(m.get("ringtun_ready_links"), Some(&4.0), "{m:?}");
    assert_eq!(m.get("ringtun_draining"), Some(&0.0), "{m:?}");

    for _ in 0..5 {
        let r = http_get(public, "m.ringtun.test", "/");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let body = vec![b'x'; 10_000];
    let mut post = format!(
        "POST /echo HTTP/1.1\r\nHost: m.ringtun.test\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    post.extend_from_slice(&body);
    let r = e2e::parse_response(&e2e::send_raw(public, &post)).unwrap();
    assert_eq!((r.status, r.body.len()), (200, body.len()));
    for _ in 0..2 {
        assert_eq!(http_get(public, "other.ringtun.test", "/").status, 404);
    }
    assert_eq!(http_get(public, "refused.ringtun.test", "/").status, 502);

    let m = wait_until("the counters", || {
        let m = scrape(metrics);
        let want = [
            (
                "ringtun_requests_total{rule=\"1\",hostname=\"m.ringtun.test\"}",
                6.0,
            ),
            (
                "ringtun_requests_total{rule=\"2\",hostname=\"refused.ringtun.test\"}",
                1.0,
            ),
            ("ringtun_requests_total{rule=\"3\",hostname=\"*\"}", 2.0),
            ("ringtun_request_duration_seconds_count{rule=\"1\"}", 6.0),
            ("ringtun_request_duration_seconds_count{rule=\"3\"}", 2.0),
            (
                "ringtun_request_errors_total{cause=\"origin_refused\"}",
                1.0,
            ),
            ("ringtun_active_streams", 0.0),
        ];
        for (k, v) in want {
            if m.get(k) != Some(&v) {
                return Err(format!("{k} is {:?}, want {v}; all: {m:?}", m.get(k)));
            }
        }
        Ok(m)
    });
    let to_origin = m["ringtun_bytes_total{direction=\"to_origin\"}"];
    let from_origin = m["ringtun_bytes_total{direction=\"from_origin\"}"];
    assert!(to_origin >= body.len() as f64, "to_origin {to_origin}");
    assert!(
        from_origin >= body.len() as f64,
        "from_origin {from_origin}"
    );
    assert_eq!(
        m.get("ringtun_request_errors_total{cause=\"origin_timeout\"}"),
        Some(&0.0)
    );
    assert_eq!(
        m.get("ringtun_config_reloads_total{result=\"ok\"}"),
        Some(&0.0)
    );
}

#[test]
fn log_format_json_prints_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let tunnel = Tunnel::create(&edge, "jsonlog");
    let origin = Origin::start(dir.path(), false);
    // Before the subcommand, like `--edge-api`.
    let url = origin.url();
    let cmd = edge.ringtun_cmd(&[
        "--log-format",
        "json",
        "tunnel",
        "run",
        &tunnel.name,
        "--url",
        &url,
        "--metrics",
        "127.0.0.1:0",
    ]);
    let log = dir.path().join("json-connector.log");
    let mut proc = e2e::Proc::spawn("json connector", cmd, &log, false).unwrap();
    let mut registered = 0;
    wait_for(&proc, "4 link registered lines", |l| {
        if l.contains("link registered") {
            registered += 1;
        }
        (registered >= 4).then_some(())
    });
    let status = proc.stop(Duration::from_secs(20));
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    let lines = proc.lines();
    assert!(lines.len() >= 6, "{lines:?}");
    let mut messages = Vec::new();
    for line in &lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(v["level"].is_string(), "{line}");
        messages.push(
            v["fields"]["message"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Generated Connector ID: ")),
        "{messages:?}"
    );
    let listening = lines
        .iter()
        .find(|l| l.contains("metrics server listening"))
        .unwrap_or_else(|| panic!("{lines:?}"));
    let v: serde_json::Value = serde_json::from_str(listening).unwrap();
    let addr: Result<SocketAddr, _> = v["fields"]["metrics"].as_str().unwrap_or("").parse();
    assert!(addr.is_ok(), "{listening}");
}

/// An origin given by name (`http://localhost:PORT`) serves end to end, and the name is resolved
/// once, at start, off the workers: `ringtun_origin_resolutions_total` stays at 1 over many
/// requests (it used to be resolved on the worker for every request).
#[test]
fn an_origin_given_by_name_is_resolved_at_start_not_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let public = edge.public_http();
    let tunnel = Tunnel::create(&edge, "named");
    tunnel.route_dns(&edge, "named.ringtun.test");
    // The origin listens on the address `localhost` resolves to first here (127.0.0.1 or ::1),
    // the one the connector uses.
    let first = std::net::ToSocketAddrs::to_socket_addrs(&("localhost", 0))
        .unwrap()
        .next()
        .unwrap();
    let listen = std::net::SocketAddr::new(first.ip(), 0).to_string();
    let origin = Origin::start_args(dir.path(), &["--http", &listen]);
    let port = origin.http.unwrap().port();
    let c = Connector::run_args(
        &edge,
        &tunnel,
        &Service::Url(format!("http://localhost:{port}")),
        &[
            "--metrics",
            "127.0.0.1:0",
            "--origin-dns-refresh-interval",
            "1h",
        ],
    );
    let metrics = metrics_addr(&c);
    let host = "named.ringtun.test";
    let r = get_when_served(public, host, "/");
    assert_eq!(r.status, 200, "{}", r.text());
    for _ in 0..30 {
        let r = http_get(public, host, "/");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let m = scrape(metrics);
    let count = |result: &str| {
        m.get(&format!(
            "ringtun_origin_resolutions_total{{result=\"{result}\"}}"
        ))
        .copied()
    };
    assert_eq!(count("ok"), Some(1.0), "{m:?}");
    assert_eq!(count("failed"), Some(0.0), "{m:?}");
    assert_eq!(
        m.get("ringtun_requests_total{rule=\"1\",hostname=\"*\"}")
            .copied(),
        Some(31.0),
        "{m:?}"
    );
}
