//! [`Link::peer_draining`] over a real loopback TCP link pair on one compio runtime.

use std::time::Duration;

use super::Link;
use crate::mux::{Config, ErrorCode, Role};

/// A connected (client, server) link pair.
async fn pair() -> (Link, Link) {
    let listener = compio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (client, server) =
        futures_util::join!(compio::net::TcpStream::connect(addr), listener.accept());
    let client = Link::spawn(client.expect("connect"), Role::Client, Config::default());
    let server = Link::spawn(server.expect("accept").0, Role::Server, Config::default());
    (client, server)
}

async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    compio::time::timeout(Duration::from_secs(10), f)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

#[test]
fn the_peers_drain_is_reported_and_ones_own_is_not() {
    let rt = compio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (client, server) = pair().await;
        assert!(!server.is_peer_draining());
        client.drain();
        assert!(within("the server to see the GOAWAY", server.peer_draining()).await);
        assert!(server.is_peer_draining());
        assert!(!server.can_open());
        // The drainer saw no GOAWAY of its peer: it learns `false` when the link ends.
        assert!(!within("the client's link to end", client.peer_draining()).await);
        assert!(!client.is_peer_draining());
        within("the server's link to end", server.closed()).await;
    });
}

#[test]
fn a_link_closed_without_goaway_from_the_peer_resolves_false() {
    let rt = compio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (client, server) = pair().await;
        // The server closes at once: its own GOAWAY is not the client's drain, and a GOAWAY
        // without DRAIN closes just this link, so the client does not take it as the server
        // going away either.
        server.close(ErrorCode::NO_ERROR);
        assert!(!within("the server's link to end", server.peer_draining()).await);
        assert!(!within("the client's link to end", client.peer_draining()).await);
        within("the client's link to end", client.closed()).await;
    });
}

#[test]
fn read_batch_takes_what_is_buffered_and_keeps_the_end_for_the_next_call() {
    let rt = compio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (client, server) = pair().await;
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let out = client
            .open(crate::mux::StreamKind::Tcp, bytes::Bytes::from_static(b"1"))
            .expect("open");
        for piece in sent.chunks(10_000) {
            out.write(bytes::Bytes::copy_from_slice(piece))
                .await
                .expect("write");
        }
        out.finish().expect("finish");
        let incoming = within("the stream", server.accept())
            .await
            .expect("a stream");
        incoming.stream.reply(bytes::Bytes::new()).expect("reply");
        // Let everything arrive, so one batch holds several chunks.
        compio::time::sleep(Duration::from_millis(200)).await;
        let mut got = Vec::new();
        let mut batches = 0;
        let mut biggest = 0;
        while let Some(chunks) = within("a batch", incoming.stream.read_batch(64 * 1024))
            .await
            .expect("read")
        {
            batches += 1;
            biggest = biggest.max(chunks.len());
            let n: usize = chunks.iter().map(|c| c.len()).sum();
            assert!(n <= 64 * 1024 + 65_536, "a batch of {n} bytes");
            for c in chunks {
                got.extend_from_slice(&c);
            }
        }
        assert_eq!(
            got, sent,
            "every byte, in order, and the end after the data"
        );
        assert!(
            biggest > 1,
            "no batch held more than one chunk ({batches} batches)"
        );
    });
}
