//! Trailer fields between HTTP/2 and the tunnel. When a stream's OPEN or REPLY metadata sets
//! the trailers flag (`docs/http-meta.md`), its DATA is the body in HTTP/1.1 chunked encoding
//! with its trailer section; HTTP/2 carries trailers as a last HEADERS frame instead. This file
//! turns one into the other, both ways:
//! - a response from the tunnel: [`ChunkedIn`] decodes the chunked body and keeps its trailer
//!   fields for the trailers HEADERS frame (gRPC's `grpc-status` travels so);
//! - a request from an HTTP/2 client: [`ChunkedOut`] chunk-encodes its DATA and ends with the
//!   trailers it sent. The flag is set when the request may carry trailers: it has no
//!   `Content-Length` and announced them (`TE: trailers`, as gRPC clients send, or a `Trailer`
//!   field), or its buffered body came with them. Trailers of another request are dropped.
//!
//! Only fields that may be trailers (`ringtun_core::http::is_trailer_allowed`) and that HTTP/2
//! can carry cross.

use bytes::{Bytes, BytesMut};
use ringtun_core::http::{
    BodyDecoder, BodyEncoder, BodyFraming, BodyLimits, DecodeStep, Fault, Headers, HttpError,
    RequestHead, encode_last_chunk, is_trailer_allowed,
};

/// Whether a request without `Content-Length` announced trailers.
pub(crate) fn announced(head: &RequestHead) -> bool {
    head.headers.has_token("te", "trailers") || head.headers.contains("trailer")
}

/// Trailer fields from the tunnel as an HTTP/2 trailer block.
pub(crate) fn to_header_map(fields: &Headers) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for h in fields.iter() {
        if !is_trailer_allowed(&h.name) {
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&h.name),
            http::HeaderValue::from_maybe_shared(h.value.clone()),
        ) {
            map.append(name, value);
        }
    }
    map
}

/// An HTTP/2 client's trailer block as fields for the tunnel.
pub(crate) fn to_headers(map: &http::HeaderMap) -> Headers {
    let mut out = Headers::with_capacity(map.len());
    for (name, value) in map {
        out.append(
            Bytes::copy_from_slice(name.as_str().as_bytes()),
            Bytes::copy_from_slice(value.as_bytes()),
        );
    }
    out
}

/// Decodes a response body that arrives chunked with its trailer section.
pub(crate) struct ChunkedIn {
    dec: BodyDecoder,
    pending: BytesMut,
    trailers: Option<Headers>,
}

impl ChunkedIn {
    pub(crate) fn new() -> ChunkedIn {
        ChunkedIn {
            dec: BodyDecoder::new(BodyFraming::Chunked, BodyLimits::default(), Fault::Peer),
            pending: BytesMut::new(),
            trailers: None,
        }
    }

    /// The payload in one more piece of the stream (held: at most a piece and a partial chunk
    /// line). Bytes after the end of the body are an error.
    pub(crate) fn feed(&mut self, data: &[u8]) -> Result<Vec<Bytes>, HttpError> {
        if self.dec.is_done() {
            return Err(HttpError::InvalidMeta(
                "data after the end of a chunked body",
            ));
        }
        self.pending.extend_from_slice(data);
        let mut out = Vec::new();
        loop {
            match self.dec.decode(&mut self.pending)? {
                DecodeStep::Data(d) => out.push(d),
                DecodeStep::NeedMore => return Ok(out),
                DecodeStep::End => {
                    if !self.pending.is_empty() {
                        return Err(HttpError::InvalidMeta(
                            "data after the end of a chunked body",
                        ));
                    }
                    self.trailers = Some(self.dec.take_trailers().unwrap_or_default());
                    return Ok(out);
                }
            }
        }
    }

    /// The trailer fields, once the body ended; `None` before (a truncated body).
    pub(crate) fn finish(self) -> Option<Headers> {
        self.trailers
    }
}

/// Chunk-encodes a request body for a stream with the trailers flag.
pub(crate) struct ChunkedOut(BodyEncoder);

impl ChunkedOut {
    pub(crate) fn new() -> ChunkedOut {
        ChunkedOut(BodyEncoder::new(BodyFraming::Chunked))
    }

    /// One piece of the body, as chunk framing and data.
    pub(crate) fn piece(&mut self, data: Bytes) -> Vec<Bytes> {
        let mut out = Vec::with_capacity(3);
        // A chunked encoder takes any piece.
        let _ = self.0.encode(data, &mut out);
        out
    }

    /// The last chunk and the trailer section.
    pub(crate) fn end(trailers: &Headers) -> Bytes {
        encode_last_chunk(trailers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_in_pieces_gives_its_payload_and_trailers() {
        let mut c = ChunkedIn::new();
        let wire = b"3\r\nabc\r\n2\r\nde\r\n0\r\ngrpc-status: 0\r\ngrpc-message: ok\r\n\r\n";
        let mut payload = Vec::new();
        for piece in wire.chunks(5) {
            for d in c.feed(piece).expect("valid") {
                payload.extend_from_slice(&d);
            }
        }
        assert_eq!(payload, b"abcde");
        let t = c.finish().expect("ended");
        let map = to_header_map(&t);
        assert_eq!(
            map.get("grpc-status").map(|v| v.as_bytes()),
            Some(&b"0"[..])
        );
        assert_eq!(
            map.get("grpc-message").map(|v| v.as_bytes()),
            Some(&b"ok"[..])
        );
    }

    #[test]
    fn a_truncated_body_has_no_trailers_and_extra_bytes_fail() {
        let mut c = ChunkedIn::new();
        assert!(c.feed(b"3\r\nab").is_ok());
        assert!(c.finish().is_none());
        let mut c = ChunkedIn::new();
        assert!(c.feed(b"0\r\n\r\nxyz").is_err());
    }

    #[test]
    fn request_trailers_round_trip_and_forbidden_fields_stay_out() {
        let mut out = ChunkedOut::new();
        let mut wire = Vec::new();
        for b in out.piece(Bytes::from_static(b"hello")) {
            wire.extend_from_slice(&b);
        }
        let mut map = http::HeaderMap::new();
        map.insert("x-checksum", http::HeaderValue::from_static("42"));
        map.insert("content-length", http::HeaderValue::from_static("5"));
        wire.extend_from_slice(&ChunkedOut::end(&to_headers(&map)));
        let mut c = ChunkedIn::new();
        let payload: Vec<u8> = c.feed(&wire).expect("valid").concat();
        assert_eq!(payload, b"hello");
        let t = to_header_map(&c.finish().expect("ended"));
        assert_eq!(t.get("x-checksum").map(|v| v.as_bytes()), Some(&b"42"[..]));
        assert!(t.get("content-length").is_none(), "not a trailer field");
    }
}
