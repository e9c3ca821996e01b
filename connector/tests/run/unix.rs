//! `ringtun tunnel run` against a fake edge and Unix socket origins (`unix:` and `unix+tls:`
//! with `caPool`), on io_uring and on the epoll fallback: bodies both ways and one pooled
//! connection per origin. The same through a real edge, with WebSocket, is in
//! `e2e/origins.rs`.

#![allow(clippy::unwrap_used)]

use ringtun_test_support::fake_edge;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use compio::net::TcpListener;
use fake_edge::*;
use ringtun_core::http::{BodyFraming, RequestHead};
use ringtun_test_support::origin::TlsOrigin;

fn post(host: &str, target: &str, len: usize) -> RequestHead {
    let mut h = RequestHead::new(Bytes::from_static(b"POST"), Bytes::from(target.to_owned()));
    h.headers.append("Host", host.to_owned());
    h.headers.append("Content-Length", len.to_string());
    h
}

fn scenario(envs: &[(&str, &str)]) {
    let dir = tempfile::tempdir().unwrap();
    let plain_sock = dir.path().join("plain.sock");
    let plain = TestOrigin::start_unix(&plain_sock);
    let tls = TlsOrigin::new(&["tls.test"]);
    let tls_sock = tls.listen_unix(&dir.path().join("tls.sock"));
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &tls.ca_pem).unwrap();
    let s = setup(
        None,
        &format!(
            "ingress:\n  - hostname: plain.test\n    service: unix:{}\n\
             \x20 - hostname: tls.test\n    service: unix+tls:{}\n    originRequest:\n      caPool: {}\n\
             \x20 - service: http_status:404\n",
            plain_sock.display(),
            tls_sock.display(),
            ca.display()
        ),
    );
    block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let edge = l.local_addr().unwrap();
        let c = Connector::start_env(&s, edge, &["--danger-plaintext-links"], envs);
        let link = accept_link(&l, None, SECRET).await;
        for _ in 0..3 {
            let a = request(&link, get("plain.test", "/cl"), vec![], BodyFraming::Empty).await;
            assert_eq!((a.status(), a.body.as_slice()), (200, &b"hello"[..]));
        }
        let body: Vec<u8> = (0..200_000).map(pattern).collect();
        let pieces = body.chunks(30_000).map(Bytes::copy_from_slice).collect();
        let a = request(
            &link,
            post("plain.test", "/echo", body.len()),
            pieces,
            BodyFraming::Length(body.len() as u64),
        )
        .await;
        assert_eq!(a.status(), 200);
        assert!(a.body == body, "echo intact");
        assert_eq!(plain.connections(), 1, "one pooled Unix connection");
        for _ in 0..3 {
            let a = request(&link, get("tls.test", "/"), vec![], BodyFraming::Empty).await;
            assert_eq!(a.status(), 200, "{:?}", String::from_utf8_lossy(&a.body));
            assert_eq!(a.body, b"secure hello (0 body bytes)");
        }
        assert_eq!(tls.log.connections.load(Ordering::SeqCst), 1);
        let out = c.log();
        if let Some((_, want)) = envs.iter().find(|(k, _)| *k == "RINGTUN_DRIVER") {
            assert!(out.contains(&format!("driver={want}")), "{out}");
        }
    });
}

#[test]
fn serves_unix_socket_origins() {
    scenario(&[]);
}

#[test]
fn serves_unix_socket_origins_on_the_epoll_fallback() {
    scenario(&[("RINGTUN_DRIVER", "epoll")]);
}
