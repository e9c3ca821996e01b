//! Origin kinds and options through real processes: a client on the public listener of a real
//! `ringtun-edge`, a real `ringtun tunnel run` connector, and in-test origins
//! (`test-support/src/origin.rs`) on TCP and Unix sockets, plain and TLS.
//!
//! - `unix:` and `unix+tls:` services: HTTP bodies both ways, WebSocket, keep-alive, and the
//!   pool keeping Unix and TCP origins apart;
//! - `caPool`, `originServerName`, `tlsTimeout`: trusted, refused (502 naming the fix) and
//!   stalled (502 naming the timeout) handshakes;
//! - `disableChunkedEncoding`: a chunked upload reaches an origin that cannot read chunked
//!   bodies with a Content-Length (the in-test origin, and Python's `http.server` when
//!   `python3` is installed); over `bufferedBodyLimit` the client gets 413;
//! - config errors (a missing or bad `caPool`, a relative socket path) at `ingress validate`,
//!   `tunnel run` and on reload.
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::net::UnixListener;
use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use e2e::origin::{TlsOrigin, pattern};
use e2e::{
    Client, Connector, Edge, STEP_TIMEOUT, ServedTunnel, Service, TestOrigin, Tunnel, http_get,
    log_field, read_head, signal, wait_for,
};

/// `n` bytes of the test pattern.
fn payload(n: usize) -> Vec<u8> {
    (0..n).map(pattern).collect()
}

/// `GET PATH` on a kept-alive connection.
fn get(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// A POST of `body` in chunks of 1000 bytes (`Transfer-Encoding: chunked`).
fn chunked_post(host: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut req =
        format!("POST {path} HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\n")
            .into_bytes();
    for piece in body.chunks(1000) {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    req
}

/// A POST of `body` with a Content-Length.
fn sized_post(host: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Opens a WebSocket through the edge, sends `n` bytes while reading the echo, and checks it.
fn websocket_echo(public: std::net::SocketAddr, host: &str, n: usize) {
    let mut s = TcpStream::connect(public).unwrap();
    s.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let head = read_head(&mut s).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{host}: {head}");
    let data = payload(n);
    let sent = data.clone();
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        for piece in sent.chunks(4096) {
            w.write_all(piece).unwrap();
        }
        w.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    s.read_to_end(&mut back)
        .unwrap_or_else(|e| panic!("{host}: after {} echoed bytes: {e}", back.len()));
    writer.join().unwrap();
    assert_eq!(back.len(), data.len(), "{host}: echo length");
    assert!(back == data, "{host}: echo differs");
}

const UNIX: &str = "unix.origins.test";
const UNIX_TLS: &str = "tls.unix.origins.test";
const TCP: &str = "tcp.origins.test";

/// `unix:` and `unix+tls:` services serve HTTP and WebSocket, and keep-alive reuses one
/// connection per origin: the pool does not mix a Unix origin with a TCP one.
#[test]
fn unix_socket_origins_serve_http_and_websocket_each_with_its_own_pooled_connection() {
    let dir = tempfile::tempdir().unwrap();
    let plain_sock = dir.path().join("plain.sock");
    let tls_sock = dir.path().join("tls.sock");
    let unix_origin = TestOrigin::start_unix(&plain_sock);
    let tcp_origin = TestOrigin::start();
    let tls_origin = TlsOrigin::new(&[UNIX_TLS]);
    tls_origin.listen_unix(&tls_sock);
    let ca = dir.path().join("origin-ca.pem");
    std::fs::write(&ca, &tls_origin.ca_pem).unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "ingress:\n  - hostname: {UNIX}\n    service: unix:{}\n\
             \x20 - hostname: {UNIX_TLS}\n    service: unix+tls:{}\n    originRequest:\n      caPool: {}\n\
             \x20 - hostname: {TCP}\n    service: {}\n\
             \x20 - service: http_status:404\n",
            plain_sock.display(),
            tls_sock.display(),
            ca.display(),
            tcp_origin.url()
        ),
    )
    .unwrap();
    // One worker: one pool, so reuse shows in the origins' connection counts.
    let site = ServedTunnel::start(
        dir.path(),
        "unix",
        &[UNIX, UNIX_TLS, TCP],
        &Service::Config(config),
        &["--workers", "1"],
    );
    let public = site.public;

    // Plain Unix socket: bodies both ways, fixed and chunked.
    let r = http_get(public, UNIX, "/cl");
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "hello"),
        "{}",
        r.text()
    );
    let mut c = Client::connect(public);
    let body = payload(300_000);
    let r = c.request(&chunked_post(UNIX, "/echo", &body));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body == body, "chunked upload echoed intact");
    let r = c.request(&get(UNIX, "/big?200000"));
    assert_eq!(r.body, payload(200_000), "chunked download intact");

    // Unix and TCP origins alternate on one client connection: each request reaches its own
    // origin, each origin over one pooled connection.
    let (unix_before, tcp_before) = (unix_origin.connections(), tcp_origin.connections());
    for i in 0..6 {
        let (host, path) = if i % 2 == 0 {
            (UNIX, format!("/via-unix-{i}"))
        } else {
            (TCP, format!("/via-tcp-{i}"))
        };
        let r = c.request(&get(host, &path));
        assert_eq!(r.status, 200, "{host}{path}: {}", r.text());
        assert!(
            r.text().starts_with(&format!("GET {path} ")),
            "{}",
            r.text()
        );
    }
    for i in 0..6 {
        let (mine, other) = if i % 2 == 0 {
            (&unix_origin, &tcp_origin)
        } else {
            (&tcp_origin, &unix_origin)
        };
        let path = if i % 2 == 0 {
            format!("/via-unix-{i}")
        } else {
            format!("/via-tcp-{i}")
        };
        assert!(
            mine.head_of(&path).is_some(),
            "{path} did not reach its origin"
        );
        assert!(
            other.head_of(&path).is_none(),
            "{path} reached the other origin"
        );
    }
    assert_eq!(
        unix_origin.connections(),
        unix_before,
        "the pooled Unix origin connection serves on"
    );
    assert_eq!(
        tcp_origin.connections(),
        tcp_before + 1,
        "one TCP origin connection, reused"
    );

    // WebSocket over the plain Unix socket.
    websocket_echo(public, UNIX, 200_000);

    // TLS over a Unix socket, trusting the origin's CA through caPool; the server name is the
    // request's host. Keep-alive: one TLS connection for several requests.
    for i in 0..4 {
        let r = c.request(&sized_post(UNIX_TLS, "/", &payload(1000 * i)));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), format!("secure hello ({} body bytes)", 1000 * i));
    }
    assert_eq!(tls_origin.log.connections.load(Ordering::SeqCst), 1);
    assert_eq!(
        tls_origin.log.server_names.lock().unwrap().as_slice(),
        &[Some(UNIX_TLS.to_owned())]
    );
    websocket_echo(public, UNIX_TLS, 100_000);
}

const TRUSTED: &str = "trusted.tls.origins.test";
const UNTRUSTED: &str = "untrusted.tls.origins.test";
const NAMED: &str = "named.tls.origins.test";
const STALL: &str = "stall.tls.origins.test";
const STALL_UNIX: &str = "stall-unix.tls.origins.test";

/// `caPool` trusts an origin's private CA on top of the web PKI, and `tlsTimeout` bounds a
/// handshake that stalls (502 naming the setting).
#[test]
fn ca_pool_trusts_a_private_ca_and_tls_timeout_bounds_a_stalled_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TlsOrigin::new(&["127.0.0.1", "origin.internal"]);
    let addr = origin.listen_tcp();
    let ca = dir.path().join("origin-ca.pem");
    std::fs::write(&ca, &origin.ca_pem).unwrap();
    // Accept connections and never answer the handshake (held open), TCP and Unix.
    let stall = TcpListener::bind("127.0.0.1:0").unwrap();
    let stall_addr = stall.local_addr().unwrap();
    let stall_sock = dir.path().join("stall.sock");
    let stall_unix = UnixListener::bind(&stall_sock).unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in stall.incoming() {
            held.push(c);
        }
    });
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in stall_unix.incoming() {
            held.push(c);
        }
    });
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "originRequest:\n  tlsTimeout: 1s\n\
             ingress:\n  - hostname: {TRUSTED}\n    service: https://{addr}\n    originRequest:\n      caPool: {ca}\n\
             \x20 - hostname: {UNTRUSTED}\n    service: https://{addr}\n\
             \x20 - hostname: {NAMED}\n    service: https://{addr}\n    originRequest:\n      caPool: {ca}\n      originServerName: origin.internal\n\
             \x20 - hostname: {STALL}\n    service: https://{stall_addr}\n\
             \x20 - hostname: {STALL_UNIX}\n    service: unix+tls:{}\n\
             \x20 - service: http_status:404\n",
            stall_sock.display(),
            ca = ca.display(),
        ),
    )
    .unwrap();
    let site = ServedTunnel::start(
        dir.path(),
        "tls",
        &[TRUSTED, UNTRUSTED, NAMED, STALL, STALL_UNIX],
        &Service::Config(config),
        &["--workers", "1", "--metrics", "127.0.0.1:0"],
    );
    let public = site.public;

    let r = http_get(public, TRUSTED, "/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "secure hello (0 body bytes)");

    // Without the pool, the web PKI alone does not trust it: 502 naming what to set.
    let r = http_get(public, UNTRUSTED, "/");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.text().contains("certificate") && r.text().contains("originRequest.caPool"),
        "{}",
        r.text()
    );

    // originServerName with the pool: SNI and verified name.
    let r = http_get(public, NAMED, "/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        origin
            .log
            .server_names
            .lock()
            .unwrap()
            .contains(&Some("origin.internal".to_owned())),
        "no handshake with SNI origin.internal"
    );

    // A handshake that never completes: 502 naming tlsTimeout, TCP and Unix alike, well
    // before connectTimeout (30 s) or the origin response timeout (100 s) would end it.
    for host in [STALL, STALL_UNIX] {
        let started = Instant::now();
        let r = http_get(public, host, "/");
        assert_eq!(r.status, 502, "{host}: {}", r.text());
        assert!(
            r.text().contains("did not finish within tlsTimeout (1s)"),
            "{host}: {}",
            r.text()
        );
        assert!(started.elapsed() < Duration::from_secs(25), "{host}");
    }

    // The connector's metrics count the timeouts under their own cause.
    let metrics = metrics_text(&site);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("ringtun_request_errors_total{cause=\"origin_tls_timeout\"} 2")),
        "{metrics}"
    );
}

/// The connector's `/metrics` text, from the address it logged.
fn metrics_text(site: &ServedTunnel) -> String {
    let addr = wait_for(&site.connector.proc, "the metrics address", |l| {
        if l.contains("metrics server listening") {
            log_field(l, "metrics")?
                .parse::<std::net::SocketAddr>()
                .ok()
        } else {
            None
        }
    });
    let r = http_get(addr, "localhost", "/metrics");
    assert_eq!(r.status, 200);
    r.text()
}

const UNCHUNKED: &str = "unchunked.origins.test";
const CHUNKED: &str = "chunked.origins.test";

/// `disableChunkedEncoding`: a chunked upload reaches an origin that refuses chunked bodies with
/// a Content-Length; a body of known length keeps its own; over `bufferedBodyLimit`: 413.
#[test]
fn disable_chunked_encoding_sends_chunked_uploads_with_a_content_length_up_to_a_limit() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "ingress:\n  - hostname: {UNCHUNKED}\n    service: {url}\n    originRequest:\n      disableChunkedEncoding: true\n      bufferedBodyLimit: 100000\n\
             \x20 - hostname: {CHUNKED}\n    service: {url}\n\
             \x20 - service: http_status:404\n",
            url = origin.url()
        ),
    )
    .unwrap();
    let site = ServedTunnel::start(
        dir.path(),
        "unchunk",
        &[UNCHUNKED, CHUNKED],
        &Service::Config(config),
        &[],
    );
    let public = site.public;
    let body = payload(60_000);
    let mut c = Client::connect(public);

    // Without the option the origin gets the chunked body and refuses it.
    let r = c.request(&chunked_post(CHUNKED, "/length-only?a", &body));
    assert_eq!(r.status, 411, "{}", r.text());

    // With it: a Content-Length, no Transfer-Encoding, the body intact.
    let r = c.request(&chunked_post(UNCHUNKED, "/length-only?b", &body));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body == body, "body intact");
    let head = origin.head_of("/length-only?b").unwrap();
    assert!(head.contains("\r\ncontent-length: 60000\r\n"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");

    // A body of known length is sent as it came, over the limit or not.
    let big = payload(150_000);
    let r = c.request(&sized_post(UNCHUNKED, "/length-only?c", &big));
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.body == big, "sized body intact");
    let head = origin.head_of("/length-only?c").unwrap();
    assert!(head.contains("\r\ncontent-length: 150000\r\n"), "{head}");

    // A chunked body over bufferedBodyLimit: 413 saying why; nothing reached the origin.
    let mut over = Client::connect(public);
    let r = over.request(&chunked_post(UNCHUNKED, "/length-only?d", &big));
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("bufferedBodyLimit"), "{}", r.text());
    assert!(origin.head_of("/length-only?d").is_none());

    // Far over it: the 413 arrives whole while the upload goes on (from another thread).
    let mut s = TcpStream::connect(public).unwrap();
    s.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    let huge = chunked_post(
        &format!("{UNCHUNKED}\r\nConnection: close"),
        "/length-only?huge",
        &payload(2_000_000),
    );
    let mut w = s.try_clone().unwrap();
    let writer = std::thread::spawn(move || {
        let _ = w.write_all(&huge);
    });
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let r = e2e::parse_response(&answer)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&answer)));
    assert_eq!(r.status, 413, "{}", r.text());
    assert!(r.text().contains("bufferedBodyLimit"), "{}", r.text());
    writer.join().unwrap();
    assert!(origin.head_of("/length-only?huge").is_none());

    // Other clients are served on.
    let r = c.request(&chunked_post(UNCHUNKED, "/length-only?e", b"small"));
    assert_eq!((r.status, r.text().as_str()), (200, "small"));
}

/// `ringtun` with `args` in `home` (no config found by itself); the exit status and output.
fn run_to_exit(edge: &Edge, args: &[&str]) -> (Option<i32>, String) {
    let mut child = edge
        .ringtun_cmd(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + STEP_TIMEOUT;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ringtun {args:?} did not exit");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    (status.code(), out)
}

/// A missing or bad `caPool` and a relative socket path are config errors: `ingress validate`
/// and `tunnel run` refuse the file, and a reload keeps the rules that serve.
#[test]
fn bad_ca_pools_and_relative_socket_paths_are_refused_at_load_and_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let tunnel = Tunnel::create(&edge, "cfg");
    tunnel.route_dns(&edge, UNIX);
    let write = |name: &str, text: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let bad_pem = write("bad.pem", "this is not a certificate\n");
    let cases = [
        (
            "missing-pool.yml",
            "ingress:\n  - service: https://localhost:8443\n    originRequest:\n      caPool: /nonexistent/ca.pem\n".to_owned(),
            vec!["ingress[0].originRequest.caPool", "/nonexistent/ca.pem"],
        ),
        (
            "bad-pool.yml",
            format!("originRequest:\n  caPool: {}\ningress:\n  - service: https://localhost:8443\n", bad_pem.display()),
            vec!["originRequest.caPool", "no PEM CERTIFICATE"],
        ),
        (
            "relative.yml",
            "ingress:\n  - service: unix:run/app.sock\n".to_owned(),
            vec!["unix:run/app.sock", "not absolute"],
        ),
    ];
    for (name, text, wanted) in &cases {
        let file = write(name, text);
        let file = file.to_str().unwrap();
        let (code, out) = run_to_exit(&edge, &["ingress", "validate", "--config", file]);
        assert_eq!(code, Some(1), "validate {name}: {out}");
        for w in wanted {
            assert!(out.contains(w), "validate {name}: no {w:?} in {out}");
        }
        let (code, out) = run_to_exit(&edge, &["tunnel", "run", "cfg", "--config", file]);
        assert_ne!(code, Some(0), "tunnel run {name}: {out}");
        for w in wanted {
            assert!(out.contains(w), "tunnel run {name}: no {w:?} in {out}");
        }
    }

    // A running connector keeps its rules when the new file's caPool is missing.
    let sock = dir.path().join("app.sock");
    let _origin = TestOrigin::start_unix(&sock);
    let good = format!("ingress:\n  - service: unix:{}\n", sock.display());
    let config = write("config.yml", &good);
    let connector = Connector::run(&edge, &tunnel, &Service::Config(config.clone()));
    edge.wait_connectors("cfg", 1);
    let public = edge.public_http();
    let r = e2e::get_when_served(public, UNIX, "/cl");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    write(
        "config.yml",
        &format!(
            "ingress:\n  - service: unix:{}\n    originRequest:\n      caPool: {}\n",
            sock.display(),
            dir.path().join("gone.pem").display()
        ),
    );
    signal(&connector.proc, "HUP");
    let line = wait_for(&connector.proc, "the reload rejection", |l| {
        l.contains("config reload rejected").then(|| l.to_owned())
    });
    assert!(
        line.contains("caPool") && line.contains("gone.pem"),
        "{line}"
    );
    let r = http_get(public, UNIX, "/cl");
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
}

/// A Python `http.server` origin whose POST handler reads `Content-Length` bytes, as WSGI-style
/// servers do (it cannot read a chunked body), and answers with what it got. Threaded: a
/// connection the connector keeps alive in one worker's pool must not block another worker's.
/// Stopped on drop.
struct PythonOrigin {
    child: std::process::Child,
    port: u16,
}

impl PythonOrigin {
    /// `None` when `python3` is not installed.
    fn start() -> Option<PythonOrigin> {
        const SCRIPT: &str = r#"
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        n = int(self.headers["Content-Length"])
        body = self.rfile.read(n)
        te = self.headers.get("Transfer-Encoding", "none")
        out = ("got %d bytes, transfer-encoding %s" % (len(body), te)).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)
s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;
        let mut child = std::process::Command::new("python3")
            .args(["-c", SCRIPT])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
        let port = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("python3 printed {line:?}"));
        Some(PythonOrigin { child, port })
    }
}

impl Drop for PythonOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const WSGI: &str = "wsgi.origins.test";
const WSGI_CHUNKED: &str = "wsgi-chunked.origins.test";

/// A real origin that cannot read chunked bodies: with `disableChunkedEncoding` a chunked
/// upload reaches it whole with a Content-Length; without, it fails (502).
#[test]
fn python_http_server_reads_chunked_uploads_with_disable_chunked_encoding() {
    let Some(py) = PythonOrigin::start() else {
        eprintln!("python3 is not installed; skipping the Python origin test");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "ingress:\n  - hostname: {WSGI}\n    service: http://127.0.0.1:{port}\n    originRequest:\n      disableChunkedEncoding: true\n\
             \x20 - hostname: {WSGI_CHUNKED}\n    service: http://127.0.0.1:{port}\n\
             \x20 - service: http_status:404\n",
            port = py.port
        ),
    )
    .unwrap();
    let site = ServedTunnel::start(dir.path(), "wsgi", &[], &Service::Config(config), &[]);
    site.tunnel.route_dns(&site.edge, WSGI);
    site.tunnel.route_dns(&site.edge, WSGI_CHUNKED);
    let body = payload(50_000);
    let r = Client::connect(site.public).request(&chunked_post(WSGI, "/upload", &body));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "got 50000 bytes, transfer-encoding none");
    // Without the option the handler finds no Content-Length and fails.
    let r = Client::connect(site.public).request(&chunked_post(WSGI_CHUNKED, "/upload", &body));
    assert_eq!(r.status, 502, "{}", r.text());
}
