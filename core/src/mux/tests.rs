//! Two-sided tests: two [`Session`]s joined in memory, with a virtual clock, driven until idle
//! (the quinn-proto way). Nothing here sleeps or measures time.

#![allow(clippy::unwrap_used)]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::frame::{self, Encoder, Frame};
use super::*;
use crate::error::{Classify, Fault};

/// Two sessions and the bytes in flight between them.
struct Pair {
    c: Session,
    s: Session,
    now: Instant,
    c_in: BytesMut,
    s_in: BytesMut,
    c_events: Vec<Event>,
    s_events: Vec<Event>,
    /// Hold the server's output back (a peer that went silent).
    mute_server: bool,
}

impl Pair {
    fn new(cc: Config, sc: Config) -> Pair {
        let now = Instant::now();
        let mut p = Pair {
            c: Session::new(Role::Client, cc, now),
            s: Session::new(Role::Server, sc, now),
            now,
            c_in: BytesMut::new(),
            s_in: BytesMut::new(),
            c_events: Vec::new(),
            s_events: Vec::new(),
            mute_server: false,
        };
        p.pump();
        p
    }

    fn default() -> Pair {
        Pair::new(Config::default(), Config::default())
    }

    /// Moves output one way; returns the bytes moved.
    fn transfer(from: &mut Session, to: &mut Session, buf: &mut BytesMut, now: Instant) -> usize {
        let mut out = Vec::new();
        // A driver wakes its writer only on `wants_transmit`: it must never miss output.
        let wants = from.wants_transmit();
        let n = from.poll_transmit(now, &mut out, 256 * 1024);
        assert!(
            wants || n == 0,
            "{n} bytes to send but wants_transmit was false"
        );
        assert_eq!(n, out.iter().map(Bytes::len).sum::<usize>());
        for b in out {
            buf.extend_from_slice(&b);
        }
        to.handle_input(buf, now);
        n
    }

    /// One round in both directions; collects events.
    fn step(&mut self) -> usize {
        let mut n = Self::transfer(&mut self.c, &mut self.s, &mut self.s_in, self.now);
        if !self.mute_server {
            n += Self::transfer(&mut self.s, &mut self.c, &mut self.c_in, self.now);
        }
        while let Some(e) = self.c.poll_event() {
            self.c_events.push(e);
        }
        while let Some(e) = self.s.poll_event() {
            self.s_events.push(e);
        }
        n
    }

    fn pump(&mut self) {
        for _ in 0..100_000 {
            if self.step() == 0 {
                return;
            }
        }
        panic!("pump did not go idle");
    }

    /// Advances the virtual clock to the next timer (at most `max`), runs timers, pumps.
    fn advance(&mut self, max: Duration) {
        let limit = self.now + max;
        let next = [self.c.poll_timeout(), self.s.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(limit);
        self.now = next.min(limit).max(self.now);
        self.c.handle_timeout(self.now);
        self.s.handle_timeout(self.now);
        self.pump();
    }
}

fn pattern(id: StreamId, len: usize) -> Bytes {
    (0..len)
        .map(|i| (id as usize * 31 + i * 7) as u8)
        .collect::<Vec<u8>>()
        .into()
}

/// Reads everything available; returns true at end of stream.
fn read_all(s: &mut Session, id: StreamId, into: &mut Vec<u8>) -> bool {
    loop {
        match s.read(id, 100_000) {
            Ok(Some(b)) => into.extend_from_slice(&b),
            Ok(None) => return true,
            Err(Error::Blocked) => return false,
            Err(e) => panic!("read {id}: {e}"),
        }
    }
}

#[test]
fn handshake_exchanges_settings() {
    let p = Pair::default();
    assert!(!p.c.is_closed() && !p.s.is_closed());
    assert_eq!(p.c.link_send_credit(), u64::from(DEFAULT_LINK_WINDOW));
    assert_eq!(p.s.link_send_credit(), u64::from(DEFAULT_LINK_WINDOW));
}

#[test]
fn many_interleaved_streams_arrive_intact_and_in_order() {
    let cfg = Config {
        stream_window: 64 * 1024,
        link_window: 1024 * 1024,
        stream_send_buffer: 32 * 1024,
        ..Config::default()
    };
    let mut p = Pair::new(cfg.clone(), cfg);
    let mut rng = StdRng::seed_from_u64(7);
    let mut to_send: HashMap<StreamId, Bytes> = HashMap::new();
    let mut expect: HashMap<StreamId, Bytes> = HashMap::new();
    for _ in 0..200 {
        let len = rng.random_range(0..100_000);
        let id =
            p.c.open(StreamKind::Http, Bytes::from_static(b"GET /"))
                .unwrap();
        let data = pattern(id, len);
        expect.insert(id, data.clone());
        to_send.insert(id, data);
    }
    let mut got: HashMap<StreamId, Vec<u8>> = HashMap::new();
    let mut server_done = HashSet::new();
    let mut client_got: HashMap<StreamId, Vec<u8>> = HashMap::new();
    let mut client_done = HashSet::new();
    for _ in 0..100_000 {
        // Client: write what fits, finish when all is written.
        for (id, rest) in to_send.iter_mut() {
            if !rest.is_empty() {
                let n = p.c.write(*id, rest.clone()).unwrap();
                let _ = rest.split_to(n);
                if rest.is_empty() {
                    p.c.finish(*id).unwrap();
                }
            }
        }
        to_send.retain(|id, rest| {
            if rest.is_empty() && p.c.stream_state(*id) == StreamState::Open {
                p.c.finish(*id).unwrap();
            }
            !rest.is_empty()
        });
        let moved = p.step();
        // Server: reply on open, read everything, answer with the length after FIN.
        for e in std::mem::take(&mut p.s_events) {
            if let Event::StreamOpened { id, .. } = e {
                p.s.reply(id, Bytes::from_static(b"200")).unwrap();
                got.insert(id, Vec::new());
            }
        }
        for (id, buf) in got.iter_mut() {
            if !server_done.contains(id) && read_all(&mut p.s, *id, buf) {
                server_done.insert(*id);
                let len = buf.len().to_string();
                p.s.write(*id, Bytes::from(len)).unwrap();
                p.s.finish(*id).unwrap();
            }
        }
        for e in std::mem::take(&mut p.c_events) {
            if let Event::StreamReplied { id, .. } = e {
                client_got.insert(id, Vec::new());
            }
        }
        for (id, buf) in client_got.iter_mut() {
            if !client_done.contains(id) && read_all(&mut p.c, *id, buf) {
                client_done.insert(*id);
            }
        }
        if moved == 0 && client_done.len() == 200 {
            break;
        }
    }
    assert_eq!(server_done.len(), 200);
    for (id, data) in &expect {
        assert_eq!(&got[id][..], &data[..], "stream {id}");
        assert_eq!(client_got[id], data.len().to_string().as_bytes());
    }
    p.pump();
    assert_eq!(p.c.stream_count(), 0, "finished streams are removed");
    assert_eq!(p.s.stream_count(), 0);
    assert_eq!(p.c.buffered_bytes(), 0);
}

#[test]
fn a_reader_that_never_reads_does_not_stall_others() {
    let cfg = Config {
        stream_window: 256 * 1024,
        link_window: 1024 * 1024,
        stream_send_buffer: 1024 * 1024,
        ..Config::default()
    };
    let mut p = Pair::new(cfg.clone(), cfg);
    let stalled = p.c.open(StreamKind::Tcp, Bytes::new()).unwrap();
    let busy = p.c.open(StreamKind::Tcp, Bytes::new()).unwrap();
    p.pump();
    p.s.reply(stalled, Bytes::new()).unwrap();
    p.s.reply(busy, Bytes::new()).unwrap();
    p.pump();
    assert_eq!(
        p.c.write(stalled, pattern(stalled, 1024 * 1024)).unwrap(),
        1024 * 1024
    );
    let total = 8 * 1024 * 1024;
    let mut rest = pattern(busy, total);
    let mut got = Vec::new();
    for _ in 0..10_000 {
        if !rest.is_empty() {
            let n = p.c.write(busy, rest.clone()).unwrap();
            let _ = rest.split_to(n);
        }
        p.step();
        read_all(&mut p.s, busy, &mut got);
        if got.len() == total {
            break;
        }
    }
    assert_eq!(got.len(), total, "the busy stream got all its bytes");
    // The stalled stream holds exactly its stream window at the receiver, no more.
    assert_eq!(p.s.buffered_bytes(), 256 * 1024);
}

#[test]
fn a_window_limited_stream_with_a_fast_reader_grows_its_window_and_a_stalled_one_does_not() {
    let mut p = Pair::default();
    let fast = p.c.open(StreamKind::Tcp, Bytes::new()).unwrap();
    let stalled = p.c.open(StreamKind::Tcp, Bytes::new()).unwrap();
    p.pump();
    p.s.reply(fast, Bytes::new()).unwrap();
    p.s.reply(stalled, Bytes::new()).unwrap();
    p.pump();
    assert_eq!(p.s.stream_recv_window(fast), Some(DEFAULT_STREAM_WINDOW));
    let total = 48 * 1024 * 1024;
    let mut rest = pattern(fast, total);
    let mut stalled_rest = pattern(stalled, 2 * 1024 * 1024);
    let mut got = Vec::new();
    let mut rounds = 0;
    while got.len() < total {
        rounds += 1;
        assert!(rounds < 10_000, "transfer did not finish");
        // The sender writes and sends everything its credit allows before the reader runs,
        // so the window, not the harness, limits each round.
        loop {
            if !rest.is_empty() {
                let n = p.c.write(fast, rest.clone()).unwrap();
                let _ = rest.split_to(n);
            }
            if !stalled_rest.is_empty() {
                let n = p.c.write(stalled, stalled_rest.clone()).unwrap();
                let _ = stalled_rest.split_to(n);
            }
            if Pair::transfer(&mut p.c, &mut p.s, &mut p.s_in, p.now) == 0 {
                break;
            }
        }
        read_all(&mut p.s, fast, &mut got);
        while Pair::transfer(&mut p.s, &mut p.c, &mut p.c_in, p.now) > 0 {}
    }
    assert_eq!(&got[..], &pattern(fast, total)[..]);
    assert_eq!(
        p.s.stream_recv_window(fast),
        Some(DEFAULT_MAX_STREAM_WINDOW),
        "the fast stream's window grew to the ceiling"
    );
    assert_eq!(
        p.s.stream_recv_window(stalled),
        Some(DEFAULT_STREAM_WINDOW),
        "a reader that never reads keeps the initial window"
    );
    assert_eq!(p.s.buffered_bytes(), DEFAULT_STREAM_WINDOW as usize);
}

/// The link window of protocol.md §5.3 (credit returns when DATA is placed in its stream's
/// buffer): unread data holds no link credit, a reset frees the buffer, and every byte is
/// counted against the link window once. (Before, credit returned only on reading, and this
/// test checked that the unread stream had used the whole link window until the reset.)
fn reset_frees(receiver_resets: bool) {
    let w = 512 * 1024;
    let cfg = Config {
        stream_window: w,
        link_window: w,
        stream_send_buffer: w as usize,
        ..Config::default()
    };
    let mut p = Pair::new(cfg.clone(), cfg);
    let a = p.c.open(StreamKind::Tcp, Bytes::new()).unwrap();
    p.pump();
    p.s.reply(a, Bytes::new()).unwrap();
    p.pump();
    p.c.write(a, pattern(a, w as usize)).unwrap();
    p.pump();
    assert_eq!(
        p.s.buffered_bytes(),
        w as usize,
        "a full stream window unread"
    );
    assert_eq!(
        p.c.link_send_credit() + p.s.link_pending_credit(),
        u64::from(w),
        "the unread data holds no link credit"
    );
    assert!(p.c.link_send_credit() >= u64::from(w / 2));
    if receiver_resets {
        p.s.reset(a, ErrorCode::CANCEL).unwrap();
    } else {
        p.c.reset(a, ErrorCode::CANCEL).unwrap();
    }
    p.pump();
    assert_eq!(
        p.c.link_send_credit() + p.s.link_pending_credit(),
        u64::from(w),
        "the reset returned nothing twice"
    );
    assert_eq!(p.s.buffered_bytes(), 0);
    // Another stream can use the full window without any read.
    let b = p.c.open(StreamKind::Tcp, Bytes::new()).unwrap();
    p.pump();
    p.s.reply(b, Bytes::new()).unwrap();
    p.pump();
    p.c.write(b, pattern(b, w as usize)).unwrap();
    p.pump();
    assert_eq!(p.s.buffered_bytes(), w as usize);
    let ev = if receiver_resets {
        &p.c_events
    } else {
        &p.s_events
    };
    assert!(ev.contains(&Event::StreamReset {
        id: a,
        code: ErrorCode::CANCEL
    }));
}

#[test]
fn receiver_reset_frees_the_buffer_and_counts_credit_once() {
    reset_frees(true);
}

#[test]
fn sender_reset_frees_the_buffer_and_counts_credit_once() {
    reset_frees(false);
}

#[test]
fn data_in_flight_after_reset_is_counted_and_refunded() {
    let mut p = Pair::default();
    let a = p.c.open(StreamKind::Tcp, Bytes::new()).unwrap();
    p.pump();
    p.s.reply(a, Bytes::new()).unwrap();
    p.pump();
    p.c.write(a, pattern(a, 100_000)).unwrap();
    // The client's DATA is in flight when the server resets.
    Pair::transfer(&mut p.c, &mut p.s, &mut p.s_in, p.now);
    p.s.reset(a, ErrorCode::CANCEL).unwrap();
    p.c.write(a, pattern(a, 50_000)).unwrap();
    let mut out = Vec::new();
    let _ = p.c.poll_transmit(p.now, &mut out, usize::MAX);
    for b in out {
        p.s_in.extend_from_slice(&b);
    }
    p.s.handle_input(&mut p.s_in, p.now);
    assert!(!p.s.is_closed(), "DATA after our RESET is not an error");
    p.pump();
    // Every byte sent is accounted for: returned, or pending return below the threshold.
    assert_eq!(p.s.stats().data_discarded, 150_000);
    assert_eq!(
        p.c.link_send_credit() + p.s.link_pending_credit(),
        u64::from(DEFAULT_LINK_WINDOW)
    );
}

#[test]
fn a_stream_finished_before_its_open_left_sends_fin_on_open() {
    let mut p = Pair::default();
    let id =
        p.c.open(StreamKind::Http, Bytes::from_static(b"GET /"))
            .unwrap();
    p.c.finish(id).unwrap();
    let frames_before = p.c.stats().frames_sent;
    p.pump();
    assert_eq!(
        p.c.stats().frames_sent,
        frames_before + 1,
        "one OPEN with FIN"
    );
    assert!(p.s_events.contains(&Event::StreamFinished(id)));
    assert_eq!(p.c.stream_state(id), StreamState::HalfClosedLocal);
    assert!(read_all(&mut p.s, id, &mut Vec::new()));
    p.s.reply(id, Bytes::from_static(b"204")).unwrap();
    p.s.finish(id).unwrap();
    p.pump();
    assert!(read_all(&mut p.c, id, &mut Vec::new()));
    assert_eq!(p.c.stream_count() + p.s.stream_count(), 0);
}

#[test]
fn max_concurrent_streams_refuses_then_limits_locally() {
    let sc = Config {
        max_concurrent_streams: 2,
        ..Config::default()
    };
    let now = Instant::now();
    // The client opens three before it has the server's SETTINGS.
    let mut c = Session::new(Role::Client, Config::default(), now);
    let ids: Vec<_> = (0..3)
        .map(|_| c.open(StreamKind::Http, Bytes::new()).unwrap())
        .collect();
    let mut p = Pair {
        c,
        s: Session::new(Role::Server, sc, now),
        now,
        c_in: BytesMut::new(),
        s_in: BytesMut::new(),
        c_events: Vec::new(),
        s_events: Vec::new(),
        mute_server: false,
    };
    p.pump();
    assert!(p.c_events.contains(&Event::StreamRefused { id: ids[2] }));
    assert!(
        !p.s.is_closed() && !p.c.is_closed(),
        "a refusal is not a link error"
    );
    assert_eq!(p.s.stats().streams_refused, 1);
    assert!(matches!(
        p.c.open(StreamKind::Http, Bytes::new()),
        Err(Error::TooManyStreams { max: 2 })
    ));
}

#[test]
fn drain_with_ping_ack_finishes_accepted_streams() {
    let mut p = Pair::default();
    // The edge opens streams to the connector; the connector drains.
    let ids: Vec<_> = (0..3)
        .map(|_| p.s.open(StreamKind::Http, Bytes::new()).unwrap())
        .collect();
    p.pump();
    p.c.drain(p.now);
    assert!(matches!(
        p.c.open(StreamKind::Http, Bytes::new()),
        Err(Error::GoingAway)
    ));
    p.pump();
    assert!(matches!(
        p.s.open(StreamKind::Http, Bytes::new()),
        Err(Error::GoingAway)
    ));
    assert!(p.s_events.contains(&Event::GoAway {
        last_id: ids[2],
        code: ErrorCode::NO_ERROR,
        drain: false
    }));
    // The accepted streams still complete.
    for &id in &ids {
        p.c.reply(id, Bytes::new()).unwrap();
        p.c.write(id, Bytes::from_static(b"hello")).unwrap();
        p.c.finish(id).unwrap();
        p.s.finish(id).unwrap();
    }
    p.pump();
    for &id in &ids {
        let mut v = Vec::new();
        assert!(read_all(&mut p.s, id, &mut v));
        assert_eq!(v, b"hello");
        assert!(read_all(&mut p.c, id, &mut Vec::new()));
    }
    p.pump();
    assert!(p.c.is_drained() && p.s.is_drained());
    assert!(p.c_events.contains(&Event::Drained));
    assert!(p.s_events.contains(&Event::Drained));
}

#[test]
fn a_drain_notice_keeps_streams_flowing_until_the_peer_drains() {
    let mut p = Pair::default();
    // The edge (server) wants the link gone but keeps using it until the connector moved.
    p.s.drain_notice();
    p.pump();
    assert!(p.c_events.contains(&Event::GoAway {
        last_id: u64::MAX,
        code: ErrorCode::NO_ERROR,
        drain: true
    }));
    let first = p.s.open(StreamKind::Http, Bytes::new()).unwrap();
    p.pump();
    assert!(
        p.c_events
            .iter()
            .any(|e| matches!(e, Event::StreamOpened { id, .. } if *id == first)),
        "a stream opened after the notice is accepted: {:?}",
        p.c_events
    );
    // The connector has its replacement: it drains this link itself.
    p.c.drain(p.now);
    p.pump();
    assert!(matches!(
        p.s.open(StreamKind::Http, Bytes::new()),
        Err(Error::GoingAway)
    ));
    assert!(p.s_events.contains(&Event::GoAway {
        last_id: first,
        code: ErrorCode::NO_ERROR,
        drain: false
    }));
    p.c.reply(first, Bytes::new()).unwrap();
    p.c.finish(first).unwrap();
    p.s.finish(first).unwrap();
    p.pump();
    assert!(read_all(&mut p.s, first, &mut Vec::new()));
    assert!(read_all(&mut p.c, first, &mut Vec::new()));
    p.pump();
    assert!(p.c.is_drained() && p.s.is_drained());
}

#[test]
fn drain_refuses_streams_above_the_last_id() {
    let mut p = Pair::default();
    let accepted = p.s.open(StreamKind::Http, Bytes::new()).unwrap();
    p.pump();
    // The server goes quiet: the client's drain PING is not answered in time.
    p.mute_server = true;
    p.c.drain(p.now);
    p.step();
    // Meanwhile the server opened another stream, before it saw the GOAWAY.
    let late = p.s.open(StreamKind::Http, Bytes::new());
    // The server did see the GOAWAY (DRAIN): it refuses to open more.
    assert!(matches!(late, Err(Error::GoingAway)));
    // Redo the race properly: open on a fresh pair before delivering the DRAIN.
    let mut p = Pair::default();
    let accepted2 = p.s.open(StreamKind::Http, Bytes::new()).unwrap();
    assert_eq!(accepted, accepted2);
    p.pump();
    p.mute_server = true;
    let late = p.s.open(StreamKind::Http, Bytes::new()).unwrap();
    let mut in_flight = Vec::new();
    let _ = p.s.poll_transmit(p.now, &mut in_flight, usize::MAX);
    p.c.drain(p.now);
    // No ACK in time: the final GOAWAY goes out after the drain PING timeout.
    p.advance(Duration::from_secs(10));
    // Now the late OPEN reaches the client, after its final GOAWAY.
    for b in in_flight {
        p.c_in.extend_from_slice(&b);
    }
    p.c.handle_input(&mut p.c_in, p.now);
    p.mute_server = false;
    p.pump();
    assert!(p.s_events.contains(&Event::StreamRefused { id: late }));
    assert!(
        !p.c_events
            .iter()
            .any(|e| matches!(e, Event::StreamOpened { id, .. } if *id == late)),
        "the late stream was never processed"
    );
    assert!(!p.c.is_closed());
    // The accepted stream finishes normally, then both sides are drained.
    p.c.reply(accepted, Bytes::new()).unwrap();
    p.c.finish(accepted).unwrap();
    p.s.finish(accepted).unwrap();
    p.pump();
    assert!(read_all(&mut p.c, accepted, &mut Vec::new()));
    assert!(read_all(&mut p.s, accepted, &mut Vec::new()));
    p.pump();
    assert!(p.c.is_drained() && p.s.is_drained());
}

#[test]
fn ping_measures_rtt_on_the_virtual_clock() {
    let cfg = Config {
        ping_interval: Some(Duration::from_secs(1)),
        idle_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    let mut p = Pair::new(cfg.clone(), cfg);
    p.c.ping();
    let mut out = Vec::new();
    let _ = p.c.poll_transmit(p.now, &mut out, usize::MAX);
    p.now += Duration::from_millis(10);
    for b in out {
        p.s_in.extend_from_slice(&b);
    }
    p.s.handle_input(&mut p.s_in, p.now);
    let mut out = Vec::new();
    let _ = p.s.poll_transmit(p.now, &mut out, usize::MAX);
    p.now += Duration::from_millis(15);
    for b in out {
        p.c_in.extend_from_slice(&b);
    }
    p.c.handle_input(&mut p.c_in, p.now);
    assert_eq!(
        p.c.poll_event(),
        Some(Event::Rtt(Duration::from_millis(25)))
    );
    assert_eq!(p.c.rtt(), Some(Duration::from_millis(25)));
    // Keepalives keep an otherwise idle link alive far beyond the idle timeout.
    for _ in 0..100 {
        p.advance(Duration::from_secs(1));
    }
    assert!(!p.c.is_closed() && !p.s.is_closed());
    assert!(p.c_events.iter().any(|e| matches!(e, Event::Rtt(_))));
}

#[test]
fn idle_timeout_closes_a_silent_link() {
    let cfg = Config {
        ping_interval: Some(Duration::from_secs(1)),
        idle_timeout: Duration::from_secs(5),
        ..Config::default()
    };
    let mut p = Pair::new(cfg.clone(), cfg);
    p.mute_server = true;
    let start = p.now;
    for _ in 0..100 {
        p.advance(Duration::from_secs(1));
        if p.c.is_closed() {
            break;
        }
    }
    assert!(p.c.is_closed());
    assert_eq!(p.now - start, Duration::from_secs(5));
    assert!(p.c_events.contains(&Event::Closed {
        code: ErrorCode::IDLE_TIMEOUT,
        error: Error::IdleTimeout
    }));
    assert_eq!(p.c.poll_timeout(), None);
}

// ------------------------------------------------------------------ protocol violations

fn wire(frames: &[Frame]) -> BytesMut {
    let mut enc = Encoder::new();
    let mut out = Vec::new();
    for f in frames {
        enc.encode(f, &mut out);
    }
    enc.flush(&mut out);
    BytesMut::from(&out.concat()[..])
}

fn settings() -> Frame {
    Frame::Settings(frame::Settings::default())
}

fn open(id: u64) -> Frame {
    Frame::Open(frame::Open {
        stream_id: id,
        kind: StreamKind::Http,
        meta: Bytes::new(),
        fin: false,
    })
}

fn data(id: u64, len: usize, fin: bool) -> Frame {
    Frame::Data(frame::Data {
        stream_id: id,
        payload: Bytes::from(vec![0u8; len]),
        fin,
    })
}

/// Feeds `frames` to a fresh server session; returns the GOAWAY code it sent.
fn violation_code(cfg: Config, frames: &[Frame]) -> ErrorCode {
    let now = Instant::now();
    let mut s = Session::new(Role::Server, cfg, now);
    let mut buf = wire(frames);
    s.handle_input(&mut buf, now);
    assert!(s.is_closed(), "session closed");
    let mut closed = None;
    while let Some(e) = s.poll_event() {
        if let Event::Closed { code, error } = e {
            assert_eq!(error.fault(), Fault::Peer);
            closed = Some(code);
        }
    }
    let mut out = Vec::new();
    let _ = s.poll_transmit(now, &mut out, usize::MAX);
    let mut sent = BytesMut::from(&out.concat()[..]);
    let limits = frame::Limits {
        max_frame_size: 1 << 20,
        max_metadata_size: 1 << 20,
    };
    let mut goaway = None;
    while let Some(f) = frame::decode(&mut sent, &limits).unwrap() {
        if let Frame::GoAway(g) = f {
            goaway = Some(g.code);
        }
    }
    assert_eq!(goaway, closed, "GOAWAY carries the close code");
    goaway.unwrap()
}

#[test]
fn protocol_violations_close_with_the_right_code() {
    let d = Config::default;
    let pe = ErrorCode::PROTOCOL_ERROR;
    assert_eq!(
        violation_code(d(), &[open(1)]),
        pe,
        "first frame not SETTINGS"
    );
    assert_eq!(
        violation_code(d(), &[settings(), settings()]),
        pe,
        "second SETTINGS"
    );
    assert_eq!(
        violation_code(d(), &[settings(), data(1, 1, false)]),
        pe,
        "idle stream"
    );
    assert_eq!(
        violation_code(d(), &[settings(), open(2)]),
        pe,
        "wrong parity"
    );
    assert_eq!(
        violation_code(d(), &[settings(), open(5), open(3)]),
        pe,
        "not increasing"
    );
    assert_eq!(
        violation_code(d(), &[settings(), open(3), open(3)]),
        pe,
        "reused"
    );
    assert_eq!(
        violation_code(
            d(),
            &[settings(), open(1), data(1, 1, true), data(1, 1, false)]
        ),
        pe,
        "DATA after FIN"
    );
    let small = Config {
        stream_window: 1000,
        ..Config::default()
    };
    assert_eq!(
        violation_code(small, &[settings(), open(1), data(1, 1001, false)]),
        ErrorCode::FLOW_CONTROL_ERROR
    );
    assert_eq!(
        violation_code(d(), &[settings(), data(1, 70_000, false)]),
        ErrorCode::FRAME_SIZE_ERROR
    );
    let mut flood = vec![settings(), open(1)];
    flood.extend((0..300).map(|_| data(1, 0, false)));
    assert_eq!(violation_code(d(), &flood), ErrorCode::ENHANCE_YOUR_CALM);
    let mut pings = vec![settings()];
    pings.extend((0..1100).map(|i: u64| {
        Frame::Ping(frame::Ping {
            ack: false,
            payload: i.to_be_bytes(),
        })
    }));
    assert_eq!(violation_code(d(), &pings), ErrorCode::ENHANCE_YOUR_CALM);
    let reset = Frame::Reset(frame::Reset {
        stream_id: 1,
        code: ErrorCode::CANCEL,
        final_size: 5,
    });
    assert_eq!(
        violation_code(d(), &[settings(), open(1), data(1, 3, false), reset]),
        ErrorCode::FLOW_CONTROL_ERROR,
        "final size mismatch"
    );
}

#[test]
fn racy_frames_on_closed_streams_are_ignored() {
    let now = Instant::now();
    let mut s = Session::new(Role::Server, Config::default(), now);
    let mut buf = wire(&[settings(), open(1)]);
    s.handle_input(&mut buf, now);
    s.reset(1, ErrorCode::CANCEL).unwrap();
    let mut buf = wire(&[
        data(1, 10, false),
        Frame::Window(frame::Window {
            stream_id: 1,
            increment: 5,
        }),
        Frame::Reset(frame::Reset {
            stream_id: 1,
            code: ErrorCode::CANCEL,
            final_size: 10,
        }),
    ]);
    s.handle_input(&mut buf, now);
    assert!(!s.is_closed());
    assert_eq!(s.stream_state(1), StreamState::Closed);
    assert_eq!(s.stream_state(3), StreamState::Idle);
    assert_eq!(s.stats().data_discarded, 10);
}

#[test]
fn unknown_frame_types_are_skipped() {
    let now = Instant::now();
    let mut s = Session::new(Role::Server, Config::default(), now);
    let mut buf = wire(&[
        settings(),
        Frame::Unknown(frame::Unknown {
            kind: 0x42,
            stream_id: 9,
            len: 33,
        }),
        open(1),
    ]);
    s.handle_input(&mut buf, now);
    assert!(!s.is_closed());
    assert_eq!(s.stream_count(), 1);
}

// ------------------------------------------------------------------ memory

/// Bytes of session state per idle open stream, on the opening and the accepting side.
fn idle_stream_cost(n: usize) -> (usize, usize) {
    let cfg = Config {
        max_concurrent_streams: n as u32 + 1,
        ..Config::default()
    };
    let mut p = Pair::new(cfg.clone(), cfg);
    let (c0, s0) = (p.c.memory_estimate(), p.s.memory_estimate());
    for _ in 0..n {
        let id = p.c.open(StreamKind::Http, Bytes::new()).unwrap();
        p.pump();
        p.s.reply(id, Bytes::new()).unwrap();
    }
    p.pump();
    p.c_events.clear();
    p.s_events.clear();
    // Queues shrink back to their steady state once the burst is flushed.
    assert_eq!(p.s.stream_count(), n);
    (
        (p.c.memory_estimate() - c0) / n,
        (p.s.memory_estimate() - s0) / n,
    )
}

#[test]
fn idle_open_stream_costs_under_1_kib() {
    let (c, s) = idle_stream_cost(10_000);
    println!("idle open stream: opener {c} B, acceptor {s} B");
    assert!(c <= 1024 && s <= 1024, "opener {c} B, acceptor {s} B");
}

// ------------------------------------------------------------------ hostile input

fn small_config() -> Config {
    Config {
        stream_window: 4096,
        link_window: 16 * 1024,
        max_concurrent_streams: 8,
        max_pending_control: 64,
        stream_send_buffer: 4096,
        ..Config::default()
    }
}

/// Upper bound on the state a session may hold with `small_config`.
fn memory_bound() -> usize {
    let c = small_config();
    std::mem::size_of::<Session>()
        + c.link_window as usize
        + 2 * c.max_concurrent_streams as usize * (c.stream_send_buffer + 1024)
        + 64 * 1024
}

#[derive(Debug, Clone)]
enum Op {
    Input(Vec<u8>),
    Frame(Frame),
    Open,
    Write(u8, u16),
    Read(u8),
    Reset(u8),
    Finish(u8),
    Reply(u8),
    Transmit,
    Tick(u16),
    Drain,
}

fn arb_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..64).prop_map(Op::Input),
        4 => frame::tests::arb_frame().prop_map(|f| Op::Frame(small_ids(f))),
        1 => Just(Op::Open),
        1 => (any::<u8>(), any::<u16>()).prop_map(|(i, n)| Op::Write(i, n)),
        1 => any::<u8>().prop_map(Op::Read),
        1 => any::<u8>().prop_map(Op::Reset),
        1 => any::<u8>().prop_map(Op::Finish),
        1 => any::<u8>().prop_map(Op::Reply),
        1 => Just(Op::Transmit),
        1 => any::<u16>().prop_map(Op::Tick),
        1 => Just(Op::Drain),
    ]
}

/// Maps stream IDs into a small range so that frames hit real streams.
fn small_ids(mut f: Frame) -> Frame {
    let fix = |id: &mut u64| *id %= 12;
    match &mut f {
        Frame::Data(d) => fix(&mut d.stream_id),
        Frame::Open(o) => fix(&mut o.stream_id),
        Frame::Reply(r) => fix(&mut r.stream_id),
        Frame::Window(w) => fix(&mut w.stream_id),
        Frame::Reset(r) => fix(&mut r.stream_id),
        _ => {}
    }
    f
}

fn run_ops(role: Role, first_settings: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut now = Instant::now();
    let mut s = Session::new(role, small_config(), now);
    let mut buf = if first_settings {
        wire(&[settings()])
    } else {
        BytesMut::new()
    };
    let mut ids: Vec<StreamId> = Vec::new();
    let mut local_opens = 0;
    let pick = |ids: &Vec<StreamId>, i: u8| ids.get(i as usize % ids.len().max(1)).copied();
    for op in ops {
        match op {
            Op::Input(b) => buf.extend_from_slice(&b),
            Op::Frame(f) => buf.extend_from_slice(&wire(&[f])),
            // Local opens are the caller's to bound (by the peer's limit, which defaults to
            // 1024 until its SETTINGS arrive); keep them within the memory bound here.
            Op::Open if local_opens < 8 => {
                if let Ok(id) = s.open(StreamKind::Tcp, Bytes::from_static(b"m")) {
                    local_opens += 1;
                    ids.push(id);
                }
            }
            Op::Open => {}
            Op::Write(i, n) => {
                if let Some(id) = pick(&ids, i) {
                    let _ = s.write(id, Bytes::from(vec![1u8; n as usize]));
                }
            }
            Op::Read(i) => {
                if let Some(id) = pick(&ids, i) {
                    let _ = s.read(id, 1000);
                }
            }
            Op::Reset(i) => {
                if let Some(id) = pick(&ids, i) {
                    let _ = s.reset(id, ErrorCode::CANCEL);
                }
            }
            Op::Finish(i) => {
                if let Some(id) = pick(&ids, i) {
                    let _ = s.finish(id);
                }
            }
            Op::Reply(i) => {
                if let Some(id) = pick(&ids, i) {
                    let _ = s.reply(id, Bytes::new());
                }
            }
            Op::Transmit => {
                let mut out = Vec::new();
                let _ = s.poll_transmit(now, &mut out, 64 * 1024);
            }
            Op::Tick(ms) => {
                now += Duration::from_millis(u64::from(ms));
                s.handle_timeout(now);
            }
            Op::Drain => s.drain(now),
        }
        s.handle_input(&mut buf, now);
        while let Some(e) = s.poll_event() {
            if let Event::StreamOpened { id, .. } = e {
                ids.push(id);
            }
        }
        // The link driver wakes its writer only when `wants_transmit` says so: whatever the
        // sequence, it must never say no while there is something to send.
        if !s.wants_transmit() {
            let mut out = Vec::new();
            let n = s.poll_transmit(now, &mut out, 64 * 1024);
            prop_assert_eq!(n, 0, "frames to send but wants_transmit was false");
        }
        prop_assert!(
            s.memory_estimate() <= memory_bound(),
            "memory {} > {}",
            s.memory_estimate(),
            memory_bound()
        );
        prop_assert!(
            buf.len() <= 16 + 64 * 1024 + 64 * 64,
            "only a partial frame stays"
        );
        prop_assert!(s.stream_count() <= 16);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn arbitrary_bytes_never_panic_or_grow(
        server in any::<bool>(),
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..20),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        run_ops(role, false, chunks.into_iter().map(Op::Input).collect())?;
    }

    #[test]
    fn well_formed_frame_sequences_never_panic_or_grow(
        server in any::<bool>(),
        ops in proptest::collection::vec(arb_op(), 0..80),
    ) {
        let role = if server { Role::Server } else { Role::Client };
        run_ops(role, true, ops)?;
    }
}

// ------------------------------------------------------------------ hostile peers and slow readers

#[test]
fn a_side_that_accepts_no_streams_advertises_it_and_closes_on_open() {
    let edge = Config {
        peer_opens_streams: false,
        ..Config::default()
    };
    // Raw frames: any OPEN is a link error, not a refusal.
    assert_eq!(
        violation_code(edge.clone(), &[settings(), open(1)]),
        ErrorCode::PROTOCOL_ERROR
    );
    // Two sessions: the client learns from SETTINGS that it may open nothing.
    let now = Instant::now();
    let mut c = Session::new(Role::Client, Config::default(), now);
    // Opened before the server's SETTINGS arrived (the client assumes the defaults until then).
    let early = c.open(StreamKind::Http, Bytes::new()).unwrap();
    let mut p = Pair {
        c,
        s: Session::new(Role::Server, edge, now),
        now,
        c_in: BytesMut::new(),
        s_in: BytesMut::new(),
        c_events: Vec::new(),
        s_events: Vec::new(),
        mute_server: false,
    };
    p.pump();
    assert!(p.s.is_closed(), "the OPEN closed the link");
    assert!(
        !p.s_events
            .iter()
            .any(|e| matches!(e, Event::StreamOpened { .. })),
        "the stream never reached the application"
    );
    assert!(p.c_events.contains(&Event::Closed {
        code: ErrorCode::PROTOCOL_ERROR,
        error: Error::PeerClosed {
            code: ErrorCode::PROTOCOL_ERROR
        }
    }));
    assert_eq!(p.c.stream_state(early), StreamState::Closed);
    // Without the early stream, the client would not even try.
    let mut p = Pair::new(
        Config::default(),
        Config {
            peer_opens_streams: false,
            ..Config::default()
        },
    );
    assert!(!p.c.can_open());
    assert!(matches!(
        p.c.open(StreamKind::Http, Bytes::new()),
        Err(Error::TooManyStreams { max: 0 })
    ));
    // The server still opens streams towards the client.
    let id = p.s.open(StreamKind::Http, Bytes::new()).unwrap();
    p.pump();
    assert!(
        p.c_events
            .iter()
            .any(|e| matches!(e, Event::StreamOpened { id: i, .. } if *i == id))
    );
}

#[test]
fn an_open_reset_loop_leaves_nothing_behind_in_the_session() {
    let now = Instant::now();
    let mut s = Session::new(Role::Server, Config::default(), now);
    let mut buf = wire(&[settings()]);
    s.handle_input(&mut buf, now);
    let base = s.memory_estimate();
    let meta = Bytes::from(vec![b'x'; 16 * 1024]);
    for round in 0..100u64 {
        let mut frames = Vec::new();
        for i in 0..100u64 {
            let id = 2 * (round * 100 + i) + 1;
            frames.push(Frame::Open(frame::Open {
                stream_id: id,
                kind: StreamKind::Http,
                meta: meta.clone(),
                fin: false,
            }));
            frames.push(Frame::Reset(frame::Reset {
                stream_id: id,
                code: ErrorCode::CANCEL,
                final_size: 0,
            }));
        }
        let mut buf = wire(&frames);
        s.handle_input(&mut buf, now);
        while s.poll_event().is_some() {}
        let mut out = Vec::new();
        let _ = s.poll_transmit(now, &mut out, usize::MAX);
    }
    assert!(!s.is_closed());
    assert_eq!(s.stats().streams_accepted, 10_000);
    assert_eq!(s.stream_count(), 0);
    assert!(
        s.memory_estimate() <= base + 64 * 1024,
        "{} > {base} + 64 KiB",
        s.memory_estimate()
    );
}

/// The edge (server) opens `n` streams to the connector (client), which answers each with a
/// stream window of data; the edge never reads them.
fn unread_streams(p: &mut Pair, n: usize) -> Vec<StreamId> {
    let ids: Vec<_> = (0..n)
        .map(|_| {
            p.s.open(StreamKind::Http, Bytes::from_static(b"GET /big"))
                .unwrap()
        })
        .collect();
    p.pump();
    for &id in &ids {
        p.c.reply(id, Bytes::from_static(b"200")).unwrap();
        let window = DEFAULT_STREAM_WINDOW as usize;
        assert_eq!(p.c.write(id, pattern(id, window)).unwrap(), window);
    }
    p.pump();
    ids
}

#[test]
fn hundreds_of_unread_streams_leave_the_link_to_a_new_one() {
    // 300 × 256 KiB unread is far beyond the 16 MiB link window.
    let cfg = Config {
        max_concurrent_streams: 1024,
        ..Config::default()
    };
    let mut p = Pair::new(cfg.clone(), cfg);
    let stalled = unread_streams(&mut p, 300);
    assert_eq!(
        p.s.buffered_bytes(),
        300 * DEFAULT_STREAM_WINDOW as usize,
        "each unread stream holds its stream window, no more"
    );
    // A new request: OPEN, REPLY, a few bytes, FIN, all through.
    let id =
        p.s.open(StreamKind::Http, Bytes::from_static(b"GET /small"))
            .unwrap();
    p.pump();
    p.c.reply(id, Bytes::from_static(b"200 small")).unwrap();
    p.c.write(id, Bytes::from_static(b"hello, world\n"))
        .unwrap();
    p.c.finish(id).unwrap();
    p.pump();
    assert!(p.s_events.contains(&Event::StreamReplied {
        id,
        meta: Bytes::from_static(b"200 small")
    }));
    let mut got = Vec::new();
    assert!(read_all(&mut p.s, id, &mut got), "the end arrived");
    assert_eq!(got, b"hello, world\n");
    // A HEAD-like answer (REPLY and FIN, no data) goes through as well.
    let head =
        p.s.open(StreamKind::Http, Bytes::from_static(b"HEAD /"))
            .unwrap();
    p.pump();
    p.c.reply(head, Bytes::from_static(b"200")).unwrap();
    p.c.finish(head).unwrap();
    p.pump();
    assert!(read_all(&mut p.s, head, &mut Vec::new()));
    // The stalled streams still hold exactly their windows, and recover when read.
    assert_eq!(p.s.buffered_bytes(), 300 * DEFAULT_STREAM_WINDOW as usize);
    let mut first = Vec::new();
    for _ in 0..100 {
        read_all(&mut p.s, stalled[0], &mut first);
        p.pump();
    }
    assert_eq!(
        &first[..],
        &pattern(stalled[0], DEFAULT_STREAM_WINDOW as usize)[..]
    );
}

#[test]
fn credit_free_frames_leave_while_data_waits_for_link_credit() {
    // The receiver's link window is small and its WINDOWs never come back (it is muted).
    let sc = Config {
        link_window: 16 * 1024,
        ..Config::default()
    };
    let mut p = Pair::new(Config::default(), sc);
    let big = p.c.open(StreamKind::Tcp, Bytes::new()).unwrap();
    let quiet = p.c.open(StreamKind::Tcp, Bytes::new()).unwrap();
    let doomed = p.c.open(StreamKind::Tcp, Bytes::new()).unwrap();
    p.pump();
    p.mute_server = true;
    p.c.write(big, pattern(big, 100_000)).unwrap();
    p.c.write(doomed, pattern(doomed, 100_000)).unwrap();
    p.pump();
    assert_eq!(p.c.link_send_credit(), 0, "the link window is used up");
    // Now, with DATA of two streams waiting for link credit: a FIN, a RESET, a PING, an OPEN.
    p.c.finish(quiet).unwrap();
    p.c.reset(doomed, ErrorCode::CANCEL).unwrap();
    p.c.ping();
    let fresh = p.c.open(StreamKind::Tcp, Bytes::new()).unwrap();
    let mut out = Vec::new();
    let _ = p.c.poll_transmit(p.now, &mut out, usize::MAX);
    let mut sent = BytesMut::from(&out.concat()[..]);
    let limits = frame::Limits {
        max_frame_size: 1 << 20,
        max_metadata_size: 1 << 20,
    };
    let mut seen = Vec::new();
    while let Some(f) = frame::decode(&mut sent, &limits).unwrap() {
        seen.push(f);
    }
    let fin = seen.iter().any(
        |f| matches!(f, Frame::Data(d) if d.stream_id == quiet && d.fin && d.payload.is_empty()),
    );
    assert!(fin, "the FIN left: {seen:?}");
    assert!(
        seen.iter()
            .any(|f| matches!(f, Frame::Reset(r) if r.stream_id == doomed))
    );
    assert!(seen.iter().any(|f| matches!(f, Frame::Ping(p) if !p.ack)));
    assert!(
        seen.iter()
            .any(|f| matches!(f, Frame::Open(o) if o.stream_id == fresh))
    );
    assert!(
        !seen
            .iter()
            .any(|f| matches!(f, Frame::Data(d) if !d.payload.is_empty())),
        "no DATA beyond the link credit"
    );
    // When the credit comes back, the blocked stream goes on where it stopped.
    p.mute_server = false;
    for b in out {
        p.s_in.extend_from_slice(&b);
    }
    p.s.handle_input(&mut p.s_in, p.now);
    p.pump();
    let mut got = Vec::new();
    for _ in 0..100 {
        read_all(&mut p.s, big, &mut got);
        p.pump();
    }
    assert_eq!(&got[..], &pattern(big, 100_000)[..]);
}

#[test]
fn stream_windows_grow_within_the_link_window_in_total() {
    // A link window of 1 MiB leaves room for the growth of few streams; the others keep the
    // initial window, and every stream still gets its data through.
    let cfg = Config {
        link_window: 1024 * 1024,
        ..Config::default()
    };
    let mut p = Pair::new(cfg.clone(), cfg);
    let ids: Vec<_> = (0..8)
        .map(|_| p.c.open(StreamKind::Tcp, Bytes::new()).unwrap())
        .collect();
    p.pump();
    for &id in &ids {
        p.s.reply(id, Bytes::new()).unwrap();
    }
    p.pump();
    let total = 8 * 1024 * 1024;
    let mut rest: HashMap<StreamId, Bytes> =
        ids.iter().map(|&id| (id, pattern(id, total))).collect();
    let mut got: HashMap<StreamId, Vec<u8>> = HashMap::new();
    for _ in 0..10_000 {
        loop {
            for (&id, r) in rest.iter_mut() {
                if !r.is_empty() {
                    let n = p.c.write(id, r.clone()).unwrap();
                    let _ = r.split_to(n);
                }
            }
            if Pair::transfer(&mut p.c, &mut p.s, &mut p.s_in, p.now) == 0 {
                break;
            }
        }
        for &id in &ids {
            read_all(&mut p.s, id, got.entry(id).or_default());
        }
        while Pair::transfer(&mut p.s, &mut p.c, &mut p.c_in, p.now) > 0 {}
        if ids
            .iter()
            .all(|id| got.get(id).map_or(0, Vec::len) == total)
        {
            break;
        }
    }
    let growth: u64 = ids
        .iter()
        .map(|&id| u64::from(p.s.stream_recv_window(id).unwrap() - DEFAULT_STREAM_WINDOW))
        .sum();
    assert!(growth > 0, "some stream grew");
    assert!(
        growth <= 1024 * 1024,
        "growth {growth} beyond the link window"
    );
    for &id in &ids {
        assert_eq!(got[&id].len(), total, "stream {id}");
    }
}

#[test]
fn tiny_writes_hold_their_bytes_not_a_buffer_each() {
    let now = Instant::now();
    // No SETTINGS from the peer yet: nothing can be sent, everything written stays queued.
    let mut c = Session::new(Role::Client, Config::default(), now);
    let id = c.open(StreamKind::Http, Bytes::new()).unwrap();
    let base = c.memory_estimate();
    let read_buffer = Bytes::from(vec![b'a'; 64 * 1024]);
    for i in 0..65_536usize {
        // One-byte body pieces, each a slice of the buffer the request was read into.
        let at = i % read_buffer.len();
        assert_eq!(c.write(id, read_buffer.slice(at..at + 1)).unwrap(), 1);
    }
    assert_eq!(c.buffered_bytes(), 65_536);
    let held = c.memory_estimate() - base;
    assert!(
        held <= 2 * 65_536 + 16 * 1024,
        "{held} bytes held for 64 KiB"
    );
    assert!(read_buffer.is_unique(), "no piece pins the read buffer");
}

#[test]
fn tiny_data_frames_hold_their_bytes_not_a_frame_each() {
    let now = Instant::now();
    let mut s = Session::new(Role::Server, Config::default(), now);
    let mut frames = vec![settings(), open(1)];
    frames.extend((0..65_536).map(|_| data(1, 1, false)));
    let mut buf = wire(&frames);
    let base = s.memory_estimate();
    s.handle_input(&mut buf, now);
    assert!(!s.is_closed());
    assert_eq!(s.readable_bytes(1), 65_536);
    while s.poll_event().is_some() {}
    let held = s.memory_estimate() - base;
    assert!(
        held <= 2 * 65_536 + 16 * 1024,
        "{held} bytes held for 64 KiB"
    );
}
