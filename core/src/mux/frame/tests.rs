//! Codec tests: round trips for every frame type (split at every byte boundary) and the
//! header-only limit checks.

#![allow(clippy::unwrap_used)]

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;

const LIMITS: Limits = Limits {
    max_frame_size: 16 * 1024,
    max_metadata_size: 1024,
};

fn bytes_up_to(n: usize) -> impl Strategy<Value = Bytes> {
    proptest::collection::vec(any::<u8>(), 0..n).prop_map(Bytes::from)
}

fn stream_id() -> impl Strategy<Value = u64> {
    1..=u64::MAX
}

pub(crate) fn arb_frame() -> impl Strategy<Value = Frame> {
    let kind = prop_oneof![
        Just(StreamKind::Http),
        Just(StreamKind::WebSocket),
        Just(StreamKind::Tcp)
    ];
    prop_oneof![
        (stream_id(), bytes_up_to(300), any::<bool>()).prop_map(|(stream_id, payload, fin)| {
            Frame::Data(Data {
                stream_id,
                payload,
                fin,
            })
        }),
        (stream_id(), kind, bytes_up_to(200), any::<bool>()).prop_map(
            |(stream_id, kind, meta, fin)| Frame::Open(Open {
                stream_id,
                kind,
                meta,
                fin
            })
        ),
        (stream_id(), bytes_up_to(200))
            .prop_map(|(stream_id, meta)| Frame::Reply(Reply { stream_id, meta })),
        (any::<u64>(), 1..=u32::MAX).prop_map(|(stream_id, increment)| Frame::Window(Window {
            stream_id,
            increment
        })),
        (stream_id(), any::<u32>(), any::<u64>()).prop_map(|(stream_id, c, final_size)| {
            Frame::Reset(Reset {
                stream_id,
                code: ErrorCode(c),
                final_size,
            })
        }),
        any::<bool>().prop_map(|_| Frame::Settings(Settings {
            ack: true,
            ..Settings::default()
        })),
        proptest::array::uniform5(proptest::option::of(any::<u32>())).prop_map(|v| {
            Frame::Settings(Settings {
                ack: false,
                initial_stream_window: v[0],
                link_window: v[1],
                max_frame_size: v[2],
                max_metadata_size: v[3],
                max_concurrent_streams: v[4],
            })
        }),
        (any::<bool>(), any::<[u8; 8]>())
            .prop_map(|(ack, payload)| Frame::Ping(Ping { ack, payload })),
        (any::<u64>(), any::<u32>(), any::<bool>(), bytes_up_to(100)).prop_map(
            |(last_id, c, drain, reason)| Frame::GoAway(GoAway {
                last_id,
                code: ErrorCode(c),
                drain,
                reason
            })
        ),
        (8u8..=255, any::<u64>(), 0u32..100).prop_map(|(kind, stream_id, len)| {
            Frame::Unknown(Unknown {
                kind,
                stream_id,
                len,
            })
        }),
    ]
}

fn encode_all(frames: &[Frame]) -> Vec<u8> {
    let mut enc = Encoder::new();
    let mut out = Vec::new();
    for f in frames {
        enc.encode(f, &mut out);
    }
    enc.flush(&mut out);
    out.concat()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn round_trip_split_everywhere(frame in arb_frame()) {
        let wire = encode_all(std::slice::from_ref(&frame));
        prop_assert_eq!(wire.len(), frame.encoded_len());
        for split in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..split]);
            prop_assert_eq!(decode(&mut buf, &LIMITS).unwrap(), None);
            prop_assert_eq!(buf.len(), split, "nothing consumed on a partial frame");
            buf.extend_from_slice(&wire[split..]);
            let got = decode(&mut buf, &LIMITS).unwrap();
            prop_assert_eq!(got.as_ref(), Some(&frame));
            prop_assert!(buf.is_empty());
        }
    }

    #[test]
    fn sequences_round_trip(frames in proptest::collection::vec(arb_frame(), 0..20)) {
        let wire = encode_all(&frames);
        let mut buf = BytesMut::from(&wire[..]);
        let mut got = Vec::new();
        while let Some(f) = decode(&mut buf, &LIMITS).unwrap() {
            got.push(f);
        }
        prop_assert_eq!(got, frames);
        prop_assert!(buf.is_empty());
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        let mut buf = BytesMut::from(&data[..]);
        while let Ok(Some(_)) = decode(&mut buf, &LIMITS) {}
    }
}

fn head(len: u32, kind: u8, flags: u8, stream_id: u64) -> BytesMut {
    let mut b = BytesMut::new();
    Head {
        len,
        kind,
        flags,
        stream_id,
    }
    .encode(&mut b);
    b
}

fn code_of(r: Result<Option<Frame>, crate::mux::Error>) -> ErrorCode {
    match r {
        Err(crate::mux::Error::Protocol { code, .. }) => code,
        other => panic!("expected a protocol error, got {other:?}"),
    }
}

#[test]
fn oversized_frames_rejected_from_the_header_alone() {
    let mut b = head(LIMITS.max_frame_size + 1, kind::DATA, 0, 1);
    assert_eq!(
        code_of(decode(&mut b, &LIMITS)),
        ErrorCode::FRAME_SIZE_ERROR
    );
    let mut b = head(LIMITS.max_metadata_size + 1, kind::OPEN, 0, 1);
    assert_eq!(
        code_of(decode(&mut b, &LIMITS)),
        ErrorCode::FRAME_SIZE_ERROR
    );
    let mut b = head(u32::MAX, 0x42, 0, 1);
    assert_eq!(
        code_of(decode(&mut b, &LIMITS)),
        ErrorCode::FRAME_SIZE_ERROR
    );
}

#[test]
fn malformed_fixed_sizes_and_stream_ids() {
    for (len, k, id) in [
        (3, kind::WINDOW, 0),
        (11, kind::RESET, 1),
        (7, kind::PING, 0),
        (11, kind::GOAWAY, 0),
        (5, kind::SETTINGS, 0),
        (0, kind::OPEN, 1),
    ] {
        let mut b = head(len, k, 0, id);
        assert_eq!(
            code_of(decode(&mut b, &LIMITS)),
            ErrorCode::FRAME_SIZE_ERROR
        );
    }
    let mut b = head(6, kind::SETTINGS, flags::ACK, 0);
    assert_eq!(
        code_of(decode(&mut b, &LIMITS)),
        ErrorCode::FRAME_SIZE_ERROR
    );
    for (len, k, id) in [
        (8, kind::PING, 1),
        (0, kind::SETTINGS, 3),
        (12, kind::GOAWAY, 2),
        (0, kind::DATA, 0),
        (1, kind::OPEN, 0),
        (0, kind::REPLY, 0),
        (12, kind::RESET, 0),
    ] {
        let mut b = head(len, k, 0, id);
        assert_eq!(code_of(decode(&mut b, &LIMITS)), ErrorCode::PROTOCOL_ERROR);
    }
    let mut b = head(4, kind::WINDOW, 0, 1);
    b.extend_from_slice(&[0, 0, 0, 0]);
    assert_eq!(code_of(decode(&mut b, &LIMITS)), ErrorCode::PROTOCOL_ERROR);
    let mut b = head(1, kind::OPEN, 0, 1);
    b.extend_from_slice(&[9]);
    assert_eq!(code_of(decode(&mut b, &LIMITS)), ErrorCode::PROTOCOL_ERROR);
}

#[test]
fn payloads_are_slices_of_the_receive_buffer() {
    let data = Frame::Data(Data {
        stream_id: 1,
        payload: Bytes::from(vec![7u8; 1000]),
        fin: false,
    });
    let wire = encode_all(&[data]);
    let mut buf = BytesMut::with_capacity(4096);
    buf.extend_from_slice(&wire);
    let base = buf.as_ptr() as usize;
    let Some(Frame::Data(d)) = decode(&mut buf, &LIMITS).unwrap() else {
        panic!("not data");
    };
    assert_eq!(d.payload.as_ptr() as usize, base + HEADER_LEN);
}

#[test]
fn encoder_inlines_small_payloads_and_keeps_large_ones() {
    let mut enc = Encoder::new();
    let mut out = Vec::new();
    let big = Bytes::from(vec![1u8; 1000]);
    enc.data(1, &Bytes::from_static(b"tiny"), false, &mut out);
    enc.data(3, &big, true, &mut out);
    enc.data(5, &Bytes::from_static(b"x"), false, &mut out);
    enc.flush(&mut out);
    assert_eq!(out.len(), 3, "[hdr+tiny+hdr], big, [hdr+x]");
    assert_eq!(out[0].len(), HEADER_LEN * 2 + 4);
    assert_eq!(out[1].as_ptr(), big.as_ptr(), "large payload is not copied");
    assert_eq!(out[2].len(), HEADER_LEN + 1);
}
