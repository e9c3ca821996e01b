//! Fuzzes a session against an adversarial peer that speaks the protocol: the input is a script
//! of peer frames (OPEN of new streams with metadata, DATA within or beyond its credit, RESET
//! with the right or a wrong final size, WINDOW, REPLY, SETTINGS, PING, GOAWAY, raw bytes)
//! interleaved with what the local application does (open, write, read, reply, reset, finish,
//! ignore the streams the peer opens, flush, let time pass). The peer learns its credit from the
//! WINDOW frames the session sends, so scripts get past flow control to the deeper states.
//!
//! Beyond "no panic":
//! - streams the peer opened and the session still holds never exceed our
//!   `max_concurrent_streams`, whatever the peer resets or the application ignores;
//! - received-unread bytes never exceed our link window, written-unsent bytes never exceed
//!   `stream_send_buffer` per stream, and `memory_estimate` stays under a bound that follows from
//!   the configuration;
//! - a stream the session reports reset or refused is gone from the session;
//! - every byte the session transmits decodes as whole, valid frames;
//! - once closed, the session holds no stream.
#![no_main]

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use ringtun_core::mux::frame::{
    self, Data, Encoder, Frame, GoAway, Limits, Open, Ping, Reply, Reset, Settings, Window,
};
use ringtun_core::mux::{
    Config, DEFAULT_MAX_FRAME_SIZE, ErrorCode, Event, Role, Session, StreamKind, StreamState,
};

const STREAM_WINDOW: u32 = 4096;
const LINK_WINDOW: u32 = 16 * 1024;
const MAX_STREAMS: u32 = 8;
const SEND_BUFFER: usize = 4096;
/// The most streams the application opens in one run.
const MAX_LOCAL: usize = 64;

fn config() -> Config {
    Config {
        stream_window: STREAM_WINDOW,
        max_stream_window: 4 * STREAM_WINDOW,
        link_window: LINK_WINDOW,
        max_concurrent_streams: MAX_STREAMS,
        max_pending_control: 64,
        stream_send_buffer: SEND_BUFFER,
        max_frame_size: 16 * 1024,
        max_metadata_size: 1024,
        ..Config::default()
    }
}

/// What the peer knows: its credit on our link and streams, what it sent on each stream.
struct Peer {
    enc: Encoder,
    next_id: u64,
    link_credit: u64,
    credit: HashMap<u64, u64>,
    sent: HashMap<u64, u64>,
    /// Streams the peer opened and those it saw us open.
    theirs: Vec<u64>,
    ours: Vec<u64>,
}

impl Peer {
    fn frame(&mut self, f: &Frame, wire: &mut BytesMut) {
        let mut out = Vec::new();
        self.enc.encode(f, &mut out);
        self.enc.flush(&mut out);
        for b in out {
            wire.extend_from_slice(&b);
        }
    }

    fn pick(&self, arg: u8) -> u64 {
        let all = self.theirs.len() + self.ours.len();
        if all == 0 {
            return u64::from(arg);
        }
        let i = usize::from(arg) % all;
        self.theirs
            .get(i)
            .copied()
            .unwrap_or_else(|| self.ours[i - self.theirs.len()])
    }

    /// Reads what the session sent, as the peer would: every byte must be a whole valid frame.
    fn learn(&mut self, sent: &[Bytes]) {
        let mut buf = BytesMut::new();
        for b in sent {
            buf.extend_from_slice(b);
        }
        let limits = Limits {
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_metadata_size: 1024,
        };
        while !buf.is_empty() {
            let f = match frame::decode(&mut buf, &limits) {
                Ok(Some(f)) => f,
                other => panic!("session sent an invalid frame: {other:?}"),
            };
            match f {
                Frame::Window(w) if w.stream_id == 0 => {
                    self.link_credit += u64::from(w.increment);
                }
                Frame::Window(w) => {
                    *self.credit.entry(w.stream_id).or_insert(0) += u64::from(w.increment);
                }
                Frame::Open(o) => {
                    self.ours.push(o.stream_id);
                    self.credit.insert(o.stream_id, u64::from(STREAM_WINDOW));
                }
                _ => {}
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, mut script)) = data.split_first() else {
        return;
    };
    let role = if head & 1 == 0 {
        Role::Server
    } else {
        Role::Client
    };
    // The application may never answer or read the streams the peer opens (a busy or stalled
    // application); the session must stay bounded anyway.
    let ignores_peer_streams = head & 2 != 0;
    let mut now = Instant::now();
    let mut s = Session::new(role, config(), now);
    let mut peer = Peer {
        enc: Encoder::new(),
        next_id: if role == Role::Server { 1 } else { 2 },
        link_credit: u64::from(LINK_WINDOW),
        credit: HashMap::new(),
        sent: HashMap::new(),
        theirs: Vec::new(),
        ours: Vec::new(),
    };
    let mut wire = BytesMut::new();
    peer.frame(&Frame::Settings(Settings::default()), &mut wire);
    let mut opened_seen: HashSet<u64> = HashSet::new();
    let mut local: Vec<u64> = Vec::new();

    while let Some((&op, rest)) = script.split_first() {
        script = rest;
        let arg = script.first().copied().unwrap_or(0);
        if !script.is_empty() {
            script = &script[1..];
        }
        match op % 16 {
            // The peer opens a stream, sometimes with FIN, with up to 255 bytes of metadata.
            0 | 1 => {
                let id = peer.next_id;
                peer.next_id += 2;
                peer.theirs.push(id);
                peer.credit.insert(id, u64::from(STREAM_WINDOW));
                let meta = Bytes::from(vec![b'm'; usize::from(arg)]);
                let kind = StreamKind::from_u8(arg % 3 + 1).unwrap_or(StreamKind::Http);
                let fin = op & 1 == 1 && arg & 1 == 1;
                peer.frame(
                    &Frame::Open(Open {
                        stream_id: id,
                        kind,
                        meta,
                        fin,
                    }),
                    &mut wire,
                );
            }
            // DATA within the peer's credit (or, when `arg` is odd, past it).
            2 | 3 => {
                let id = peer.pick(arg);
                let credit = peer
                    .credit
                    .get(&id)
                    .copied()
                    .unwrap_or(0)
                    .min(peer.link_credit);
                let want = usize::from(arg) * 32;
                let n = if arg & 1 == 1 {
                    want
                } else {
                    want.min(credit as usize)
                };
                let fin = op == 3;
                let payload = Bytes::from(vec![0u8; n]);
                peer.frame(
                    &Frame::Data(Data {
                        stream_id: id,
                        payload,
                        fin,
                    }),
                    &mut wire,
                );
                peer.link_credit = peer.link_credit.saturating_sub(n as u64);
                let c = peer.credit.entry(id).or_insert(0);
                *c = c.saturating_sub(n as u64);
                *peer.sent.entry(id).or_insert(0) += n as u64;
            }
            // RESET with the right final size (or a wrong one when `arg` is 255).
            4 => {
                let id = peer.pick(arg);
                let sent = peer.sent.get(&id).copied().unwrap_or(0);
                let final_size = if arg == 255 { sent + 1 } else { sent };
                let code = ErrorCode(u32::from(arg % 9));
                peer.frame(
                    &Frame::Reset(Reset {
                        stream_id: id,
                        code,
                        final_size,
                    }),
                    &mut wire,
                );
            }
            5 => {
                let id = if arg & 1 == 0 { 0 } else { peer.pick(arg) };
                let increment = u32::from(arg) * 64 + 1;
                peer.frame(
                    &Frame::Window(Window {
                        stream_id: id,
                        increment,
                    }),
                    &mut wire,
                );
            }
            6 => {
                let id = peer.pick(arg);
                let meta = Bytes::from(vec![b'r'; usize::from(arg % 64)]);
                peer.frame(
                    &Frame::Reply(Reply {
                        stream_id: id,
                        meta,
                    }),
                    &mut wire,
                );
            }
            7 => {
                let v = u32::from(arg);
                let settings = Settings {
                    ack: arg == 0,
                    initial_stream_window: (arg & 1 == 1).then_some(v * 256),
                    link_window: (arg & 2 == 2).then_some(v * 1024),
                    max_frame_size: (arg & 4 == 4).then_some(16 * 1024 + v),
                    max_metadata_size: (arg & 8 == 8).then_some(v * 16),
                    max_concurrent_streams: (arg & 16 == 16).then_some(v % 4),
                };
                peer.frame(&Frame::Settings(settings), &mut wire);
            }
            8 => {
                let f = if arg < 128 {
                    Frame::Ping(Ping {
                        ack: arg & 1 == 1,
                        payload: [arg; 8],
                    })
                } else {
                    Frame::GoAway(GoAway {
                        last_id: u64::from(arg % 16),
                        code: ErrorCode(u32::from(arg % 3)),
                        drain: arg & 1 == 1,
                        reason: Bytes::from_static(b"fuzz"),
                    })
                };
                peer.frame(&f, &mut wire);
            }
            // Raw bytes from the script.
            9 => {
                let n = usize::from(arg).min(script.len());
                wire.extend_from_slice(&script[..n]);
                script = &script[n..];
            }
            // The application.
            10 => {
                if local.len() < MAX_LOCAL
                    && let Ok(id) = s.open(StreamKind::Http, Bytes::from_static(b"meta"))
                {
                    local.push(id);
                }
            }
            11 => {
                let id = peer.pick(arg);
                let _ = s.write(id, Bytes::from(vec![1u8; usize::from(arg) * 64]));
            }
            12 => {
                let id = peer.pick(arg);
                let _ = s.read(id, usize::from(arg) * 64 + 1);
            }
            13 => {
                let id = peer.pick(arg);
                match arg % 3 {
                    0 => drop(s.reset(id, ErrorCode::CANCEL)),
                    1 => drop(s.finish(id)),
                    _ => drop(s.reply(id, Bytes::from_static(b"ok"))),
                }
            }
            14 => {
                now += Duration::from_millis(u64::from(arg) * 250);
                s.handle_timeout(now);
            }
            _ => {
                if arg == 0 {
                    s.drain(now);
                } else if arg == 1 {
                    s.close(ErrorCode::NO_ERROR);
                }
            }
        }
        s.handle_input(&mut wire, now);
        let mut out = Vec::new();
        let n = s.poll_transmit(now, &mut out, 64 * 1024);
        assert_eq!(n, out.iter().map(Bytes::len).sum::<usize>());
        peer.learn(&out);
        while let Some(e) = s.poll_event() {
            match e {
                Event::StreamOpened { id, .. } => {
                    assert!(opened_seen.insert(id), "stream {id} opened twice");
                    assert!(!role.opens(id));
                    if !ignores_peer_streams {
                        let _ = s.reply(id, Bytes::from_static(b"ok"));
                    }
                }
                Event::StreamReset { id, .. } | Event::StreamRefused { id } => {
                    assert_eq!(s.stream_state(id), StreamState::Closed);
                    assert!(s.stream_recv_window(id).is_none(), "stream {id} kept");
                }
                Event::StreamReadable(id) if !ignores_peer_streams => {
                    while let Ok(Some(_)) = s.read(id, 4096) {}
                }
                Event::Closed { .. } => assert_eq!(s.stream_count(), 0),
                _ => {}
            }
        }

        let peer_held = opened_seen
            .iter()
            .filter(|&&id| s.stream_recv_window(id).is_some())
            .count();
        assert!(
            peer_held <= MAX_STREAMS as usize,
            "{peer_held} peer streams held"
        );
        let local_held = local
            .iter()
            .filter(|&&id| s.stream_recv_window(id).is_some())
            .count();
        assert_eq!(s.stream_count(), peer_held + local_held);
        // Unread data is bounded by the link window we gave; unsent data by the send buffers.
        let bound_bytes = LINK_WINDOW as usize + s.stream_count() * SEND_BUFFER;
        assert!(
            s.buffered_bytes() <= bound_bytes,
            "{} buffered",
            s.buffered_bytes()
        );
        let bound = 1024 * 1024 + bound_bytes;
        assert!(
            s.memory_estimate() <= bound,
            "memory {}",
            s.memory_estimate()
        );
        if s.is_closed() {
            assert_eq!(s.stream_count(), 0);
        }
    }
});
