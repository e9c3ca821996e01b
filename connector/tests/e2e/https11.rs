//! HTTP/1.1 over TLS on the edge's public HTTPS listener (`--public-https`), through a real
//! `ringtun tunnel run` connector to an HTTP/1.1 origin (`test-support/src/origin.rs`): `curl
//! --http1.1` (ALPN `http/1.1`) and a client without ALPN get HTTP/1.1 with everything the
//! plaintext path does (bodies both ways, keep-alive, a WebSocket raw pipe, the slow-client
//! deadlines, the per-IP connection limit, hand-off to another worker with its TLS session),
//! while `curl --http2` on the same listener still gets HTTP/2. A client that sends no TLS
//! handshake, or garbage instead of one, is closed and counted.
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use e2e::origin::pattern;
use e2e::{
    Connector, Edge, EdgeOptions, STEP_TIMEOUT, Service, TestOrigin, Tunnel, get_when_served,
    log_field, send_raw, wait_for,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

const HOST: &str = "app.https11.test";

/// One edge with `--public-https` and `--metrics`, a tunnel routed from [`HOST`] and a
/// connector in front of a [`TestOrigin`].
struct HttpsSite {
    edge: Edge,
    _connector: Connector,
    https: SocketAddr,
    metrics: SocketAddr,
    _origin: TestOrigin,
}

impl HttpsSite {
    fn start(dir: &Path, workers: Option<usize>, extra: &[&str], connector: &[&str]) -> HttpsSite {
        let origin = TestOrigin::start();
        let mut args: Vec<String> = ["--public-https", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let edge = Edge::start_with(
            dir,
            EdgeOptions {
                workers,
                extra: args,
                ..EdgeOptions::default()
            },
        );
        let tunnel = Tunnel::create(&edge, "https11");
        tunnel.route_dns(&edge, HOST);
        let connector = Connector::run_args(&edge, &tunnel, &Service::Url(origin.url()), connector);
        edge.wait_connectors("https11", 1);
        let r = get_when_served(edge.public_http(), HOST, "/cl");
        assert_eq!(r.status, 200, "{}", edge.proc.tail(20));
        let https = wait_for(&edge.proc, "the public HTTPS address", |l| {
            log_field(l, "public_https")?.parse().ok()
        });
        let metrics = wait_for(&edge.proc, "the metrics address", |l| {
            if l.contains("metrics server listening") {
                log_field(l, "metrics")?.parse().ok()
            } else {
                None
            }
        });
        HttpsSite {
            edge,
            _connector: connector,
            https,
            metrics,
            _origin: origin,
        }
    }

    fn ca(&self) -> PathBuf {
        self.edge.dir.join("state").join("ca.pem")
    }

    /// A sample of `/metrics`: the value of the line that starts with `series ` (0 if none).
    fn metric(&self, series: &str) -> u64 {
        let req = "GET /metrics HTTP/1.1\r\nHost: m\r\nConnection: close\r\n\r\n";
        let raw = String::from_utf8_lossy(&send_raw(self.metrics, req.as_bytes())).into_owned();
        raw.lines()
            .find_map(|l| {
                l.strip_prefix(series)?
                    .strip_prefix(' ')?
                    .trim()
                    .parse()
                    .ok()
            })
            .unwrap_or(0)
    }

    /// Waits until `series` reaches `at_least`.
    fn wait_metric(&self, series: &str, at_least: u64) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let n = self.metric(series);
            if n >= at_least {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series} stayed at {n}, below {at_least}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `curl --cacert CA --resolve localhost:PORT:127.0.0.1 -H 'Host: HOST' ARGS URLS…` where
    /// each path becomes `https://localhost:PORT/PATH`.
    fn curl(&self, args: &[&str], paths: &[&str]) -> Output {
        let port = self.https.port();
        let ca = self.ca().display().to_string();
        let resolve = format!("localhost:{port}:127.0.0.1");
        let host = format!("Host: {HOST}");
        let urls: Vec<String> = paths
            .iter()
            .map(|p| format!("https://localhost:{port}{p}"))
            .collect();
        let mut all: Vec<&str> = vec!["--cacert", &ca, "--resolve", &resolve, "-H", &host];
        all.extend_from_slice(args);
        all.extend(urls.iter().map(String::as_str));
        curl(&all)
    }

    /// A TLS client of our own (rustls) offering `alpn` (none when empty).
    fn tls(&self, alpn: &[&[u8]]) -> StreamOwned<ClientConnection, TcpStream> {
        self.try_tls(alpn)
            .unwrap_or_else(|e| panic!("TLS handshake failed: {e}"))
    }

    fn try_tls(&self, alpn: &[&[u8]]) -> std::io::Result<StreamOwned<ClientConnection, TcpStream>> {
        let pem = std::fs::read(self.ca()).unwrap();
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(&pem) {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let name = ServerName::try_from("localhost").unwrap();
        let conn = ClientConnection::new(Arc::new(cfg), name).unwrap();
        let tcp = TcpStream::connect(self.https)?;
        tcp.set_read_timeout(Some(STEP_TIMEOUT))?;
        let mut s = StreamOwned::new(conn, tcp);
        while s.conn.is_handshaking() {
            s.conn.complete_io(&mut s.sock)?;
        }
        Ok(s)
    }
}

/// `curl -sS ARGS` within the step timeout.
fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", &STEP_TIMEOUT.as_secs().to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl (needed for the HTTPS tests): {e}"))
}

/// Splits `curl -w '\n%{http_code} %{http_version}'` output into body, status and version.
fn split(out: &Output) -> (Vec<u8>, String, String) {
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let raw = &out.stdout;
    let cut = raw.iter().rposition(|&b| b == b'\n').unwrap();
    let tail = String::from_utf8_lossy(&raw[cut + 1..]).into_owned();
    let (status, version) = tail.split_once(' ').unwrap();
    (raw[..cut].to_vec(), status.to_owned(), version.to_owned())
}

/// The lines of a successful curl's output.
fn lines(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

const W: &str = "\n%{http_code} %{http_version}";

/// Reads a response head byte by byte (so nothing after it is consumed).
fn read_head(s: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte)
            .unwrap_or_else(|e| panic!("reading a response head: {e}; got {head:?}"));
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Whether the edge closed `s` (EOF or an error other than the read timeout).
fn closed_by_edge(s: &mut impl Read) -> bool {
    let mut buf = [0u8; 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) => return !matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        }
    }
}

#[test]
fn http1_over_tls_serves_bodies_and_keep_alive_and_h2_shares_the_listener() {
    let dir = tempfile::tempdir().unwrap();
    let site = HttpsSite::start(dir.path(), None, &[], &[]);
    let h2_before = site.metric("ringtun_edge_public_h2_requests_total");

    // ALPN http/1.1: the origin sees the scheme the client used.
    let (body, status, version) = split(&site.curl(&["--http1.1", "-w", W], &["/head"]));
    assert_eq!((status.as_str(), version.as_str()), ("200", "1.1"));
    let head = String::from_utf8_lossy(&body).to_ascii_lowercase();
    assert!(head.starts_with("get /head http/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("\r\nhost: {HOST}\r\n")), "{head}");
    assert!(head.contains("\r\nx-forwarded-proto: https\r\n"), "{head}");

    // Small (buffered) and large (streamed) uploads echoed, and a large chunked download.
    for n in [1000usize, 3 << 20] {
        let file = dir.path().join(format!("up-{n}"));
        let data: Vec<u8> = (0..n).map(pattern).collect();
        std::fs::write(&file, &data).unwrap();
        let up = format!("@{}", file.display());
        let out = site.curl(&["--http1.1", "--data-binary", &up, "-w", W], &["/echo"]);
        let (body, status, version) = split(&out);
        assert_eq!((status.as_str(), version.as_str()), ("200", "1.1"));
        assert!(
            body == data,
            "echo of {n} bytes differs (got {})",
            body.len()
        );
    }
    let n = 8 << 20;
    let (body, status, _) = split(&site.curl(&["--http1.1", "-w", W], &[&format!("/big?{n}")]));
    assert_eq!(status, "200");
    assert_eq!(body.len(), n);
    assert!(
        body.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "download differs"
    );

    // Keep-alive: four requests, one connection.
    let w = "%{http_code} %{http_version} %{size_download} %{num_connects}\n";
    let mut args = vec!["--http1.1", "-w", w];
    args.extend(["-o", "/dev/null"].repeat(4));
    let out = site.curl(&args, &["/cl", "/sized?100000", "/chunked", "/cl"]);
    assert_eq!(
        lines(&out),
        [
            "200 1.1 5 1",
            "200 1.1 100000 0",
            "200 1.1 6 0",
            "200 1.1 5 0"
        ]
    );

    // A client that offers no ALPN gets HTTP/1.1, and a close with close_notify.
    let mut s = site.tls(&[]);
    assert_eq!(s.conn.alpn_protocol(), None);
    s.write_all(
        format!("GET /cl HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .unwrap_or_else(|e| panic!("after {raw:?}: {e}"));
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.ends_with("\r\n\r\nhello"), "{text}");

    assert_eq!(
        site.metric("ringtun_edge_public_h2_requests_total"),
        h2_before,
        "HTTP/1.1 requests went to the HTTP/2 server"
    );

    // HTTP/2 on the same listener still: ALPN h2.
    let (body, status, version) = split(&site.curl(&["--http2", "-w", W], &["/cl"]));
    assert_eq!((status.as_str(), version.as_str()), ("200", "2"));
    assert_eq!(body, b"hello");
    assert_eq!(
        site.metric("ringtun_edge_public_h2_requests_total"),
        h2_before + 1
    );
}

#[test]
fn a_websocket_over_tls_pipes_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let site = HttpsSite::start(dir.path(), None, &[], &[]);
    let mut s = site.tls(&[b"http/1.1"]);
    assert_eq!(s.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
    s.write_all(
        format!(
            "GET /chat HTTP/1.1\r\nHost: {HOST}\r\nUpgrade: websocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let head = read_head(&mut s).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    // The origin echoes; the echo waits in the socket buffers until it is read below.
    let data: Vec<u8> = (0..200_000).map(pattern).collect();
    for piece in data.chunks(4096) {
        s.write_all(piece).unwrap();
    }
    // Half-close: close_notify ends the client's direction; the echo still comes back, then
    // the edge's close_notify.
    s.conn.send_close_notify();
    s.flush().unwrap();
    let mut back = Vec::new();
    s.read_to_end(&mut back)
        .unwrap_or_else(|e| panic!("after {} bytes of the echo: {e}", back.len()));
    assert_eq!(back.len(), data.len());
    assert!(back == data, "the echo differs");
}

#[test]
fn slow_and_hostile_tls_clients_are_cut_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let site = HttpsSite::start(
        dir.path(),
        None,
        &[
            "--public-tls-handshake-timeout",
            "1",
            "--request-body-timeout",
            "1",
            "--request-body-min-rate",
            "0",
            "--max-connections-per-ip",
            "3",
        ],
        &[],
    );
    let handshake_timeouts = "ringtun_edge_limit_hits_total{reason=\"tls_handshake_timeout\"}";
    let handshake_errors = "ringtun_edge_public_errors_total{cause=\"tls_handshake\"}";
    let body_timeouts = "ringtun_edge_limit_hits_total{reason=\"request_body_timeout\"}";
    let per_ip = "ringtun_edge_limit_hits_total{reason=\"client_connections\"}";

    // A client that connects and says nothing is closed after the handshake deadline.
    let mut silent = TcpStream::connect(site.https).unwrap();
    silent.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    assert!(
        closed_by_edge(&mut silent),
        "a silent client was not closed"
    );
    site.wait_metric(handshake_timeouts, 1);
    assert_eq!(site.metric(handshake_errors), 0);

    // Plain HTTP instead of a ClientHello: closed at once, counted, no harm done.
    let mut garbage = TcpStream::connect(site.https).unwrap();
    garbage.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    garbage
        .write_all(format!("GET / HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
        .unwrap();
    assert!(
        closed_by_edge(&mut garbage),
        "a garbage client was not closed"
    );
    site.wait_metric(handshake_errors, 1);
    assert_eq!(site.metric(handshake_timeouts), 1);

    // A request body that stalls over TLS is cut by the body deadline.
    let mut slow = site.tls(&[b"http/1.1"]);
    slow.write_all(
        format!("POST /echo HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: 100\r\n\r\n0123456789")
            .as_bytes(),
    )
    .unwrap();
    assert!(closed_by_edge(&mut slow), "a stalled body was not cut");
    site.wait_metric(body_timeouts, 1);

    // The per-IP limit holds over TLS: three served connections, a fourth closed at once.
    // (Each of the three retries its handshake until the closes above have freed the places.)
    let mut held = Vec::new();
    for _ in 0..3 {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut s = loop {
            match site.try_tls(&[b"http/1.1"]) {
                Ok(s) => break s,
                Err(e) => {
                    assert!(Instant::now() < deadline, "no place for a connection: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        };
        s.write_all(format!("GET /cl HTTP/1.1\r\nHost: {HOST}\r\n\r\n").as_bytes())
            .unwrap();
        let head = read_head(&mut s);
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let mut body = [0u8; 5];
        s.read_exact(&mut body).unwrap();
        held.push(s);
    }
    let before = site.metric(per_ip);
    assert!(
        site.try_tls(&[b"http/1.1"]).is_err(),
        "a fourth connection from one IP was served"
    );
    site.wait_metric(per_ip, before + 1);
    drop(held);

    // The edge serves on.
    let (body, status, _) = split(&site.curl(&["--http1.1", "-w", W], &["/cl"]));
    assert_eq!((status.as_str(), body.as_slice()), ("200", &b"hello"[..]));
}

#[test]
fn tls_connections_move_to_the_worker_with_the_link() {
    let dir = tempfile::tempdir().unwrap();
    // One link on four workers: connections accepted by the other three are handed over with
    // their TLS session.
    let site = HttpsSite::start(dir.path(), Some(4), &[], &["--ha-connections", "1"]);
    let handoffs = site.metric("ringtun_edge_handoffs_total");

    // A connection each.
    let n = 16;
    let w = "%{http_code} %{size_download} %{num_connects}\n";
    let paths: Vec<String> = (0..n).map(|i| format!("/sized?{}", 1000 + i)).collect();
    let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
    let mut args = vec!["--http1.1", "-H", "Connection: close", "-w", w];
    args.extend(["-o", "/dev/null"].repeat(n));
    let out = site.curl(&args, &refs);
    let want: Vec<String> = (0..n).map(|i| format!("200 {} 1", 1000 + i)).collect();
    assert_eq!(lines(&out), want);

    // Bodies replayed on the other worker, and keep-alive after the move.
    let file = dir.path().join("up");
    let data: Vec<u8> = (0..5000).map(pattern).collect();
    std::fs::write(&file, &data).unwrap();
    let up = format!("@{}", file.display());
    for _ in 0..4 {
        let out = site.curl(
            &[
                "--http1.1",
                "--data-binary",
                &up,
                "-w",
                "\n%{http_code} %{num_connects}",
            ],
            &["/echo", "/echo", "/echo"],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut want = Vec::new();
        for i in 0..3 {
            want.extend_from_slice(&data);
            want.extend_from_slice(format!("\n200 {}", u8::from(i == 0)).as_bytes());
        }
        assert!(
            out.stdout == want,
            "{}",
            String::from_utf8_lossy(&out.stdout[out.stdout.len().saturating_sub(64)..])
        );
    }

    let moved = site.metric("ringtun_edge_handoffs_total") - handoffs;
    assert!(moved > 0, "no connection was handed off");
}
