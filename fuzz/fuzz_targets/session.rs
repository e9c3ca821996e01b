//! Fuzzes a session: the input is a script of peer bytes interleaved with local operations.
//! Nothing may panic, and the session's memory must stay bounded.
#![no_main]

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use ringtun_core::mux::frame::{Encoder, Frame, Settings};
use ringtun_core::mux::{Config, ErrorCode, Event, Role, Session, StreamKind};

fn config() -> Config {
    Config {
        stream_window: 4096,
        link_window: 16 * 1024,
        max_concurrent_streams: 8,
        max_pending_control: 64,
        stream_send_buffer: 4096,
        max_frame_size: 16 * 1024,
        max_metadata_size: 1024,
        ..Config::default()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, mut script)) = data.split_first() else {
        return;
    };
    let role = if head & 1 == 0 {
        Role::Client
    } else {
        Role::Server
    };
    let mut now = Instant::now();
    let mut s = Session::new(role, config(), now);
    let mut buf = BytesMut::new();
    if head & 2 == 0 {
        // Start with a valid SETTINGS so the script reaches deeper states.
        let mut enc = Encoder::new();
        let mut out = Vec::new();
        enc.encode(&Frame::Settings(Settings::default()), &mut out);
        enc.flush(&mut out);
        buf.extend_from_slice(&out.concat());
    }
    let mut ids: Vec<u64> = Vec::new();
    while let Some((&op, rest)) = script.split_first() {
        script = rest;
        let arg = script.first().copied().unwrap_or(0);
        let pick = ids.get(arg as usize % ids.len().max(1)).copied();
        match op % 10 {
            0..=2 => {
                let n = (arg as usize).min(script.len().saturating_sub(1));
                let (chunk, rest) = script
                    .get(1..1 + n)
                    .map_or((&[][..], script), |c| (c, &script[1 + n..]));
                buf.extend_from_slice(chunk);
                script = rest;
            }
            3 => {
                if let Ok(id) = s.open(StreamKind::Http, Bytes::from_static(b"meta")) {
                    ids.push(id);
                }
            }
            4 => {
                if let Some(id) = pick {
                    let _ = s.write(id, Bytes::from(vec![0u8; arg as usize * 64]));
                }
            }
            5 => {
                if let Some(id) = pick {
                    let _ = s.read(id, arg as usize + 1);
                }
            }
            6 => {
                if let Some(id) = pick {
                    match arg % 3 {
                        0 => drop(s.reset(id, ErrorCode::CANCEL)),
                        1 => drop(s.finish(id)),
                        _ => drop(s.reply(id, Bytes::new())),
                    }
                }
            }
            7 => {
                let mut out = Vec::new();
                let n = s.poll_transmit(now, &mut out, arg as usize * 256);
                assert_eq!(n, out.iter().map(Bytes::len).sum::<usize>());
            }
            8 => {
                now += Duration::from_millis(u64::from(arg) * 100);
                s.handle_timeout(now);
            }
            _ => {
                if arg == 0 {
                    s.drain(now);
                } else {
                    s.ping();
                }
            }
        }
        s.handle_input(&mut buf, now);
        while let Some(e) = s.poll_event() {
            if let Event::StreamOpened { id, .. } = e {
                ids.push(id);
            }
        }
        // Peer-opened streams are bounded by our limit (8); local ones by the peer's, which is
        // the default 1024 until its SETTINGS arrive, each with a 4 KiB send buffer.
        assert!(s.stream_count() <= 8 + 1024);
        assert!(
            s.memory_estimate() < 8 * 1024 * 1024,
            "memory {}",
            s.memory_estimate()
        );
    }
});
