//! The admin API and the `--metrics` server against hostile clients, on the real `ringtun-edge`
//! binary: a client that stalls (before or inside its body, with or without the token) or sends
//! its head slowly blocks nobody else and is disconnected at the deadline; the connection cap
//! answers 503; made-up methods do not grow `/metrics`.
//!
//! Every bound here is generous (seconds): what is checked is that other requests are answered at
//! all while the hostile clients hold their connections, not how fast.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a well-behaved request may take on a busy machine.
const ANSWER_WITHIN: Duration = Duration::from_secs(10);

/// A `ringtun-edge` process with its admin API and metrics server on port 0.
struct EdgeProcess {
    child: Child,
    admin: SocketAddr,
    metrics: SocketAddr,
    public: SocketAddr,
    token: String,
    _tmp: tempfile::TempDir,
}

impl EdgeProcess {
    /// Starts the binary with `extra` flags and waits for its start-up lines.
    fn start(extra: &[&str]) -> EdgeProcess {
        let tmp = tempfile::tempdir().expect("tempdir");
        let state = tmp.path().join("state");
        let mut args = vec!["--data-center", "dfw=127.0.1.1:0"];
        args.extend(["--workers", "1", "--metrics", "127.0.0.1:0"]);
        args.extend(extra);
        let e = ringtun_test_support::edge::spawn_edge(
            env!("CARGO_BIN_EXE_ringtun-edge"),
            &state,
            &args,
        );
        EdgeProcess {
            child: e.child,
            admin: e.admin,
            metrics: e.metrics.expect("metrics address"),
            public: e.public,
            token: e.token,
            _tmp: tmp,
        }
    }

    /// An authorized admin request that must be answered within [`ANSWER_WITHIN`].
    fn authorized(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        call(self.admin, method, path, Some(&self.token), body)
            .unwrap_or_else(|e| panic!("{method} {path} with the token: {e}"))
    }

    /// The admin API's `/metrics` text.
    fn scrape(&self) -> String {
        let (status, body) = self.authorized("GET", "/metrics", "");
        assert_eq!(status, 200, "{body}");
        body
    }

    /// Checks that `/discovery` (no token), an authorized list, and the metrics server's
    /// `/healthcheck` all answer; returns the slowest of them.
    fn others_are_served(&self) -> Duration {
        let t0 = Instant::now();
        let (status, body) =
            call(self.admin, "GET", "/discovery", None, "").expect("GET /discovery answers");
        assert_eq!(status, 200, "{body}");
        let discovery = t0.elapsed();
        let t1 = Instant::now();
        let (status, body) = self.authorized("GET", "/tunnels", "");
        assert_eq!(status, 200, "{body}");
        let tunnels = t1.elapsed();
        let t2 = Instant::now();
        let (status, body) =
            call(self.metrics, "GET", "/healthcheck", None, "").expect("GET /healthcheck answers");
        assert_eq!((status, body.as_str()), (200, "OK\n"));
        discovery.max(tunnels).max(t2.elapsed())
    }
}

impl Drop for EdgeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request on a fresh connection (`Connection: close`), answered within [`ANSWER_WITHIN`]:
/// status and body, or the error that ended it (a timeout when nobody answered).
fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &str,
) -> std::io::Result<(u16, String)> {
    let deadline = Instant::now() + ANSWER_WITHIN;
    let mut stream = TcpStream::connect_timeout(&addr, ANSWER_WITHIN)?;
    stream.set_write_timeout(Some(ANSWER_WITHIN))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        head.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    stream.write_all(head.as_bytes())?;
    let raw = read_until_close(&mut stream, deadline)?;
    parse(&raw)
}

/// Reads until the peer closes, failing with `TimedOut` at `deadline`. A reset after some bytes
/// ends the read too: the bytes already received are the answer.
fn read_until_close(stream: &mut TcpStream, deadline: Instant) -> std::io::Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                ErrorKind::TimedOut,
                format!("no end of response in time; got {:?}", lossy(&raw)),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(raw),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if !raw.is_empty() && e.kind() == ErrorKind::ConnectionReset => return Ok(raw),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
}

fn lossy(raw: &[u8]) -> String {
    String::from_utf8_lossy(raw).into_owned()
}

/// Status and body of a response.
fn parse(raw: &[u8]) -> std::io::Result<(u16, String)> {
    let text = lossy(raw);
    let bad = || std::io::Error::new(ErrorKind::InvalidData, format!("not a response: {text:?}"));
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(bad)?;
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    Ok((status, body.to_owned()))
}

/// The value of the metric line that starts with `line_start`, 0 when absent.
fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

/// A client that sends `head` and then nothing: it holds its connection until dropped.
fn stall(addr: SocketAddr, head: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.write_all(head.as_bytes()).expect("send head");
    s
}

/// A client that sends `start` and then one more byte of `drip` every `every` until stopped or
/// disconnected; the thread returns when the connection ended and how.
struct Dripper {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Ended>>,
}

/// How a dripping client's connection ended.
#[derive(Debug)]
struct Ended {
    /// After how long the connection was closed, `None` when the client was stopped first.
    closed_after: Option<Duration>,
    /// What the server sent before it closed.
    received: Vec<u8>,
}

impl Dripper {
    fn start(addr: SocketAddr, start: String, drip: u8, every: Duration) -> Dripper {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let t0 = Instant::now();
                let mut s = TcpStream::connect(addr).expect("connect");
                let mut received = Vec::new();
                let closed = |received| Ended {
                    closed_after: Some(t0.elapsed()),
                    received,
                };
                if s.write_all(start.as_bytes()).is_err() {
                    return closed(received);
                }
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    // Wait `every` for anything from the server (an answer, EOF, a reset).
                    if s.set_read_timeout(Some(every)).is_err() {
                        return closed(received);
                    }
                    match s.read(&mut buf) {
                        Ok(0) => return closed(received),
                        Ok(n) => received.extend_from_slice(&buf[..n]),
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(_) => return closed(received),
                    }
                    if s.write_all(&[drip]).is_err() {
                        return closed(received);
                    }
                }
                Ended {
                    closed_after: None,
                    received,
                }
            })
        };
        Dripper {
            stop,
            thread: Some(thread),
        }
    }

    /// Waits (at most `within`) for the connection to end.
    fn wait_closed(mut self, within: Duration) -> Ended {
        let t0 = Instant::now();
        let thread = self.thread.take().expect("running");
        while !thread.is_finished() && t0.elapsed() < within {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop.store(true, Ordering::Relaxed);
        thread.join().expect("dripper thread")
    }
}

impl Drop for Dripper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const STALLED_UNAUTHORIZED: &str = "POST /tunnels HTTP/1.1\r\nHost: admin\r\n\
    Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n";

#[test]
fn a_stalled_body_without_a_token_blocks_nobody_and_gets_401_unread() {
    let edge = EdgeProcess::start(&[]);
    let mut stalled = stall(edge.admin, STALLED_UNAUTHORIZED);
    // Let the edge take the stalled request in first (not needed for the check to hold, but
    // without it a server that serves one request at a time might answer the others first).
    std::thread::sleep(Duration::from_millis(300));
    // Discovery (public) and an authorized call are answered while the client holds its body.
    let slowest = edge.others_are_served();
    eprintln!("slowest answer while a client stalls without a token: {slowest:?}");
    // The stalled client got its 401 without sending a byte of the body, and was disconnected.
    let raw = read_until_close(&mut stalled, Instant::now() + ANSWER_WITHIN)
        .expect("the stalled client is answered and disconnected");
    let (status, body) = parse(&raw).expect("a response");
    assert_eq!(status, 401, "{body}");
    assert!(
        lossy(&raw).contains("WWW-Authenticate: Bearer"),
        "{}",
        lossy(&raw)
    );
    assert!(body.contains("missing or wrong bearer token"), "{body}");
}

#[test]
fn several_stalled_and_slow_clients_block_nobody() {
    let edge = EdgeProcess::start(&[]);
    let token = edge.token.clone();
    let authorized_stalled = format!(
        "POST /tunnels HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{{\"name\":"
    );
    // Held connections: silent, mid-head, mid-body with and without the token, on both servers.
    let _held: Vec<TcpStream> = vec![
        stall(edge.admin, ""),
        stall(edge.admin, ""),
        stall(edge.admin, "GET /discovery HTTP/1.1\r\nHost: adm"),
        stall(edge.admin, STALLED_UNAUTHORIZED),
        stall(edge.admin, &authorized_stalled),
        stall(edge.admin, &authorized_stalled),
        stall(edge.metrics, ""),
        stall(edge.metrics, "GET /metrics HTTP/1.1\r\nHost: me"),
    ];
    // And clients that send their head or their body a byte at a time.
    let every = Duration::from_millis(200);
    let _drippers = [
        Dripper::start(
            edge.admin,
            "GET /tunnels HTTP/1.1\r\nHost: admin\r\nX-Slow: ".into(),
            b'a',
            every,
        ),
        Dripper::start(edge.admin, authorized_stalled.clone(), b' ', every),
        Dripper::start(
            edge.metrics,
            "GET /ready HTTP/1.1\r\nHost: metrics\r\nX-Slow: ".into(),
            b'a',
            every,
        ),
    ];
    for _ in 0..3 {
        let slowest = edge.others_are_served();
        eprintln!("slowest answer with 11 stalled or slow clients: {slowest:?}");
    }
    let (status, body) = edge.authorized("POST", "/tunnels", r#"{"name":"meanwhile"}"#);
    assert_eq!(status, 201, "{body}");
}

#[test]
fn a_slow_head_or_body_is_disconnected_at_the_deadline() {
    let edge = EdgeProcess::start(&["--admin-timeout", "2"]);
    let every = Duration::from_millis(250);
    let slow_head = Dripper::start(
        edge.admin,
        "GET /discovery HTTP/1.1\r\nHost: admin\r\nX-Slow: ".into(),
        b'a',
        every,
    );
    let slow_body = Dripper::start(
        edge.admin,
        format!(
            "POST /tunnels HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{{\"name\":",
            edge.token
        ),
        b' ',
        every,
    );
    let slow_metrics = Dripper::start(
        edge.metrics,
        "GET /ready HTTP/1.1\r\nHost: metrics\r\nX-Slow: ".into(),
        b'a',
        every,
    );
    let within = Duration::from_secs(30);
    for (what, client) in [
        ("head", slow_head),
        ("body", slow_body),
        ("metrics head", slow_metrics),
    ] {
        let ended = client.wait_closed(within);
        let after = ended
            .closed_after
            .unwrap_or_else(|| panic!("slow {what} still connected after {within:?}"));
        eprintln!("slow {what} disconnected after {after:?}");
        let (status, body) = parse(&ended.received).expect("a 408 before the close");
        assert_eq!(status, 408, "slow {what}: {body}");
    }
    let text = edge.scrape();
    for reason in ["head_timeout", "body_timeout"] {
        let line =
            format!("ringtun_edge_control_rejected_total{{server=\"admin\",reason=\"{reason}\"}}");
        assert_eq!(metric(&text, &line), 1.0, "{line} in\n{text}");
    }
    let line = "ringtun_edge_control_rejected_total{server=\"metrics\",reason=\"head_timeout\"}";
    assert_eq!(metric(&text, line), 1.0, "{line} in\n{text}");
    edge.others_are_served();
}

#[test]
fn made_up_methods_leave_metrics_bounded() {
    let edge = EdgeProcess::start(&[]);
    let before = edge.scrape().len();
    let n = 2_000;
    for i in 0..n {
        let method = format!("M{i:04}");
        let (status, body) = call(edge.admin, &method, "/tunnels", None, "")
            .unwrap_or_else(|e| panic!("{method}: {e}"));
        assert_eq!(status, 401, "{method}: {body}");
    }
    let text = edge.scrape();
    let grown = text.len().saturating_sub(before);
    eprintln!(
        "/metrics: {before} bytes before, {} after {n} made-up methods",
        text.len()
    );
    let tail: String = text.lines().rev().take(20).collect::<Vec<_>>().join("\n");
    assert!(
        grown < 2048,
        "/metrics grew by {grown} bytes after {n} made-up methods; last lines:\n{tail}"
    );
    let other = metric(
        &text,
        "ringtun_edge_admin_requests_total{method=\"other\",code=\"401\"}",
    );
    assert_eq!(other, f64::from(n), "{text}");
}

#[test]
fn over_the_connection_cap_clients_get_503() {
    let edge = EdgeProcess::start(&["--admin-max-connections", "3"]);
    let held: Vec<TcpStream> = (0..3).map(|_| stall(edge.admin, "")).collect();
    let (status, body) =
        call(edge.admin, "GET", "/discovery", None, "").expect("an answer over the cap");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too many connections"), "{body}");
    drop(held);
    // The held connections end when their clients leave; then requests are served again.
    let t0 = Instant::now();
    loop {
        let (status, _) = call(edge.admin, "GET", "/discovery", None, "").expect("an answer");
        if status == 200 {
            break;
        }
        assert!(
            t0.elapsed() < ANSWER_WITHIN,
            "still {status} after the clients left"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let line = "ringtun_edge_control_rejected_total{server=\"admin\",reason=\"connections\"}";
    assert!(metric(&edge.scrape(), line) >= 1.0);
}

#[test]
fn oversized_heads_and_bodies_are_refused_unread() {
    let edge = EdgeProcess::start(&["--admin-max-head-bytes", "4096"]);
    let big = "x".repeat(8192);
    let mut s = stall(
        edge.admin,
        &format!("GET /discovery HTTP/1.1\r\nHost: admin\r\nX-Big: {big}\r\n\r\n"),
    );
    let raw = read_until_close(&mut s, Instant::now() + ANSWER_WITHIN).expect("an answer");
    assert_eq!(parse(&raw).expect("a response").0, 431, "{}", lossy(&raw));
    // A body over the cap is refused from its Content-Length, before any of it is sent.
    let mut s = stall(
        edge.admin,
        &format!(
            "POST /tunnels HTTP/1.1\r\nHost: admin\r\nAuthorization: Bearer {}\r\n\
             Content-Length: 10000000\r\n\r\n",
            edge.token
        ),
    );
    let raw = read_until_close(&mut s, Instant::now() + ANSWER_WITHIN).expect("an answer");
    let (status, body) = parse(&raw).expect("a response");
    assert_eq!(status, 413, "{body}");
    assert_eq!(body, r#"{"error":"request body over 64 KiB"}"#);
    let text = edge.scrape();
    for reason in ["head_too_large", "body_too_large"] {
        let line =
            format!("ringtun_edge_control_rejected_total{{server=\"admin\",reason=\"{reason}\"}}");
        assert_eq!(metric(&text, &line), 1.0, "{line} in\n{text}");
    }
}

#[test]
fn hostile_host_names_on_a_wildcard_route_leave_metrics_bounded_and_parseable() {
    let edge = EdgeProcess::start(&[]);
    let (status, body) = edge.authorized("POST", "/tunnels", r#"{"name":"web"}"#);
    assert_eq!(status, 201, "{body}");
    let (status, body) = edge.authorized(
        "POST",
        "/routes/dns",
        r#"{"tunnel":"web","hostname":"*.example.com"}"#,
    );
    assert_eq!(status, 201, "{body}");
    let mut hosts: Vec<String> = (0..20)
        .map(|i| format!("{i}{}.example.com", "a".repeat(8000)))
        .collect();
    hosts.push(r#"x"}.example.com"#.into());
    hosts.push("ok.example.com".into());
    // Routes reach the workers' view of the registry: wait until the wildcard route serves.
    let t0 = Instant::now();
    while public_get(edge.public, "ok.example.com").0 == 404 {
        assert!(
            t0.elapsed() < ANSWER_WITHIN,
            "the wildcard route never served"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = edge.scrape().len();
    for host in &hosts {
        // Whatever the answer (no connector: 503), the request went through the route table.
        public_get(edge.public, host);
    }
    let text = edge.scrape();
    let values: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("ringtun_edge_requests_total{hostname=\""))
        .map(|rest| rest.rsplit_once("\"}").map_or(rest, |(v, _)| v))
        .collect();
    assert!(values.contains(&"ok.example.com"), "{values:?}");
    for v in &values {
        let dns = v.len() <= 253
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b));
        assert!(
            dns,
            "hostname label {:?} is not a DNS name",
            &v[..v.len().min(80)]
        );
    }
    let grown = text.len().saturating_sub(before);
    assert!(
        grown < 2048,
        "/metrics grew by {grown} bytes for {} hosts",
        hosts.len()
    );
}

/// `GET /` with `Host: host` on the public listener: status and body.
fn public_get(addr: SocketAddr, host: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    let req = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let raw = read_until_close(&mut s, Instant::now() + ANSWER_WITHIN).expect("an answer");
    parse(&raw).unwrap_or_else(|e| panic!("Host {}: {e}", &host[..host.len().min(40)]))
}
