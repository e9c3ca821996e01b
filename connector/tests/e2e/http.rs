//! Every HTTP case of the request path through real processes: a client on the public listener
//! of a real `ringtun-edge`, a real `ringtun tunnel run` connector, and an in-test origin
//! (`test-support/src/origin.rs`) that counts its connections and records the heads it got.
//!
//! Three groups, each with one edge and one connector of its own (the groups run in parallel):
//! - bodies: keep-alive on one client connection and one pooled origin connection,
//!   Content-Length and chunked bodies both ways (a few MiB, checked byte for byte), HEAD and
//!   `Expect: 100-continue`;
//! - headers: `X-Forwarded-For`, `X-Forwarded-Proto` and the connector-ID header at the origin,
//!   hop-by-hop fields removed both ways, a WebSocket carrying a large message both ways;
//! - errors and built-in services: 400 for Content-Length with Transfer-Encoding, 431 for a head
//!   over 64 KiB, 502 for a refused origin, 504 for a slow one, 404 for an unknown host, 503 for
//!   a tunnel without a connector, `http_status:N` and `hello_world`.
//!
//! The 1 GiB transfers are in the ignored `e2e/big.rs`.
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};

use e2e::origin::{closed_port, pattern};
use e2e::{
    Client, STEP_TIMEOUT, ServedTunnel, Service, TestOrigin, Tunnel, http_get, parse_response,
    read_head, send_raw,
};
use ringtun_core::http::CONNECTOR_ID_HEADER;

/// `GET PATH` on a kept-alive connection.
fn get(host: &str, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").into_bytes()
}

/// `n` bytes of the test pattern.
fn payload(n: usize) -> Vec<u8> {
    (0..n).map(pattern).collect()
}

/// The fields of a head (lowercased text, as `TestOrigin::head_of` gives it): (name, value).
fn fields(head: &str) -> Vec<(String, String)> {
    head.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The value of field `name` in `fields`, when there is exactly one such field.
fn only<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut found = fields.iter().filter(|(n, _)| n == name);
    let first = found.next()?;
    assert!(found.next().is_none(), "{name} appears twice: {fields:?}");
    Some(first.1.as_str())
}

/// Asserts that the body equals `want` without printing megabytes on failure.
#[track_caller]
fn assert_same_body(got: &[u8], want: &[u8], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!("{what}: first difference at byte {i}");
    }
}

const BODIES: &str = "bodies.e2e.test";

#[test]
fn one_client_connection_carries_every_body_shape_and_the_origin_pool_is_reused() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start();
    // One worker: one origin pool, so reuse shows in the origin's connection count.
    let site = ServedTunnel::start(
        dir.path(),
        "bodies",
        &[BODIES],
        &Service::Url(origin.url()),
        &["--workers", "1"],
    );
    let pooled = origin.connections();
    assert!(pooled >= 1, "the warm-up request reached the origin");
    let mut c = Client::connect(site.public);

    // Keep-alive: several requests on one client connection.
    for _ in 0..5 {
        let r = c.request(&get(BODIES, "/cl"));
        assert_eq!((r.status, r.text().as_str()), (200, "hello"));
        assert_eq!(r.header("connection"), None, "kept alive: {:?}", r.headers);
    }

    // A Content-Length upload, echoed byte for byte; the origin got it with a Content-Length.
    let n = 3 << 20;
    let data = payload(n);
    let mut req =
        format!("POST /echo?length HTTP/1.1\r\nHost: {BODIES}\r\nContent-Length: {n}\r\n\r\n")
            .into_bytes();
    req.extend_from_slice(&data);
    let r = c.request(&req);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_same_body(&r.body, &data, "Content-Length upload echo");
    let seen = fields(&origin.head_of("POST /echo?length").unwrap());
    assert_eq!(only(&seen, "content-length"), Some(n.to_string().as_str()));
    assert_eq!(only(&seen, "transfer-encoding"), None);

    // A chunked upload in uneven chunks: the origin got it chunked.
    let m = (2 << 20) + 12_345;
    let data = payload(m);
    let mut req = format!(
        "POST /echo?chunked HTTP/1.1\r\nHost: {BODIES}\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    .into_bytes();
    let sizes = [1usize, 1000, 65_536, 7, 300_000];
    let mut at = 0;
    for size in sizes.iter().cycle() {
        if at == m {
            break;
        }
        let k = (*size).min(m - at);
        req.extend_from_slice(format!("{k:x}\r\n").as_bytes());
        req.extend_from_slice(&data[at..at + k]);
        req.extend_from_slice(b"\r\n");
        at += k;
    }
    req.extend_from_slice(b"0\r\n\r\n");
    let r = c.request(&req);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_same_body(&r.body, &data, "chunked upload echo");
    let seen = fields(&origin.head_of("POST /echo?chunked").unwrap());
    assert_eq!(only(&seen, "transfer-encoding"), Some("chunked"));
    assert_eq!(only(&seen, "content-length"), None);

    // Downloads: Content-Length stays Content-Length, chunked stays chunked.
    let data = payload(n);
    let r = c.request(&get(BODIES, &format!("/sized?{n}")));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(n.to_string().as_str()));
    assert_eq!(r.header("transfer-encoding"), None);
    assert_same_body(&r.body, &data, "Content-Length download");
    let r = c.request(&get(BODIES, &format!("/big?{n}")));
    assert_eq!(r.status, 200);
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("content-length"), None);
    assert_same_body(&r.body, &data, "chunked download");

    // Other response shapes: chunked with trailers, delimited by the origin's close (chunked
    // towards this HTTP/1.1 client), 204 and 304 (no body whatever the fields say).
    let r = c.request(&get(BODIES, "/trailers"));
    assert_eq!((r.status, r.text().as_str()), (200, "abc"));
    let r = c.request(&get(BODIES, "/eof"));
    assert_eq!((r.status, r.text().as_str()), (200, "until close"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    let r = c.request(&get(BODIES, "/nocontent"));
    assert_eq!((r.status, r.body.len()), (204, 0));
    let r = c.request(&get(BODIES, "/notmodified"));
    assert_eq!((r.status, r.body.len()), (304, 0));
    assert_eq!(r.header("etag"), Some("\"v1\""));
    let r = c.request(&get(BODIES, "/cl"));
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "hello"),
        "after 204 and 304"
    );

    // HEAD: the GET's headers, no body; the next response on the connection parses cleanly.
    c.send(format!("HEAD /sized?12345 HTTP/1.1\r\nHost: {BODIES}\r\n\r\n").as_bytes());
    let r = c.response(true);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("12345"));
    let r = c.request(&get(BODIES, "/cl"));
    assert_eq!((r.status, r.text().as_str()), (200, "hello"), "after HEAD");
    // HEAD of a chunked resource: no body either (not even the last chunk).
    c.send(format!("HEAD /big?5000 HTTP/1.1\r\nHost: {BODIES}\r\n\r\n").as_bytes());
    assert_eq!(c.response(true).status, 200);
    let r = c.request(&get(BODIES, "/cl"));
    assert_eq!((r.status, r.text().as_str()), (200, "hello"), "after HEAD");

    // Pipelining: three requests in one write, three responses in order.
    let mut three = get(BODIES, "/sized?10");
    three.extend(get(BODIES, "/cl"));
    three.extend(get(BODIES, "/chunked"));
    c.send(&three);
    assert_same_body(&c.response(false).body, &payload(10), "pipelined 1");
    assert_eq!(c.response(false).text(), "hello", "pipelined 2");
    assert_eq!(c.response(false).text(), "abcdef", "pipelined 3");

    // A chunked upload with trailer fields: the body arrives, the trailers do not desync the
    // connection.
    let r = c.request(
        format!(
            "POST /echo?trailers HTTP/1.1\r\nHost: {BODIES}\r\nTransfer-Encoding: chunked\r\n\r\n\
             4\r\nwith\r\n9\r\n trailers\r\n0\r\nX-Checksum: 1234\r\nX-More: yes\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!((r.status, r.text().as_str()), (200, "with trailers"));
    let r = c.request(&get(BODIES, "/cl"));
    assert_eq!(
        (r.status, r.text().as_str()),
        (200, "hello"),
        "after trailers"
    );

    // Expect: 100-continue: the 100 comes before the body is sent, then the answer; the origin
    // does not see the expectation (the edge answered it).
    c.send(
        format!(
            "POST /echo?expect HTTP/1.1\r\nHost: {BODIES}\r\nExpect: 100-continue\r\n\
             Content-Length: 15\r\n\r\n"
        )
        .as_bytes(),
    );
    let interim = c.response(false);
    assert_eq!(interim.status, 100, "{:?}", interim.headers);
    c.send(b"continued body!");
    let r = c.response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "continued body!"));
    let seen = fields(&origin.head_of("POST /echo?expect").unwrap());
    assert_eq!(only(&seen, "expect"), None);
    // The same with a chunked body.
    c.send(
        format!(
            "POST /echo?expect-chunked HTTP/1.1\r\nHost: {BODIES}\r\nExpect: 100-continue\r\n\
             Transfer-Encoding: chunked\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(c.response(false).status, 100);
    c.send(b"7\r\nchunked\r\n0\r\n\r\n");
    let r = c.response(false);
    assert_eq!((r.status, r.text().as_str()), (200, "chunked"));

    // Still the same client connection, and every request went over the one pooled origin
    // connection.
    let r = c.request(&get(BODIES, "/cl"));
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
    // `/eof` ended its connection (the only way to end that body): one more, no other.
    assert_eq!(
        origin.connections(),
        pooled + 1,
        "the connector's pool opened new origin connections"
    );

    // A client that goes away in the middle of an upload: the origin connection that carried
    // half a body is not reused, the next requests are served whole.
    let mut quitter = TcpStream::connect(site.public).unwrap();
    quitter
        .write_all(
            format!(
                "POST /echo?abandoned HTTP/1.1\r\nHost: {BODIES}\r\nContent-Length: 1000000\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
    quitter.write_all(&payload(100_000)).unwrap();
    // The client leaves only once the origin is reading the upload: a client gone before its
    // request was forwarded may rightly cost the origin nothing, which is not the case tested.
    let deadline = std::time::Instant::now() + STEP_TIMEOUT;
    while origin.head_of("POST /echo?abandoned").is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the abandoned upload never reached the origin"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    drop(quitter);
    for i in 0..3 {
        let r = c.request(&get(BODIES, "/cl"));
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello"),
            "after the abandoned upload, {i}"
        );
        let r = c.request(
            format!("POST /echo HTTP/1.1\r\nHost: {BODIES}\r\nContent-Length: 4\r\n\r\nbody")
                .as_bytes(),
        );
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "body"),
            "after the abandoned upload, {i}"
        );
    }

    // An HTTP/1.0 client gets a chunked origin body delimited by the connection's close.
    let raw = send_raw(
        site.public,
        format!("GET /big?70000 HTTP/1.0\r\nHost: {BODIES}\r\n\r\n").as_bytes(),
    );
    let r = parse_response(&raw).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("transfer-encoding"),
        None,
        "no chunked for HTTP/1.0"
    );
    assert_same_body(&r.body, &payload(70_000), "HTTP/1.0 download");
}

const HEADERS: &str = "headers.e2e.test";

#[test]
fn the_origin_gets_forwarding_headers_and_no_hop_by_hop_ones_and_websockets_flow_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start();
    let site = ServedTunnel::start(
        dir.path(),
        "headers",
        &[HEADERS],
        &Service::Url(origin.url()),
        &[],
    );
    let mut c = Client::connect(site.public);

    // Towards the origin.
    let r = c.request(
        format!(
            "GET /head?request HTTP/1.1\r\nHost: {HEADERS}\r\nX-Forwarded-For: 203.0.113.9\r\n\
             Connection: keep-alive, X-Private\r\nX-Private: secret\r\nKeep-Alive: timeout=5\r\n\
             Proxy-Connection: keep-alive\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n\
             TE: trailers\r\nTrailer: X-Checksum\r\nUpgrade: h2c\r\nX-Custom: kept\r\n\r\n"
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = fields(&origin.head_of("GET /head?request").unwrap());
    assert_eq!(
        only(&seen, "x-forwarded-for"),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(only(&seen, "x-forwarded-proto"), Some("http"));
    assert_eq!(
        only(&seen, &CONNECTOR_ID_HEADER.to_ascii_lowercase()),
        Some(site.connector.id.as_str())
    );
    assert_eq!(only(&seen, "host"), Some(HEADERS));
    assert_eq!(only(&seen, "x-custom"), Some("kept"));
    for hop in [
        "connection",
        "x-private",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert_eq!(only(&seen, hop), None, "{hop} reached the origin: {seen:?}");
    }

    // Towards the client.
    let r = c.request(&get(HEADERS, "/hop"));
    assert_eq!((r.status, r.text().as_str()), (200, "hop"));
    assert_eq!(r.header("x-origin-kept"), Some("yes"));
    for hop in [
        "connection",
        "x-origin-private",
        "keep-alive",
        "proxy-connection",
        "trailer",
        "upgrade",
    ] {
        assert_eq!(
            r.header(hop),
            None,
            "{hop} reached the client: {:?}",
            r.headers
        );
    }

    // WebSocket (with `Connection: keep-alive, Upgrade` as browsers send it): 101, then a large
    // message each way at once, then half-closes both ways.
    let mut s = TcpStream::connect(site.public).unwrap();
    s.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    s.write_all(
        format!(
            "GET /chat HTTP/1.1\r\nHost: {HEADERS}\r\nUpgrade: websocket\r\n\
             Connection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let head = read_head(&mut s).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("\r\nupgrade: websocket\r\n"), "{head}");
    let seen = fields(&origin.head_of("GET /chat").unwrap());
    assert_eq!(only(&seen, "upgrade"), Some("websocket"));
    assert_eq!(only(&seen, "connection"), Some("upgrade"));
    assert_eq!(
        only(&seen, "sec-websocket-key"),
        Some("dghlihnhbxbszsbub25jzq==")
    );
    let data = payload(300_000);
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
        .unwrap_or_else(|e| panic!("after {} bytes of the echo: {e}", back.len()));
    writer.join().unwrap();
    assert_same_body(&back, &data, "WebSocket echo");

    // The kept-alive connection serves on.
    let r = c.request(&get(HEADERS, "/cl"));
    assert_eq!((r.status, r.text().as_str()), (200, "hello"));
}

const APP: &str = "app.e2e.test";
const TEAPOT: &str = "teapot.e2e.test";
const HELLO: &str = "hello.e2e.test";
const REFUSED: &str = "refused.e2e.test";
const IDLE: &str = "idle.e2e.test";

#[test]
fn errors_and_built_in_services_answer_with_a_status_and_a_body_that_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start();
    let refused = closed_port();
    let config = dir.path().join("config.yml");
    std::fs::write(
        &config,
        format!(
            "ingress:\n  - hostname: {TEAPOT}\n    service: http_status:418\n\
             \x20 - hostname: {HELLO}\n    service: hello_world\n\
             \x20 - hostname: {REFUSED}\n    service: http://{refused}\n\
             \x20 - service: {}\n",
            origin.url()
        ),
    )
    .unwrap();
    let mut site = ServedTunnel::start(
        dir.path(),
        "errors",
        &[APP, TEAPOT, HELLO, REFUSED],
        &Service::Config(config),
        &["--origin-response-timeout", "1s"],
    );
    let public = site.public;

    // Built-in services.
    let r = http_get(public, TEAPOT, "/");
    assert_eq!((r.status, r.body.len()), (418, 0), "{}", r.text());
    let r = http_get(public, HELLO, "/");
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains("Hello from ringtun"), "{}", r.text());

    // The origin refuses: 502 naming it.
    let r = http_get(public, REFUSED, "/x");
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        r.text().contains("origin refused") && r.text().contains(&refused.to_string()),
        "{}",
        r.text()
    );

    // The origin answers after the connector's response timeout: 504 naming it.
    let r = http_get(public, APP, "/slow?5000");
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        r.text().contains("timed out") && r.text().contains(&origin.addr.to_string()),
        "{}",
        r.text()
    );

    // One kept-alive connection through errors and built-in services: each answer leaves it
    // usable. The Host may carry the public port and any letter case.
    let mut c = Client::connect(public);
    let with_port = format!("{APP}:{}", public.port());
    for (host, path, status) in [
        (REFUSED, "/", 502),
        (APP, "/cl", 200),
        (APP, "/slow?3000", 504),
        (with_port.as_str(), "/cl", 200),
        ("nope.e2e.test", "/", 404),
        ("App.E2E.Test", "/cl", 200),
        (TEAPOT, "/", 418),
        (HELLO, "/", 200),
        (APP, "/cl", 200),
    ] {
        let r = c.request(&get(host, path));
        assert_eq!(r.status, status, "{host}{path}: {}", r.text());
        assert_eq!(r.header("connection"), None, "{host}{path}: kept alive");
    }
    // A request body to a service that does not use it (refused origin, http_status) is
    // consumed: the next request on the connection is read from the right place.
    let body = payload(200_000);
    for (host, status) in [(REFUSED, 502), (TEAPOT, 418)] {
        let mut req = format!(
            "POST /ignored HTTP/1.1\r\nHost: {host}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(&body);
        let r = c.request(&req);
        assert_eq!(r.status, status, "{host}: {}", r.text());
        let r = c.request(&get(APP, "/cl"));
        assert_eq!(
            (r.status, r.text().as_str()),
            (200, "hello"),
            "after {host}"
        );
    }
    c.send(format!("HEAD / HTTP/1.1\r\nHost: {HELLO}\r\n\r\n").as_bytes());
    let r = c.response(true);
    assert_eq!(r.status, 200);
    assert!(r.header("content-length").is_some(), "{:?}", r.headers);
    let r = c.request(&get(APP, "/cl"));
    assert_eq!((r.status, r.text().as_str()), (200, "hello"), "after HEAD");

    // No route for the host: 404 from the edge naming the host.
    let r = http_get(public, "nope.e2e.test", "/");
    assert_eq!(r.status, 404, "{}", r.text());
    assert!(r.text().contains("nope.e2e.test"), "{}", r.text());

    // A routed tunnel without a connector: 503.
    let idle = Tunnel::create(&site.edge, "idle");
    idle.route_dns(&site.edge, IDLE);
    let r = http_get(public, IDLE, "/");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("no live connector"), "{}", r.text());

    // Content-Length and Transfer-Encoding together: 400, the connection closed, nothing sent on.
    let raw = send_raw(
        public,
        format!(
            "POST /echo?conflict HTTP/1.1\r\nHost: {APP}\r\nContent-Length: 5\r\n\
             Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
        )
        .as_bytes(),
    );
    let r = parse_response(&raw).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(
        r.text().contains("Content-Length") && r.text().contains("Transfer-Encoding"),
        "{}",
        r.text()
    );
    assert!(origin.head_of("/echo?conflict").is_none());

    // Two different Content-Length values: 400 too.
    let raw = send_raw(
        public,
        format!(
            "POST /echo?lengths HTTP/1.1\r\nHost: {APP}\r\nContent-Length: 5\r\n\
             Content-Length: 6\r\n\r\nhello!"
        )
        .as_bytes(),
    );
    let r = parse_response(&raw).unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert!(r.text().contains("Content-Length"), "{}", r.text());
    assert!(origin.head_of("/echo?lengths").is_none());

    // A request head over 64 KiB: 431.
    let big = "a".repeat(70 * 1024);
    let raw = send_raw(
        public,
        format!("GET /head?huge HTTP/1.1\r\nHost: {APP}\r\nX-Big: {big}\r\n\r\n").as_bytes(),
    );
    let r = parse_response(&raw).unwrap();
    assert_eq!(r.status, 431, "{}", r.text());
    assert!(!r.body.is_empty(), "431 says what failed");
    assert!(origin.head_of("/head?huge").is_none());

    // A large head under the limit is served whole.
    let large = "b".repeat(60 * 1024);
    let r = e2e::http_get_with(public, APP, "/head?large", &[("X-Large", &large)]);
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(&large), "the origin got the whole field");

    // The tunnel's only connector stops: 503 again, saying so.
    let status = site
        .connector
        .proc
        .stop(ringtun_connector::process::STOP_GRACE);
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
    site.edge.wait_connectors("errors", 0);
    let r = http_get(public, APP, "/cl");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("no live connector"), "{}", r.text());
}

/// `GET /head?limit` with one `X-Large` field filling the head to exactly `len` bytes (start
/// line and final empty line included).
fn head_of_len(host: &str, len: usize) -> (Vec<u8>, String) {
    let head = |v: &str| {
        format!(
            "GET /head?limit HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\nX-Large: {v}\r\n\r\n"
        )
    };
    let value = "c".repeat(len - head("").len());
    let request = head(&value);
    assert_eq!(request.len(), len);
    (request.into_bytes(), value)
}

const LIMITS: &str = "limits.e2e.test";

#[test]
fn heads_at_the_64_kib_limit_pass_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start();
    let site = ServedTunnel::start(
        dir.path(),
        "limits",
        &[LIMITS],
        &Service::Url(origin.url()),
        &[],
    );
    // The largest response head the connector accepts from the origin reaches the client.
    let r = http_get(site.public, LIMITS, &format!("/bighead?{}", 64 * 1024));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-big").map(str::len), Some(64 * 1024 - 47));
    assert_eq!(r.text(), "big");
    // The largest request head the edge accepts reaches the origin whole.
    let (request, value) = head_of_len(LIMITS, 64 * 1024);
    let r = parse_response(&send_raw(site.public, &request)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().contains(&value), "the origin got the whole field");
    // One byte more is refused with 431.
    let (request, _) = head_of_len(LIMITS, 64 * 1024 + 1);
    let r = parse_response(&send_raw(site.public, &request)).unwrap();
    assert_eq!(r.status, 431, "{}", r.text());
}

const CLOSING: &str = "closing.e2e.test";

#[test]
fn a_connection_the_origin_closes_with_connection_close_is_not_reused() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TestOrigin::start();
    // One worker: one pool, so the next request would take the connection `/close` used.
    let site = ServedTunnel::start(
        dir.path(),
        "closing",
        &[CLOSING],
        &Service::Url(origin.url()),
        &["--workers", "1"],
    );
    let mut c = Client::connect(site.public);
    for i in 0..3 {
        let r = c.request(&get(CLOSING, "/close"));
        assert_eq!((r.status, r.text().as_str()), (200, "close"), "round {i}");
        assert_eq!(
            r.header("connection"),
            None,
            "the client's connection stays open"
        );
        // A request with a body cannot be retried on a fresh connection: it must get one.
        let r = c.request(
            format!("POST /echo HTTP/1.1\r\nHost: {CLOSING}\r\nContent-Length: 4\r\n\r\nbody")
                .as_bytes(),
        );
        assert_eq!((r.status, r.text().as_str()), (200, "body"), "round {i}");
    }
}
