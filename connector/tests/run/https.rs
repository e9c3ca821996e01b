//! `ringtun tunnel run` against a fake edge and `https://` test origins: `noTLSVerify`,
//! certificate rejection, `originServerName` as SNI, keep-alive reuse, and the origin response
//! timeout (`--origin-response-timeout`).

#![allow(clippy::unwrap_used)]

use ringtun_test_support::fake_edge;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use compio::net::TcpListener;
use fake_edge::*;
use ringtun_core::http::BodyFraming;
use ringtun_core::link::Link;
use ringtun_core::tunnel::{ReplyErrorKind, ResponseMeta};

/// What the TLS origin saw.
#[derive(Default)]
struct TlsLog {
    /// TCP connections accepted.
    connections: AtomicUsize,
    /// The SNI of each completed handshake (`None`: none sent).
    server_names: Mutex<Vec<Option<String>>>,
}

/// A std-thread HTTPS/1.1 origin with an rcgen self-signed certificate for `origin.example`.
/// `GET /hang` is never answered; anything else gets 200 "secure hello" (keep-alive).
fn tls_origin() -> (SocketAddr, Arc<TlsLog>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["origin.example".to_string()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let chain = vec![cert.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
    let cfg = Arc::new(
        rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap(),
    );
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let log = Arc::new(TlsLog::default());
    let log2 = log.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            log2.connections.fetch_add(1, Ordering::SeqCst);
            let log = log2.clone();
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let _ = serve_tls(c, cfg, &log);
            });
        }
    });
    (addr, log)
}

fn serve_tls(
    mut tcp: std::net::TcpStream,
    cfg: Arc<rustls::ServerConfig>,
    log: &TlsLog,
) -> std::io::Result<()> {
    let mut conn = rustls::ServerConnection::new(cfg).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut tcp)?;
    }
    log.server_names
        .lock()
        .unwrap()
        .push(conn.server_name().map(str::to_owned));
    let mut r = BufReader::new(rustls::StreamOwned::new(conn, tcp));
    loop {
        let mut first = String::new();
        if r.read_line(&mut first)? == 0 {
            return Ok(());
        }
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
        }
        if first.starts_with("GET /hang ") {
            // Hold the connection open until the connector gives up and closes it.
            let mut rest = String::new();
            let _ = r.read_line(&mut rest);
            return Ok(());
        }
        let body = b"secure hello";
        let w = r.get_mut();
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )?;
        w.write_all(body)?;
        w.flush()?;
    }
}

/// A plain TCP origin that accepts and never says anything.
fn silent_origin() -> SocketAddr {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for c in l.incoming() {
            let Ok(c) = c else { return };
            held.push(c);
        }
    });
    addr
}

fn config(tls: SocketAddr, silent: SocketAddr) -> String {
    format!(
        "ingress:
  - hostname: insecure.test
    service: https://{tls}
    originRequest:
      noTLSVerify: true
  - hostname: strict.test
    service: https://{tls}
  - hostname: sni.test
    service: https://{tls}
    originRequest:
      noTLSVerify: true
      originServerName: origin.example
  - hostname: silent.test
    service: http://{silent}
  - service: http_status:404
"
    )
}

fn expect_error(meta: &ResponseMeta) -> (ReplyErrorKind, String) {
    match meta {
        ResponseMeta::Error(e) => (e.kind, e.message.clone()),
        ResponseMeta::Head { head, .. } => panic!("expected an error, got {}", head.status),
    }
}

async fn check(link: &Link, log: &TlsLog) {
    // noTLSVerify: the self-signed origin answers, body intact.
    let a = request(link, get("insecure.test", "/"), vec![], BodyFraming::Empty).await;
    assert_eq!(a.status(), 200);
    assert_eq!(a.body, b"secure hello");
    // Keep-alive: further requests reuse the pooled TLS connection.
    let before = log.connections.load(Ordering::SeqCst);
    for _ in 0..4 {
        let a = request(link, get("insecure.test", "/"), vec![], BodyFraming::Empty).await;
        assert_eq!(a.status(), 200);
        assert_eq!(a.body, b"secure hello");
    }
    assert_eq!(
        log.connections.load(Ordering::SeqCst),
        before,
        "pool not reused"
    );

    // Verified (the default): the self-signed certificate is rejected with a 502 that says why.
    let a = request(link, get("strict.test", "/"), vec![], BodyFraming::Empty).await;
    assert_eq!(a.status(), 502);
    let (kind, message) = expect_error(&a.meta);
    assert_eq!(kind, ReplyErrorKind::OriginInvalid);
    assert!(message.contains("certificate"), "{message}");
    assert!(message.contains("127.0.0.1:"), "{message}");

    // originServerName is the SNI; another TLS setting means another pooled connection.
    let a = request(link, get("sni.test", "/"), vec![], BodyFraming::Empty).await;
    assert_eq!(a.status(), 200);
    assert_eq!(a.body, b"secure hello");
    assert!(
        log.server_names
            .lock()
            .unwrap()
            .contains(&Some("origin.example".to_owned())),
        "no handshake with SNI origin.example"
    );

    // An https origin that accepts the request and never answers: 504.
    let a = request(
        link,
        get("insecure.test", "/hang"),
        vec![],
        BodyFraming::Empty,
    )
    .await;
    assert_eq!(a.status(), 504);
    assert_eq!(expect_error(&a.meta).0, ReplyErrorKind::OriginTimeout);
    // A plain origin that accepts and never answers: 504 too.
    let a = request(link, get("silent.test", "/"), vec![], BodyFraming::Empty).await;
    assert_eq!(a.status(), 504);
    let (kind, message) = expect_error(&a.meta);
    assert_eq!(kind, ReplyErrorKind::OriginTimeout);
    assert!(message.contains("timed out"), "{message}");

    // The TLS origin still serves after the timeout.
    let a = request(link, get("insecure.test", "/"), vec![], BodyFraming::Empty).await;
    assert_eq!(a.body, b"secure hello");
}

fn scenario(envs: &[(&str, &str)]) {
    let (tls, log) = tls_origin();
    let s = setup(None, &config(tls, silent_origin()));
    block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let edge = l.local_addr().unwrap();
        let extra = [
            "--danger-plaintext-links",
            "--origin-response-timeout",
            "1s",
        ];
        let c = Connector::start_env(&s, edge, &extra, envs);
        let link = accept_link(&l, None, SECRET).await;
        check(&link, &log).await;
        let out = c.log();
        assert!(out.contains("noTLSVerify"), "no warning; log:\n{out}");
    });
}

#[test]
fn serves_https_origins() {
    scenario(&[]);
}

#[test]
fn serves_https_origins_on_the_epoll_fallback() {
    scenario(&[("RINGTUN_DRIVER", "epoll")]);
}
