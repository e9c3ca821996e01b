//! A request body as the link stream carries it (`docs/http-meta.md`, "Bodies"): the decoded
//! payload, or, when OPEN set the trailers flag, the body in chunked encoding with its trailer
//! section, decoded here with the same rules and limits as a chunked body from a socket.
//!
//! Also the other way: [`chunk_frame`] frames a response payload piece for a REPLY with the
//! trailers flag.

use bytes::{Bytes, BytesMut};
use ringtun_core::http::{
    BodyDecoder, BodyEncoder, BodyFraming, BodyLimits, DecodeStep, Fault, Headers,
};
use ringtun_core::link::Stream;

/// Why a request body could not be read off the stream.
#[derive(Debug)]
pub struct BodyFailed(pub String);

impl std::fmt::Display for BodyFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads a request body off a link stream, payload piece by piece, then its trailers.
pub struct TunnelBody<'s> {
    stream: &'s Stream,
    /// With the trailers flag: the decoder and what arrived and is not decoded yet.
    chunked: Option<(BodyDecoder, BytesMut)>,
    trailers: Option<Headers>,
    ended: bool,
}

impl<'s> TunnelBody<'s> {
    /// The body on `stream`; `trailers` is the OPEN metadata's flag.
    pub fn new(stream: &'s Stream, trailers: bool) -> TunnelBody<'s> {
        let chunked = trailers.then(|| {
            (
                BodyDecoder::new(BodyFraming::Chunked, BodyLimits::default(), Fault::Client),
                BytesMut::new(),
            )
        });
        TunnelBody {
            stream,
            chunked,
            trailers: None,
            ended: false,
        }
    }

    /// The next piece of payload (never empty), or `None` at the body's end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, BodyFailed> {
        if self.ended {
            return Ok(None);
        }
        let Some((dec, buf)) = self.chunked.as_mut() else {
            return match self.stream.read().await {
                Ok(Some(b)) => Ok(Some(b)),
                Ok(None) => {
                    self.ended = true;
                    Ok(None)
                }
                Err(e) => Err(BodyFailed(format!("request body stream failed: {e}"))),
            };
        };
        loop {
            match dec.decode(buf) {
                Ok(DecodeStep::Data(b)) => return Ok(Some(b)),
                Ok(DecodeStep::End) => {
                    self.trailers = dec.take_trailers();
                    // Nothing may follow the trailer section but the stream's FIN.
                    let mut extra = !buf.is_empty();
                    loop {
                        match self.stream.read().await {
                            Ok(Some(b)) => extra |= !b.is_empty(),
                            Ok(None) => break,
                            Err(e) => {
                                return Err(BodyFailed(format!("request body stream failed: {e}")));
                            }
                        }
                    }
                    if extra {
                        return Err(BodyFailed(
                            "bytes after the request body's trailer section".into(),
                        ));
                    }
                    self.ended = true;
                    return Ok(None);
                }
                Ok(DecodeStep::NeedMore) => match self.stream.read().await {
                    Ok(Some(b)) if buf.is_empty() => *buf = BytesMut::from(b),
                    Ok(Some(b)) => buf.extend_from_slice(&b),
                    Ok(None) => {
                        return Err(BodyFailed(
                            "request body ended before its last chunk".into(),
                        ));
                    }
                    Err(e) => return Err(BodyFailed(format!("request body stream failed: {e}"))),
                },
                Err(e) => return Err(BodyFailed(format!("invalid chunked request body: {e}"))),
            }
        }
    }

    /// The trailer fields, once [`TunnelBody::next`] returned `None` (empty without the flag or
    /// when the client sent none).
    pub fn take_trailers(&mut self) -> Headers {
        self.trailers.take().unwrap_or_default()
    }
}

/// `chunk` in chunked framing as one buffer (size line, data, CRLF), for a stream whose REPLY
/// set the trailers flag. Empty for an empty chunk (an empty chunk would end the body).
pub fn chunk_frame(chunk: Bytes) -> Bytes {
    let mut enc = BodyEncoder::new(BodyFraming::Chunked);
    let mut parts = Vec::with_capacity(3);
    if enc.encode(chunk, &mut parts).is_err() {
        // Unreachable: a fresh chunked encoder takes any piece.
        return Bytes::new();
    }
    let mut out = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
    for p in parts {
        out.extend_from_slice(&p);
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_frames_are_chunked_encoding() {
        assert_eq!(
            &chunk_frame(Bytes::from_static(b"hello"))[..],
            b"5\r\nhello\r\n"
        );
        assert!(chunk_frame(Bytes::new()).is_empty());
    }
}
