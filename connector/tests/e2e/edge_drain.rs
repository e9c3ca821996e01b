//! The edge's graceful shutdown with real processes: `ringtun-edge`, a `ringtun tunnel run`
//! connector and a slow `ringtun-load origin`. SIGTERM to the edge with requests in flight (GETs
//! and a POST whose body already reached the origin): they all complete with 200, new public
//! connections are refused meanwhile, and the edge exits 0 within its grace period.
//!
//! `cargo test -p ringtun-connector --test e2e edge_drain::`
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use std::net::TcpStream;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use e2e::{Connector, Edge, Origin, STEP_TIMEOUT, Service, Tunnel, parse_response, signal};

const HOST: &str = "app.ringtun.test";
/// How long the origin waits before it answers (after it read the whole request).
const DELAY: &str = "6s";
/// The POST's body size.
const POST_BODY: usize = 200 * 1024;

fn send(public: std::net::SocketAddr, request: Vec<u8>) -> JoinHandle<Result<u16, String>> {
    std::thread::spawn(move || {
        let raw = e2e::send_raw(public, &request);
        parse_response(&raw).map(|r| r.status)
    })
}

#[test]
fn sigterm_drains_in_flight_requests_refuses_new_ones_and_exits_zero() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let mut edge = Edge::start(dir);
    let tunnel = Tunnel::create(&edge, "web");
    tunnel.route_dns(&edge, HOST);
    let origin = Origin::start_args(dir, &["--http", "127.0.0.1:0", "--delay", DELAY]);
    let connector = Connector::run(&edge, &tunnel, &Service::Url(origin.url()));
    edge.wait_connectors("web", 1);
    let public = edge.public_http();
    // A TCP route's listener stops at the drain like the public HTTP one.
    let tcp_port = e2e::free_port();
    tunnel.route_tcp(&edge, tcp_port);
    let tcp_route = std::net::SocketAddr::from(([127, 0, 0, 1], tcp_port));
    let deadline = Instant::now() + STEP_TIMEOUT;
    while TcpStream::connect(tcp_route).is_err() {
        assert!(Instant::now() < deadline, "the TCP route never listened");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Served before the test starts (not 503 while the links come up).
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let r = e2e::http_get(public, HOST, "/");
        if r.status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never served: {}", r.status);
        std::thread::sleep(Duration::from_millis(100));
    }

    let mut in_flight = Vec::new();
    for i in 0..3 {
        let get = format!("GET /get{i} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
        in_flight.push(send(public, get.into_bytes()));
    }
    let mut post = format!(
        "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {POST_BODY}\r\nConnection: close\r\n\r\n"
    )
    .into_bytes();
    post.extend(std::iter::repeat_n(b'x', POST_BODY));
    in_flight.push(send(public, post));
    // Let the requests reach the origin (it answers only after its delay).
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        in_flight.iter().all(|r| !r.is_finished()),
        "the requests must still be in flight at SIGTERM"
    );

    let sent = Instant::now();
    signal(&edge.proc, "TERM");
    // New public connections are refused while the in-flight requests finish.
    let deadline = Instant::now() + STEP_TIMEOUT;
    while TcpStream::connect(public).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the edge still accepts public connections after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    while TcpStream::connect(tcp_route).is_ok() {
        assert!(
            Instant::now() < deadline,
            "the edge still accepts TCP-route connections after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // Refused by the draining edge, not because it had already exited.
    assert!(
        edge.proc.try_wait().is_none(),
        "the edge exited before its in-flight requests finished; last lines:{}",
        edge.proc.tail(20)
    );
    for r in in_flight {
        let status = r.join().unwrap();
        assert_eq!(
            status,
            Ok(200),
            "an in-flight request must complete; edge log:{}",
            edge.proc.tail(20)
        );
    }
    let status = loop {
        if let Some(status) = edge.proc.try_wait() {
            break status;
        }
        assert!(
            sent.elapsed() < STEP_TIMEOUT,
            "the edge did not exit; last lines:{}",
            edge.proc.tail(20)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "exit status {status:?}");
    // The edge's last lines may still be in the reader thread: wait for the end of its output.
    let _ = edge.proc.wait_line(STEP_TIMEOUT, None, |_| None::<()>);
    assert!(
        edge.proc.lines().iter().any(|l| l.contains("drained")),
        "{}",
        edge.proc.tail(20)
    );
    drop(connector);
}
