//! `ringtun tunnel run` against a fake edge (registration and link per tunnel-contract.md) and
//! test origins on loopback: HTTP through the ingress rules, TCP, errors, shutdown.

#![allow(clippy::unwrap_used)]

use ringtun_test_support::fake_edge;

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use compio::net::TcpListener;
use fake_edge::*;
use ringtun_core::handshake::{Accepted, Rejected, TunnelSecret, edge_accept};
use ringtun_core::http::{BodyFraming, RequestHead};
use ringtun_core::link::{Link, LinkError};
use ringtun_core::mux::StreamKind;
use ringtun_core::tunnel::{
    ReplyErrorKind, RequestExtra, ResponseMeta, decode_response_meta, encode_request_meta,
};

fn config(
    origin: std::net::SocketAddr,
    refused: std::net::SocketAddr,
    echo: std::net::SocketAddr,
) -> String {
    format!(
        "ingress:\n  - hostname: teapot.test\n    service: http_status:418\n  - hostname: hello.test\n    service: hello_world\n  - hostname: refused.test\n    service: http://{refused}\n  - hostname: tcp.test\n    service: tcp://{echo}\n  - service: http://{origin}\n"
    )
}

/// Sends SIGTERM and waits (without blocking the runtime, so the fake edge answers the drain).
async fn terminate(c: &mut Connector) -> std::process::ExitStatus {
    let _ = ringtun_core::signal::send(c.proc.id(), ringtun_core::signal::Signal::Term);
    wait_exit(c).await
}

async fn wait_exit(c: &mut Connector) -> std::process::ExitStatus {
    for _ in 0..600 {
        if let Some(st) = c.exited() {
            return st;
        }
        compio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("connector did not exit; log:\n{}", c.log());
}

async fn check_http(link: &Link, log: &OriginLog) {
    // GET with a Content-Length response.
    let a = request(link, get("app.test", "/cl"), vec![], BodyFraming::Empty).await;
    assert_eq!(a.status(), 200);
    assert_eq!(a.body, b"hello");

    // Keep-alive: more requests reuse the pooled origin connection.
    let before = log.connections.load(Ordering::SeqCst);
    for _ in 0..5 {
        let a = request(
            link,
            get("app.test:8443", "/cl"),
            vec![],
            BodyFraming::Empty,
        )
        .await;
        assert_eq!(a.body, b"hello");
    }
    assert_eq!(
        log.connections.load(Ordering::SeqCst),
        before,
        "pool not reused"
    );

    // HEAD: Content-Length announced, no body; the connection stays usable.
    let mut h = get("app.test", "/cl");
    h.method = Bytes::from_static(b"HEAD");
    let a = request(link, h, vec![], BodyFraming::Empty).await;
    assert_eq!(a.status(), 200);
    assert!(a.body.is_empty());
    let a = request(link, get("app.test", "/cl"), vec![], BodyFraming::Empty).await;
    assert_eq!(a.body, b"hello");

    // An origin that closed its idle connection: the next request goes on a new one.
    for _ in 0..3 {
        let a = request(link, get("app.test", "/bye"), vec![], BodyFraming::Empty).await;
        assert_eq!(a.status(), 200);
        assert_eq!(a.body, b"bye");
    }

    // Chunked response, decoded on the stream.
    let a = request(
        link,
        get("app.test", "/chunked"),
        vec![],
        BodyFraming::Empty,
    )
    .await;
    assert_eq!(a.status(), 200);
    assert_eq!(a.body, b"abcdef");
    match &a.meta {
        ResponseMeta::Head { body, .. } => assert_eq!(*body, BodyFraming::Chunked),
        ResponseMeta::Error(e) => panic!("{e:?}"),
    }

    // POST with a chunked (unknown length) request body.
    let mut post = RequestHead::new(Bytes::from_static(b"POST"), Bytes::from_static(b"/echo"));
    post.headers.append("Host", "app.test");
    let parts = vec![
        Bytes::from_static(b"one,"),
        Bytes::from_static(b"two,"),
        Bytes::from_static(b"three"),
    ];
    let a = request(link, post.clone(), parts, BodyFraming::Chunked).await;
    assert_eq!(a.status(), 200);
    assert_eq!(a.body, b"one,two,three");

    // Hop-by-hop removed, connector ID added, at the origin.
    let mut h = get("app.test", "/head");
    h.headers.append("Connection", "x-private, keep-alive");
    h.headers.append("X-Private", "secret");
    h.headers.append("Keep-Alive", "timeout=5");
    h.headers.append("TE", "trailers");
    h.headers.append("X-Forwarded-For", "192.0.2.7");
    let a = request(link, h, vec![], BodyFraming::Empty).await;
    let seen = String::from_utf8_lossy(&a.body).to_ascii_lowercase();
    assert!(!seen.contains("x-private"), "{seen}");
    assert!(!seen.contains("keep-alive:"), "{seen}");
    assert!(!seen.contains("\nte:"), "{seen}");
    assert!(seen.contains("x-ringtun-connector-id: "), "{seen}");
    assert!(seen.contains("x-forwarded-for: 192.0.2.7"), "{seen}");
    assert!(seen.contains("host: app.test"), "{seen}");

    // Expect: 100-continue is not passed on; the body streams anyway.
    let mut h = RequestHead::new(Bytes::from_static(b"POST"), Bytes::from_static(b"/echo"));
    h.headers.append("Host", "app.test");
    h.headers.append("Expect", "100-continue");
    let a = request(
        link,
        h,
        vec![Bytes::from_static(b"continued")],
        BodyFraming::Length(9),
    )
    .await;
    assert_eq!(a.body, b"continued");

    // Upgrade: 101, then raw bytes both ways until FIN.
    let mut h = get("app.test", "/ws");
    h.headers.append("Upgrade", "websocket");
    h.headers.append("Connection", "Upgrade");
    let a = request(
        link,
        h,
        vec![Bytes::from_static(b"ws frame bytes")],
        BodyFraming::Empty,
    )
    .await;
    assert_eq!(a.status(), 101);
    assert_eq!(a.body, b"ws frame bytes");

    // http_status and hello_world.
    let a = request(link, get("teapot.test", "/"), vec![], BodyFraming::Empty).await;
    assert_eq!(a.status(), 418);
    assert!(a.body.is_empty());
    let a = request(link, get("hello.test", "/"), vec![], BodyFraming::Empty).await;
    assert_eq!(a.status(), 200);
    assert!(String::from_utf8_lossy(&a.body).contains("ringtun"));

    // Origin refused: error metadata naming the origin.
    let a = request(link, get("refused.test", "/"), vec![], BodyFraming::Empty).await;
    match &a.meta {
        ResponseMeta::Error(e) => {
            assert_eq!(e.kind, ReplyErrorKind::OriginRefused);
            assert_eq!(e.kind.status(), 502);
            assert!(e.message.contains("127.0.0.1:"), "{}", e.message);
        }
        ResponseMeta::Head { head, .. } => panic!("expected an error, got {}", head.status),
    }

    // More than 1 MiB both ways, intact.
    let n = 1_300_000usize;
    let data: Vec<u8> = (0..n).map(pattern).collect();
    let parts: Vec<Bytes> = data.chunks(50_000).map(Bytes::copy_from_slice).collect();
    let a = request(link, post, parts, BodyFraming::Length(n as u64)).await;
    assert_eq!(a.status(), 200);
    assert_eq!(a.body.len(), n);
    assert!(a.body == data, "upload echo differs");
    let a = request(
        link,
        get("app.test", &format!("/big?{n}")),
        vec![],
        BodyFraming::Empty,
    )
    .await;
    assert_eq!(a.body.len(), n);
    assert!(a.body == data, "download differs");
}

/// Opens an HTTP stream whose OPEN metadata carries `head` and routed host `host` as given
/// (not normalised as [`request`] does), and returns the REPLY and the response body.
async fn open_as_is(
    link: &Link,
    head: &RequestHead,
    host: &str,
) -> Result<(ResponseMeta, Vec<u8>), LinkError> {
    let extra = RequestExtra {
        host: host.to_owned(),
        client_ip: None,
        body: BodyFraming::Empty,
        trailers: false,
    };
    let s = link
        .open(StreamKind::Http, encode_request_meta(head, &extra))
        .unwrap();
    s.finish().unwrap();
    let meta = decode_response_meta(s.reply_meta().await?).unwrap();
    let mut body = Vec::new();
    while let Ok(Some(c)) = s.read().await {
        body.extend_from_slice(&c);
    }
    Ok((meta, body))
}

/// Rules match the host in the metadata (what the edge routed on), never the `Host` field, and
/// the origin gets that host; metadata that is not normalised is refused.
async fn check_routed_host(link: &Link) {
    let status = |m: &ResponseMeta| match m {
        ResponseMeta::Head { head, .. } => head.status,
        ResponseMeta::Error(e) => e.kind.status(),
    };
    // `Host: app.test` in the head, routed to teapot.test: the teapot rule answers.
    let (m, _) = open_as_is(link, &get("app.test", "/"), "teapot.test")
        .await
        .unwrap();
    assert_eq!(status(&m), 418);
    // Routed to app.test with another Host field (or none): the origin gets Host: app.test.
    for head in [
        get("teapot.test", "/head"),
        RequestHead::new("GET", "/head"),
    ] {
        let (m, body) = open_as_is(link, &head, "app.test").await.unwrap();
        assert_eq!(status(&m), 200);
        let body = String::from_utf8_lossy(&body).to_ascii_lowercase();
        assert!(body.starts_with("get /head http/1.1\r\n"), "{body}");
        assert_eq!(body.matches("\r\nhost:").count(), 1, "{body}");
        assert!(body.contains("\r\nhost: app.test\r\n"), "{body}");
    }
    // A host or target the edge would have normalised: the stream is reset, nothing answers.
    for (target, host) in [
        ("//", "teapot.test"),
        ("/x/../", "teapot.test"),
        ("/%61", "teapot.test"),
        ("http://teapot.test/", "teapot.test"),
        ("/", "Teapot.test"),
        ("/", "teapot.test."),
        ("/", "teapot.test:80"),
    ] {
        let head = get("teapot.test", target);
        let r = open_as_is(link, &head, host).await;
        assert!(r.is_err(), "{target} on {host}: {:?}", r.map(|(m, _)| m));
    }
}

async fn check_tcp(link: &Link, c: &Connector) {
    let s = link
        .open(StreamKind::Tcp, Bytes::from_static(b"2222"))
        .unwrap();
    s.write(Bytes::from_static(b"ping over tcp")).await.unwrap();
    s.finish().unwrap();
    let mut back = Vec::new();
    loop {
        match s.read().await {
            Ok(Some(b)) => back.extend_from_slice(&b),
            Ok(None) => break,
            Err(e) => panic!("tcp stream failed: {e}; log:\n{}", c.log()),
        }
    }
    assert_eq!(back, b"ping over tcp");
}

#[test]
fn serves_http_and_tcp_over_a_plaintext_link_and_exits_cleanly() {
    let (origin_addr, log) = origin();
    let s = setup(None, &config(origin_addr, closed_port(), echo_server()));
    block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let edge = l.local_addr().unwrap();
        let mut c = Connector::start(&s, edge, &["--danger-plaintext-links"]);
        let link = accept_link(&l, None, SECRET).await;
        check_http(&link, &log).await;
        check_routed_host(&link).await;
        check_tcp(&link, &c).await;
        let st = terminate(&mut c).await;
        let out = c.log();
        assert!(st.success(), "exit {st:?}; log:\n{out}");
        assert!(out.contains("Generated Connector ID: "), "{out}");
        assert!(
            out.contains("link registered index=0 data_center=dfw server="),
            "{out}"
        );
    });
}

#[test]
fn serves_http_over_a_tls_link() {
    tls_scenario(&[]);
}

#[test]
fn serves_http_over_a_tls_link_on_the_epoll_fallback() {
    tls_scenario(&[("RINGTUN_DRIVER", "epoll")]);
}

fn tls_scenario(envs: &[(&str, &str)]) {
    let (origin_addr, log) = origin();
    let p = pki();
    let s = setup(
        Some(&p.ca_pem),
        &config(origin_addr, closed_port(), echo_server()),
    );
    block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let edge = l.local_addr().unwrap();
        let mut c = Connector::start_env(&s, edge, &[], envs);
        let link = accept_link(&l, Some(&p), SECRET).await;
        let a = request(&link, get("app.test", "/cl"), vec![], BodyFraming::Empty).await;
        assert_eq!(a.body, b"hello");
        assert_eq!(log.connections.load(Ordering::SeqCst), 1);
        check_tcp(&link, &c).await;
        let a = request(
            &link,
            get("app.test", "/big?300000"),
            vec![],
            BodyFraming::Empty,
        )
        .await;
        assert_eq!(a.body.len(), 300_000);
        let st = terminate(&mut c).await;
        let out = c.log();
        assert!(st.success(), "exit {st:?}; log:\n{out}");
        if let Some((_, want)) = envs.iter().find(|(k, _)| *k == "RINGTUN_DRIVER") {
            assert!(out.contains(&format!("driver={want}")), "{out}");
        }
    });
}

#[test]
fn a_wrong_secret_exits_non_zero_with_the_edges_message() {
    let s = setup(None, "ingress:\n  - service: hello_world\n");
    block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let edge = l.local_addr().unwrap();
        let mut c = Connector::start(&s, edge, &["--danger-plaintext-links"]);
        let (mut tcp, _) = l.accept().await.unwrap();
        let refused = edge_accept(
            &mut tcp,
            |_| Ok(TunnelSecret::new(b"another secret".to_vec())),
            |_| -> Result<Accepted, Rejected> { panic!("must not admit") },
        )
        .await;
        assert!(refused.is_err());
        let st = wait_exit(&mut c).await;
        let out = c.log();
        assert!(!st.success(), "{out}");
        assert!(out.contains("the tunnel secret is wrong"), "{out}");
    });
}

#[test]
fn a_lost_link_is_registered_again() {
    let s = setup(None, "ingress:\n  - service: hello_world\n");
    block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let edge = l.local_addr().unwrap();
        let mut c = Connector::start(&s, edge, &["--danger-plaintext-links"]);
        let link = accept_link(&l, None, SECRET).await;
        link.close(ringtun_core::mux::ErrorCode::NO_ERROR);
        link.closed().await;
        // The connector backs off (about a second) and registers again.
        let link = accept_link(&l, None, SECRET).await;
        let a = request(&link, get("any.test", "/"), vec![], BodyFraming::Empty).await;
        assert_eq!(a.status(), 200);
        let st = terminate(&mut c).await;
        let out = c.log();
        assert!(st.success(), "{out}");
        assert_eq!(out.matches("link registered index=0").count(), 2, "{out}");
    });
}

#[test]
fn four_links_spread_over_two_data_centers_found_by_discovery() {
    let p = pki();
    // The CA comes from the credentials; discovery gives only the servers.
    let s = setup(Some(&p.ca_pem), "ingress:\n  - service: hello_world\n");
    block_on(async {
        let mut listeners = Vec::new();
        for _ in 0..4 {
            listeners.push(TcpListener::bind("127.0.0.1:0").await.unwrap());
        }
        let addrs: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().to_string())
            .collect();
        let body = serde_json::json!({
            "data_centers": [
                {"name": "dfw", "servers": [addrs[0], addrs[1]]},
                {"name": "mci", "servers": [addrs[2], addrs[3]]},
            ],
        })
        .to_string();
        let api = fake_admin(body).to_string();
        let mut c = Connector::spawn_with(&s, &["--edge-api", &api, "--workers", "2"]);
        let p = std::rc::Rc::new(p);
        let mut tasks = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            let p = p.clone();
            let dc = if i < 2 { "dfw" } else { "mci" };
            tasks.push(compio::runtime::spawn(async move {
                let (link, index) = accept_link_in(&l, Some(&p), SECRET, dc).await;
                let a = request(&link, get("x.test", "/"), vec![], BodyFraming::Empty).await;
                assert_eq!(a.status(), 200);
                (i, index, link)
            }));
        }
        let mut got = Vec::new();
        for t in tasks {
            got.push(t.await.unwrap());
        }
        // Link i: data center i mod 2, and the two links of a data center on distinct servers.
        let mut by_server: Vec<(usize, u8)> = got.iter().map(|(i, idx, _)| (*i, *idx)).collect();
        by_server.sort();
        assert_eq!(by_server, vec![(0, 0), (1, 2), (2, 1), (3, 3)]);
        let st = terminate(&mut c).await;
        let out = c.log();
        assert!(st.success(), "{out}");
        assert_eq!(out.matches("link registered").count(), 4, "{out}");
        assert_eq!(out.matches("data_center=dfw").count(), 2, "{out}");
        assert_eq!(out.matches("data_center=mci").count(), 2, "{out}");
    });
}

/// A credentials file without `EdgeCA` is refused with a message that says how to fix it, even
/// when the unauthenticated `/discovery` offers a CA: whoever answers that request could then
/// impersonate the edge. Nothing is dialled.
#[test]
fn a_credentials_file_without_a_ca_is_refused_even_if_discovery_offers_one() {
    let p = pki();
    let s = setup(None, "ingress:\n  - service: hello_world\n");
    let link_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    link_listener.set_nonblocking(true).unwrap();
    let body = serde_json::json!({
        "data_centers": [
            {"name": "dfw", "servers": [link_listener.local_addr().unwrap().to_string()]},
        ],
        "ca_pem": p.ca_pem,
    })
    .to_string();
    let api = fake_admin(body).to_string();
    block_on(async {
        let mut c = Connector::spawn_with(&s, &["--edge-api", &api, "--workers", "1"]);
        let st = wait_exit(&mut c).await;
        let out = c.log();
        assert_eq!(st.code(), Some(1), "{out}");
        assert!(out.contains("has no EdgeCA"), "{out}");
        assert!(out.contains("ringtun tunnel create"), "{out}");
        assert!(out.contains("--cacert FILE"), "{out}");
        assert!(!out.contains("link registered"), "{out}");
    });
    assert!(
        link_listener.accept().is_err(),
        "the connector dialled the edge without a trusted CA"
    );
}

/// `--cacert FILE` gives the CA when the credentials hold none; a file without a certificate
/// is refused before anything connects.
#[test]
fn cacert_flag_gives_the_edge_ca() {
    let p = pki();
    let s = setup(None, "ingress:\n  - service: hello_world\n");
    let ca = s.home.path().join("edge-ca.pem");
    std::fs::write(&ca, &p.ca_pem).unwrap();
    let bad = s.home.path().join("not-a-ca.pem");
    std::fs::write(&bad, "hello\n").unwrap();
    let ca = ca.to_string_lossy().into_owned();
    let bad = bad.to_string_lossy().into_owned();
    block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let edge = l.local_addr().unwrap();
        let mut c = Connector::start(&s, edge, &["--cacert", &bad]);
        let st = wait_exit(&mut c).await;
        let out = c.log();
        assert_eq!(st.code(), Some(1), "{out}");
        assert!(out.contains("the edge CA from --cacert"), "{out}");
        assert!(out.contains("cannot be used"), "{out}");

        let mut c = Connector::start(&s, edge, &["--cacert", &ca]);
        let link = accept_link(&l, Some(&p), SECRET).await;
        let a = request(&link, get("x.test", "/"), vec![], BodyFraming::Empty).await;
        assert_eq!(a.status(), 200);
        let st = terminate(&mut c).await;
        assert!(st.success(), "{}", c.log());
    });
}

/// An origin name that does not resolve is answered with 502 naming the origin (`.invalid` never
/// resolves); the other rules keep serving.
#[test]
fn an_origin_name_that_does_not_resolve_gets_502_naming_it() {
    let s = setup(
        None,
        "ingress:\n  - hostname: gone.test\n    service: http://does-not-exist.invalid:8080\n  - service: hello_world\n",
    );
    block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let edge = l.local_addr().unwrap();
        let mut c = Connector::start(&s, edge, &["--danger-plaintext-links"]);
        let link = accept_link(&l, None, SECRET).await;
        for _ in 0..3 {
            let a = request(&link, get("gone.test", "/"), vec![], BodyFraming::Empty).await;
            let ResponseMeta::Error(e) = &a.meta else {
                panic!("expected an error, got {}", a.status());
            };
            assert_eq!(e.kind, ReplyErrorKind::OriginRefused);
            assert_eq!(e.kind.status(), 502);
            assert!(
                e.message
                    .contains("origin does-not-exist.invalid:8080 does not resolve"),
                "{}",
                e.message
            );
        }
        let a = request(&link, get("hello.test", "/"), vec![], BodyFraming::Empty).await;
        assert_eq!(a.status(), 200);
        let st = terminate(&mut c).await;
        let out = c.log();
        assert!(st.success(), "{out}");
        // One warning for the name, not one per request.
        assert_eq!(
            out.matches("origin name does not resolve").count(),
            1,
            "{out}"
        );
    });
}
