//! Integration tests of ringtun-load against real sockets on 127.0.0.1: the SIGSTOP stall test
//! (coordinated-omission correction), garbage and silent origins, and the CLI outputs.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener},
    process::{Child, Command, Stdio},
    time::Duration,
};

use ringtun_benches::{
    engine::{self, LoadConfig, Workload},
    http::RequestSpec,
    report::RunReport,
};
use ringtun_core::signal::{self, Signal};

const BIN: &str = env!("CARGO_BIN_EXE_ringtun-load");

/// The origin as a child process; killed on drop.
struct Origin {
    child: Child,
    http: SocketAddr,
    /// `(kind, address)` of every listener, as printed by the origin.
    all: Vec<(String, SocketAddr)>,
}

impl Origin {
    fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts `origin --http 127.0.0.1:0 --threads 1` plus `extra` arguments.
    fn start_with(extra: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(["origin", "--http", "127.0.0.1:0", "--threads", "1"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("origin starts");
        let stdout = child.stdout.take().expect("stdout piped");
        let listeners = 1 + extra
            .iter()
            .filter(|a| a.starts_with("--tcp") || a.starts_with("--sink"))
            .count();
        let mut reader = BufReader::new(stdout);
        let mut all = Vec::new();
        for _ in 0..listeners {
            let mut line = String::new();
            reader.read_line(&mut line).expect("reads");
            let mut words = line.split_whitespace().skip(1);
            let kind = words.next().unwrap_or_default().to_owned();
            let addr = words
                .next()
                .and_then(|a| a.parse().ok())
                .unwrap_or_else(|| panic!("unexpected origin output {line:?}"));
            all.push((kind, addr));
        }
        let http = all
            .iter()
            .find(|(k, _)| k == "http")
            .map(|(_, a)| *a)
            .expect("http listener");
        Self { child, http, all }
    }

    fn addr(&self, kind: &str) -> String {
        self.all
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, a)| a.to_string())
            .unwrap_or_else(|| panic!("no {kind} listener"))
    }

    fn signal(&self, sig: Signal) {
        let sent = signal::send(self.child.id(), sig);
        assert!(sent.is_ok(), "{sig:?}: {sent:?}");
    }
}

impl Drop for Origin {
    fn drop(&mut self) {
        self.signal(Signal::Cont);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn http_get(addr: SocketAddr) -> Workload {
    let spec = RequestSpec {
        method: "GET".into(),
        path: "/".into(),
        host: addr.to_string(),
        ..RequestSpec::default()
    };
    Workload::Http {
        request: spec.encode(),
        head: false,
    }
}

fn config(addr: SocketAddr, rate: f64, conns: usize, duration: Duration) -> LoadConfig {
    LoadConfig {
        addr,
        workload: http_get(addr),
        threads: 2,
        connections: conns,
        duration,
        warmup: Duration::ZERO,
        rate,
        timeout: Duration::from_secs(5),
        spin: Duration::from_micros(50),
        progress: false,
        pin: false,
        new_connection: false,
    }
}

/// A server that stops for 1 s during a 2,000 req/s run over 10 connections: the corrected
/// p99 must show the stall, the uncorrected one must not (that is coordinated omission).
#[test]
fn stall_is_visible_only_when_corrected() {
    let origin = Origin::start();
    let stopper = {
        let pid = origin.child.id();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(1000));
            let stop = signal::send(pid, Signal::Stop);
            std::thread::sleep(Duration::from_millis(1000));
            let cont = signal::send(pid, Signal::Cont);
            stop.is_ok() && cont.is_ok()
        })
    };
    let res = engine::run(&config(origin.http, 2000.0, 10, Duration::from_secs(3))).expect("runs");
    assert!(stopper.join().unwrap_or(false), "SIGSTOP/SIGCONT failed");
    let s = &res.samples;
    let corrected = s.corrected.value_at_quantile(0.99);
    let uncorrected = s.uncorrected.value_at_quantile(0.99);
    eprintln!(
        "responses {} corrected p99 {corrected} us, uncorrected p99 {uncorrected} us, max {}",
        s.counters.responses,
        s.corrected.max()
    );
    assert!(corrected >= 800_000, "corrected p99 {corrected} us");
    assert!(uncorrected < 500_000, "uncorrected p99 {uncorrected} us");
    assert_eq!(s.counters.errors(), 0, "{:?}", s.counters);
}

/// Spawns a one-shot-per-connection server that answers every read with `reply` (or nothing).
fn fake_server(reply: Option<&'static [u8]>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    if let Some(r) = reply
                        && s.write_all(r).is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[test]
fn garbage_is_counted_not_fatal() {
    let addr = fake_server(Some(b"SSH-2.0-nope\r\n\r\n\x00\xff"));
    let mut cfg = config(addr, 0.0, 2, Duration::from_millis(500));
    cfg.threads = 1;
    let res = engine::run(&cfg).expect("runs");
    assert!(
        res.samples.counters.protocol_errors > 0,
        "{:?}",
        res.samples.counters
    );
    assert_eq!(res.samples.counters.responses, 0);
}

#[test]
fn silence_is_a_timeout_recorded_as_latency() {
    let addr = fake_server(None);
    let mut cfg = config(addr, 20.0, 2, Duration::from_millis(800));
    cfg.threads = 1;
    cfg.timeout = Duration::from_millis(200);
    let res = engine::run(&cfg).expect("runs");
    let c = &res.samples.counters;
    assert!(c.timeouts > 0, "{c:?}");
    assert_eq!(c.responses, 0);
    assert!(res.samples.corrected.min() >= 190_000);
}

#[test]
fn refused_connections_make_the_run_invalid() {
    let addr = {
        let l = TcpListener::bind("127.0.0.1:0").expect("binds");
        l.local_addr().expect("addr")
    };
    let out = Command::new(BIN)
        .args([
            "http",
            &format!("http://{addr}/"),
            "-R",
            "10",
            "-c",
            "1",
            "-t",
            "1",
        ])
        .args(["-d", "300ms", "-q"])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stdout).contains("INVALID"));
}

#[test]
fn cli_writes_json_hgrm_and_svg() {
    let origin = Origin::start();
    let dir = std::env::temp_dir().join(format!("ringtun-load-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let (json, hgrm, svg) = (dir.join("r.json"), dir.join("r.hgrm"), dir.join("r.svg"));
    let out = Command::new(BIN)
        .args([
            "http",
            &format!("http://{}/x", origin.http),
            "-R",
            "200",
            "-c",
            "4",
        ])
        .args([
            "-t",
            "1",
            "-d",
            "1s",
            "--warmup",
            "200ms",
            "-q",
            "-H",
            "X-Test: 1",
        ])
        .arg("--json")
        .arg(&json)
        .arg("--hgrm")
        .arg(&hgrm)
        .arg("--plot")
        .arg(&svg)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Requests/sec"), "{stdout}");
    let report =
        RunReport::from_json(&std::fs::read_to_string(&json).expect("json")).expect("parses");
    assert_eq!(report.counters.errors(), 0);
    assert!(report.corrected.count > 150);
    let merged = RunReport::merge(&[report.clone(), report.clone()]).expect("merges");
    assert_eq!(merged.corrected.count, 2 * report.corrected.count);
    let h = std::fs::read_to_string(&hgrm).expect("hgrm");
    assert!(h.contains("Percentile") && h.contains("#[Max"));
    let s = std::fs::read_to_string(&svg).expect("svg");
    assert!(s.starts_with("<?xml") && s.trim_end().ends_with("</svg>"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same load under the epoll fallback (`RINGTUN_DRIVER=epoll`), closed loop, with a
/// `Host` override and a POST body echoed by the origin.
#[test]
fn epoll_fallback_closed_loop() {
    let origin = Origin::start_with(&["--echo"]);
    let out = Command::new(BIN)
        .env("RINGTUN_DRIVER", "epoll")
        .args([
            "http",
            &format!("http://{}/", origin.http),
            "-R",
            "0",
            "-c",
            "2",
        ])
        .args([
            "-t", "1", "-d", "300ms", "-q", "-X", "POST", "--body", "hello",
        ])
        .args(["--host", "example.com"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("epoll driver"), "{stdout}");
    assert!(stdout.contains("closed loop"), "{stdout}");
    assert!(!stdout.contains("Errors:"), "{stdout}");
}

/// `tcp-rr` against the echo and `tcp-stream` against the sink.
/// The stdout of an open-loop run that completed: VALID (exit 0), or INVALID (exit 2) only
/// because this machine could not keep the target rate (other work shares its cores; the rate
/// a run reaches is what `perf/` measures, not what a test asserts). Any other failure panics.
fn completed(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    match out.status.code() {
        Some(0) => {}
        Some(2) => {
            let reasons: Vec<&str> = stdout
                .lines()
                .skip_while(|l| !l.starts_with("Run: INVALID"))
                .skip(1)
                .take_while(|l| l.starts_with("  - "))
                .collect();
            assert!(
                !reasons.is_empty() && reasons.iter().all(|r| r.contains("achieved rate")),
                "invalid for another reason than a busy machine: {stdout}\n{stderr}"
            );
        }
        _ => panic!("ringtun-load failed ({}): {stdout}\n{stderr}", out.status),
    }
    stdout
}

#[test]
fn tcp_modes() {
    let origin = Origin::start_with(&["--tcp", "127.0.0.1:0", "--sink", "127.0.0.1:0"]);
    let out = Command::new(BIN)
        .args(["tcp-rr", &origin.addr("tcp"), "-R", "500", "--size", "100"])
        .args(["-c", "2", "-t", "1", "-d", "400ms", "-q"])
        .output()
        .expect("runs");
    let stdout = completed(&out);
    assert!(!stdout.contains("Errors:"), "{stdout}");
    let out = Command::new(BIN)
        .args(["tcp-stream", &origin.addr("sink"), "-c", "1", "-t", "1"])
        .args(["-d", "300ms", "--warmup", "0s"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("Gbit/s"),
        "{stdout}"
    );
}

/// A keep-alive server that counts the connections it accepts and whether requests asked to
/// close; it answers every read with one small response and never closes first.
fn counting_server() -> (
    SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    };
    let l = TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = l.local_addr().expect("addr");
    let accepted = Arc::new(AtomicU64::new(0));
    let saw_close = Arc::new(AtomicBool::new(false));
    let (a, c) = (accepted.clone(), saw_close.clone());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            a.fetch_add(1, Ordering::Relaxed);
            let c = c.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    if String::from_utf8_lossy(&buf[..n])
                        .to_ascii_lowercase()
                        .contains("connection: close")
                    {
                        c.store(true, Ordering::Relaxed);
                    }
                    if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (addr, accepted, saw_close)
}

/// `--new-connection`: every response is followed by a fresh connection, even when the server
/// would keep the connection alive, and requests say `Connection: close`.
#[test]
fn new_connection_mode_connects_once_per_request() {
    use std::sync::atomic::Ordering;
    let (addr, accepted, saw_close) = counting_server();
    let json =
        std::env::temp_dir().join(format!("ringtun-load-newconn-{}.json", std::process::id()));
    let out = Command::new(BIN)
        .args(["http", &format!("http://{addr}/"), "-R", "0", "-c", "2"])
        .args(["-t", "1", "-d", "500ms", "-q", "--new-connection", "--json"])
        .arg(&json)
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let report =
        RunReport::from_json(&std::fs::read_to_string(&json).expect("json")).expect("parses");
    let _ = std::fs::remove_file(&json);
    let responses = report.counters.responses;
    assert!(responses > 20, "{stdout}");
    // Every measured response had its own connection (plus the initial ones and the last
    // reconnects that had no time left for a request).
    assert!(
        accepted.load(Ordering::Relaxed) >= responses,
        "{} connections for {responses} responses",
        accepted.load(Ordering::Relaxed)
    );
    assert!(saw_close.load(Ordering::Relaxed));
}

/// `hold` opens the connections, makes one request on each, keeps them, and reports that all
/// are still open at the end; a server that hangs up makes the run fail.
#[test]
fn hold_keeps_connections_open_and_notices_hang_ups() {
    let origin = Origin::start();
    let out = Command::new(BIN)
        .args(["hold", &format!("http://{}/", origin.http), "-c", "50"])
        .args(["-d", "300ms"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("holding 50 connections"), "{stdout}");
    assert!(
        stdout.contains("50 still open, 0 closed by the peer"),
        "{stdout}"
    );

    // Answers, then closes: every held connection is seen closed.
    let l = TcpListener::bind("127.0.0.1:0").expect("binds");
    let addr = l.local_addr().expect("addr");
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let out = Command::new(BIN)
        .args(["hold", &format!("http://{addr}/"), "-c", "3", "-d", "500ms"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("0 still open, 3 closed by the peer"),
        "{stdout}"
    );

    // Nothing listens: the failures are counted and named, and the run fails.
    let refused = {
        let l = TcpListener::bind("127.0.0.1:0").expect("binds");
        l.local_addr().expect("addr")
    };
    let out = Command::new(BIN)
        .args(["hold", &refused.to_string(), "--proto", "echo", "-c", "2"])
        .args(["-d", "10ms"])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("holding 0 connections") && stdout.contains("2 failed"),
        "{stdout}"
    );
}

/// `overlay` draws one labelled curve per report.
#[test]
fn overlay_draws_every_report() {
    let origin = Origin::start();
    let dir = std::env::temp_dir().join(format!("ringtun-load-overlay-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let json = dir.join("a.json");
    let out = Command::new(BIN)
        .args(["http", &format!("http://{}/", origin.http), "-R", "200"])
        .args(["-c", "2", "-t", "1", "-d", "300ms", "-q", "--json"])
        .arg(&json)
        .output()
        .expect("runs");
    completed(&out);
    let svg = dir.join("o.svg");
    let out = Command::new(BIN)
        .args(["overlay", "--svg"])
        .arg(&svg)
        .arg(format!("first={}", json.display()))
        .arg(format!("second={}", json.display()))
        .output()
        .expect("runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = std::fs::read_to_string(&svg).expect("svg");
    assert!(s.contains("first: ") && s.contains("second: "), "{s}");
    assert_eq!(s.matches("<polyline").count(), 2);
    let bad = Command::new(BIN)
        .args(["overlay", "--svg"])
        .arg(&svg)
        .arg(json.display().to_string())
        .output()
        .expect("runs");
    assert!(!bad.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}
