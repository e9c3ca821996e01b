//! Trailers through public HTTP/2: a real HTTP/2 client (the `h2` crate on a small tokio
//! runtime) against an in-process edge and a fake connector whose `/trailers` answers with the
//! tunnel's trailers flag. Response trailers arrive as an HTTP/2 trailers HEADERS frame
//! (`grpc-status`); request trailers cross the tunnel with the flag, buffered (small body) and
//! streamed (large body), and come back in the echo.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ringtun_edge_sim::Edge;
use ringtun_edge_sim::settings::Overrides;
use ringtun_test_support::edge;
use ringtun_test_support::fake_connector::{FakeConnector, FakeOpts};
use uuid::Uuid;

const HOST: &str = "grpc.example.com";

fn start(dir: &std::path::Path) -> Edge {
    edge::start(Overrides {
        // One worker: an HTTP/2 connection is served where it was accepted.
        workers: Some(1),
        ..edge::overrides(dir)
    })
}

/// A response: status, body, trailers.
type Answer = (u16, Vec<u8>, Option<http::HeaderMap>);

/// One request over h2c with prior knowledge: `body` and `trailers` sent after it.
fn request(
    addr: SocketAddr,
    method: &str,
    body: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
) -> Answer {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async move {
        let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut client, conn) = h2::client::handshake(tcp).await.expect("h2 handshake");
        tokio::spawn(conn);
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://{HOST}/trailers"))
            .header("te", "trailers")
            .body(())
            .expect("request");
        let end = body.is_none() && trailers.is_none();
        let (resp, mut send) = client.send_request(req, end).expect("send request");
        if let Some(b) = body {
            send.reserve_capacity(b.len());
            send.send_data(b, trailers.is_none()).expect("send body");
        }
        if let Some(t) = trailers {
            send.send_trailers(t).expect("send trailers");
        }
        let resp = resp.await.expect("response");
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut got = Vec::new();
        while let Some(d) = body.data().await {
            let d = d.expect("response data");
            let _ = body.flow_control().release_capacity(d.len());
            got.extend_from_slice(&d);
        }
        let trailers = body.trailers().await.expect("response trailers");
        (status, got, trailers)
    })
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn trailers_cross_the_tunnel_both_ways_over_http2() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let edge = start(tmp.path());
    let (tunnel, secret) = edge::tunnel(&edge, "grpc", HOST);
    let _conn = FakeConnector::start(FakeOpts {
        name: "a",
        server: edge.servers()[0].addr,
        ca_pem: Some(edge.state().tls().ca_pem.clone()),
        tunnel,
        secret,
        connector: Uuid::new_v4(),
        link_index: 0,
        refuse: false,
    });
    wait_until("the link", || {
        !edge.registry().connectors(tunnel).is_empty()
    });
    let public = edge.public_http_addr();

    // Response trailers become an HTTP/2 trailers frame.
    let (status, body, trailers) = request(public, "GET", None, None);
    assert_eq!(status, 200);
    assert_eq!(body, b"abc");
    let trailers = trailers.expect("response trailers");
    assert_eq!(
        trailers.get("grpc-status").map(|v| v.as_bytes()),
        Some(&b"0"[..])
    );

    // Request trailers go on the stream with the flag: the echo brings them back. A small
    // body (read whole before the stream opens) and a large one (streamed).
    for n in [1000usize, 300 * 1024] {
        let data = Bytes::from((0..n).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
        let mut t = http::HeaderMap::new();
        t.insert("x-checksum", http::HeaderValue::from_static("42"));
        let (status, body, trailers) = request(public, "POST", Some(data.clone()), Some(t));
        assert_eq!(status, 200);
        assert!(
            body == data[..],
            "{n}-byte body came back as {} bytes",
            body.len()
        );
        let trailers = trailers.expect("echoed trailers");
        assert_eq!(
            trailers.get("x-checksum").map(|v| v.as_bytes()),
            Some(&b"42"[..]),
            "{n}"
        );
    }
}
