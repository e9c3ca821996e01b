//! [`BodyEncoder`]: frames an outgoing body as a list of `Bytes` for one vectored write.
//!
//! Payload chunks are passed through as they are; chunked framing adds a small size line and a
//! static CRLF around each, so nothing is copied. A `Content-Length` body is counted, and a
//! body that is shorter or longer than announced is an error instead of a desynchronized
//! connection.

use bytes::Bytes;

use super::error::HttpError;
use super::framing::BodyFraming;

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
            BodyFraming::Chunked => out.push(Bytes::from_static(LAST_CHUNK)),
            _ => {}
        }
        self.finished = true;
        Ok(())
    }
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

    proptest! {
        /// Chunked encode → decode with arbitrary chunking of the payload and arbitrary split
        /// points of the encoded input.
        #[test]
        fn chunked_round_trip(
            chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..200), 0..12),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let mut enc = BodyEncoder::new(BodyFraming::Chunked);
            let mut out = Vec::new();
            for c in &chunks {
                enc.encode(Bytes::from(c.clone()), &mut out).unwrap();
            }
            enc.finish(&mut out).unwrap();
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
