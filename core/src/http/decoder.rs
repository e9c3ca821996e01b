//! [`BodyDecoder`]: a sans-IO state machine that takes a body off a receive buffer and yields
//! its payload as `Bytes` slices of that buffer.
//!
//! Payload is never copied: a `Content-Length` body and the data of each chunk leave the buffer
//! through `split_to().freeze()`. Only chunk-size lines and trailers are looked at, and both are
//! bounded ([`BodyLimits`]), so a hostile sender cannot make the decoder buffer anything. Trailer
//! fields are checked for size and syntax and kept (as slices of their lines) for
//! [`BodyDecoder::take_trailers`]; callers that do not forward them just never ask.

use bytes::{Bytes, BytesMut};

use super::error::{Fault, HttpError};
use super::framing::BodyFraming;
use super::headers::Headers;

/// Limits on the framing bytes of a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    /// The longest chunk-size line, extensions and CRLF included (default 4 KiB).
    pub max_chunk_line: usize,
    /// The most trailer bytes, all lines together (default 16 KiB).
    pub max_trailer_bytes: usize,
}

impl Default for BodyLimits {
    fn default() -> BodyLimits {
        BodyLimits {
            max_chunk_line: 4096,
            max_trailer_bytes: 16 * 1024,
        }
    }
}

/// One step of [`BodyDecoder::decode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeStep {
    /// Payload bytes (never empty).
    Data(Bytes),
    /// The buffer holds no complete next piece: read more into it and call again.
    NeedMore,
    /// The body ended. Bytes left in the buffer belong to the next message.
    End,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// `n` bytes of a `Content-Length` body are left.
    Length(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// `n` bytes of the current chunk's data are left.
    ChunkData(u64),
    /// Expecting the CRLF after a chunk's data.
    ChunkDataEnd,
    /// Reading trailer lines; `n` trailer bytes so far.
    Trailers(usize),
    /// Everything until the connection closes.
    UntilClose,
    /// The body ended.
    Done,
}

/// Decodes one message body.
///
/// Call [`BodyDecoder::decode`] with the receive buffer after every read until it returns
/// [`DecodeStep::End`]; when the connection reaches EOF first, call [`BodyDecoder::eof`].
#[derive(Debug, Clone)]
pub struct BodyDecoder {
    state: State,
    limits: BodyLimits,
    from: Fault,
    /// The trailer fields of a chunked body, from its last chunk on.
    trailers: Option<Headers>,
}

impl BodyDecoder {
    /// A decoder for a body with `framing`, sent by `from` ([`Fault::Client`] for request bodies,
    /// [`Fault::Origin`] for response bodies; it labels the errors).
    pub fn new(framing: BodyFraming, limits: BodyLimits, from: Fault) -> BodyDecoder {
        let state = match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) => State::Length(n),
            BodyFraming::Chunked => State::ChunkSize,
            BodyFraming::CloseDelimited => State::UntilClose,
        };
        BodyDecoder {
            state,
            limits,
            from,
            trailers: None,
        }
    }

    /// The trailer fields of a chunked body that ended ([`DecodeStep::End`]), in order, each at
    /// most once: `Some` (possibly empty) after the last chunk of a chunked body, `None` for
    /// other framings, before the end, or when taken already. The fields passed the same checks
    /// as the trailer section (a token name, no control characters in the value, at most
    /// [`BodyLimits::max_trailer_bytes`] in all); the value has its surrounding whitespace
    /// removed. Which fields may be forwarded is the writer's concern
    /// ([`crate::http::is_trailer_allowed`]).
    pub fn take_trailers(&mut self) -> Option<Headers> {
        if self.state == State::Done {
            self.trailers.take()
        } else {
            None
        }
    }

    /// Whether the body has ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Takes the next piece of the body off the front of `buf`.
    #[must_use = "the step carries payload or says to read more"]
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<DecodeStep, HttpError> {
        loop {
            match self.state {
                State::Done => return Ok(DecodeStep::End),
                State::Length(left) | State::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(DecodeStep::NeedMore);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(n).freeze();
                    let left = left - n as u64;
                    self.state = match (self.state, left) {
                        (State::Length(_), 0) => State::Done,
                        (State::Length(_), l) => State::Length(l),
                        (_, 0) => State::ChunkDataEnd,
                        (_, l) => State::ChunkData(l),
                    };
                    return Ok(DecodeStep::Data(data));
                }
                State::UntilClose => {
                    if buf.is_empty() {
                        return Ok(DecodeStep::NeedMore);
                    }
                    return Ok(DecodeStep::Data(buf.split().freeze()));
                }
                State::ChunkSize => {
                    let Some(line) =
                        self.line(buf, self.limits.max_chunk_line, "chunk-size line too long")?
                    else {
                        return Ok(DecodeStep::NeedMore);
                    };
                    let size = parse_chunk_size(&line)
                        .ok_or_else(|| self.invalid("malformed chunk-size line"))?;
                    self.state = if size == 0 {
                        self.trailers = Some(Headers::new());
                        State::Trailers(0)
                    } else {
                        State::ChunkData(size)
                    };
                }
                State::ChunkDataEnd => {
                    if buf.len() < 2 {
                        return Ok(DecodeStep::NeedMore);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(self.invalid("chunk data not followed by CRLF"));
                    }
                    let _ = buf.split_to(2);
                    self.state = State::ChunkSize;
                }
                State::Trailers(seen) => {
                    let room = self.limits.max_trailer_bytes.saturating_sub(seen);
                    let Some(line) = self.line(buf, room, "trailers too large")? else {
                        return Ok(DecodeStep::NeedMore);
                    };
                    if line.len() == 2 {
                        self.state = State::Done;
                    } else {
                        let n = line.len();
                        let mut line = line.freeze();
                        line.truncate(n - 2);
                        let Some((name, value)) = trailer_field(line) else {
                            return Err(self.invalid("malformed trailer field"));
                        };
                        if let Some(t) = self.trailers.as_mut() {
                            t.append(name, value);
                        }
                        self.state = State::Trailers(seen + n);
                    }
                }
            }
        }
    }

    /// Reports that the connection reached EOF. Ok (and the body ends) for a close-delimited
    /// body or a body that already ended; [`HttpError::IncompleteBody`] otherwise.
    pub fn eof(&mut self) -> Result<(), HttpError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(HttpError::IncompleteBody { from: self.from }),
        }
    }

    /// Splits off a CRLF-terminated line (CRLF included) of at most `max` bytes.
    fn line(
        &self,
        buf: &mut BytesMut,
        max: usize,
        too_long: &'static str,
    ) -> Result<Option<BytesMut>, HttpError> {
        let window = &buf[..buf.len().min(max)];
        match window.iter().position(|&b| b == b'\n') {
            Some(i) if i > 0 && window[i - 1] == b'\r' => Ok(Some(buf.split_to(i + 1))),
            // A bare LF is refused: servers that accept it would frame the body differently.
            Some(_) => Err(self.invalid("bare LF in chunked framing")),
            None if buf.len() >= max => Err(self.invalid(too_long)),
            None => Ok(None),
        }
    }

    fn invalid(&self, reason: &'static str) -> HttpError {
        HttpError::InvalidBody {
            from: self.from,
            reason,
        }
    }
}

/// The size of a `chunk-size [ chunk-ext ] CRLF` line (RFC 9112 §7.1), or `None` when it is
/// malformed.
fn parse_chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\r\n")?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return None;
    }
    let mut size = 0u64;
    for &b in &line[..digits] {
        let d = (b as char).to_digit(16)?;
        size = size << 4 | u64::from(d);
    }
    // What follows: optional whitespace, then nothing or `;` extensions (kept opaque, but no
    // control characters).
    let rest = &line[digits..];
    let rest = &rest[rest
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count()..];
    match rest.first() {
        None => Some(size),
        Some(b';')
            if rest
                .iter()
                .all(|&b| b == b'\t' || (0x20..0x7f).contains(&b) || b >= 0x80) =>
        {
            Some(size)
        }
        Some(_) => None,
    }
}

/// A trailer line (CRLF removed) split into its name and its value without surrounding
/// whitespace, or `None` unless it is `name: value` with a token name and no control
/// characters.
fn trailer_field(line: Bytes) -> Option<(Bytes, Bytes)> {
    let colon = line.iter().position(|&b| b == b':')?;
    let valid = colon > 0
        && line[..colon].iter().all(|&b| super::headers::is_tchar(b))
        && line[colon + 1..]
            .iter()
            .all(|&b| b == b'\t' || b >= 0x20 && b != 0x7f);
    if !valid {
        return None;
    }
    let ws = |b: &u8| *b == b' ' || *b == b'\t';
    let value = &line[colon + 1..];
    let start = value.iter().take_while(|b| ws(b)).count();
    let end = value.len() - value.iter().rev().take_while(|b| ws(b)).count();
    let value = if start >= end {
        Bytes::new()
    } else {
        line.slice(colon + 1 + start..colon + 1 + end)
    };
    Some((line.slice(..colon), value))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn collect(d: &mut BodyDecoder, buf: &mut BytesMut) -> (Vec<u8>, DecodeStep) {
        let mut out = Vec::new();
        loop {
            match d.decode(buf).unwrap() {
                DecodeStep::Data(b) => {
                    assert!(!b.is_empty());
                    out.extend_from_slice(&b);
                }
                step => return (out, step),
            }
        }
    }

    fn chunked() -> BodyDecoder {
        BodyDecoder::new(BodyFraming::Chunked, BodyLimits::default(), Fault::Client)
    }

    #[test]
    fn content_length_is_zero_copy_and_stops_at_the_end() {
        let mut d = BodyDecoder::new(BodyFraming::Length(5), BodyLimits::default(), Fault::Client);
        let mut buf = BytesMut::from(&b"helloGET"[..]);
        let ptr = buf.as_ptr();
        match d.decode(&mut buf).unwrap() {
            DecodeStep::Data(b) => {
                assert_eq!(&b[..], b"hello");
                assert_eq!(b.as_ptr(), ptr);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d.decode(&mut buf).unwrap(), DecodeStep::End);
        assert_eq!(&buf[..], b"GET");
    }

    #[test]
    fn chunked_with_extensions_and_trailers() {
        let mut d = chunked();
        let mut buf = BytesMut::from(
            &b"5;name=\"v\"\r\nhello\r\nA \r\n0123456789\r\n0\r\nX-T: 1\r\n\r\nNEXT"[..],
        );
        let (body, step) = collect(&mut d, &mut buf);
        assert_eq!(body, b"hello0123456789");
        assert_eq!(step, DecodeStep::End);
        assert_eq!(&buf[..], b"NEXT");
        assert!(d.is_done());
        let t = d.take_trailers().unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t.get("x-t").map(|v| &v[..]), Some(&b"1"[..]));
        assert_eq!(d.take_trailers(), None, "taken once");
    }

    #[test]
    fn trailers_are_parsed_only_at_the_end_of_a_chunked_body() {
        let mut d = chunked();
        let mut buf = BytesMut::from(
            &b"3\r\nabc\r\n0\r\ngrpc-status:  5 \t\r\nGrpc-Message: not found\r\nX-Empty:\r\n"[..],
        );
        let (body, step) = collect(&mut d, &mut buf);
        assert_eq!((body.as_slice(), step), (&b"abc"[..], DecodeStep::NeedMore));
        assert_eq!(d.take_trailers(), None, "not before the end");
        buf.extend_from_slice(b"\r\n");
        assert_eq!(d.decode(&mut buf).unwrap(), DecodeStep::End);
        let t = d.take_trailers().unwrap();
        let fields: Vec<(&[u8], &[u8])> = t.iter().map(|h| (&h.name[..], &h.value[..])).collect();
        assert_eq!(
            fields,
            [
                (&b"grpc-status"[..], &b"5"[..]),
                (b"Grpc-Message", b"not found"),
                (b"X-Empty", b""),
            ]
        );
        // No trailer section: an empty one.
        let mut d = chunked();
        let mut buf = BytesMut::from(&b"0\r\n\r\n"[..]);
        assert_eq!(collect(&mut d, &mut buf).1, DecodeStep::End);
        assert_eq!(d.take_trailers(), Some(Headers::new()));
        // Other framings have none.
        let mut d = BodyDecoder::new(BodyFraming::Length(1), BodyLimits::default(), Fault::Origin);
        let mut buf = BytesMut::from(&b"x"[..]);
        assert_eq!(collect(&mut d, &mut buf).1, DecodeStep::End);
        assert_eq!(d.take_trailers(), None);
    }

    #[test]
    fn chunked_errors() {
        for bad in [
            &b"x\r\n"[..],
            b"\r\n",
            b"5\nhello\r\n",
            b"5\r\nhelloXX",
            b"11111111111111111\r\n",
            b"5 x\r\n",
            b"-5\r\n",
            b"0\r\nbad trailer\r\n\r\n",
            b"0\r\n: v\r\n\r\n",
        ] {
            let mut d = chunked();
            let mut buf = BytesMut::from(bad);
            let r = loop {
                match d.decode(&mut buf) {
                    Ok(DecodeStep::Data(_)) => continue,
                    other => break other,
                }
            };
            let e = r.unwrap_err();
            assert_eq!(e.status(), 400, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn chunk_lines_and_trailers_are_bounded() {
        let mut d = chunked();
        let mut buf = BytesMut::from(&b"5;"[..]);
        buf.extend_from_slice(&[b'a'; 5000]);
        assert!(matches!(
            d.decode(&mut buf),
            Err(HttpError::InvalidBody { .. })
        ));

        let mut d = chunked();
        let mut buf = BytesMut::from(&b"0\r\n"[..]);
        for _ in 0..2000 {
            buf.extend_from_slice(b"X-Trailer: aaaaaaaaaa\r\n");
        }
        let r = loop {
            match d.decode(&mut buf) {
                Ok(DecodeStep::Data(_)) => continue,
                other => break other,
            }
        };
        assert!(matches!(
            r,
            Err(HttpError::InvalidBody {
                reason: "trailers too large",
                ..
            })
        ));
    }

    #[test]
    fn eof_handling() {
        let mut d = BodyDecoder::new(
            BodyFraming::CloseDelimited,
            BodyLimits::default(),
            Fault::Origin,
        );
        let mut buf = BytesMut::from(&b"abc"[..]);
        assert_eq!(
            collect(&mut d, &mut buf),
            (b"abc".to_vec(), DecodeStep::NeedMore)
        );
        d.eof().unwrap();
        assert!(d.is_done());
        let mut d = BodyDecoder::new(BodyFraming::Length(3), BodyLimits::default(), Fault::Origin);
        let e = d.eof().unwrap_err();
        assert_eq!(e.fault(), Fault::Origin);
        assert_eq!(e.status(), 502);
        let mut d = BodyDecoder::new(BodyFraming::Empty, BodyLimits::default(), Fault::Client);
        assert_eq!(d.decode(&mut BytesMut::new()).unwrap(), DecodeStep::End);
    }
}
