//! [`BodyEncoder`]: frames an outgoing body as a list of `Bytes` for one vectored write.
//!
//! Payload chunks are passed through as they are; chunked framing adds a small size line and a
//! static CRLF around each, so nothing is copied. A `Content-Length` body is counted, and a
//! body that is shorter or longer than announced is an error instead of a desynchronized
//! connection.

use bytes::Bytes;

use super::error::HttpError;
use super::framing::BodyFraming;
use super::headers::Headers;

const CRLF: &[u8] = b"\r\n";
const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// Frames one message body.
///
/// Call [`BodyEncoder::encode`] for each payload chunk and [`BodyEncoder::finish`] once at the
/// end; both push the buffers to write onto `out`.
#[derive(Debug, Clone)]
pub struct BodyEncoder {
    framing: BodyFraming,
    written: u64,
    finished: bool,
}

impl BodyEncoder {
    /// An encoder for a body with `framing`. [`BodyFraming::CloseDelimited`] passes data
    /// through; the writer ends the body by closing the connection.
    pub fn new(framing: BodyFraming) -> BodyEncoder {
        BodyEncoder {
            framing,
            written: 0,
            finished: false,
        }
    }

    /// The framing being written.
    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Payload bytes accepted so far.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Frames `chunk` onto `out`. An empty chunk writes nothing. Errors with
    /// [`HttpError::BodyLengthMismatch`] when the chunk goes past the announced length (or the
    /// body has no room at all) and nothing is pushed then.
    pub fn encode(&mut self, chunk: Bytes, out: &mut Vec<Bytes>) -> Result<(), HttpError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let total = self.written + chunk.len() as u64;
        match self.framing {
            BodyFraming::Empty => {
                return Err(HttpError::BodyLengthMismatch {
                    expected: 0,
                    actual: total,
                });
            }
            BodyFraming::Length(n) if total > n || self.finished => {
                return Err(HttpError::BodyLengthMismatch {
                    expected: n,
                    actual: total,
                });
            }
            BodyFraming::Length(_) | BodyFraming::CloseDelimited => out.push(chunk),
            BodyFraming::Chunked => {
                if self.finished {
                    return Err(HttpError::BodyLengthMismatch {
                        expected: self.written,
                        actual: total,
                    });
                }
                out.push(Bytes::from(format!("{:x}\r\n", chunk.len())));
                out.push(chunk);
                out.push(Bytes::from_static(CRLF));
            }
        }
        self.written = total;
        Ok(())
    }

    /// Ends the body: pushes the last chunk for chunked framing, checks the count for
    /// `Content-Length`. Calling it again does nothing.
    pub fn finish(&mut self, out: &mut Vec<Bytes>) -> Result<(), HttpError> {
        self.finish_with_trailers(None, out)
    }

    /// [`BodyEncoder::finish`], with `trailers` in the trailer section after the last chunk
    /// ([`encode_last_chunk`]) when the framing is chunked. Other framings have no place for
    /// trailer fields: they are dropped.
    pub fn finish_with_trailers(
        &mut self,
        trailers: Option<&Headers>,
        out: &mut Vec<Bytes>,
    ) -> Result<(), HttpError> {
        if self.finished {
            return Ok(());
        }
        match self.framing {
            BodyFraming::Length(n) if self.written != n => {
                return Err(HttpError::BodyLengthMismatch {
                    expected: n,
                    actual: self.written,
                });
            }
            BodyFraming::Chunked => out.push(match trailers {
                Some(t) => encode_last_chunk(t),
                None => Bytes::from_static(LAST_CHUNK),
            }),
            _ => {}
        }
        self.finished = true;
        Ok(())
    }
}

/// The last chunk of a chunked body and its trailer section (RFC 9112 §7.1.2): `0\r\n`, each
/// field of `trailers` that may be a trailer ([`is_trailer_allowed`]) as `name: value\r\n`, and
/// the final `\r\n`. With no fields to write it is the plain `0\r\n\r\n`.
pub fn encode_last_chunk(trailers: &Headers) -> Bytes {
    let kept = || trailers.iter().filter(|h| is_trailer_allowed(&h.name));
    if kept().next().is_none() {
        return Bytes::from_static(LAST_CHUNK);
    }
    let len: usize = kept().map(|h| h.name.len() + h.value.len() + 4).sum();
    let mut out = Vec::with_capacity(len + 5);
    out.extend_from_slice(b"0\r\n");
    for h in kept() {
        out.extend_from_slice(&h.name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&h.value);
        out.extend_from_slice(CRLF);
    }
    out.extend_from_slice(CRLF);
    Bytes::from(out)
}

/// Fields that must not be sent as trailers (RFC 9110 §6.5.1): message framing, routing, the
/// connection's own fields, and what a recipient would have needed before the body.
const NOT_TRAILERS: [&str; 16] = [
    "content-length",
    "transfer-encoding",
    "trailer",
    "te",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "content-encoding",
    "content-type",
    "content-range",
    "cache-control",
    "expect",
    "authorization",
    "set-cookie",
];

/// Whether a field may be forwarded in a trailer section: anything but the fields of framing,
/// routing, connection management, content handling and authentication RFC 9110 §6.5.1 rules
/// out of trailers, and no pseudo-header.
pub fn is_trailer_allowed(name: &[u8]) -> bool {
    !name.starts_with(b":")
        && !NOT_TRAILERS
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::BytesMut;
    use proptest::prelude::*;

    use super::*;
    use crate::http::decoder::{BodyDecoder, BodyLimits, DecodeStep};
    use crate::http::error::Fault;

    fn concat(v: &[Bytes]) -> Vec<u8> {
        v.iter().flat_map(|b| b.iter().copied()).collect()
    }

    #[test]
    fn chunked_frames_without_copying() {
        let mut e = BodyEncoder::new(BodyFraming::Chunked);
        let mut out = Vec::new();
        let data = Bytes::from(vec![7u8; 300]);
        e.encode(data.clone(), &mut out).unwrap();
        e.encode(Bytes::new(), &mut out).unwrap();
        e.finish(&mut out).unwrap();
        assert_eq!(out.len(), 4);
        assert_eq!(&out[0][..], b"12c\r\n");
        assert_eq!(out[1].as_ptr(), data.as_ptr());
        assert_eq!(&out[3][..], b"0\r\n\r\n");
    }

    #[test]
    fn content_length_is_counted() {
        let mut out = Vec::new();
        let mut e = BodyEncoder::new(BodyFraming::Length(5));
        e.encode(Bytes::from_static(b"abc"), &mut out).unwrap();
        assert!(matches!(
            e.finish(&mut out),
            Err(HttpError::BodyLengthMismatch {
                expected: 5,
                actual: 3
            })
        ));
        assert!(matches!(
            e.encode(Bytes::from_static(b"def"), &mut out),
            Err(HttpError::BodyLengthMismatch {
                expected: 5,
                actual: 6
            })
        ));
        e.encode(Bytes::from_static(b"de"), &mut out).unwrap();
        e.finish(&mut out).unwrap();
        assert_eq!(concat(&out), b"abcde");
        let mut e = BodyEncoder::new(BodyFraming::Empty);
        assert!(e.encode(Bytes::from_static(b"x"), &mut out).is_err());
        e.finish(&mut out).unwrap();
    }

    #[test]
    fn trailers_follow_the_last_chunk_and_forbidden_ones_are_dropped() {
        let mut t = Headers::new();
        t.append("grpc-status", "0");
        t.append("Content-Length", "5");
        t.append("grpc-message", "ok");
        let mut e = BodyEncoder::new(BodyFraming::Chunked);
        let mut out = Vec::new();
        e.encode(Bytes::from_static(b"abc"), &mut out).unwrap();
        e.finish_with_trailers(Some(&t), &mut out).unwrap();
        assert_eq!(
            concat(&out),
            b"3\r\nabc\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n"
        );
        assert_eq!(&encode_last_chunk(&Headers::new())[..], LAST_CHUNK);
        // Other framings drop them.
        let mut e = BodyEncoder::new(BodyFraming::Length(3));
        let mut out = Vec::new();
        e.encode(Bytes::from_static(b"abc"), &mut out).unwrap();
        e.finish_with_trailers(Some(&t), &mut out).unwrap();
        assert_eq!(concat(&out), b"abc");
    }

    proptest! {
        /// Chunked encode → decode with arbitrary chunking of the payload and arbitrary split
        /// points of the encoded input.
        #[test]
        fn chunked_round_trip(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..12),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
            trailers in prop::collection::vec(("x-[a-z0-9-]{1,10}", "[!-~]([ !-~]{0,20}[!-~])?"), 0..4),
        ) {
            let mut enc = BodyEncoder::new(BodyFraming::Chunked);
            let mut out = Vec::new();
            for c in &chunks {
                enc.encode(Bytes::from(c.clone()), &mut out).unwrap();
            }
            let trailers: Headers = trailers
                .into_iter()
                .map(|(n, v)| crate::http::Header { name: Bytes::from(n), value: Bytes::from(v) })
                .collect();
            enc.finish_with_trailers(Some(&trailers), &mut out).unwrap();
            let mut wire = concat(&out);
            wire.extend_from_slice(b"NEXT");
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(wire.len() + 1)).collect();
            points.push(wire.len());
            points.sort_unstable();

            let mut dec = BodyDecoder::new(BodyFraming::Chunked, BodyLimits::default(), Fault::Client);
            let mut buf = BytesMut::new();
            let mut body = Vec::new();
            let mut fed = 0;
            let mut ended = false;
            for p in points {
                buf.extend_from_slice(&wire[fed..p]);
                fed = p;
                loop {
                    match dec.decode(&mut buf).unwrap() {
                        DecodeStep::Data(b) => body.extend_from_slice(&b),
                        DecodeStep::NeedMore => break,
                        DecodeStep::End => { ended = true; break; }
                    }
                }
                if ended { break; }
            }
            prop_assert!(ended);
            prop_assert_eq!(body, chunks.concat());
            prop_assert_eq!(dec.take_trailers(), Some(trailers));
            buf.extend_from_slice(&wire[fed..]);
            prop_assert_eq!(&buf[..], b"NEXT");
        }

        #[test]
        fn chunked_decode_never_panics(data in prop::collection::vec(any::<u8>(), 0..400)) {
            let mut dec = BodyDecoder::new(BodyFraming::Chunked, BodyLimits::default(), Fault::Client);
            let mut buf = BytesMut::from(&data[..]);
            for _ in 0..1000 {
                match dec.decode(&mut buf) {
                    Ok(DecodeStep::Data(_)) => {}
                    _ => break,
                }
            }
        }
    }
}
