//! Micro-benchmarks of `core::mux`: frame decode and encode throughput (16 KiB and 64-byte DATA
//! frames), and the session's DATA path end to end (client writes on N streams, server decodes,
//! reads, and returns credit).
//!
//! Run: `cargo bench -p ringtun-core --bench mux -- --warm-up-time 1 --measurement-time 3`.

use std::hint::black_box;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_main};
use ringtun_core::mux::frame::{self, Encoder, Frame, Limits};
use ringtun_core::mux::{Config, Event, Role, Session, StreamKind};

const LIMITS: Limits = Limits {
    max_frame_size: 64 * 1024,
    max_metadata_size: 64 * 1024,
};

fn wire(payload: usize, total: usize) -> (Vec<u8>, Vec<Bytes>) {
    let payloads: Vec<Bytes> = (0..total / payload)
        .map(|i| Bytes::from(vec![i as u8; payload]))
        .collect();
    let mut enc = Encoder::new();
    let mut out = Vec::new();
    for (i, p) in payloads.iter().enumerate() {
        enc.data(1 + 2 * i as u64, p, false, &mut out);
    }
    enc.flush(&mut out);
    (out.concat(), payloads)
}

fn codec(c: &mut Criterion) {
    for (name, size) in [("16KiB", 16 * 1024), ("64B", 64)] {
        let (bytes, payloads) = wire(size, 1024 * 1024);
        let mut g = c.benchmark_group(format!("frame/{name}"));
        g.throughput(Throughput::Bytes(bytes.len() as u64));
        g.bench_function("decode", |b| {
            b.iter_batched(
                || BytesMut::from(&bytes[..]),
                |mut buf| {
                    while let Some(f) = frame::decode(&mut buf, &LIMITS).expect("valid") {
                        black_box(f);
                    }
                },
                BatchSize::LargeInput,
            )
        });
        let mut enc = Encoder::new();
        let mut out = Vec::with_capacity(2 * payloads.len() + 1);
        g.bench_function("encode", |b| {
            b.iter(|| {
                out.clear();
                for (i, p) in payloads.iter().enumerate() {
                    enc.data(1 + 2 * i as u64, p, false, &mut out);
                }
                enc.flush(&mut out);
                black_box(&out);
            })
        });
        g.finish();
        // Sanity: the encoder output decodes to the same frames.
        let mut buf = BytesMut::from(&bytes[..]);
        let first = frame::decode(&mut buf, &LIMITS).expect("valid");
        assert!(matches!(first, Some(Frame::Data(d)) if d.payload.len() == size));
    }
}

/// Client and server sessions after the handshake, with `n` replied streams.
fn session_pair(n: usize) -> (Session, Session, Vec<u64>, Instant) {
    let now = Instant::now();
    let mut c = Session::new(Role::Client, Config::default(), now);
    let mut s = Session::new(Role::Server, Config::default(), now);
    let ids: Vec<u64> = (0..n)
        .map(|_| c.open(StreamKind::Tcp, Bytes::new()).expect("open"))
        .collect();
    for _ in 0..4 {
        shuttle(&mut c, &mut s, now);
        while let Some(e) = s.poll_event() {
            if let Event::StreamOpened { id, .. } = e {
                s.reply(id, Bytes::new()).expect("reply");
            }
        }
        shuttle(&mut s, &mut c, now);
        while c.poll_event().is_some() {}
    }
    (c, s, ids, now)
}

/// Moves bytes like a socket driver would: the receiver reads into its buffer in chunks of at
/// most 64 KiB (allocations stay below malloc's mmap threshold) and decodes after each read.
fn shuttle(from: &mut Session, to: &mut Session, now: Instant) -> usize {
    const READ: usize = 64 * 1024;
    let mut out = Vec::new();
    let mut buf = BytesMut::new();
    let mut total = 0;
    loop {
        let n = from.poll_transmit(now, &mut out, 1024 * 1024);
        if n == 0 {
            break;
        }
        total += n;
        for b in out.drain(..) {
            for piece in b.chunks(READ) {
                if buf.capacity() - buf.len() < piece.len() {
                    buf.reserve(READ);
                }
                buf.extend_from_slice(piece);
                if buf.len() >= READ / 2 {
                    to.handle_input(&mut buf, now);
                }
            }
        }
        to.handle_input(&mut buf, now);
    }
    total
}

fn session(c: &mut Criterion) {
    for streams in [1usize, 16, 256] {
        let (mut cl, mut sv, ids, now) = session_pair(streams);
        let total = 4 * 1024 * 1024;
        let per = total / streams;
        let chunk = Bytes::from(vec![7u8; 16 * 1024]);
        let mut g = c.benchmark_group("session/data");
        g.throughput(Throughput::Bytes(total as u64));
        g.bench_function(format!("{streams}_streams"), |b| {
            b.iter(|| {
                let mut left: Vec<usize> = vec![per; streams];
                let mut received = 0;
                while received < per * streams {
                    for (i, id) in ids.iter().enumerate() {
                        while left[i] > 0 {
                            let n = chunk.len().min(left[i]);
                            let w = cl.write(*id, chunk.slice(..n)).expect("write");
                            left[i] -= w;
                            if w < n {
                                break;
                            }
                        }
                    }
                    shuttle(&mut cl, &mut sv, now);
                    for id in &ids {
                        while let Ok(Some(b)) = sv.read(*id, usize::MAX) {
                            received += b.len();
                        }
                    }
                    while sv.poll_event().is_some() {}
                    shuttle(&mut sv, &mut cl, now);
                    while cl.poll_event().is_some() {}
                }
                black_box(received);
            })
        });
        g.finish();
    }
}

/// The criterion group (its generated function has no doc).
mod group {
    #![allow(missing_docs)]
    use super::{codec, session};
    criterion::criterion_group!(benches, codec, session);
}

criterion_main!(group::benches);
