//! HTTP/2 origins (`originRequest.http2Origin`) and trailers end to end, through real
//! processes: a client on the public listener of a real `ringtun-edge`, a real `ringtun tunnel
//! run`, and real origins:
//!
//! - a gRPC server (Python `grpcio`, `test-support/grpc/origin.py`), over h2c and over TLS with ALPN:
//!   unary, server-streaming, client-streaming with a body larger than HTTP/2's initial
//!   window, a non-zero `grpc-status`; the public client speaks HTTP/1.1 with `TE: trailers`
//!   and gets the gRPC trailers after the last chunk (and none when it did not ask, or speaks
//!   HTTP/1.0); one HTTP/2 connection carries the worker's requests;
//! - origins that do not speak HTTP/2 (TLS without `h2` in ALPN, plain HTTP/1.1 to h2c): 502
//!   saying so;
//! - an HTTP/1.1 origin whose chunked response announces and sends trailers.
//!
//! The gRPC origin needs Python with grpcio: `.ci/deps.sh` installs it in
//! `target/test-venv`; `RINGTUN_TEST_PYTHON` names another interpreter. `test-support/grpc/client.py`
//! is a gRPC client for tests that speak HTTP/2 to the edge.
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;
use ringtun_test_support::grpc;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;

use e2e::origin::TlsOrigin;
use e2e::{
    Connector, Edge, EdgeOptions, STEP_TIMEOUT, ServedTunnel, Service, Tunnel, get_when_served,
    log_field, wait_for,
};
use grpc::{GrpcOrigin, grpc_message, grpc_messages, grpc_script, python};

/// A response as it came on the wire.
#[derive(Debug)]
struct Raw {
    status: u16,
    /// `HTTP/1.1` or `HTTP/1.0`.
    version: String,
    headers: Vec<(String, String)>,
    chunked: bool,
    body: Vec<u8>,
    trailers: Vec<(String, String)>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        field(&self.headers, name)
    }

    fn trailer(&self, name: &str) -> Option<&str> {
        field(&self.trailers, name)
    }

    /// A gRPC status field, from the trailers or (a trailers-only response) the head.
    fn grpc(&self, name: &str) -> Option<&str> {
        self.trailer(name).or_else(|| self.header(name))
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Sends `request` (which must ask the edge to close: `Connection: close` or HTTP/1.0) and
/// parses everything until EOF: head, body (chunked or not), trailers.
fn exchange(public: SocketAddr, request: &[u8]) -> Raw {
    let mut s = TcpStream::connect(public).unwrap();
    s.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    s.write_all(request).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8(raw[..end].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap().to_owned();
    let status = parts.next().unwrap().parse().unwrap();
    let headers = parse_fields(lines);
    let chunked = field(&headers, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
    let rest = &raw[end + 4..];
    let (body, trailers) = if chunked {
        dechunk(rest)
    } else {
        (rest.to_vec(), Vec::new())
    };
    Raw {
        status,
        version,
        headers,
        chunked,
        body,
        trailers,
    }
}

fn parse_fields<'a>(lines: impl Iterator<Item = &'a str>) -> Vec<(String, String)> {
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (n, v) = l
                .split_once(':')
                .unwrap_or_else(|| panic!("bad field {l:?}"));
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect()
}

/// A chunked body's payload and trailer fields; panics unless it is complete and nothing
/// follows it.
fn dechunk(mut rest: &[u8]) -> (Vec<u8>, Vec<(String, String)>) {
    let mut body = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("chunk-size line");
        let size_line = std::str::from_utf8(&rest[..eol]).unwrap();
        let size = usize::from_str_radix(size_line.split(';').next().unwrap().trim(), 16).unwrap();
        rest = &rest[eol + 2..];
        if size == 0 {
            break;
        }
        body.extend_from_slice(&rest[..size]);
        assert_eq!(&rest[size..size + 2], b"\r\n");
        rest = &rest[size + 2..];
    }
    let end = if rest.starts_with(b"\r\n") {
        0
    } else {
        rest.windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("end of the trailer section")
            + 2
    };
    let trailers = parse_fields(std::str::from_utf8(&rest[..end]).unwrap().split("\r\n"));
    assert_eq!(&rest[end..], b"\r\n", "bytes after the chunked body");
    (body, trailers)
}

/// A gRPC call over HTTP/1.1 with a Content-Length body.
fn grpc_call(host: &str, method: &str, messages: &[&[u8]], extra: &str) -> Vec<u8> {
    let body: Vec<u8> = messages.iter().flat_map(|m| grpc_message(m)).collect();
    let mut req = format!(
        "POST /ringtun.test.Echo/{method} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/grpc\r\n\
         Content-Length: {}\r\nConnection: close\r\n{extra}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(&body);
    req
}

const TRAILERS: &str = "TE: trailers\r\n";
const GRPC: &str = "grpc.h2.test";

/// The site: `GRPC` served by `service` with `http2Origin: true` (and `extra` origin keys), one
/// worker and one link, so every request goes over the same origin connection.
fn grpc_site(dir: &Path, service: &str, extra: &str) -> ServedTunnel {
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "ingress:\n  - hostname: {GRPC}\n    service: {service}\n    originRequest:\n      http2Origin: true\n{extra}\
             \x20 - service: http_status:404\n"
        ),
    )
    .unwrap();
    let site = ServedTunnel::start(
        dir,
        "grpc",
        &[],
        &Service::Config(config),
        &["--workers", "1", "--ha-connections", "1"],
    );
    site.tunnel.route_dns(&site.edge, GRPC);
    site
}

/// The calls every gRPC origin must answer, through `site`.
fn check_grpc_calls(site: &ServedTunnel) {
    let public = site.public;
    // Unary.
    let r = exchange(public, &grpc_call(GRPC, "Unary", &[b"hi"], TRAILERS));
    assert_eq!(
        r.status,
        200,
        "{r:?}\nconnector: {}",
        site.connector.proc.tail(20)
    );
    assert_eq!(r.header("content-type"), Some("application/grpc"));
    assert!(r.chunked, "{r:?}");
    assert_eq!(grpc_messages(&r.body), [b"echo:hi".to_vec()]);
    assert_eq!(r.trailer("grpc-status"), Some("0"), "{r:?}");

    // A failure: the status is not 200's "0", and it travels in trailers (or, for a
    // trailers-only answer, in the head).
    let r = exchange(public, &grpc_call(GRPC, "Fail", &[b"x"], TRAILERS));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.grpc("grpc-status"), Some("5"), "{r:?}");
    assert_eq!(r.grpc("grpc-message"), Some("no such thing"), "{r:?}");

    // Server streaming: every message, then the status.
    let r = exchange(public, &grpc_call(GRPC, "Stream", &[b"50"], TRAILERS));
    assert_eq!(r.status, 200, "{r:?}");
    let msgs = grpc_messages(&r.body);
    assert_eq!(msgs.len(), 50);
    assert_eq!(msgs[49], b"msg-49");
    assert_eq!(r.trailer("grpc-status"), Some("0"), "{r:?}");

    // Client streaming, 600 KB: far beyond HTTP/2's initial 64 KiB window, so it only gets
    // through if the body streams under flow control.
    let big = vec![7u8; 200_000];
    let r = exchange(
        public,
        &grpc_call(GRPC, "Upload", &[&big, &big, &big], TRAILERS),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(grpc_messages(&r.body), [b"600000".to_vec()]);
    assert_eq!(r.trailer("grpc-status"), Some("0"));

    // The same upload sent chunked by the client.
    let body: Vec<u8> = [&big[..], &big[..]]
        .iter()
        .flat_map(|m| grpc_message(m))
        .collect();
    let mut req = format!(
        "POST /ringtun.test.Echo/Upload HTTP/1.1\r\nHost: {GRPC}\r\nContent-Type: application/grpc\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n{TRAILERS}\r\n"
    )
    .into_bytes();
    for piece in body.chunks(30_000) {
        req.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        req.extend_from_slice(piece);
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = exchange(public, &req);
    assert_eq!(grpc_messages(&r.body), [b"400000".to_vec()], "{r:?}");

    // A client that did not ask for trailers gets the body without them.
    let r = exchange(public, &grpc_call(GRPC, "Unary", &[b"plain"], ""));
    assert!(r.chunked);
    assert_eq!(grpc_messages(&r.body), [b"echo:plain".to_vec()]);
    assert!(r.trailers.is_empty(), "{r:?}");
    // Nor does an HTTP/1.0 client, even one that asks: no chunked encoding there.
    let req10 = grpc_call(GRPC, "Unary", &[b"ten"], TRAILERS);
    let text = String::from_utf8_lossy(&req10).replacen("HTTP/1.1", "HTTP/1.0", 1);
    let r = exchange(public, text.as_bytes());
    assert!(r.version.starts_with("HTTP/1."), "{r:?}");
    assert!(!r.chunked && r.trailers.is_empty(), "{r:?}");
    assert_eq!(grpc_messages(&r.body), [b"echo:ten".to_vec()]);
}

/// A gRPC origin over h2c (prior knowledge): unary, streaming both ways, failures, trailers to
/// clients that ask for them; one connection carries the requests.
#[test]
fn grpc_origin_over_h2c_carries_trailers_to_http1_clients() {
    let origin = GrpcOrigin::start(None);
    let dir = tempfile::tempdir().unwrap();
    let site = grpc_site(dir.path(), &format!("http://127.0.0.1:{}", origin.port), "");
    check_grpc_calls(&site);

    // One HTTP/2 connection (one worker) carried every call, including concurrent ones.
    let peers: Vec<String> = std::thread::scope(|s| {
        let calls: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let r = exchange(site.public, &grpc_call(GRPC, "Peer", &[b""], TRAILERS));
                    assert_eq!(r.trailer("grpc-status"), Some("0"), "{r:?}");
                    String::from_utf8(grpc_messages(&r.body).remove(0)).unwrap()
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    assert!(peers[0].starts_with("ipv"), "{peers:?}");
    assert!(peers.iter().all(|p| *p == peers[0]), "{peers:?}");
}

/// The whole gRPC path: a real gRPC client (grpcio) speaks HTTP/2 to the edge, h2c with prior
/// knowledge on the public listener and TLS with ALPN `h2` on `--public-https`; the edge, the
/// connector and a real gRPC origin carry every call kind with its status in the trailers.
#[test]
fn grpc_clients_speak_http2_to_the_edge_end_to_end() {
    let origin = GrpcOrigin::start(None);
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start_with(
        dir.path(),
        EdgeOptions {
            extra: vec!["--public-https".to_owned(), "127.0.0.1:0".to_owned()],
            ..EdgeOptions::default()
        },
    );
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "ingress:\n  - hostname: {GRPC}\n    service: http://127.0.0.1:{}\n    \
             originRequest:\n      http2Origin: true\n  - service: http_status:404\n",
            origin.port
        ),
    )
    .unwrap();
    let tunnel = Tunnel::create(&edge, "grpc");
    tunnel.route_dns(&edge, GRPC);
    let connector = Connector::run_args(&edge, &tunnel, &Service::Config(config), &[]);
    edge.wait_connectors("grpc", 1);
    let public = edge.public_http();
    // Served once the edge has the route and a link (grpcio answers a plain GET in a gRPC
    // status of its own).
    assert_ne!(get_when_served(public, GRPC, "/").status, 503);
    let https = wait_for(&edge.proc, "the public HTTPS address", |l| {
        log_field(l, "public_https")?.parse::<SocketAddr>().ok()
    });
    let ca = edge.dir.join("state").join("ca.pem");
    let ca = ca.display().to_string();
    let call = |target: SocketAddr, tls: bool, method: &str, arg: &str| {
        let mut cmd = Command::new(python());
        cmd.arg(grpc_script("client.py")).args([
            &target.to_string(),
            method,
            arg,
            "--authority",
            GRPC,
        ]);
        if tls {
            cmd.args(["--tls", &ca, "--server-name", "localhost"]);
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v
    };
    for (target, tls) in [(public, false), (https, true)] {
        let what = if tls { "TLS with ALPN h2" } else { "h2c" };
        let v = call(target, tls, "Unary", "hi");
        assert_eq!(
            (v["code"].as_str(), v["messages"][0].as_str()),
            (Some("OK"), Some("echo:hi")),
            "{what}: {v}\nedge: {}\nconnector: {}",
            edge.proc.tail(20),
            connector.proc.tail(20)
        );
        let v = call(target, tls, "Fail", "x");
        assert_eq!(
            (v["code"].as_str(), v["details"].as_str()),
            (Some("NOT_FOUND"), Some("no such thing")),
            "{what}: {v}"
        );
        let v = call(target, tls, "Stream", "50");
        assert_eq!(v["code"], "OK", "{what}: {v}");
        let messages = v["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 50, "{what}: {v}");
        // Client streaming, past HTTP/2's initial 64 KiB window in both hops.
        let v = call(target, tls, "Upload", "300000,200000,1");
        assert_eq!(
            (v["code"].as_str(), v["messages"][0].as_str()),
            (Some("OK"), Some("500001")),
            "{what}: {v}"
        );
    }
}

/// A gRPC origin over TLS: the connector offers `h2` in ALPN and the origin's CA is trusted
/// through `caPool`.
#[test]
fn grpc_origin_over_tls_with_alpn_h2() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["grpc-origin.test".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let (cert_file, key_file, ca_file) = (
        dir.path().join("cert.pem"),
        dir.path().join("key.pem"),
        dir.path().join("ca.pem"),
    );
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let origin = GrpcOrigin::start(Some((&cert_file, &key_file)));
    let site = grpc_site(
        dir.path(),
        &format!("https://127.0.0.1:{}", origin.port),
        &format!(
            "      caPool: {}\n      originServerName: grpc-origin.test\n",
            ca_file.display()
        ),
    );
    check_grpc_calls(&site);
}

/// Origins that do not speak HTTP/2 get a 502 that says so: a TLS origin that does not agree
/// to `h2` in ALPN, and a plain HTTP/1.1 origin sent h2c.
#[test]
fn origins_without_http2_get_a_clear_502() {
    let dir = tempfile::tempdir().unwrap();
    let tls = TlsOrigin::new(&["h1-only.test"]);
    let tls_addr = tls.listen_tcp();
    std::fs::write(dir.path().join("ca.pem"), &tls.ca_pem).unwrap();
    let plain = TcpListener::bind("127.0.0.1:0").unwrap();
    let plain_addr = plain.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in plain.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = c.read(&mut buf);
                let _ = c.write_all(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            });
        }
    });
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "ingress:\n  - hostname: tls.h1.test\n    service: https://127.0.0.1:{}\n    originRequest:\n      http2Origin: true\n      caPool: {}\n      originServerName: h1-only.test\n\
             \x20 - hostname: plain.h1.test\n    service: http://{plain_addr}\n    originRequest:\n      http2Origin: true\n\
             \x20 - service: http_status:404\n",
            tls_addr.port(),
            dir.path().join("ca.pem").display()
        ),
    )
    .unwrap();
    let site = ServedTunnel::start(dir.path(), "h1", &[], &Service::Config(config), &[]);
    site.tunnel.route_dns(&site.edge, "tls.h1.test");
    site.tunnel.route_dns(&site.edge, "plain.h1.test");
    let get = |host: &str| {
        exchange(
            site.public,
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        )
    };
    let r = get("tls.h1.test");
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 502, "{text}");
    assert!(text.contains("does not speak HTTP/2"), "{text}");
    assert!(text.contains("http2Origin"), "{text}");
    let r = get("plain.h1.test");
    let text = String::from_utf8_lossy(&r.body).into_owned();
    assert_eq!(r.status, 502, "{text}");
    assert!(text.contains("h2c"), "{text}");
}

/// An HTTP/1.1 origin's chunked response with trailers (announced in `Trailer`) reaches a
/// client that sent `TE: trailers` with them; a client that did not gets the body alone.
#[test]
fn http1_origin_trailers_reach_clients_that_ask() {
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = origin.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in origin.incoming() {
            let Ok(c) = c else { return };
            std::thread::spawn(move || {
                let mut r = BufReader::new(c);
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let w = r.get_mut();
                    let _ = w.write_all(
                        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum, X-Count\r\n\r\n\
                          5\r\nhello\r\n6\r\n world\r\n0\r\nX-Checksum: abc123\r\nX-Count: 2\r\n\r\n",
                    );
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let site = ServedTunnel::start(
        dir.path(),
        "trailers",
        &["t.h1.test"],
        &Service::Url(format!("http://{addr}")),
        &[],
    );
    let req = |extra: &str| {
        format!("GET / HTTP/1.1\r\nHost: t.h1.test\r\nConnection: close\r\n{extra}\r\n")
            .into_bytes()
    };
    let r = exchange(site.public, &req(TRAILERS));
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body, b"hello world");
    assert_eq!(r.trailer("x-checksum"), Some("abc123"), "{r:?}");
    assert_eq!(r.trailer("x-count"), Some("2"), "{r:?}");
    let r = exchange(site.public, &req(""));
    assert_eq!(r.body, b"hello world");
    assert!(r.trailers.is_empty(), "{r:?}");
}

/// `test-support/grpc/client.py`, the client helper for tests that speak HTTP/2 to the edge, works
/// against the origin.
#[test]
fn the_grpc_client_helper_talks_to_the_origin() {
    let origin = GrpcOrigin::start(None);
    let run = |method: &str, arg: &str| {
        let out = Command::new(python())
            .arg(grpc_script("client.py"))
            .args([&format!("127.0.0.1:{}", origin.port), method, arg])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let v = run("Unary", "hi");
    assert_eq!(v["code"], "OK");
    assert_eq!(v["messages"][0], "echo:hi");
    let v = run("Fail", "x");
    assert_eq!(v["code"], "NOT_FOUND");
    assert_eq!(v["details"], "no such thing");
    let v = run("Stream", "3");
    assert_eq!(v["messages"].as_array().map(Vec::len), Some(3));
}

/// An HTTP/1.1 origin that reads each request's body (chunked or of a length) with its
/// trailer section and answers with what it got: `len=N`, then one `trailer name: value` line
/// per trailer field.
fn reporting_origin() -> SocketAddr {
    let origin = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = origin.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in origin.incoming() {
            let Ok(c) = c else { return };
            std::thread::spawn(move || {
                let mut r = BufReader::new(c);
                let line = |r: &mut BufReader<TcpStream>| {
                    let mut l = String::new();
                    (r.read_line(&mut l).unwrap_or(0) > 0).then_some(l)
                };
                loop {
                    let mut fields = Vec::new();
                    loop {
                        let Some(l) = line(&mut r) else { return };
                        if l == "\r\n" {
                            break;
                        }
                        fields.push(l);
                    }
                    let fields = parse_fields(fields.iter().skip(1).map(|l| l.trim_end()));
                    let chunked =
                        field(&fields, "transfer-encoding").is_some_and(|v| v.contains("chunked"));
                    let mut len = 0usize;
                    let mut report = String::new();
                    if chunked {
                        loop {
                            let Some(size) = line(&mut r) else { return };
                            let size = usize::from_str_radix(size.trim(), 16).unwrap();
                            if size == 0 {
                                break;
                            }
                            let mut data = vec![0; size + 2];
                            r.read_exact(&mut data).unwrap();
                            len += size;
                        }
                        loop {
                            let Some(l) = line(&mut r) else { return };
                            if l == "\r\n" {
                                break;
                            }
                            report.push_str(&format!("trailer {}\n", l.trim_end()));
                        }
                    } else if let Some(n) = field(&fields, "content-length") {
                        len = n.parse().unwrap();
                        let mut data = vec![0; len];
                        r.read_exact(&mut data).unwrap();
                    }
                    let report = format!("len={len}\n{report}");
                    let w = r.get_mut();
                    let _ = w.write_all(
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{report}",
                            report.len()
                        )
                        .as_bytes(),
                    );
                }
            });
        }
    });
    addr
}

/// A chunked request from an HTTP/1.1 client that announces trailers (`Trailer: X-Checksum`)
/// reaches an HTTP/1.1 origin with its trailer section: a small body (read whole before the
/// stream opens) and one over 64 KiB (streamed). Fields that may not be trailers stay out; a
/// request that did not announce its trailers reaches the origin without them.
#[test]
fn http1_client_request_trailers_reach_the_origin() {
    let addr = reporting_origin();
    let dir = tempfile::tempdir().unwrap();
    let site = ServedTunnel::start(
        dir.path(),
        "reqtrailers",
        &["rt.h1.test"],
        &Service::Url(format!("http://{addr}")),
        &[],
    );
    let post = |announce: &str, chunks: &[Vec<u8>]| {
        let mut req = format!(
            "POST /upload HTTP/1.1\r\nHost: rt.h1.test\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n{announce}\r\n"
        )
        .into_bytes();
        for c in chunks {
            req.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            req.extend_from_slice(c);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\nX-Checksum: sum-42\r\nContent-Length: 7\r\n\r\n");
        let r = exchange(site.public, &req);
        assert_eq!(r.status, 200, "{r:?}");
        String::from_utf8(r.body).unwrap()
    };
    let small = vec![b"hello".to_vec(), b" world".to_vec()];
    let big: Vec<Vec<u8>> = (0..7).map(|i| vec![b'a' + i; 16 * 1024]).collect();
    for (what, chunks, len) in [("small", &small, 11), ("big", &big, 7 * 16 * 1024)] {
        let report = post("Trailer: X-Checksum\r\n", chunks);
        assert!(
            report.starts_with(&format!("len={len}\n")),
            "{what}: {report}"
        );
        assert!(
            report.contains("trailer X-Checksum: sum-42\n"),
            "{what}: {report}"
        );
        assert!(!report.contains("Content-Length"), "{what}: {report}");
        // Not announced: the body alone, as before.
        let report = post("", chunks);
        assert_eq!(report, format!("len={len}\n"), "{what}");
    }
}
