//! Fuzzes the body decoder (`Content-Length`, chunked, close-delimited) with arbitrary bytes fed
//! in arbitrary pieces. Beyond "no panic":
//! - the outcome (payload, end, error, bytes left for the next message) does not depend on how
//!   the input was cut into reads;
//! - the decoder never asks for more while holding more than its line limits (memory bounded by
//!   `BodyLimits`, not by the sender);
//! - payload never exceeds the input, a `Content-Length` body is exactly that long, and a chunked
//!   body that ended re-encodes (`BodyEncoder`) to bytes that decode to the same payload and
//!   the same trailer fields (those that may be trailers).
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use ringtun_core::http::{
    BodyDecoder, BodyEncoder, BodyFraming, BodyLimits, DecodeStep, Fault, Headers,
    is_trailer_allowed,
};

#[derive(Debug, PartialEq, Eq)]
enum Outcome {
    NeedMore,
    End,
    Error,
}

/// Decodes until the decoder needs more, ends or fails; appends payload to `body`.
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

fuzz_target!(|data: &[u8]| {
    let [sel, step, n0, n1, input @ ..] = data else {
        return;
    };
    let framing = match sel & 3 {
        0 => BodyFraming::Chunked,
        1 => BodyFraming::Length(if sel & 8 == 0 {
            u64::from(u16::from_le_bytes([*n0, *n1]))
        } else {
            u64::MAX
        }),
        2 => BodyFraming::CloseDelimited,
        _ => BodyFraming::Empty,
    };
    let limits = if sel & 4 == 0 {
        BodyLimits::default()
    } else {
        BodyLimits {
            max_chunk_line: usize::from(*n0 % 32),
            max_trailer_bytes: usize::from(*n1 % 64),
        }
    };
    let hold = limits.max_chunk_line.max(limits.max_trailer_bytes).max(2);

    // All at once.
    let mut whole = BodyDecoder::new(framing, limits, Fault::Client);
    let mut buf = BytesMut::from(input);
    let mut body = Vec::new();
    let outcome = drive(&mut whole, &mut buf, &mut body, usize::MAX);
    let left = buf;

    // In pieces of 1..=16 bytes, sizes varying with `step`.
    let mut pieces = BodyDecoder::new(framing, limits, Fault::Client);
    let mut buf2 = BytesMut::new();
    let mut body2 = Vec::new();
    let mut outcome2 = drive(&mut pieces, &mut buf2, &mut body2, hold);
    let mut at = 0;
    let mut k = usize::from(*step);
    while outcome2 == Outcome::NeedMore && at < input.len() {
        let n = (k % 16 + 1).min(input.len() - at);
        k = k.wrapping_mul(31).wrapping_add(7);
        buf2.extend_from_slice(&input[at..at + n]);
        at += n;
        outcome2 = drive(&mut pieces, &mut buf2, &mut body2, hold);
    }
    assert_eq!(outcome, outcome2);
    assert_eq!(body, body2);
    if outcome == Outcome::End {
        // What follows the body is left for the next message, untouched.
        buf2.extend_from_slice(&input[at..]);
        assert_eq!(left, buf2);
        assert!(whole.is_done());
        assert_eq!(whole.take_trailers(), pieces.take_trailers());
    }
    assert!(body.len() <= input.len());
    if outcome == Outcome::NeedMore {
        let eof = whole.eof();
        assert_eq!(eof.is_ok(), framing == BodyFraming::CloseDelimited);
    }

    match framing {
        BodyFraming::Length(n) => {
            assert!(body.len() as u64 <= n);
            assert_eq!(outcome == Outcome::End, body.len() as u64 == n);
        }
        BodyFraming::Chunked if outcome == Outcome::End => {
            let mut fresh = BodyDecoder::new(framing, limits, Fault::Client);
            let mut b = BytesMut::from(input);
            let _ = drive(&mut fresh, &mut b, &mut Vec::new(), usize::MAX);
            let trailers = fresh.take_trailers();
            assert!(trailers.is_some());
            let mut enc = BodyEncoder::new(BodyFraming::Chunked);
            let mut out = Vec::new();
            for piece in body.chunks(usize::from(*step).max(1)) {
                assert!(enc.encode(Bytes::copy_from_slice(piece), &mut out).is_ok());
            }
            assert!(enc.finish_with_trailers(trailers.as_ref(), &mut out).is_ok());
            let mut wire = BytesMut::from(&out.concat()[..]);
            let mut d =
                BodyDecoder::new(BodyFraming::Chunked, BodyLimits::default(), Fault::Origin);
            let mut again = Vec::new();
            assert_eq!(
                drive(&mut d, &mut wire, &mut again, usize::MAX),
                Outcome::End
            );
            assert_eq!(again, body);
            assert!(wire.is_empty());
            let kept: Option<Headers> = trailers.map(|t| {
                t.iter()
                    .filter(|h| is_trailer_allowed(&h.name))
                    .cloned()
                    .collect()
            });
            assert_eq!(d.take_trailers(), kept);
        }
        BodyFraming::Empty => assert!(body.is_empty() && outcome == Outcome::End),
        _ => {}
    }
});
