//! Property tests for every decoder that reads bytes from the network, run by `cargo test`: the
//! same properties the `fuzz/` targets check (`http_head`, `http_body`, `http_meta`, `handshake`,
//! `session_peer`), on fewer and smaller inputs, so a regression shows up without a fuzzer.
//!
//! Inputs are arbitrary bytes, and valid messages with a few bytes changed (arbitrary bytes alone
//! rarely get past the first check). Each property: no panic, consumed bytes and held memory
//! bounded by the limits rather than by the sender, and decode → encode → decode round trips.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use ringtun_core::handshake::{MAX_MESSAGE, Message};
use ringtun_core::http::{
    BodyDecoder, BodyEncoder, BodyFraming, BodyLimits, DecodeStep, Fault, HeadLimits,
    MAX_HEADERS_CAP, parse_request, parse_response, request_framing, response_framing,
};
use ringtun_core::mux::frame::{Data, Encoder, Frame, Open, Reset, Settings};
use ringtun_core::mux::{Config, ErrorCode, Event, Role, Session, StreamKind};
use ringtun_core::tunnel::{
    ResponseMeta, decode_request_meta, decode_response_meta, encode_reply_error,
    encode_request_meta, encode_response_meta,
};

/// `valid` with up to four bytes replaced (positions and values from `edits`), or arbitrary
/// bytes.
fn mutated(valid: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    let n = valid.len();
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        (
            0..n,
            proptest::collection::vec((any::<usize>(), any::<u8>()), 0..4),
            0usize..4096,
        )
            .prop_map(move |(i, edits, cut)| {
                let mut v = valid[i].clone();
                for (at, b) in edits {
                    if !v.is_empty() {
                        let at = at % v.len();
                        v[at] = b;
                    }
                }
                v.truncate(cut);
                v
            }),
    ]
}

fn roomy() -> HeadLimits {
    HeadLimits {
        max_head_bytes: usize::MAX,
        max_headers: MAX_HEADERS_CAP,
    }
}

fn heads() -> Vec<Vec<u8>> {
    [
        &b"GET /a?b HTTP/1.1\r\nHost: x.test\r\nAccept: */*\r\n\r\nnext"[..],
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
        b"GET / HTTP/1.0\r\nContent-Length: 5, 5\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.0 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
        b"HTTP/1.1 204 \r\nX: \t y\r\n\r\n",
    ]
    .iter()
    .map(|h| h.to_vec())
    .collect()
}

#[derive(Debug, PartialEq, Eq, Clone, Copy)]
enum Outcome {
    NeedMore,
    End,
    Error,
}

/// Decodes until more is needed, the body ends or it fails; checks the decoder holds less than
/// `hold` bytes when it asks for more.
fn drive(d: &mut BodyDecoder, buf: &mut BytesMut, body: &mut Vec<u8>, hold: usize) -> Outcome {
    loop {
        match d.decode(buf) {
            Ok(DecodeStep::Data(b)) => {
                assert!(!b.is_empty());
                body.extend_from_slice(&b);
            }
            Ok(DecodeStep::NeedMore) => {
                assert!(buf.len() < hold, "holds {} bytes, limit {hold}", buf.len());
                return Outcome::NeedMore;
            }
            Ok(DecodeStep::End) => return Outcome::End,
            Err(_) => return Outcome::Error,
        }
    }
}

fn chunked_bodies() -> Vec<Vec<u8>> {
    [
        &b"5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\nNEXT"[..],
        b"A \t;x\r\n0123456789\r\n0\r\n\r\n",
        b"1\r\nx\r\n00000\r\n\r\n",
    ]
    .iter()
    .map(|b| b.to_vec())
    .collect()
}

fn metas() -> Vec<Vec<u8>> {
    let mut req = ringtun_core::http::RequestHead::new("GET", "/p?q");
    req.headers.append("Host", "x.test");
    req.headers.append("X-A", "b c");
    let extra = ringtun_core::tunnel::RequestExtra {
        host: "x.test".into(),
        client_ip: Some(std::net::Ipv4Addr::new(192, 0, 2, 1).into()),
        body: BodyFraming::Length(300),
        trailers: false,
    };
    let mut res = ringtun_core::http::ResponseHead::new(200);
    res.headers.append("Content-Type", "text/plain");
    let err = ringtun_core::tunnel::ReplyError {
        kind: ringtun_core::tunnel::ReplyErrorKind::OriginTimeout,
        message: "origin timed out".into(),
    };
    vec![
        encode_request_meta(&req, &extra).to_vec(),
        encode_response_meta(&res, BodyFraming::Chunked).to_vec(),
        ringtun_core::tunnel::encode_response_meta_with(&res, BodyFraming::Chunked, true).to_vec(),
        encode_reply_error(&err).to_vec(),
    ]
}

fn handshakes() -> Vec<Vec<u8>> {
    use ringtun_core::handshake::{Accepted, Challenge, RejectCode, Rejected};
    let mut out = Vec::new();
    for m in [
        Message::Challenge(Challenge {
            version: 1,
            nonce: [7; 32],
        }),
        Message::Accepted(Accepted {
            data_center: "dfw".into(),
            server: "edge-1".into(),
        }),
        Message::Rejected(Rejected {
            code: RejectCode::BadSecret,
            message: "no".into(),
        }),
    ] {
        let mut v = Vec::new();
        m.encode(&mut v);
        out.push(v);
    }
    out
}

fn session_config() -> Config {
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

/// A frame an adversarial connector might send to the edge.
#[derive(Debug, Clone)]
enum PeerOp {
    /// OPEN of the next odd stream, with this much metadata.
    Open(u16),
    /// DATA on the n-th stream opened so far, this long.
    Data(u8, u16),
    /// RESET of the n-th stream opened so far, with the right final size.
    Reset(u8),
    /// Raw bytes.
    Raw(Vec<u8>),
}

fn peer_op() -> impl Strategy<Value = PeerOp> {
    prop_oneof![
        (0u16..2048).prop_map(PeerOp::Open),
        (any::<u8>(), 0u16..2048).prop_map(|(i, n)| PeerOp::Data(i, n)),
        any::<u8>().prop_map(PeerOp::Reset),
        proptest::collection::vec(any::<u8>(), 0..32).prop_map(PeerOp::Raw),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A request head never takes more than the limit, leaves exactly what follows it, is
    /// "incomplete" at every shorter prefix, and re-encodes to the same head.
    #[test]
    fn request_head_bounded_and_round_trips(input in mutated(heads()), small in any::<bool>()) {
        let limits = if small {
            HeadLimits { max_head_bytes: 40, max_headers: 2 }
        } else {
            HeadLimits::default()
        };
        let mut buf = BytesMut::from(&input[..]);
        if let Ok(Some(head)) = parse_request(&mut buf, &limits) {
            let used = input.len() - buf.len();
            prop_assert!(used <= limits.max_head_bytes);
            prop_assert_eq!(&buf[..], &input[used..]);
            for cut in [0, used / 2, used - 1] {
                let mut part = BytesMut::from(&input[..cut]);
                prop_assert!(matches!(parse_request(&mut part, &limits), Ok(None)));
            }
            let _ = request_framing(&head);
            let mut again = BytesMut::from(&head.to_bytes()[..]);
            match parse_request(&mut again, &roomy()) {
                Ok(Some(h)) => prop_assert_eq!(h, head),
                other => prop_assert!(false, "re-encoded head: {:?}", other),
            }
        }
    }

    /// The same for response heads.
    #[test]
    fn response_head_bounded_and_round_trips(input in mutated(heads()), small in any::<bool>()) {
        let limits = if small {
            HeadLimits { max_head_bytes: 40, max_headers: 2 }
        } else {
            HeadLimits::default()
        };
        let mut buf = BytesMut::from(&input[..]);
        if let Ok(Some(head)) = parse_response(&mut buf, &limits) {
            let used = input.len() - buf.len();
            prop_assert!(used <= limits.max_head_bytes);
            prop_assert_eq!(&buf[..], &input[used..]);
            for cut in [0, used / 2, used - 1] {
                let mut part = BytesMut::from(&input[..cut]);
                prop_assert!(matches!(parse_response(&mut part, &limits), Ok(None)));
            }
            let _ = response_framing(&head, b"GET");
            let mut again = BytesMut::from(&head.to_bytes()[..]);
            match parse_response(&mut again, &roomy()) {
                Ok(Some(h)) => prop_assert_eq!(h, head),
                other => prop_assert!(false, "re-encoded head: {:?}", other),
            }
        }
    }

    /// A body decodes the same whether it arrives at once or in pieces; the decoder never asks
    /// for more while holding more than its limits; a chunked body that ended re-encodes to the
    /// same payload; a `Content-Length` body is exactly that long.
    #[test]
    fn body_decoder_bounded_and_split_invariant(
        input in mutated(chunked_bodies()),
        kind in 0u8..4,
        len in 0u64..300,
        small in any::<bool>(),
        step in 1usize..17,
    ) {
        let framing = match kind {
            0 | 1 => BodyFraming::Chunked,
            2 => BodyFraming::Length(len),
            _ => BodyFraming::CloseDelimited,
        };
        let limits = if small {
            BodyLimits { max_chunk_line: 8, max_trailer_bytes: 12 }
        } else {
            BodyLimits::default()
        };
        let hold = limits.max_chunk_line.max(limits.max_trailer_bytes).max(2);

        let mut whole = BodyDecoder::new(framing, limits, Fault::Client);
        let mut buf = BytesMut::from(&input[..]);
        let mut body = Vec::new();
        let outcome = drive(&mut whole, &mut buf, &mut body, usize::MAX);

        let mut pieces = BodyDecoder::new(framing, limits, Fault::Client);
        let mut buf2 = BytesMut::new();
        let mut body2 = Vec::new();
        let mut outcome2 = drive(&mut pieces, &mut buf2, &mut body2, hold);
        let mut at = 0;
        while outcome2 == Outcome::NeedMore && at < input.len() {
            let n = step.min(input.len() - at);
            buf2.extend_from_slice(&input[at..at + n]);
            at += n;
            outcome2 = drive(&mut pieces, &mut buf2, &mut body2, hold);
        }
        prop_assert_eq!(outcome, outcome2);
        prop_assert_eq!(&body, &body2);
        prop_assert!(body.len() <= input.len());
        if outcome == Outcome::End {
            buf2.extend_from_slice(&input[at..]);
            prop_assert_eq!(&buf, &buf2);
        }
        match framing {
            BodyFraming::Length(n) => {
                prop_assert_eq!(outcome == Outcome::End, body.len() as u64 == n);
            }
            BodyFraming::Chunked if outcome == Outcome::End => {
                let mut enc = BodyEncoder::new(BodyFraming::Chunked);
                let mut out = Vec::new();
                for piece in body.chunks(step) {
                    prop_assert!(enc.encode(Bytes::copy_from_slice(piece), &mut out).is_ok());
                }
                prop_assert!(enc.finish(&mut out).is_ok());
                let mut wire = BytesMut::from(&out.concat()[..]);
                let mut d = BodyDecoder::new(BodyFraming::Chunked, BodyLimits::default(), Fault::Origin);
                let mut again = Vec::new();
                prop_assert_eq!(drive(&mut d, &mut wire, &mut again, usize::MAX), Outcome::End);
                prop_assert_eq!(again, body);
            }
            _ => {}
        }
    }

    /// OPEN and REPLY metadata: whatever decodes re-encodes, no longer than the input, to bytes
    /// that decode to the same value.
    #[test]
    fn meta_round_trips(input in mutated(metas())) {
        let meta = Bytes::from(input.clone());
        if let Ok((head, extra)) = decode_request_meta(meta.clone()) {
            let again = encode_request_meta(&head, &extra);
            prop_assert!(again.len() <= input.len());
            match decode_request_meta(again) {
                Ok((h, e)) => {
                    prop_assert_eq!(h, head);
                    prop_assert_eq!(e, extra);
                }
                Err(e) => prop_assert!(false, "re-encoded request meta: {}", e),
            }
        }
        match decode_response_meta(meta) {
            Ok(ResponseMeta::Head { head, body, trailers }) => {
                let again = ringtun_core::tunnel::encode_response_meta_with(&head, body, trailers);
                prop_assert!(again.len() <= input.len());
                let back = decode_response_meta(again);
                let same = matches!(back, Ok(ResponseMeta::Head { head: ref h, body: b, trailers: t }) if *h == head && b == body && t == trailers);
                prop_assert!(same, "re-encoded response meta: {:?}", back);
            }
            Ok(ResponseMeta::Error(err)) => {
                let again = encode_reply_error(&err);
                prop_assert!(again.len() <= input.len());
                let back = decode_response_meta(again);
                let same = matches!(back, Ok(ResponseMeta::Error(ref e)) if *e == err);
                prop_assert!(same, "re-encoded reply error: {:?}", back);
            }
            Err(_) => {}
        }
    }

    /// Registration messages: a message takes at most its frame and the input, every strict
    /// prefix is "incomplete", and it re-encodes to the same message.
    #[test]
    fn handshake_bounded_and_round_trips(input in mutated(handshakes())) {
        let mut rest = &input[..];
        while let Ok(Some((msg, used))) = Message::decode(rest) {
            prop_assert!(used <= rest.len() && used <= MAX_MESSAGE + 2);
            for cut in [0, 1, used / 2, used - 1] {
                prop_assert!(matches!(Message::decode(&rest[..cut]), Ok(None)));
            }
            let mut out = Vec::new();
            msg.encode(&mut out);
            match Message::decode(&out) {
                Ok(Some((again, n))) => {
                    prop_assert_eq!(again, msg);
                    prop_assert_eq!(n, out.len());
                }
                other => prop_assert!(false, "re-encoded message: {:?}", other),
            }
            rest = &rest[used..];
        }
    }

    /// An edge session fed by a connector that opens, fills and resets streams, while the
    /// application never answers them: the streams it holds stay within its limit, unread data
    /// within the link window, memory within a bound set by the configuration.
    #[test]
    fn session_bounded_against_peer_opening_streams(
        ops in proptest::collection::vec(peer_op(), 0..64),
    ) {
        let now = Instant::now();
        let config = session_config();
        let mut s = Session::new(Role::Server, config.clone(), now);
        let mut enc = Encoder::new();
        let mut frames = Vec::new();
        enc.encode(&Frame::Settings(Settings::default()), &mut frames);
        let mut ids: Vec<(u64, u64)> = Vec::new();
        let mut next = 1u64;
        for op in ops {
            let mut raw = Vec::new();
            match op {
                PeerOp::Open(n) => {
                    let meta = Bytes::from(vec![b'm'; usize::from(n)]);
                    let f = Open { stream_id: next, kind: StreamKind::Http, meta, fin: false };
                    enc.encode(&Frame::Open(f), &mut frames);
                    ids.push((next, 0));
                    next += 2;
                }
                PeerOp::Data(i, n) if !ids.is_empty() => {
                    let k = usize::from(i) % ids.len();
                    let payload = Bytes::from(vec![0; usize::from(n)]);
                    let f = Data { stream_id: ids[k].0, payload, fin: false };
                    enc.encode(&Frame::Data(f), &mut frames);
                    ids[k].1 += u64::from(n);
                }
                PeerOp::Reset(i) if !ids.is_empty() => {
                    let (id, sent) = ids[usize::from(i) % ids.len()];
                    let f = Reset { stream_id: id, code: ErrorCode::CANCEL, final_size: sent };
                    enc.encode(&Frame::Reset(f), &mut frames);
                }
                PeerOp::Raw(b) => raw = b,
                _ => {}
            }
            enc.flush(&mut frames);
            let mut wire = BytesMut::new();
            for b in frames.drain(..) {
                wire.extend_from_slice(&b);
            }
            wire.extend_from_slice(&raw);
            s.handle_input(&mut wire, now);
            let mut out = Vec::new();
            let _ = s.poll_transmit(now, &mut out, 64 * 1024);
            while let Some(e) = s.poll_event() {
                if let Event::StreamReset { id, .. } = e {
                    prop_assert!(s.stream_recv_window(id).is_none());
                }
            }
            let cap = config.max_concurrent_streams as usize;
            prop_assert!(s.stream_count() <= cap, "{} streams", s.stream_count());
            prop_assert!(s.buffered_bytes() <= config.link_window as usize);
            prop_assert!(s.memory_estimate() <= 1024 * 1024, "memory {}", s.memory_estimate());
        }
    }
}
