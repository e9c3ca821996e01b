//! Public clients speaking HTTP/2 to a real `ringtun-edge`, through a real `ringtun tunnel
//! run` connector, to an HTTP/1.1 origin (`test-support/src/origin.rs`): `curl
//! --http2-prior-knowledge` on the public HTTP listener (h2c), `curl --http2` on the public
//! HTTPS listener (ALPN `h2`), many streams on one connection, the error pages, and hostile
//! clients (rapid reset, streams over the concurrency limit) answered with RST_STREAM and
//! GOAWAY and counted in `ringtun_edge_limit_hits_total{reason}`.
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use e2e::origin::pattern;
use e2e::{
    Connector, Edge, EdgeOptions, STEP_TIMEOUT, Service, TestOrigin, Tunnel, get_when_served,
    log_field, send_raw, wait_for,
};

const HOST: &str = "app.h2.test";

/// One edge with `--public-https` and `--metrics`, a tunnel routed from [`HOST`] and a
/// connector in front of a [`TestOrigin`].
struct H2Site {
    edge: Edge,
    _connector: Connector,
    public: SocketAddr,
    https: SocketAddr,
    metrics: SocketAddr,
    _origin: TestOrigin,
}

impl H2Site {
    fn start(dir: &Path, extra: &[&str]) -> H2Site {
        let origin = TestOrigin::start();
        let mut args: Vec<String> = ["--public-https", "127.0.0.1:0", "--metrics", "127.0.0.1:0"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let edge = Edge::start_with(
            dir,
            EdgeOptions {
                extra: args,
                ..EdgeOptions::default()
            },
        );
        let tunnel = Tunnel::create(&edge, "h2");
        tunnel.route_dns(&edge, HOST);
        let connector = Connector::run(&edge, &tunnel, &Service::Url(origin.url()));
        edge.wait_connectors("h2", 1);
        let public = edge.public_http();
        let r = get_when_served(public, HOST, "/cl");
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
        H2Site {
            edge,
            _connector: connector,
            public,
            https,
            metrics,
            _origin: origin,
        }
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

    /// Waits until the sum of `series` reaches `at_least` (the edge counts a connection it
    /// ended once its GOAWAY went out, so just after the client saw it).
    fn wait_metric(&self, series: &[&str], at_least: u64) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let sum: u64 = series.iter().map(|s| self.metric(s)).sum();
            if sum >= at_least {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{series:?} stayed at {sum}, below {at_least}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `curl` over h2c with prior knowledge on the public HTTP listener, `Host` [`HOST`].
    fn h2c(&self, path: &str, extra: &[&str]) -> Output {
        let url = format!("http://{}{path}", self.public);
        curl(
            &[
                &["--http2-prior-knowledge", "-H", &format!("Host: {HOST}")],
                extra,
                &[&url],
            ]
            .concat(),
        )
    }
}

/// `curl -sS ARGS` within the step timeout.
fn curl(args: &[&str]) -> Output {
    Command::new("curl")
        .args(["-sS", "--max-time", &STEP_TIMEOUT.as_secs().to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run curl (needed for the HTTP/2 tests): {e}"))
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

const W: &str = "\n%{http_code} %{http_version}";

#[test]
fn h2c_prior_knowledge_serves_requests_like_http1() {
    let dir = tempfile::tempdir().unwrap();
    let site = H2Site::start(dir.path(), &[]);
    let before = site.metric("ringtun_edge_public_h2_requests_total");

    let (body, status, version) = split(&site.h2c("/cl", &["-w", W]));
    assert_eq!((status.as_str(), version.as_str()), ("200", "2"));
    assert_eq!(body, b"hello");

    // The origin sees an HTTP/1.1 request: the authority as Host, forwarded fields.
    let (body, status, _) = split(&site.h2c("/head?x=1", &["-w", W]));
    assert_eq!(status, "200");
    let head = String::from_utf8_lossy(&body).to_ascii_lowercase();
    assert!(head.starts_with("get /head?x=1 http/1.1\r\n"), "{head}");
    assert!(head.contains(&format!("\r\nhost: {HOST}\r\n")), "{head}");
    assert!(head.contains("\r\nx-forwarded-proto: http\r\n"), "{head}");

    // Small (buffered, retryable) and large (streamed) uploads, echoed byte for byte.
    for n in [1000usize, 3 << 20] {
        let file = dir.path().join(format!("up-{n}"));
        let data: Vec<u8> = (0..n).map(pattern).collect();
        std::fs::write(&file, &data).unwrap();
        let out = site.h2c(
            "/echo",
            &["--data-binary", &format!("@{}", file.display()), "-w", W],
        );
        let (body, status, _) = split(&out);
        assert_eq!(status, "200");
        assert!(
            body == data,
            "echo of {n} bytes differs (got {})",
            body.len()
        );
    }

    // A large download, chunked by the origin.
    let n = 8 << 20;
    let (body, status, _) = split(&site.h2c(&format!("/big?{n}"), &["-w", W]));
    assert_eq!(status, "200");
    assert_eq!(body.len(), n);
    assert!(
        body.iter().enumerate().all(|(i, &b)| b == pattern(i)),
        "download differs"
    );

    // HEAD: the head only.
    let out = site.h2c("/cl", &["-I"]);
    let text = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/2 200"), "{text}");

    // No route: the same status and reason page as HTTP/1.1.
    let url = format!("http://{}/", site.public);
    let out = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "Host: nowhere.h2.test",
        "-w",
        W,
        &url,
    ]);
    let (body, status, version) = split(&out);
    assert_eq!((status.as_str(), version.as_str()), ("404", "2"));
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.contains("no tunnel route for host nowhere.h2.test"),
        "{text}"
    );

    let after = site.metric("ringtun_edge_public_h2_requests_total");
    assert!(
        after >= before + 7,
        "h2 requests counted: {before} -> {after}"
    );
}

#[test]
fn tls_with_alpn_h2_and_many_streams_on_one_connection() {
    let dir = tempfile::tempdir().unwrap();
    let site = H2Site::start(dir.path(), &[]);
    let ca = site.edge.dir.join("state").join("ca.pem");
    let port = site.https.port();
    let resolve = format!("localhost:{port}:127.0.0.1");
    let url = format!("https://localhost:{port}/head");
    let out = curl(&[
        "--http2",
        "--cacert",
        &ca.display().to_string(),
        "--resolve",
        &resolve,
        "-H",
        &format!("Host: {HOST}"),
        "-w",
        W,
        &url,
    ]);
    let (body, status, version) = split(&out);
    assert_eq!(
        (status.as_str(), version.as_str()),
        ("200", "2"),
        "ALPN chose HTTP/2"
    );
    let head = String::from_utf8_lossy(&body).to_ascii_lowercase();
    assert!(head.contains("\r\nx-forwarded-proto: https\r\n"), "{head}");

    // 48 requests in parallel over one multiplexed connection (over TLS: curl 7.88 cannot
    // reuse a prior-knowledge connection, curl/curl#10634).
    let conns = site.metric("ringtun_edge_public_h2_connections_total");
    let reqs = site.metric("ringtun_edge_public_h2_requests_total");
    let n = 48;
    let url = format!("https://localhost:{port}/sized?20000");
    let mut args = vec![
        "--http2".to_owned(),
        "--cacert".to_owned(),
        ca.display().to_string(),
        "--resolve".to_owned(),
        resolve.clone(),
        "--parallel".to_owned(),
        "--parallel-max".to_owned(),
        "48".to_owned(),
        "-H".to_owned(),
        format!("Host: {HOST}"),
        "-w".to_owned(),
        "%{http_code} %{size_download}\n".to_owned(),
    ];
    for _ in 0..n {
        args.extend(["-o".to_owned(), "/dev/null".to_owned(), url.clone()]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = curl(&refs);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), n, "{lines:?}");
    assert!(lines.iter().all(|l| l == "200 20000"), "{lines:?}");
    let conns = site.metric("ringtun_edge_public_h2_connections_total") - conns;
    let reqs = site.metric("ringtun_edge_public_h2_requests_total") - reqs;
    assert_eq!(reqs, n as u64);
    assert!(conns <= 2, "{n} requests took {conns} connections");
}

/// A minimal HTTP/2 client of raw frames, for what curl will not do.
struct RawH2 {
    w: TcpStream,
    frames: mpsc::Receiver<(u8, u8, u32, Vec<u8>)>,
}

fn frame(ty: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let n = payload.len();
    let mut f = vec![(n >> 16) as u8, (n >> 8) as u8, n as u8, ty, flags];
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// HPACK: `:method` GET (or POST), `:scheme` http, `:path` /, `:authority` [`HOST`] as a
/// literal without indexing (RFC 7541 §6.2.2, static name index 1).
fn request_block(post: bool) -> Vec<u8> {
    let mut b = vec![
        if post { 0x83 } else { 0x82 },
        0x86,
        0x84,
        0x01,
        HOST.len() as u8,
    ];
    b.extend_from_slice(HOST.as_bytes());
    b
}

impl RawH2 {
    fn connect(addr: SocketAddr) -> RawH2 {
        let mut w = TcpStream::connect(addr).unwrap();
        w.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        w.write_all(&frame(4, 0, 0, &[])).unwrap();
        let mut r = w.try_clone().unwrap();
        let mut ack = w.try_clone().unwrap();
        r.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
        let (tx, frames) = mpsc::channel();
        std::thread::spawn(move || {
            loop {
                let mut h = [0u8; 9];
                if r.read_exact(&mut h).is_err() {
                    return;
                }
                let n = (h[0] as usize) << 16 | (h[1] as usize) << 8 | h[2] as usize;
                let mut p = vec![0; n];
                if r.read_exact(&mut p).is_err() {
                    return;
                }
                let id = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
                if h[3] == 4 && h[4] & 1 == 0 {
                    let _ = ack.write_all(&frame(4, 1, 0, &[]));
                }
                if tx.send((h[3], h[4], id, p)).is_err() {
                    return;
                }
            }
        });
        RawH2 { w, frames }
    }

    /// Writes `bytes`; the server may have closed already (its GOAWAY is what the test reads).
    fn send(&mut self, bytes: &[u8]) {
        let _ = self.w.write_all(bytes);
    }

    /// Frames until GOAWAY (included) or the end of the connection: (RST_STREAM error codes,
    /// the GOAWAY's error code).
    fn until_goaway(&self) -> (Vec<u32>, Option<u32>) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        let mut resets = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.frames.recv_timeout(left) {
                Ok((3, _, _, p)) if p.len() == 4 => {
                    resets.push(u32::from_be_bytes([p[0], p[1], p[2], p[3]]));
                }
                Ok((7, _, _, p)) if p.len() >= 8 => {
                    return (resets, Some(u32::from_be_bytes([p[4], p[5], p[6], p[7]])));
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        (resets, None)
    }
}

const REFUSED_STREAM: u32 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

#[test]
fn hostile_h2_clients_get_rst_and_goaway_and_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let site = H2Site::start(
        dir.path(),
        &[
            "--h2-max-client-resets",
            "20",
            "--h2-max-concurrent-streams",
            "4",
            "--h2-max-refused-streams",
            "8",
        ],
    );

    // Rapid reset: requests opened and cancelled at once, far past the limit.
    let mut c = RawH2::connect(site.public);
    for i in 0..300u32 {
        let id = 2 * i + 1;
        let mut b = frame(1, 0x4 | 0x1, id, &request_block(false));
        b.extend(frame(3, 0, id, &0x8u32.to_be_bytes()));
        c.send(&b);
    }
    let (_, goaway) = c.until_goaway();
    assert_eq!(
        goaway,
        Some(ENHANCE_YOUR_CALM),
        "{}",
        site.edge.proc.tail(20)
    );
    let resets = "ringtun_edge_limit_hits_total{reason=\"h2_client_resets\"}";
    let abuse = "ringtun_edge_limit_hits_total{reason=\"h2_protocol_abuse\"}";
    // Reset after the edge took them (its count) or before (h2's own bound): either is counted.
    site.wait_metric(&[resets, abuse], 1);

    // Too many streams: 4 uploads that wait for their bodies hold every place; each stream
    // beyond is refused, and past 8 refusals the connection goes away.
    let before = site.metric(abuse);
    let mut c = RawH2::connect(site.public);
    for i in 0..30u32 {
        c.send(&frame(1, 0x4, 2 * i + 1, &request_block(true)));
    }
    let (rsts, goaway) = c.until_goaway();
    assert!(rsts.contains(&REFUSED_STREAM), "{rsts:?}");
    assert_eq!(
        goaway,
        Some(ENHANCE_YOUR_CALM),
        "{}",
        site.edge.proc.tail(20)
    );
    site.wait_metric(&[abuse], before + 1);

    // The edge still serves others.
    let (body, status, _) = split(&site.h2c("/cl", &["-w", W]));
    assert_eq!((status.as_str(), body.as_slice()), ("200", &b"hello"[..]));
}

/// The value of `series` once it stopped moving (the same over two samples half a second
/// apart).
fn settled(site: &H2Site, series: &str) -> u64 {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut last = site.metric(series);
    loop {
        std::thread::sleep(Duration::from_millis(500));
        let now = site.metric(series);
        if now == last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}

#[test]
fn a_client_that_grants_no_window_holds_no_more_than_its_window() {
    let dir = tempfile::tempdir().unwrap();
    let site = H2Site::start(dir.path(), &[]);
    let out = "ringtun_edge_bytes_total{direction=\"out\"}";
    let before = settled(&site, out);
    let rss_before = e2e::rss_bytes(site.edge.proc.id()).unwrap();
    // Four 64 MiB downloads on one connection whose client never sends WINDOW_UPDATE: HTTP/2
    // lets the edge send 64 KiB in all (the default windows); the rest must wait upstream, in
    // the tunnel's flow control, not in the edge's memory.
    let mut c = RawH2::connect(site.public);
    for i in 0..4u32 {
        let path = b"/big?67108864";
        let mut b = vec![0x82, 0x86, 0x04, path.len() as u8];
        b.extend_from_slice(path);
        b.extend_from_slice(&[0x01, HOST.len() as u8]);
        b.extend_from_slice(HOST.as_bytes());
        c.send(&frame(1, 0x5, 2 * i + 1, &b));
    }
    let sent = settled(&site, out) - before;
    let rss_after = e2e::rss_bytes(site.edge.proc.id()).unwrap();
    let grown = rss_after.saturating_sub(rss_before);
    eprintln!("forwarded {sent} bytes; edge RSS {rss_before} -> {rss_after} (+{grown})");
    assert!(
        sent < 4 << 20,
        "the edge took {sent} bytes for a client that granted 64 KiB"
    );
    assert!(grown < 64 << 20, "edge RSS grew by {grown} bytes");
    drop(c);
}
