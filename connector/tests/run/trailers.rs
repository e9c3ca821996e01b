//! Trailers over the tunnel at the connector (`docs/http-meta.md`, "Bodies"), against a fake
//! edge that writes and reads the stream metadata itself:
//!
//! - OPEN with the trailers flag: the request body arrives chunked with its trailer section;
//!   an HTTP/1.1 origin gets the trailer fields after the last chunk, an HTTP/2 origin
//!   (`http2Origin`, the gRPC origin of `test-support/grpc/`) the body under flow control;
//! - REPLY from an HTTP/2 origin: the trailers flag, and the stream carries chunked encoding
//!   whose trailer section holds `grpc-status`.
#![allow(clippy::unwrap_used)]

use ringtun_test_support::fake_edge;
use ringtun_test_support::grpc;

use std::io::{BufRead, BufReader, Read, Write};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use compio::net::TcpListener;
use fake_edge::*;
use grpc::{GrpcOrigin, grpc_message, grpc_messages};
use ringtun_core::http::{
    BodyDecoder, BodyFraming, BodyLimits, DecodeStep, Fault, Headers, RequestHead,
};
use ringtun_core::link::Link;
use ringtun_core::mux::StreamKind;
use ringtun_core::tunnel::{RequestExtra, ResponseMeta, decode_response_meta, encode_request_meta};

/// Sends `head` with the trailers flag and `wire` (a chunked body with its trailer section)
/// as the stream's data; returns the REPLY and the raw response data.
async fn request_with_trailers(
    link: &Link,
    head: RequestHead,
    wire: Vec<u8>,
) -> (ResponseMeta, Vec<u8>) {
    let host = String::from_utf8(head.headers.get("host").unwrap().to_vec()).unwrap();
    let extra = RequestExtra {
        host,
        client_ip: None,
        body: BodyFraming::Chunked,
        trailers: true,
    };
    let s = Rc::new(
        link.open(StreamKind::Http, encode_request_meta(&head, &extra))
            .unwrap(),
    );
    let w = s.clone();
    let writer = compio::runtime::spawn(async move {
        // In pieces that cut through size lines and the trailer section.
        for piece in wire.chunks(7) {
            w.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        w.finish().unwrap();
    });
    let meta = decode_response_meta(s.reply_meta().await.unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(c) = s.read().await.unwrap() {
        out.extend_from_slice(&c);
    }
    writer.await.unwrap();
    (meta, out)
}

/// `body` in chunks of `size`, then `trailers` in the trailer section.
fn chunked(body: &[u8], size: usize, trailers: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n");
    out.extend_from_slice(trailers.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

/// Decodes chunked stream data: the payload and the trailer fields.
fn dechunk(data: &[u8]) -> (Vec<u8>, Headers) {
    let mut dec = BodyDecoder::new(BodyFraming::Chunked, BodyLimits::default(), Fault::Origin);
    let mut buf = BytesMut::from(data);
    let mut body = Vec::new();
    loop {
        match dec.decode(&mut buf).unwrap() {
            DecodeStep::Data(b) => body.extend_from_slice(&b),
            DecodeStep::End => break,
            DecodeStep::NeedMore => panic!("stream data ended inside the chunked encoding"),
        }
    }
    assert!(buf.is_empty(), "bytes after the trailer section");
    (body, dec.take_trailers().unwrap())
}

/// An HTTP/1.1 origin that answers every request with the raw bytes of its body (the chunked
/// framing and trailer section as received).
fn raw_body_origin() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            std::thread::spawn(move || {
                let mut r = BufReader::new(c);
                let mut head = String::new();
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    head.push_str(&line.to_ascii_lowercase());
                }
                assert!(head.contains("transfer-encoding: chunked"), "{head}");
                // Read up to the end of the trailer section: a blank line after `0\r\n`.
                let mut raw = Vec::new();
                let mut byte = [0u8];
                while !(raw.ends_with(b"\r\n\r\n") && raw.windows(3).any(|w| w == b"0\r\n")) {
                    if r.read(&mut byte).unwrap_or(0) == 0 {
                        return;
                    }
                    raw.push(byte[0]);
                }
                let w = r.get_mut();
                let _ = write!(
                    w,
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    raw.len()
                );
                let _ = w.write_all(&raw);
            });
        }
    });
    addr
}

#[test]
fn trailers_cross_the_connector_both_ways() {
    let h1 = raw_body_origin();
    let grpc = GrpcOrigin::start(None);
    let s = setup(
        None,
        &format!(
            "ingress:\n  - hostname: h1.test\n    service: http://{h1}\n\
             \x20 - hostname: grpc.test\n    service: http://127.0.0.1:{}\n    originRequest:\n      http2Origin: true\n\
             \x20 - service: http_status:404\n",
            grpc.port
        ),
    );
    block_on(async {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let edge = l.local_addr().unwrap();
        let _c = Connector::start(&s, edge, &["--danger-plaintext-links"]);
        let link = accept_link(&l, None, SECRET).await;

        // OPEN trailers to an HTTP/1.1 origin: the fields follow the last chunk there.
        let mut post = RequestHead::new("POST", "/up");
        post.headers.append("Host", "h1.test");
        let wire = chunked(b"hello trailers", 5, "X-Sum: 42\r\nX-Note: a b\r\n");
        let (meta, body) = request_with_trailers(&link, post, wire).await;
        match &meta {
            ResponseMeta::Head { head, trailers, .. } => {
                assert_eq!(head.status, 200);
                assert!(!trailers, "a Content-Length response has none");
            }
            ResponseMeta::Error(e) => panic!("{e:?}"),
        }
        let (payload, fields) = dechunk(&body);
        assert_eq!(payload, b"hello trailers");
        assert_eq!(fields.get("x-sum").map(|v| &v[..]), Some(&b"42"[..]));
        assert_eq!(fields.get("x-note").map(|v| &v[..]), Some(&b"a b"[..]));

        // OPEN trailers to an HTTP/2 origin, and the REPLY's trailers from it.
        let mut call = RequestHead::new("POST", "/ringtun.test.Echo/Upload");
        call.headers.append("Host", "grpc.test");
        call.headers.append("Content-Type", "application/grpc");
        let msgs: Vec<u8> = [vec![1u8; 100_000], vec![2u8; 50_000]]
            .iter()
            .flat_map(|m| grpc_message(m))
            .collect();
        let wire = chunked(&msgs, 16_000, "X-Client-Trailer: yes\r\n");
        let (meta, body) = request_with_trailers(&link, call, wire).await;
        match &meta {
            ResponseMeta::Head {
                head,
                body,
                trailers,
            } => {
                assert_eq!(head.status, 200);
                assert_eq!(*body, BodyFraming::Chunked);
                assert!(
                    trailers,
                    "an HTTP/2 response of unknown length carries its trailers"
                );
            }
            ResponseMeta::Error(e) => panic!("{e:?}"),
        }
        let (payload, fields) = dechunk(&body);
        assert_eq!(grpc_messages(&payload), [b"150000".to_vec()]);
        assert_eq!(fields.get("grpc-status").map(|v| &v[..]), Some(&b"0"[..]));
    });
}
