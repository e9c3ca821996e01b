//! `core::http` over a real loopback socket, under both drivers: a server reads a request head
//! and a chunked body (sent in small pieces, with `Expect: 100-continue`), answers with a
//! Content-Length response over one vectored write, then serves a pipelined second request on
//! the same keep-alive connection with an error response.

#![allow(clippy::unwrap_used)]

mod rt_common;

use bytes::{Bytes, BytesMut};
use compio::io::{AsyncWrite, AsyncWriteExt};
use compio::net::{TcpListener, TcpStream};
use ringtun_core::http::io::{
    CONTINUE_RESPONSE, read_body_chunk, read_more, read_request_head, read_response_head,
    write_bufs,
};
use ringtun_core::http::{
    BodyDecoder, BodyEncoder, BodyFraming, BodyLimits, Fault, HeadLimits, ResponseHead,
    error_response, expects_continue, no_route_detail, request_framing, request_keep_alive,
    response_framing, response_of, status_of,
};
use ringtun_core::rt::{Runtime, RuntimeConfig, WorkerCtx};

async fn serve(l: TcpListener) -> Result<(), String> {
    let (mut s, _) = l.accept().await.map_err(|e| e.to_string())?;
    let mut buf = BytesMut::new();
    let limits = HeadLimits::default();

    // Request 1: chunked upload, echoed back with Content-Length.
    let head = read_request_head(&mut s, &mut buf, &limits)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no request")?;
    assert_eq!(&head.method[..], b"POST");
    assert!(expects_continue(&head));
    assert!(request_keep_alive(&head));
    let framing = request_framing(&head).map_err(|e| e.to_string())?;
    assert_eq!(framing, BodyFraming::Chunked);
    write_bufs(&mut s, vec![Bytes::from_static(CONTINUE_RESPONSE)])
        .await
        .map_err(|e| e.to_string())?;
    let mut dec = BodyDecoder::new(framing, BodyLimits::default(), Fault::Client);
    let mut body = Vec::new();
    while let Some(chunk) = read_body_chunk(&mut s, &mut buf, &mut dec)
        .await
        .map_err(|e| e.to_string())?
    {
        body.push(chunk);
    }
    let len: usize = body.iter().map(Bytes::len).sum();
    let mut res = ResponseHead::new(200);
    res.headers.append("Content-Length", len.to_string());
    let mut out = vec![res.to_bytes()];
    let mut enc = BodyEncoder::new(BodyFraming::Length(len as u64));
    for c in body {
        enc.encode(c, &mut out).map_err(|e| e.to_string())?;
    }
    enc.finish(&mut out).map_err(|e| e.to_string())?;
    write_bufs(&mut s, out).await.map_err(|e| e.to_string())?;

    // Request 2 (pipelined, already in the buffer or arriving): an error response, then close.
    let head = read_request_head(&mut s, &mut buf, &limits)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("no second request")?;
    assert!(!request_keep_alive(&head));
    let host = String::from_utf8_lossy(head.host().ok_or("no host")?).into_owned();
    let (h, b) = error_response(404, &no_route_detail(&host), true);
    write_bufs(&mut s, vec![h.to_bytes(), b])
        .await
        .map_err(|e| e.to_string())?;
    // The client closes: a clean end between requests.
    let next = read_request_head(&mut s, &mut buf, &limits)
        .await
        .map_err(|e| e.to_string())?;
    assert!(next.is_none());
    Ok(())
}

async fn client(addr: std::net::SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    let pieces: [&'static [u8]; 6] = [
        b"POST /upload HTTP/1.1\r\nHost: app.exam",
        b"ple\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
        b"5;ext=1\r\nhello\r\n",
        b"6\r\n world\r\n0\r\n",
        b"X-Checksum: 1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: nowhere.example\r\nConnection: close\r\n\r\n",
    ];
    let mut buf = BytesMut::new();
    let limits = HeadLimits::default();
    for (i, p) in pieces.iter().enumerate() {
        let compio::BufResult(r, _) = s.write_all(*p).await;
        r.map_err(|e| e.to_string())?;
        if i == 1 {
            let cont = read_response_head(&mut s, &mut buf, &limits)
                .await
                .map_err(|e| e.to_string())?;
            assert_eq!(cont.status, 100);
        }
    }
    let res = read_response_head(&mut s, &mut buf, &limits)
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(res.status, 200);
    let framing = response_framing(&res, b"POST").map_err(|e| e.to_string())?;
    assert_eq!(framing, BodyFraming::Length(11));
    let mut dec = BodyDecoder::new(framing, BodyLimits::default(), Fault::Origin);
    let mut body = Vec::new();
    while let Some(c) = read_body_chunk(&mut s, &mut buf, &mut dec)
        .await
        .map_err(|e| e.to_string())?
    {
        body.extend_from_slice(&c);
    }
    assert_eq!(body, b"hello world");

    let res = read_response_head(&mut s, &mut buf, &limits)
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(res.status, 404);
    let framing = response_framing(&res, b"GET").map_err(|e| e.to_string())?;
    let mut dec = BodyDecoder::new(framing, BodyLimits::default(), Fault::Origin);
    let mut body = Vec::new();
    while let Some(c) = read_body_chunk(&mut s, &mut buf, &mut dec)
        .await
        .map_err(|e| e.to_string())?
    {
        body.extend_from_slice(&c);
    }
    assert_eq!(
        body,
        b"404 Not Found: no tunnel route for host nowhere.example\n"
    );
    s.shutdown().await.map_err(|e| e.to_string())?;
    drop(s);
    Ok(())
}

#[test]
fn request_and_chunked_body_over_loopback_under_both_drivers() {
    for (driver, _) in rt_common::drivers() {
        let cfg = RuntimeConfig {
            workers: Some(1),
            driver,
            ..RuntimeConfig::default()
        };
        let rt = Runtime::start(cfg, |_ctx: WorkerCtx| async {
            let l = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| e.to_string())?;
            let addr = l.local_addr().map_err(|e| e.to_string())?;
            let server = compio::runtime::spawn(serve(l));
            client(addr).await?;
            server
                .await
                .map_err(|_| "server task panicked".to_string())?
        })
        .unwrap();
        for r in rt.join() {
            r.unwrap().unwrap();
        }
    }
}

/// A head over 64 KiB read from a socket gets 431 with a body that says why, and the server
/// closes the connection.
#[test]
fn oversized_head_gets_431_over_loopback() {
    for (driver, _) in rt_common::drivers() {
        let cfg = RuntimeConfig {
            workers: Some(1),
            driver,
            ..RuntimeConfig::default()
        };
        let rt = Runtime::start(cfg, |_ctx: WorkerCtx| async {
            let l = TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(|e| e.to_string())?;
            let addr = l.local_addr().map_err(|e| e.to_string())?;
            let server = compio::runtime::spawn(async move {
                let (mut s, _) = l.accept().await.map_err(|e| e.to_string())?;
                let mut buf = BytesMut::new();
                let err = read_request_head(&mut s, &mut buf, &HeadLimits::default())
                    .await
                    .err()
                    .ok_or("an oversized head was accepted")?;
                assert_eq!(status_of(&err), 431);
                let (h, b) = response_of(&err);
                write_bufs(&mut s, vec![h.to_bytes(), b])
                    .await
                    .map_err(|e| e.to_string())?;
                s.shutdown().await.map_err(|e| e.to_string())?;
                // Drain the rest of the head until the client closes: closing with unread data
                // would send a RST that can destroy the response in the client's buffer.
                loop {
                    buf.clear();
                    match read_more(&mut s, &mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                Ok::<(), String>(())
            });
            let mut c = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
            let mut req = b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: ".to_vec();
            req.extend_from_slice(&vec![b'a'; 70 * 1024]);
            req.extend_from_slice(b"\r\n\r\n");
            // The server may stop reading and answer before the whole head is sent.
            let compio::BufResult(_, _) = c.write_all(req).await;
            let mut buf = BytesMut::new();
            let res = read_response_head(&mut c, &mut buf, &HeadLimits::default())
                .await
                .map_err(|e| e.to_string())?;
            assert_eq!(res.status, 431);
            assert!(res.headers.has_token("connection", "close"));
            let framing = response_framing(&res, b"GET").map_err(|e| e.to_string())?;
            let mut dec = BodyDecoder::new(framing, BodyLimits::default(), Fault::Origin);
            let mut body = Vec::new();
            while let Some(c) = read_body_chunk(&mut c, &mut buf, &mut dec)
                .await
                .map_err(|e| e.to_string())?
            {
                body.extend_from_slice(&c);
            }
            assert_eq!(
                body,
                b"431 Request Header Fields Too Large: head larger than 65536 bytes\n"
            );
            // Close so the server's drain ends.
            drop(c);
            server
                .await
                .map_err(|_| "server task panicked".to_string())?
        })
        .unwrap();
        for r in rt.join() {
            r.unwrap().unwrap();
        }
    }
}
