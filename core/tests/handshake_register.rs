//! Registration over real loopback TCP + TLS: the right secret is accepted and the link then
//! runs over the same stream; a wrong secret is refused with a clear error on both sides; a
//! lying peer (garbage, truncated message, oversized length) gives a clean error.

mod tls_common;

use std::net::SocketAddr;

use bytes::Bytes;
use compio::BufResult;
use compio::io::{AsyncWrite, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};
use ringtun_core::error::Classify;
use ringtun_core::handshake::{
    Accepted, HandshakeError, RegisterFlags, RegisterRequest, RejectCode, Rejected, TunnelSecret,
    connector_register, edge_accept,
};
use ringtun_core::link::Link;
use ringtun_core::mux::{Config, ErrorCode, Role, StreamKind};
use ringtun_core::tls::TlsStream;
use tls_common::{SERVER_NAME, pki};

const TUNNEL: [u8; 16] = [7; 16];

fn request() -> RegisterRequest {
    RegisterRequest {
        tunnel_id: TUNNEL,
        connector_id: [9; 16],
        version: "0.1.0".into(),
        arch: "linux_amd64".into(),
        link_index: 2,
        flags: RegisterFlags::default(),
        label: String::new(),
        weight: ringtun_core::handshake::DEFAULT_WEIGHT,
        ha_connections: ringtun_core::handshake::MAX_HA_CONNECTIONS,
    }
}

/// A TLS pair over loopback: (edge side, connector side).
async fn tls_pair() -> (TlsStream, TlsStream) {
    let p = pki();
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = l.local_addr().expect("addr");
    let server = compio::runtime::spawn(async move {
        let (s, _) = l.accept().await.expect("accept");
        TlsStream::accept(s, p.server).await.expect("server tls")
    });
    let s = TcpStream::connect(addr).await.expect("connect");
    let client = TlsStream::connect(s, p.client, SERVER_NAME)
        .await
        .expect("client tls");
    (server.await.expect("server task"), client)
}

fn lookup_ok(
    secret: &'static [u8],
) -> impl FnOnce(&ringtun_core::handshake::Register) -> Result<TunnelSecret, Rejected> {
    move |r| {
        if r.tunnel_id == TUNNEL {
            Ok(TunnelSecret::new(secret.to_vec()))
        } else {
            Err(Rejected {
                code: RejectCode::UnknownTunnel,
                message: "no such tunnel".into(),
            })
        }
    }
}

fn admit(_: &ringtun_core::handshake::Register) -> Result<Accepted, Rejected> {
    Ok(Accepted {
        data_center: "dfw".into(),
        server: "127.0.1.1:7844".into(),
    })
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    compio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(f)
}

#[test]
fn right_secret_is_accepted_and_the_link_runs_after() {
    block_on(async {
        let (mut edge, mut conn) = tls_pair().await;
        let edge_task = compio::runtime::spawn(async move {
            let reg = edge_accept(&mut edge, lookup_ok(b"s3cret"), admit)
                .await
                .expect("edge accepts");
            assert_eq!(reg.link_index, 2);
            assert_eq!(reg.arch, "linux_amd64");
            // Start the link at once: its first frames may follow Accepted closely.
            let link = Link::spawn(edge, Role::Server, Config::default());
            let inc = link.accept().await.expect("a stream");
            inc.stream.reply(Bytes::new()).expect("reply");
            while let Some(c) = inc.stream.read().await.expect("read") {
                inc.stream.write(c).await.expect("write");
            }
            inc.stream.finish().expect("finish");
            link.closed().await;
        });
        let acc = connector_register(
            &mut conn,
            &request(),
            &TunnelSecret::new(b"s3cret".to_vec()),
        )
        .await
        .expect("registered");
        assert_eq!(acc.data_center, "dfw");
        let link = Link::spawn(conn, Role::Client, Config::default());
        let s = link.open(StreamKind::Tcp, Bytes::new()).expect("open");
        s.write(Bytes::from_static(b"hello over tls"))
            .await
            .expect("write");
        s.finish().expect("finish");
        let mut back = Vec::new();
        while let Some(c) = s.read().await.expect("read") {
            back.extend_from_slice(&c);
        }
        assert_eq!(back, b"hello over tls");
        link.close(ErrorCode::NO_ERROR);
        link.closed().await;
        edge_task.await.expect("edge task");
    });
}

#[test]
fn wrong_secret_is_refused_clearly_on_both_sides() {
    block_on(async {
        let (mut edge, mut conn) = tls_pair().await;
        let edge_task = compio::runtime::spawn(async move {
            edge_accept(&mut edge, lookup_ok(b"s3cret"), admit).await
        });
        let err = connector_register(&mut conn, &request(), &TunnelSecret::new(b"wrong".to_vec()))
            .await
            .expect_err("must be refused");
        eprintln!("connector sees: {err}");
        match &err {
            HandshakeError::Rejected(r) => assert_eq!(r.code, RejectCode::BadSecret),
            other => panic!("unexpected: {other:?}"),
        }
        assert!(err.to_string().contains("secret"));
        assert!(!err.is_retry_safe());
        let edge_err = edge_task
            .await
            .expect("edge task")
            .expect_err("edge refuses");
        eprintln!("edge sees: {edge_err}");
        assert!(matches!(edge_err, HandshakeError::BadProof));
    });
}

#[test]
fn connector_limit_refusal_carries_the_edge_message() {
    block_on(async {
        let (mut edge, mut conn) = tls_pair().await;
        let edge_task = compio::runtime::spawn(async move {
            edge_accept(&mut edge, lookup_ok(b"s3cret"), |_| {
                Err(Rejected {
                    code: RejectCode::ConnectorLimit,
                    message: "tunnel has reached its limit of 2 connectors".into(),
                })
            })
            .await
        });
        let err = connector_register(
            &mut conn,
            &request(),
            &TunnelSecret::new(b"s3cret".to_vec()),
        )
        .await
        .expect_err("refused");
        assert!(err.to_string().contains("limit of 2 connectors"), "{err}");
        assert!(matches!(
            edge_task.await.expect("edge"),
            Err(HandshakeError::Refused(_))
        ));
    });
}

/// The edge side faces a connector that sends `bytes` then closes.
async fn edge_against(bytes: Vec<u8>) -> HandshakeError {
    let (mut edge, mut conn) = tls_pair().await;
    let liar = compio::runtime::spawn(async move {
        let BufResult(_, _) = conn.write_all(bytes).await;
        let _ = conn.shutdown().await;
        conn
    });
    let err = edge_accept(&mut edge, lookup_ok(b"s3cret"), admit)
        .await
        .expect_err("must fail");
    drop(liar.await);
    err
}

/// The connector side faces an edge that sends `bytes` then closes.
async fn connector_against(bytes: Vec<u8>) -> HandshakeError {
    let (mut edge, mut conn) = tls_pair().await;
    let liar = compio::runtime::spawn(async move {
        let BufResult(_, _) = edge.write_all(bytes).await;
        let _ = edge.shutdown().await;
        edge
    });
    let err = connector_register(&mut conn, &request(), &TunnelSecret::new(b"x".to_vec()))
        .await
        .expect_err("must fail");
    drop(liar.await);
    err
}

#[test]
fn lying_peers_give_clean_errors() {
    block_on(async {
        // Garbage: a length prefix, then an unknown type.
        let e = edge_against(vec![0, 5, 0xee, 1, 2, 3, 4]).await;
        assert!(matches!(e, HandshakeError::Malformed(_)), "{e:?}");
        // Oversized length.
        let e = edge_against(vec![0xff, 0xff, 2]).await;
        assert!(matches!(e, HandshakeError::TooLarge(_)), "{e:?}");
        // Truncated: announces 100 bytes, sends 3, closes.
        let e = edge_against(vec![0, 100, 2, 1, 7]).await;
        assert!(matches!(e, HandshakeError::Closed), "{e:?}");
        // Nothing at all.
        let e = edge_against(Vec::new()).await;
        assert!(matches!(e, HandshakeError::Closed), "{e:?}");
        // The connector facing garbage instead of a challenge.
        let e = connector_against(vec![0, 3, 4, 0, 0]).await;
        assert!(matches!(e, HandshakeError::Malformed(_)), "{e:?}");
        let e = connector_against(vec![0, 2, 1, 0]).await;
        assert!(matches!(e, HandshakeError::Malformed(_)), "{e:?}");
    });
}
