//! The connector's lifecycle with real processes and real signals (replicas-contract.md,
//! "Signals"): graceful shutdown under load, the grace deadline, a second signal, zero-downtime
//! and rolling restarts, `kill -9` of a replica, an edge restart, and hot reload of the ingress
//! rules.
//!
//! Each test runs `ringtun-edge`, `ringtun tunnel run` replicas and `ringtun-load origin`
//! processes from the harness in `test-support/src/e2e.rs`, and drives them with a bounded load from inside the
//! test: a few threads doing keep-alive GETs with a short pause, plus single slow requests to an
//! origin started with `--delay`. Every wait is bounded and says what it waited for.
//!
//! `cargo test -p ringtun-connector --test e2e lifecycle::`
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use e2e::{
    Connector, Edge, Failed, Load, Origin, Proc, STEP_TIMEOUT, Service, Tunnel, keepalive_get,
    signal, wait_for,
};

/// The public hostname of every test's tunnel.
const HOST: &str = "app.ringtun.test";
/// Load threads (the most requests in flight at once).
const CONCURRENCY: usize = e2e::LOAD_CONCURRENCY;
/// The slow origin's delay before it answers.
const SLOW: Duration = Duration::from_secs(8);
/// The body size of the first fast origin (the second answers with [`BODY_B`] bytes).
const BODY_A: usize = 13;
/// The body size of the second fast origin.
const BODY_B: usize = 21;

// ---------------------------------------------------------------------------------------------
// Processes and signals
// ---------------------------------------------------------------------------------------------

/// Waits up to `within` for the process to exit; returns its status and how long it took.
#[track_caller]
fn wait_exit(proc: &mut Proc, within: Duration) -> (ExitStatus, Duration) {
    let start = Instant::now();
    loop {
        if let Some(status) = proc.try_wait() {
            let took = start.elapsed();
            // Its last lines may still be in the reader threads: wait for the end of its output,
            // so callers that read them afterwards see them all.
            let _ = proc.wait_line(within, None, |_| None::<()>);
            return (status, took);
        }
        assert!(
            start.elapsed() < within,
            "{} did not exit within {within:?}; last lines:{}",
            proc.name(),
            proc.tail(20)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a log line of `proc` containing `text`; returns the line.
#[track_caller]
fn wait_log(proc: &Proc, text: &str) -> String {
    wait_for(proc, &format!("a log line with {text:?}"), |l| {
        l.contains(text).then(|| l.to_owned())
    })
}

/// How many lines of `proc` contain `text` so far.
fn count_log(proc: &Proc, text: &str) -> usize {
    proc.lines().iter().filter(|l| l.contains(text)).count()
}

/// An edge with tunnel `web` routed from [`HOST`].
fn edge_and_tunnel(dir: &Path) -> (Edge, Tunnel) {
    let edge = Edge::start(dir);
    let tunnel = Tunnel::create(&edge, "web");
    tunnel.route_dns(&edge, HOST);
    (edge, tunnel)
}

/// What most tests start with: [`edge_and_tunnel`], a fast origin answering [`BODY_A`] bytes,
/// a slow one, `config.yml` with [`rules`] for both, and the edge's public address.
struct TwoOriginSite {
    edge: Edge,
    tunnel: Tunnel,
    fast: Origin,
    slow: Origin,
    config: PathBuf,
    public: SocketAddr,
}

impl TwoOriginSite {
    fn start(dir: &Path) -> TwoOriginSite {
        let (edge, tunnel) = edge_and_tunnel(dir);
        let fast = fast_origin(dir, BODY_A);
        let slow = slow_origin(dir);
        let config = write_config(dir, "config.yml", &rules(&fast, &slow));
        let public = edge.public_http();
        TwoOriginSite {
            edge,
            tunnel,
            fast,
            slow,
            config,
            public,
        }
    }
}

/// A fast origin answering `body` bytes.
fn fast_origin(dir: &Path, body: usize) -> Origin {
    Origin::start_args(
        dir,
        &["--http", "127.0.0.1:0", "--body-size", &body.to_string()],
    )
}

/// An origin that waits [`SLOW`] before each answer.
fn slow_origin(dir: &Path) -> Origin {
    let delay = format!("{}s", SLOW.as_secs());
    Origin::start_args(dir, &["--http", "127.0.0.1:0", "--delay", &delay])
}

/// Config text: `/slow` on [`HOST`] to `slow`, the rest of [`HOST`] to `fast`.
fn rules(fast: &Origin, slow: &Origin) -> String {
    format!(
        "ingress:\n  - hostname: {HOST}\n    path: ^/slow\n    service: {}\n  - hostname: {HOST}\n    service: {}\n  - service: http_status:404\n",
        slow.url(),
        fast.url()
    )
}

/// Writes `text` to `dir/name` and returns the path.
fn write_config(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Starts a replica serving `config` with `extra` flags and waits until its 4 links are
/// registered (its own log).
fn replica(edge: &Edge, tunnel: &Tunnel, config: &Path, extra: &[&str]) -> Connector {
    let c = Connector::run_args(edge, tunnel, &Service::Config(config.to_owned()), extra);
    c.wait_links(4);
    c
}

// ---------------------------------------------------------------------------------------------
// The load client (e2e::Load) and single requests
// ---------------------------------------------------------------------------------------------

/// A single `GET path` on its own connection, in a thread: the status, or why there was none.
fn spawn_get(public: SocketAddr, path: &str) -> JoinHandle<Result<u16, String>> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let mut conn = None;
        keepalive_get(&mut conn, public, HOST, &path).map(|(status, _)| status)
    })
}

/// GETs `/` on [`HOST`] until the answer is 200 ([`e2e::get_ok`]); returns the body size.
#[track_caller]
fn get_ok(public: SocketAddr, within: Duration) -> usize {
    e2e::get_ok(public, HOST, within)
}

/// Lets the load run for `d`.
fn run_for(d: Duration) {
    std::thread::sleep(d);
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

/// SIGTERM with a slow request in flight: it completes with 200, the process exits 0 well
/// within the grace period, and meanwhile the load goes to the other replica without a single
/// failure.
#[test]
fn sigterm_drains_in_flight_request_and_load_moves_to_the_other_replica() {
    let dir = tempfile::tempdir().unwrap();
    let TwoOriginSite {
        edge,
        tunnel,
        fast: _fast,
        slow: _slow,
        config,
        public,
    } = TwoOriginSite::start(dir.path());

    // A alone gets the slow request; then B comes up beside it.
    let mut a = replica(&edge, &tunnel, &config, &["--grace-period", "30s"]);
    edge.wait_connectors("web", 1);
    get_ok(public, STEP_TIMEOUT);
    let slow_req = spawn_get(public, "/slow");
    let sent = Instant::now();
    std::thread::sleep(Duration::from_millis(300));
    let _b = replica(&edge, &tunnel, &config, &[]);
    edge.wait_connectors("web", 2);

    let load = Load::start(public, HOST);
    run_for(Duration::from_secs(1));
    assert!(
        !slow_req.is_finished() && sent.elapsed() < SLOW,
        "the slow request must still be in flight when SIGTERM is sent (B took too long to start)"
    );
    signal(&a.proc, "TERM");
    let (status, took) = wait_exit(&mut a.proc, Duration::from_secs(30));
    run_for(Duration::from_secs(1));
    let totals = load.finish();

    let slow_status = slow_req.join().unwrap();
    assert_eq!(
        slow_status,
        Ok(200),
        "the in-flight slow request must complete"
    );
    assert_eq!(
        status.code(),
        Some(0),
        "exit status; log:{}",
        a.proc.tail(20)
    );
    assert!(
        took < Duration::from_secs(30),
        "exit within the grace period, took {took:?}"
    );
    println!(
        "sigterm under load: ok={} failed={} connection_errors={} exit after {took:?}",
        totals.ok,
        totals.failed.len(),
        totals.connection_errors()
    );
    assert!(totals.ok > 0, "the load made no request");
    assert!(
        totals.failed.is_empty(),
        "requests failed while A drained: {:?}",
        totals.failed
    );
    assert!(count_log(&a.proc, "shutting down: draining links") == 1);
}

/// At the end of a short grace period the still-open stream is reset and counted, and the
/// process still exits 0; a second SIGTERM exits at once (code 1); SIGHUP on a `--url`
/// connector says there is nothing to reload.
#[test]
fn grace_deadline_resets_open_streams_and_second_signal_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (edge, tunnel) = edge_and_tunnel(dir.path());
    let slow = slow_origin(dir.path());
    let public = edge.public_http();

    // Deadline: grace 2 s, the slow request needs 8 s.
    let mut a = Connector::run_args(
        &edge,
        &tunnel,
        &Service::Url(slow.url()),
        &["--grace-period", "2s"],
    );
    a.wait_links(4);
    edge.wait_connectors("web", 1);
    signal(&a.proc, "HUP");
    wait_log(&a.proc, "nothing to reload");
    let slow_req = spawn_get(public, "/slow");
    std::thread::sleep(Duration::from_millis(1000));
    assert!(!slow_req.is_finished());
    signal(&a.proc, "TERM");
    let (status, took) = wait_exit(&mut a.proc, Duration::from_secs(15));
    let line = wait_log(&a.proc, "grace period over; resetting open streams");
    assert!(line.contains("streams=1"), "{line}");
    assert_eq!(
        status.code(),
        Some(0),
        "exit 0 after the deadline; log:{}",
        a.proc.tail(20)
    );
    assert!(
        took >= Duration::from_secs(2) && took < SLOW,
        "exit at the deadline, took {took:?}"
    );
    let answer = slow_req.join().unwrap();
    assert_ne!(answer, Ok(200), "the reset request cannot have succeeded");
    println!("request open at the deadline got: {answer:?}");

    // Second signal: exits at once, code 1, even with a stream open and a long grace.
    let mut b = Connector::run_args(
        &edge,
        &tunnel,
        &Service::Url(slow.url()),
        &["--grace-period", "60s"],
    );
    b.wait_links(4);
    edge.wait_connectors("web", 1);
    let slow_req = spawn_get(public, "/slow");
    std::thread::sleep(Duration::from_millis(1000));
    signal(&b.proc, "TERM");
    wait_log(&b.proc, "shutting down: draining links");
    assert!(
        b.proc.try_wait().is_none(),
        "still draining after one signal"
    );
    signal(&b.proc, "TERM");
    let (status, took) = wait_exit(&mut b.proc, Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "second signal exit code");
    println!("second SIGTERM: exit after {took:?}");
    let _ = slow_req.join();
}

/// Zero-downtime restart: A under constant load, B starts and registers, A gets SIGTERM: no
/// failed request, no connection error. Then a rolling replacement of 4 replicas, one at a
/// time, with the same result.
#[test]
fn zero_downtime_restart_and_rolling_replacement() {
    let dir = tempfile::tempdir().unwrap();
    let TwoOriginSite {
        edge,
        tunnel,
        fast: _fast,
        slow: _slow,
        config,
        public,
    } = TwoOriginSite::start(dir.path());

    let mut a = replica(&edge, &tunnel, &config, &[]);
    edge.wait_connectors("web", 1);
    get_ok(public, STEP_TIMEOUT);
    let load = Load::start(public, HOST);
    run_for(Duration::from_secs(1));
    let b = replica(&edge, &tunnel, &config, &[]);
    edge.wait_connectors("web", 2);
    signal(&a.proc, "TERM");
    let (status, _) = wait_exit(&mut a.proc, Duration::from_secs(30));
    assert_eq!(status.code(), Some(0));
    edge.wait_connectors("web", 1);
    run_for(Duration::from_secs(1));
    let totals = load.finish();
    println!(
        "restart A -> B: ok={} failed={} connection_errors={}",
        totals.ok,
        totals.failed.len(),
        totals.connection_errors()
    );
    assert!(totals.ok > 0);
    assert!(
        totals.failed.is_empty(),
        "failures during the restart: {:?}",
        totals.failed
    );

    // Rolling: B plus 3 more make 4; replace each by a new one, one at a time.
    let mut replicas = vec![b];
    for _ in 0..3 {
        replicas.push(replica(&edge, &tunnel, &config, &[]));
    }
    edge.wait_connectors("web", 4);
    let load = Load::start(public, HOST);
    run_for(Duration::from_millis(500));
    for (i, slot) in replicas.iter_mut().enumerate() {
        let new = replica(&edge, &tunnel, &config, &[]);
        edge.wait_connectors("web", 5);
        let mut old = std::mem::replace(slot, new);
        signal(&old.proc, "TERM");
        let (status, _) = wait_exit(&mut old.proc, Duration::from_secs(30));
        assert_eq!(status.code(), Some(0), "replica {i}:{}", old.proc.tail(10));
        edge.wait_connectors("web", 4);
    }
    run_for(Duration::from_millis(500));
    let totals = load.finish();
    println!(
        "rolling replacement of 4: ok={} failed={} connection_errors={}",
        totals.ok,
        totals.failed.len(),
        totals.connection_errors()
    );
    assert!(totals.ok > 0);
    assert!(
        totals.failed.is_empty(),
        "failures during the rolling replacement: {:?}",
        totals.failed
    );
}

/// `kill -9` of one of two replicas under load: only requests in flight on it may fail (at
/// most the load's concurrency), and every request that starts a moment after the kill
/// succeeds.
#[test]
fn kill_9_of_one_replica_loses_at_most_the_requests_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let TwoOriginSite {
        edge,
        tunnel,
        fast: _fast,
        slow: _slow,
        config,
        public,
    } = TwoOriginSite::start(dir.path());

    let mut a = replica(&edge, &tunnel, &config, &[]);
    let _b = replica(&edge, &tunnel, &config, &[]);
    edge.wait_connectors("web", 2);
    get_ok(public, STEP_TIMEOUT);
    let load = Load::start(public, HOST);
    run_for(Duration::from_secs(2));
    let killed_at = load.now();
    signal(&a.proc, "KILL");
    let (status, _) = wait_exit(&mut a.proc, Duration::from_secs(5));
    assert_eq!(status.code(), None, "killed by a signal");
    run_for(Duration::from_secs(3));
    let totals = load.finish();
    println!(
        "kill -9 of one of two replicas: ok={} failed={} (connection errors {}), concurrency {CONCURRENCY}: {:?}",
        totals.ok,
        totals.failed.len(),
        totals.connection_errors(),
        totals.failed
    );
    assert!(totals.ok > 0);
    assert!(
        totals.failed.len() <= CONCURRENCY,
        "more failures than requests in flight: {:?}",
        totals.failed
    );
    // The edge sees the links die at once (the kernel closes the sockets): anything that
    // started a second later must have succeeded.
    let late: Vec<&Failed> = totals
        .failed
        .iter()
        .filter(|f| f.started > killed_at + Duration::from_secs(1))
        .collect();
    assert!(late.is_empty(), "requests after the kill failed: {late:?}");
    assert!(
        totals
            .failed
            .iter()
            .all(|f| f.started + Duration::from_secs(1) >= killed_at),
        "failures before the kill: {:?}",
        totals.failed
    );
}

/// The edge restarts on the same state directory and addresses: the connector reconnects by
/// itself and requests are served again within its backoff window.
#[test]
fn edge_restart_connector_reconnects_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let TwoOriginSite {
        edge,
        tunnel,
        fast: _fast,
        slow: _slow,
        config,
        public,
    } = TwoOriginSite::start(dir.path());
    let a = replica(&edge, &tunnel, &config, &[]);
    edge.wait_connectors("web", 1);
    assert_eq!(get_ok(public, STEP_TIMEOUT), BODY_A);

    let edge = edge.restart();
    let restarted = Instant::now();
    // Backoff is 1 s doubling with jitter: a few attempts fit in 30 s.
    assert_eq!(edge.public_http(), public, "same public address");
    assert_eq!(get_ok(public, Duration::from_secs(30)), BODY_A);
    println!(
        "served again {:?} after the edge restarted",
        restarted.elapsed()
    );
    edge.wait_connectors("web", 1);
    assert!(
        count_log(&a.proc, "link registered") >= 5,
        "links registered again:{}",
        a.proc.tail(20)
    );
}

/// Hot reload: SIGHUP switches new requests to a new origin while a request opened before the
/// reload completes; an invalid file is rejected and the old rules keep serving; with
/// `--watch-config` a file change alone reloads.
#[test]
fn sighup_reloads_rules_keeps_open_streams_and_rejects_invalid_files() {
    let dir = tempfile::tempdir().unwrap();
    let (edge, tunnel) = edge_and_tunnel(dir.path());
    let fast_a = fast_origin(dir.path(), BODY_A);
    let fast_b = fast_origin(dir.path(), BODY_B);
    let slow = slow_origin(dir.path());
    let config = write_config(dir.path(), "config.yml", &rules(&fast_a, &slow));
    let public = edge.public_http();
    let a = replica(&edge, &tunnel, &config, &["--watch-config"]);
    edge.wait_connectors("web", 1);
    assert_eq!(get_ok(public, STEP_TIMEOUT), BODY_A);

    // A slow request under the old rules, then a reload to origin B (without the /slow rule).
    let slow_req = spawn_get(public, "/slow");
    std::thread::sleep(Duration::from_millis(500));
    let new_rules = format!(
        "ingress:\n  - hostname: {HOST}\n    service: {}\n  - service: http_status:404\n",
        fast_b.url()
    );
    write_config(dir.path(), "config.yml", &new_rules);
    signal(&a.proc, "HUP");
    let line = wait_log(&a.proc, "config reloaded");
    assert!(line.contains("rules=2"), "{line}");
    let load = Load::start(public, HOST);
    run_for(Duration::from_secs(1));
    let totals = load.finish();
    assert!(totals.failed.is_empty(), "{:?}", totals.failed);
    assert_eq!(
        totals.bodies.keys().copied().collect::<Vec<_>>(),
        vec![BODY_B],
        "every request after the reload went to origin B"
    );
    assert_eq!(
        slow_req.join().unwrap(),
        Ok(200),
        "the request opened before the reload completes"
    );

    // An invalid file: rejected, origin B keeps serving.
    write_config(
        dir.path(),
        "config.yml",
        &format!(
            "ingress:\n  - hostname: {HOST}\n    service: {}\n",
            fast_a.url()
        ),
    );
    signal(&a.proc, "HUP");
    let line = wait_log(&a.proc, "config reload rejected");
    assert!(line.contains("last ingress rule"), "{line}");
    for _ in 0..10 {
        assert_eq!(get_ok(public, STEP_TIMEOUT), BODY_B, "old rules stay");
    }

    // --watch-config: a valid change without a signal is picked up within a few seconds.
    let reloads = count_log(&a.proc, "config reloaded");
    write_config(dir.path(), "config.yml", &rules(&fast_a, &slow));
    let deadline = Instant::now() + Duration::from_secs(15);
    while get_ok(public, STEP_TIMEOUT) != BODY_A {
        assert!(
            Instant::now() < deadline,
            "--watch-config did not reload; log:{}",
            a.proc.tail(20)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(count_log(&a.proc, "config reloaded") > reloads);
}

// ---------------------------------------------------------------------------------------------
// Data centers: a home data center that is down, then up again
// ---------------------------------------------------------------------------------------------

/// A TCP forwarder in front of one edge server, on the same IP (so the edge certificate still
/// names it) and another port. While down it closes every connection at once, like a crashed
/// server; going up lets new connections through.
struct Switch {
    addr: SocketAddr,
    up: Arc<AtomicBool>,
}

impl Switch {
    fn start(target: SocketAddr) -> Switch {
        let listener = std::net::TcpListener::bind((target.ip(), 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let up = Arc::new(AtomicBool::new(false));
        let gate = up.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                if !gate.load(Ordering::Relaxed) {
                    drop(conn);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let pipe = |mut from: TcpStream, mut to: TcpStream| {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                };
                pipe(conn.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, conn);
            }
        });
        Switch { addr, up }
    }
}

/// A stand-in admin API that answers `GET /discovery` with `answer` (and nothing else).
fn fake_discovery(answer: String) -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 4096];
            let mut head = Vec::new();
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                answer.len()
            );
            let _ = conn.write_all(reply.as_bytes());
        }
    });
    addr
}

/// Link 0's home data center (`dfw`) is unreachable at start: on two replicas the link is
/// placed in `mci` with a warning, serves there, and moves back home once `dfw` answers (new
/// link first, then the displaced one is closed), while requests keep succeeding.
#[test]
fn link_placed_elsewhere_when_home_is_down_and_moves_back() {
    let dir = tempfile::tempdir().unwrap();
    let (edge, tunnel) = edge_and_tunnel(dir.path());
    let fast = fast_origin(dir.path(), BODY_A);
    let public = edge.public_http();

    // The real discovery answer, with dfw's servers behind switches that start down.
    let servers = edge.servers();
    let switches: Vec<Switch> = servers
        .iter()
        .filter(|(dc, _)| dc == "dfw")
        .map(|(_, a)| Switch::start(*a))
        .collect();
    let mci: Vec<String> = servers
        .iter()
        .filter(|(dc, _)| dc == "mci")
        .map(|(_, a)| a.to_string())
        .collect();
    // No CA: the connector trusts only the one in its credentials file.
    let answer = serde_json::json!({
        "data_centers": [
            {"name": "dfw", "servers": switches.iter().map(|s| s.addr.to_string()).collect::<Vec<_>>()},
            {"name": "mci", "servers": mci},
        ],
    });
    let discovery = fake_discovery(answer.to_string());

    // `tunnel run ID`: the credentials are found by ID, so the admin API is only asked for
    // discovery, which the stand-in answers.
    let spawn = |name: &str| {
        let mut cmd = Command::new(e2e::binaries().ringtun);
        cmd.env_clear()
            .env("HOME", edge.home())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .current_dir(edge.home())
            .args(["--edge-api", &discovery.to_string()])
            .args(["tunnel", "run", &tunnel.id, "--url", &fast.url()])
            .args(["--ha-connections", "2"]);
        Proc::spawn(name, cmd, &dir.path().join(format!("{name}.log")), false).unwrap()
    };
    // Two replicas, as in production: a request that races a link's retirement is refused
    // before processing and retried by the edge on the other replica.
    let replicas = [spawn("connector-dc-a"), spawn("connector-dc-b")];
    for r in &replicas {
        let line = wait_log(r, "data center unreachable; link placed elsewhere");
        assert!(
            line.contains("index=0") && line.contains("home=dfw") && line.contains("placed=mci"),
            "{line}"
        );
    }
    edge.wait_connectors("web", 2);
    let load = Load::start(public, HOST);
    run_for(Duration::from_secs(1));

    // Home answers again: within one probe interval (10 s) link 0 registers in dfw, then the
    // displaced link is closed.
    for s in &switches {
        s.up.store(true, Ordering::Relaxed);
    }
    let back = Instant::now();
    for r in &replicas {
        wait_for(r, "link 0 registered in dfw", |l| {
            (l.contains("link registered index=0 data_center=dfw")).then_some(())
        });
        wait_log(r, "link moved back");
        wait_log(r, "displaced link closed");
    }
    println!("links 0 back home after {:?}", back.elapsed());
    run_for(Duration::from_secs(1));
    let totals = load.finish();
    println!(
        "move back home under load: ok={} failed={} connection_errors={}",
        totals.ok,
        totals.failed.len(),
        totals.connection_errors()
    );
    assert!(totals.ok > 0);
    assert!(
        totals.failed.is_empty(),
        "failures while links moved back: {:?}",
        totals.failed
    );
    assert_eq!(get_ok(public, STEP_TIMEOUT), BODY_A);
    println!(
        "edge view after the move: {:#}",
        edge.tunnel_info("web")["connectors"]
    );
}
