//! [`Link::peer_draining`] and streams over a real loopback TCP link pair on one compio
//! runtime; the per-stream state of [`Shared`] fed frames directly, without a socket.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use super::Link;
use super::LinkError;
use super::shared::Shared;
use crate::error::Fault;
use crate::mux::frame::{self, Encoder, Frame};
use crate::mux::{Config, ErrorCode, Role, Session, StreamKind};

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

// ------------------------------------------------------------------ per-stream state

/// A server link's shared state, past the peer's SETTINGS.
fn server_shared(config: Config) -> Shared {
    let mut sh = Shared::new(Session::new(Role::Server, config, Instant::now()));
    feed(&mut sh, &[Frame::Settings(frame::Settings::default())]);
    sh
}

/// Hands `frames` to the session as the reader task does, then flushes its output.
fn feed(sh: &mut Shared, frames: &[Frame]) {
    let mut enc = Encoder::new();
    let mut out = Vec::new();
    for f in frames {
        enc.encode(f, &mut out);
    }
    enc.flush(&mut out);
    let mut buf = BytesMut::from(&out.concat()[..]);
    sh.session.handle_input(&mut buf, Instant::now());
    sh.after_op();
    let mut sent = Vec::new();
    let _ = sh
        .session
        .poll_transmit(Instant::now(), &mut sent, usize::MAX);
    sh.after_op();
}

fn open(id: u64, meta: &Bytes) -> Frame {
    Frame::Open(frame::Open {
        stream_id: id,
        kind: StreamKind::Http,
        meta: meta.clone(),
        fin: false,
    })
}

fn reset(id: u64) -> Frame {
    Frame::Reset(frame::Reset {
        stream_id: id,
        code: ErrorCode::CANCEL,
        final_size: 0,
    })
}

#[test]
fn streams_the_peer_opens_and_resets_before_anyone_accepts_leave_nothing() {
    let mut sh = server_shared(Config::default());
    let meta = Bytes::from(vec![b'm'; 16 * 1024]);
    for round in 0..50u64 {
        let frames: Vec<Frame> = (0..200u64)
            .map(|i| 2 * (round * 200 + i) + 1)
            .flat_map(|id| [open(id, &meta), reset(id)])
            .collect();
        feed(&mut sh, &frames);
    }
    assert!(sh.closed.is_none(), "opening and resetting is allowed here");
    assert_eq!(sh.session.stats().streams_accepted, 10_000);
    assert_eq!(sh.incoming.len(), 0, "pending streams");
    assert_eq!(sh.slots.len(), 0, "slots");
    assert_eq!(sh.session.stream_count(), 0);
}

#[test]
fn unaccepted_streams_count_against_the_limit_and_go_with_the_link() {
    let mut sh = server_shared(Config {
        max_concurrent_streams: 4,
        ..Config::default()
    });
    let meta = Bytes::from_static(b"GET /");
    let frames: Vec<Frame> = (0..10u64).map(|i| open(2 * i + 1, &meta)).collect();
    feed(&mut sh, &frames);
    assert_eq!(sh.incoming.len(), 4);
    assert_eq!(sh.session.stats().streams_refused, 6);
    // One of them ends before it is accepted: its place is free again.
    feed(&mut sh, &[reset(3), open(21, &meta)]);
    assert_eq!(
        sh.incoming.keys().copied().collect::<Vec<_>>(),
        [1, 5, 7, 21]
    );
    assert_eq!(sh.slots.len(), 4);
    sh.session.close(ErrorCode::CANCEL);
    sh.after_op();
    assert_eq!(sh.incoming.len(), 0);
    assert_eq!(sh.slots.len(), 0);
}

#[test]
fn a_link_that_accepts_no_streams_closes_on_the_first_open() {
    let mut sh = server_shared(Config {
        peer_opens_streams: false,
        ..Config::default()
    });
    feed(&mut sh, &[open(1, &Bytes::from_static(b"GET /")), reset(1)]);
    assert!(sh.closed.is_some());
    assert_eq!(sh.incoming.len() + sh.slots.len(), 0);
    // The session closed on a protocol violation, with GOAWAY(PROTOCOL_ERROR).
    let code = ErrorCode::PROTOCOL_ERROR.to_string();
    assert!(
        matches!(
            &sh.closed,
            Some(LinkError::Closed { fault: Fault::Peer, reason }) if reason.contains(&code)
        ),
        "{:?}",
        sh.closed
    );
}

/// A link pair with `client` and `server` configurations.
async fn pair_with(client_cfg: Config, server_cfg: Config) -> (Link, Link) {
    let listener = compio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (client_sock, server_sock) =
        futures_util::join!(compio::net::TcpStream::connect(addr), listener.accept());
    let client = Link::spawn(client_sock.expect("connect"), Role::Client, client_cfg);
    let server = Link::spawn(server_sock.expect("accept").0, Role::Server, server_cfg);
    (client, server)
}

#[test]
fn keepalive_pings_keep_an_idle_link_open_across_many_intervals() {
    // The writer's timer lives across idle periods and is moved earlier only when the session
    // asks: a PING's ACK makes the next PING (one interval away) due before the idle timeout
    // the client's timer was set for. Were the writer not woken for that, the client's next
    // PING would leave only at its own (long) idle deadline, and the server, which sends no
    // PINGs and has a short idle timeout, would close the link. The margins are twenty
    // intervals, so a busy machine does not break this.
    let rt = compio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let client_cfg = Config {
            ping_interval: Some(Duration::from_millis(100)),
            idle_timeout: Duration::from_secs(60),
            ..Config::default()
        };
        let server_cfg = Config {
            ping_interval: None,
            idle_timeout: Duration::from_secs(2),
            ..Config::default()
        };
        let (client, server) = pair_with(client_cfg, server_cfg).await;
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            compio::time::sleep(Duration::from_millis(250)).await;
            assert!(!client.is_closed(), "the client's link closed while idle");
            assert!(!server.is_closed(), "the server's link closed while idle");
        }
        assert!(client.stats().rtt.is_some(), "no PING round trip measured");
        client.close(ErrorCode::NO_ERROR);
        within("the server's link to end", server.closed()).await;
    });
}

#[test]
fn the_pipe_carries_bursts_and_pauses_both_ways_and_half_closes() {
    use std::rc::Rc;

    use super::pipe::{ReadEnd, WriteEnd, socket_to_stream, stream_to_socket};
    use compio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

    let rt = compio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let (client, server) = pair().await;
        // `far` stands for a public client or an origin; `near` is the socket piped to `out`.
        let listener = compio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (far, near) =
            futures_util::join!(compio::net::TcpStream::connect(addr), listener.accept());
        let far = far.expect("connect");
        let (mut rd, mut wr) = near.expect("accept").0.into_split();
        let out = Rc::new(
            client
                .open(StreamKind::Tcp, Bytes::from_static(b"p"))
                .expect("open"),
        );
        let inc = within("the stream", server.accept())
            .await
            .expect("accepted");
        inc.stream.reply(Bytes::new()).expect("reply");
        within("the reply", out.reply_meta())
            .await
            .expect("reply meta");

        // Socket to stream: bytes read past a head, a burst larger than many reads (the large
        // buffer), a pause (back to the small one), a few more bytes, end of file.
        let burst: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
        let tail = b"after a pause".to_vec();
        let up = {
            let out = Rc::clone(&out);
            compio::runtime::spawn(async move {
                let end = socket_to_stream(&mut rd, &out, Bytes::from_static(b"head"), &()).await;
                assert!(matches!(end, ReadEnd::Eof), "{end:?}");
                out.finish().expect("finish");
            })
        };
        let (mut far_rd, mut far_wr) = far.into_split();
        let writer = {
            let (burst, tail) = (burst.clone(), tail.clone());
            compio::runtime::spawn(async move {
                let compio::BufResult(r, _) = far_wr.write_all(burst).await;
                r.expect("write burst");
                compio::time::sleep(Duration::from_millis(50)).await;
                let compio::BufResult(r, _) = far_wr.write_all(tail).await;
                r.expect("write tail");
                far_wr.shutdown().await.expect("shutdown");
            })
        };
        let mut got = Vec::new();
        while let Some(c) = within("data", inc.stream.read()).await.expect("read") {
            got.extend_from_slice(&c);
        }
        let mut want = b"head".to_vec();
        want.extend_from_slice(&burst);
        want.extend_from_slice(&tail);
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the bytes differ");
        within("the up direction", up).await.expect("up task");
        within("the writer", writer).await.expect("writer task");

        // Stream to socket: the stream's data, then its FIN as the socket's end of file.
        let back: Vec<u8> = (0..300_000u32).map(|i| (i % 241) as u8).collect();
        let down = {
            let out = Rc::clone(&out);
            compio::runtime::spawn(async move {
                let end = stream_to_socket(&out, &mut wr, &()).await;
                assert!(matches!(end, WriteEnd::Fin), "{end:?}");
                wr.shutdown().await.expect("shutdown");
            })
        };
        for piece in back.chunks(7_000) {
            inc.stream
                .write(Bytes::copy_from_slice(piece))
                .await
                .expect("write");
        }
        inc.stream.finish().expect("finish");
        let mut got = Vec::new();
        loop {
            let compio::BufResult(r, buf) = within(
                "socket data",
                far_rd.read(Vec::<u8>::with_capacity(64 * 1024)),
            )
            .await;
            if r.expect("read") == 0 {
                break;
            }
            got.extend_from_slice(&buf);
        }
        assert_eq!(got.len(), back.len());
        assert!(got == back, "the bytes differ");
        within("the down direction", down).await.expect("down task");
    });
}
