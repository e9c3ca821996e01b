//! The compact binary encoding of HTTP heads in stream metadata: the request head in OPEN, the
//! response head or an error in REPLY. Specified in `docs/http-meta.md`.
//!
//! Binary rather than HTTP/1.1 text so the connector does not run a second text parser on
//! what the edge already parsed and checked, and so the edge can add what is not in the head
//! (client IP, the body framing it decided). Decoding is zero-copy (fields are slices of the
//! metadata `Bytes`), strict (trailing bytes, unknown flags, bad lengths and invalid field
//! characters are errors) and never panics. It re-checks what the HTTP parser would have: a
//! buggy or hostile peer must not get CR/LF into a head the connector writes to an origin.
//! It also checks that the host and target are in the normalised form the edge routed on
//! (`docs/routing.md`), so the connector never matches its rules on another spelling.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;

use crate::http::{
    BodyFraming, Headers, HttpError, RequestHead, ResponseHead, Version, is_field_value,
    is_normalized_target, is_tchar, normalize_host,
};

/// The format version, the first byte of every metadata blob. Version 2 added the routed host
/// to OPEN and requires a normalised target (`docs/http-meta.md`); the edge and the connector
/// ship together, and either refuses the other version.
pub const META_VERSION: u8 = 2;
/// The most header fields a metadata blob may carry.
pub const MAX_META_HEADERS: usize = 512;

const KIND_REQUEST: u8 = 1;
const KIND_RESPONSE: u8 = 2;
const KIND_ERROR: u8 = 3;
const FLAG_HTTP11: u8 = 1;
/// The body on the stream is in HTTP/1.1 chunked encoding with its trailer section
/// (`docs/http-meta.md`); only with [`BodyFraming::Chunked`].
const FLAG_TRAILERS: u8 = 2;

/// What the edge adds to a request head in OPEN metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestExtra {
    /// The host the edge routed on ([`crate::http::RequestRoute::host`]): lowercase, no port,
    /// no trailing dot. The connector matches its ingress rules on it, whatever `Host` field
    /// the head carries.
    pub host: String,
    /// The public client's IP address, when known.
    pub client_ip: Option<IpAddr>,
    /// How the request body arrives on the stream: [`BodyFraming::Empty`] (no body; the stream's
    /// DATA is empty), [`BodyFraming::Length`] (exactly that many bytes) or
    /// [`BodyFraming::Chunked`] (a body of unknown length). The stream carries the decoded
    /// payload either way (but see `trailers`); the connector re-frames it for the origin.
    pub body: BodyFraming,
    /// The stream's DATA carries the body in HTTP/1.1 chunked encoding, trailer section
    /// included, instead of the decoded payload, so trailer fields reach the other side (read
    /// them with a [`BodyDecoder`](crate::http::BodyDecoder) and
    /// [`take_trailers`](crate::http::BodyDecoder::take_trailers)). Only with
    /// [`BodyFraming::Chunked`]; a blob with the flag and another framing is refused.
    pub trailers: bool,
}

/// Why the connector could not produce a response; REPLY metadata carries it instead of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplyErrorKind {
    /// The origin refused the connection (502).
    OriginRefused,
    /// The origin did not connect or answer in time (504).
    OriginTimeout,
    /// The origin sent an invalid response or closed early (502).
    OriginInvalid,
    /// No ingress rule matches the request (404). Cloudflared's catch-all rule makes this rare.
    NoIngressRule,
    /// The connector is draining or overloaded and did not process the request (503).
    Unavailable,
    /// A code this version does not know (502).
    Other(u8),
}

impl ReplyErrorKind {
    /// The wire code.
    pub fn code(self) -> u8 {
        match self {
            ReplyErrorKind::OriginRefused => 1,
            ReplyErrorKind::OriginTimeout => 2,
            ReplyErrorKind::OriginInvalid => 3,
            ReplyErrorKind::NoIngressRule => 4,
            ReplyErrorKind::Unavailable => 5,
            ReplyErrorKind::Other(c) => c,
        }
    }

    /// The kind for a wire code.
    pub fn from_code(c: u8) -> ReplyErrorKind {
        match c {
            1 => ReplyErrorKind::OriginRefused,
            2 => ReplyErrorKind::OriginTimeout,
            3 => ReplyErrorKind::OriginInvalid,
            4 => ReplyErrorKind::NoIngressRule,
            5 => ReplyErrorKind::Unavailable,
            c => ReplyErrorKind::Other(c),
        }
    }

    /// The status the edge answers the client with.
    pub fn status(self) -> u16 {
        match self {
            ReplyErrorKind::OriginTimeout => 504,
            ReplyErrorKind::NoIngressRule => 404,
            ReplyErrorKind::Unavailable => 503,
            _ => 502,
        }
    }
}

/// An error in REPLY metadata: what failed, said for the client (the edge puts `message` in the
/// error response body, e.g. `origin refused the connection (127.0.0.1:9)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyError {
    /// What failed.
    pub kind: ReplyErrorKind,
    /// A short human-readable detail.
    pub message: String,
}

impl ReplyError {
    /// The response the edge sends for this error: [`ReplyErrorKind::status`] with the message
    /// as the body (see [`crate::http::error_response`]).
    pub fn to_response(&self, close: bool) -> (ResponseHead, Bytes) {
        crate::http::error_response(self.kind.status(), &self.message, close)
    }
}

/// Decoded REPLY metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseMeta {
    /// The origin's response head and how its body arrives on the stream (any
    /// [`BodyFraming`]; the payload on the stream is decoded, the edge re-frames it).
    Head {
        /// The response head.
        head: ResponseHead,
        /// The body framing the origin used.
        body: BodyFraming,
        /// The stream carries the body in chunked encoding with its trailer section, as
        /// [`RequestExtra::trailers`]; only with [`BodyFraming::Chunked`].
        trailers: bool,
    },
    /// No response: the connector failed to get one.
    Error(ReplyError),
}

/// Encodes a request head and the edge's extras as OPEN metadata. The head's target and
/// `extra.host` must be normalised ([`crate::http::RequestRoute`]), or the connector refuses
/// the metadata.
pub fn encode_request_meta(head: &RequestHead, extra: &RequestExtra) -> Bytes {
    /// The head's fields as they are.
    struct AsIs<'a>(&'a Headers);
    impl EmitFields for AsIs<'_> {
        fn emit<S: FieldSink>(&self, sink: &mut S) {
            for f in self.0 {
                sink.field(&f.name, std::iter::once(&f.value[..]));
            }
        }
    }
    let start = RequestStart {
        version: head.version,
        body: extra.body,
        trailers: extra.trailers,
        client_ip: extra.client_ip,
        method: &head.method,
        host: extra.host.as_bytes(),
        target: &head.target,
    };
    encode_request_fields(&start, &AsIs(&head.headers))
}

/// Everything of OPEN metadata before the header fields.
pub(crate) struct RequestStart<'a> {
    pub(crate) version: Version,
    pub(crate) body: BodyFraming,
    pub(crate) trailers: bool,
    pub(crate) client_ip: Option<IpAddr>,
    pub(crate) method: &'a [u8],
    pub(crate) host: &'a [u8],
    pub(crate) target: &'a [u8],
}

/// Where header fields go while OPEN metadata is written: a field is a name and its value in
/// pieces (written one after the other, so a joined value needs no buffer of its own).
pub(crate) trait FieldSink {
    fn field<'v>(&mut self, name: &[u8], value: impl Iterator<Item = &'v [u8]> + Clone);
}

/// The header fields of a head being encoded, emitted the same way each time they are asked
/// for (once to size the output, once to write it).
pub(crate) trait EmitFields {
    fn emit<S: FieldSink>(&self, sink: &mut S);
}

/// Counts fields and their encoded bytes.
#[derive(Default)]
struct Sizer {
    fields: usize,
    bytes: usize,
}

impl FieldSink for Sizer {
    fn field<'v>(&mut self, name: &[u8], value: impl Iterator<Item = &'v [u8]> + Clone) {
        let vlen: usize = value.map(<[u8]>::len).sum();
        self.fields += 1;
        self.bytes += str_len(name.len()) + str_len(vlen);
    }
}

/// Writes fields in the metadata encoding.
struct Writer<'o>(&'o mut Vec<u8>);

impl FieldSink for Writer<'_> {
    fn field<'v>(&mut self, name: &[u8], value: impl Iterator<Item = &'v [u8]> + Clone) {
        put_str(self.0, name);
        put_varint(self.0, value.clone().map(<[u8]>::len).sum::<usize>() as u64);
        for part in value {
            self.0.extend_from_slice(part);
        }
    }
}

/// OPEN metadata from its start and the fields `fields` emits, in one buffer of exactly the
/// encoded size (sized by a first pass over the fields, so nothing is reallocated or copied
/// again when it becomes `Bytes`).
pub(crate) fn encode_request_fields(start: &RequestStart<'_>, fields: &impl EmitFields) -> Bytes {
    let mut size = Sizer::default();
    fields.emit(&mut size);
    let ip_len = match start.client_ip {
        None => 0,
        Some(IpAddr::V4(_)) => 4,
        Some(IpAddr::V6(_)) => 16,
    };
    let framing_len = match start.body {
        BodyFraming::Length(n) => 1 + varint_len(n),
        _ => 1,
    };
    let total = 3
        + framing_len
        + 1
        + ip_len
        + str_len(start.method.len())
        + str_len(start.host.len())
        + str_len(start.target.len())
        + varint_len(size.fields as u64)
        + size.bytes;
    let mut out = Vec::with_capacity(total);
    debug_assert!(!start.trailers || start.body == BodyFraming::Chunked);
    out.extend_from_slice(&[
        META_VERSION,
        KIND_REQUEST,
        flags(start.version, start.trailers),
    ]);
    put_framing(&mut out, start.body);
    match start.client_ip {
        None => out.push(0),
        Some(IpAddr::V4(ip)) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        Some(IpAddr::V6(ip)) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    put_str(&mut out, start.method);
    put_str(&mut out, start.host);
    put_str(&mut out, start.target);
    put_varint(&mut out, size.fields as u64);
    fields.emit(&mut Writer(&mut out));
    debug_assert_eq!(
        out.len(),
        total,
        "the sizing pass and the writing pass agree"
    );
    Bytes::from(out)
}

/// The encoded size of a varint.
fn varint_len(n: u64) -> usize {
    (64 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// The encoded size of a string of `n` bytes (length prefix included).
fn str_len(n: usize) -> usize {
    varint_len(n as u64) + n
}

/// Decodes OPEN metadata written by [`encode_request_meta`]. Errors are
/// [`HttpError::InvalidMeta`], also for a host or target that is not normalised.
pub fn decode_request_meta(meta: Bytes) -> Result<(RequestHead, RequestExtra), HttpError> {
    let mut r = Reader { buf: meta, pos: 0 };
    r.header(KIND_REQUEST)?;
    let (version, trailers) = r.flags()?;
    let body = r.framing_for(trailers)?;
    let client_ip = match r.u8()? {
        0 => None,
        4 => {
            let b = r.take(4)?;
            Some(IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3])))
        }
        6 => {
            let mut o = [0u8; 16];
            o.copy_from_slice(&r.take(16)?);
            Some(IpAddr::V6(Ipv6Addr::from(o)))
        }
        _ => return Err(HttpError::InvalidMeta("unknown address family")),
    };
    let method = r.string()?;
    if method.is_empty() || !method.iter().all(|&b| is_tchar(b)) {
        return Err(HttpError::InvalidMeta("invalid method"));
    }
    let host = r.string()?;
    if normalize_host(&host).ok().as_deref().map(str::as_bytes) != Some(&host[..]) {
        return Err(HttpError::InvalidMeta("host not normalised"));
    }
    // ASCII, as normalised.
    let host = String::from_utf8_lossy(&host).into_owned();
    let target = r.string()?;
    if target.is_empty() || !target.iter().all(|&b| b > 0x20 && b != 0x7f) {
        return Err(HttpError::InvalidMeta("invalid request target"));
    }
    if !is_normalized_target(&target) {
        return Err(HttpError::InvalidMeta("request target not normalised"));
    }
    let headers = r.headers()?;
    r.end()?;
    let head = RequestHead {
        method,
        target,
        version,
        headers,
    };
    Ok((
        head,
        RequestExtra {
            host,
            client_ip,
            body,
            trailers,
        },
    ))
}

/// Encodes a response head and its body framing as REPLY metadata; the stream carries the
/// decoded payload ([`encode_response_meta_with`] without trailers).
pub fn encode_response_meta(head: &ResponseHead, body: BodyFraming) -> Bytes {
    encode_response_meta_with(head, body, false)
}

/// Encodes a response head, its body framing and whether the stream carries the body in chunked
/// encoding with its trailer section ([`ResponseMeta::Head`]'s `trailers`; only with
/// [`BodyFraming::Chunked`]) as REPLY metadata.
pub fn encode_response_meta_with(head: &ResponseHead, body: BodyFraming, trailers: bool) -> Bytes {
    debug_assert!(!trailers || body == BodyFraming::Chunked);
    let mut out = Vec::with_capacity(head.encoded_len() + 16);
    out.extend_from_slice(&[META_VERSION, KIND_RESPONSE, flags(head.version, trailers)]);
    out.extend_from_slice(&head.status.to_be_bytes());
    put_framing(&mut out, body);
    put_str(&mut out, &head.reason);
    put_headers(&mut out, &head.headers);
    Bytes::from(out)
}

/// Encodes an error as REPLY metadata.
pub fn encode_reply_error(err: &ReplyError) -> Bytes {
    let mut out = Vec::with_capacity(err.message.len() + 8);
    out.extend_from_slice(&[META_VERSION, KIND_ERROR, err.kind.code()]);
    put_str(&mut out, err.message.as_bytes());
    Bytes::from(out)
}

/// Decodes REPLY metadata written by [`encode_response_meta`] or [`encode_reply_error`].
/// Errors are [`HttpError::InvalidMeta`].
pub fn decode_response_meta(meta: Bytes) -> Result<ResponseMeta, HttpError> {
    let mut r = Reader { buf: meta, pos: 0 };
    if r.u8()? != META_VERSION {
        return Err(HttpError::InvalidMeta("unknown metadata version"));
    }
    match r.u8()? {
        KIND_RESPONSE => {
            let (version, trailers) = r.flags()?;
            let s = r.take(2)?;
            let status = u16::from_be_bytes([s[0], s[1]]);
            if !(100..=999).contains(&status) {
                return Err(HttpError::InvalidMeta("invalid status"));
            }
            let body = r.framing_for(trailers)?;
            let reason = r.string()?;
            if !reason.iter().all(|&b| b == b'\t' || b >= 0x20 && b != 0x7f) {
                return Err(HttpError::InvalidMeta("invalid reason phrase"));
            }
            let headers = r.headers()?;
            r.end()?;
            let head = ResponseHead {
                version,
                status,
                reason,
                headers,
            };
            Ok(ResponseMeta::Head {
                head,
                body,
                trailers,
            })
        }
        KIND_ERROR => {
            let kind = ReplyErrorKind::from_code(r.u8()?);
            let msg = r.string()?;
            r.end()?;
            let message = String::from_utf8(msg.to_vec())
                .map_err(|_| HttpError::InvalidMeta("error message is not UTF-8"))?;
            Ok(ResponseMeta::Error(ReplyError { kind, message }))
        }
        _ => Err(HttpError::InvalidMeta("unexpected metadata kind")),
    }
}

fn flags(v: Version, trailers: bool) -> u8 {
    let version = match v {
        Version::Http11 => FLAG_HTTP11,
        Version::Http10 => 0,
    };
    if trailers {
        version | FLAG_TRAILERS
    } else {
        version
    }
}

fn put_framing(out: &mut Vec<u8>, f: BodyFraming) {
    match f {
        BodyFraming::Empty => out.push(0),
        BodyFraming::Length(n) => {
            out.push(1);
            put_varint(out, n);
        }
        BodyFraming::Chunked => out.push(2),
        BodyFraming::CloseDelimited => out.push(3),
    }
}

fn put_varint(out: &mut Vec<u8>, mut n: u64) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

fn put_headers(out: &mut Vec<u8>, h: &Headers) {
    put_varint(out, h.len() as u64);
    for f in h {
        put_str(out, &f.name);
        put_str(out, &f.value);
    }
}

/// A bounds-checked cursor over metadata.
struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    fn u8(&mut self) -> Result<u8, HttpError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(HttpError::InvalidMeta("truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<Bytes, HttpError> {
        if self.buf.len() - self.pos < n {
            return Err(HttpError::InvalidMeta("truncated"));
        }
        let b = self.buf.slice(self.pos..self.pos + n);
        self.pos += n;
        Ok(b)
    }

    fn varint(&mut self) -> Result<u64, HttpError> {
        let mut n = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            let part = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Err(HttpError::InvalidMeta("varint overflows 64 bits"));
            }
            n |= part << (7 * i);
            if b & 0x80 == 0 {
                return Ok(n);
            }
        }
        Err(HttpError::InvalidMeta("varint overflows 64 bits"))
    }

    fn string(&mut self) -> Result<Bytes, HttpError> {
        let n = self.varint()?;
        let n = usize::try_from(n).map_err(|_| HttpError::InvalidMeta("truncated"))?;
        self.take(n)
    }

    fn header(&mut self, kind: u8) -> Result<(), HttpError> {
        if self.u8()? != META_VERSION {
            return Err(HttpError::InvalidMeta("unknown metadata version"));
        }
        if self.u8()? != kind {
            return Err(HttpError::InvalidMeta("unexpected metadata kind"));
        }
        Ok(())
    }

    /// The flags byte: the HTTP version and whether the body carries trailers.
    fn flags(&mut self) -> Result<(Version, bool), HttpError> {
        let f = self.u8()?;
        if f & !(FLAG_HTTP11 | FLAG_TRAILERS) != 0 {
            return Err(HttpError::InvalidMeta("unknown flags"));
        }
        let version = if f & FLAG_HTTP11 != 0 {
            Version::Http11
        } else {
            Version::Http10
        };
        Ok((version, f & FLAG_TRAILERS != 0))
    }

    /// The body framing, which must be chunked when the body carries trailers.
    fn framing_for(&mut self, trailers: bool) -> Result<BodyFraming, HttpError> {
        let body = self.framing()?;
        if trailers && body != BodyFraming::Chunked {
            return Err(HttpError::InvalidMeta("trailers without chunked framing"));
        }
        Ok(body)
    }

    fn framing(&mut self) -> Result<BodyFraming, HttpError> {
        match self.u8()? {
            0 => Ok(BodyFraming::Empty),
            1 => Ok(BodyFraming::Length(self.varint()?)),
            2 => Ok(BodyFraming::Chunked),
            3 => Ok(BodyFraming::CloseDelimited),
            _ => Err(HttpError::InvalidMeta("unknown body framing")),
        }
    }

    fn headers(&mut self) -> Result<Headers, HttpError> {
        let n = self.varint()?;
        // Each field takes at least two bytes, so a count larger than what is left is garbage;
        // checking first keeps the allocation bounded by the input.
        let left = (self.buf.len() - self.pos) as u64;
        if n > MAX_META_HEADERS as u64 || n > left / 2 {
            return Err(HttpError::InvalidMeta("too many header fields"));
        }
        let mut h = Headers::with_capacity(n as usize);
        for _ in 0..n {
            let name = self.string()?;
            if name.is_empty() || !name.iter().all(|&b| is_tchar(b)) {
                return Err(HttpError::InvalidMeta("invalid header name"));
            }
            let value = self.string()?;
            if !is_field_value(&value) {
                return Err(HttpError::InvalidMeta("invalid header value"));
            }
            h.append(name, value);
        }
        Ok(h)
    }

    fn end(&self) -> Result<(), HttpError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(HttpError::InvalidMeta("trailing bytes"))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn request_meta_round_trip_and_is_compact() {
        let mut h = RequestHead::new("GET", "/index.html?q=1");
        h.headers.append("Host", "example.com");
        h.headers.append("Accept", "*/*");
        let extra = RequestExtra {
            host: "example.com".into(),
            client_ip: Some("192.0.2.7".parse().unwrap()),
            body: BodyFraming::Length(300),
            trailers: false,
        };
        let meta = encode_request_meta(&h, &extra);
        assert!(meta.len() < h.encoded_len() + 10);
        assert_eq!(decode_request_meta(meta).unwrap(), (h, extra));
    }

    #[test]
    fn reply_errors_round_trip() {
        let e = ReplyError {
            kind: ReplyErrorKind::OriginRefused,
            message: "origin refused the connection (127.0.0.1:9)".into(),
        };
        let back = decode_response_meta(encode_reply_error(&e)).unwrap();
        assert_eq!(back, ResponseMeta::Error(e));
        assert_eq!(ReplyErrorKind::OriginTimeout.status(), 504);
        assert_eq!(ReplyErrorKind::OriginRefused.status(), 502);
        assert_eq!(ReplyErrorKind::from_code(200), ReplyErrorKind::Other(200));
        let e = ReplyError {
            kind: ReplyErrorKind::OriginTimeout,
            message: "origin timed out (o:1)".into(),
        };
        let (head, body) = e.to_response(false);
        assert_eq!(head.status, 504);
        assert_eq!(&body[..], b"504 Gateway Timeout: origin timed out (o:1)\n");
    }

    #[test]
    fn injection_and_trailing_bytes_are_refused() {
        let mut h = RequestHead::new("GET", "/");
        h.headers.append("X", "a\r\nEvil: 1");
        assert!(decode_request_meta(encode_request_meta(&h, &extra("a"))).is_err());
        let mut h = RequestHead::new("GET", "/ HTTP/1.1\r\nX:");
        h.headers.append("Host", "a");
        assert!(decode_request_meta(encode_request_meta(&h, &extra("a"))).is_err());
        let ok = RequestHead::new("GET", "/");
        let mut m = encode_request_meta(&ok, &extra("a")).to_vec();
        m.push(0);
        assert!(matches!(
            decode_request_meta(Bytes::from(m)),
            Err(HttpError::InvalidMeta("trailing bytes"))
        ));
        // A huge header count does not allocate.
        let mut m = vec![
            META_VERSION,
            KIND_REQUEST,
            1,
            0,
            0,
            1,
            b'G',
            1,
            b'a',
            1,
            b'/',
        ];
        m.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f]);
        assert!(decode_request_meta(Bytes::from(m)).is_err());
    }

    fn extra(host: &str) -> RequestExtra {
        RequestExtra {
            host: host.into(),
            client_ip: None,
            body: BodyFraming::Empty,
            trailers: false,
        }
    }

    #[test]
    fn only_normalised_hosts_and_targets_are_accepted() {
        let ok = RequestHead::new("GET", "/a/b?x=//y");
        assert!(decode_request_meta(encode_request_meta(&ok, &extra("a.test"))).is_ok());
        for host in ["A.test", "a.test.", "a.test:80", "", "a..test"] {
            assert!(
                matches!(
                    decode_request_meta(encode_request_meta(&ok, &extra(host))),
                    Err(HttpError::InvalidMeta("host not normalised"))
                ),
                "{host}"
            );
        }
        for target in [
            "//admin",
            "/./admin",
            "/x/../admin",
            "/%61dmin",
            "/a%2Fb",
            "http://a/",
        ] {
            let h = RequestHead::new("GET", target);
            assert!(
                matches!(
                    decode_request_meta(encode_request_meta(&h, &extra("a"))),
                    Err(HttpError::InvalidMeta("request target not normalised"))
                ),
                "{target}"
            );
        }
        // Version 1 (no host field) is refused as a version, not misread.
        let mut m = encode_request_meta(&ok, &extra("a")).to_vec();
        m[0] = 1;
        assert!(matches!(
            decode_request_meta(Bytes::from(m)),
            Err(HttpError::InvalidMeta("unknown metadata version"))
        ));
    }

    #[test]
    fn the_trailers_flag_round_trips_and_needs_chunked_framing() {
        let h = RequestHead::new("POST", "/");
        let chunked = RequestExtra {
            body: BodyFraming::Chunked,
            trailers: true,
            ..extra("a")
        };
        let m = encode_request_meta(&h, &chunked);
        assert_eq!(m[2], FLAG_HTTP11 | FLAG_TRAILERS);
        assert_eq!(decode_request_meta(m).unwrap().1, chunked);
        // Without the flag the bytes are what they were before it existed.
        let plain = RequestExtra {
            trailers: false,
            ..chunked.clone()
        };
        assert_eq!(encode_request_meta(&h, &plain)[2], FLAG_HTTP11);
        // The flag with another framing, or an unknown flag bit, is refused.
        let mut m = encode_request_meta(&h, &chunked).to_vec();
        m[3] = 0;
        assert!(matches!(
            decode_request_meta(Bytes::from(m)),
            Err(HttpError::InvalidMeta("trailers without chunked framing"))
        ));
        let mut m = encode_request_meta(&h, &plain).to_vec();
        m[2] |= 4;
        assert!(matches!(
            decode_request_meta(Bytes::from(m)),
            Err(HttpError::InvalidMeta("unknown flags"))
        ));

        let res = ResponseHead::new(200);
        let back =
            decode_response_meta(encode_response_meta_with(&res, BodyFraming::Chunked, true));
        assert_eq!(
            back.unwrap(),
            ResponseMeta::Head {
                head: res.clone(),
                body: BodyFraming::Chunked,
                trailers: true
            }
        );
        assert_eq!(
            encode_response_meta(&res, BodyFraming::Chunked),
            encode_response_meta_with(&res, BodyFraming::Chunked, false)
        );
        let mut m = encode_response_meta_with(&res, BodyFraming::Chunked, true).to_vec();
        m[5] = 0;
        assert!(matches!(
            decode_response_meta(Bytes::from(m)),
            Err(HttpError::InvalidMeta("trailers without chunked framing"))
        ));
    }

    fn token() -> impl Strategy<Value = Vec<u8>> {
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}".prop_map(String::into_bytes)
    }

    fn value() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![Just(b' '), Just(b'\t'), 0x21u8..0x7f, 0x80u8..=0xff],
            0..30,
        )
        .prop_filter("no outer whitespace", |v| is_field_value(v))
    }

    fn headers() -> impl Strategy<Value = Headers> {
        prop::collection::vec((token(), value()), 0..20).prop_map(|v| {
            v.into_iter()
                .map(|(n, v)| (Bytes::from(n), Bytes::from(v)))
                .collect()
        })
    }

    fn framing() -> impl Strategy<Value = BodyFraming> {
        prop_oneof![
            Just(BodyFraming::Empty),
            any::<u64>().prop_map(BodyFraming::Length),
            Just(BodyFraming::Chunked),
            Just(BodyFraming::CloseDelimited),
        ]
    }

    fn ip() -> impl Strategy<Value = Option<IpAddr>> {
        prop_oneof![
            Just(None),
            any::<[u8; 4]>().prop_map(|o| Some(IpAddr::from(o))),
            any::<[u8; 16]>().prop_map(|o| Some(IpAddr::from(o))),
        ]
    }

    proptest! {
        #[test]
        fn request_round_trip(method in token(), target in "/[!-~]{0,40}", headers in headers(),
                              v11 in any::<bool>(), client_ip in ip(), body in framing(),
                              trailers in any::<bool>(),
                              host in "[a-z0-9]{1,10}(\\.[a-z0-9_-]{1,10}){0,3}") {
            let target = match crate::http::RequestRoute::of(&{
                let mut h = RequestHead::new("GET", target);
                h.headers.append("Host", "x");
                h
            }) {
                Ok(r) => r.target().clone(),
                Err(_) => Bytes::from_static(b"/"),
            };
            let head = RequestHead {
                method: Bytes::from(method),
                target,
                version: if v11 { Version::Http11 } else { Version::Http10 },
                headers,
            };
            let trailers = trailers && body == BodyFraming::Chunked;
            let extra = RequestExtra { host, client_ip, body, trailers };
            let back = decode_request_meta(encode_request_meta(&head, &extra)).unwrap();
            prop_assert_eq!(back, (head, extra));
        }

        #[test]
        fn response_round_trip(status in 100u16..1000, reason in "[ !-~]{0,20}", headers in headers(), body in framing(), trailers in any::<bool>()) {
            let head = ResponseHead { version: Version::Http11, status, reason: Bytes::from(reason), headers };
            let trailers = trailers && body == BodyFraming::Chunked;
            let back = decode_response_meta(encode_response_meta_with(&head, body, trailers)).unwrap();
            prop_assert_eq!(back, ResponseMeta::Head { head, body, trailers });
        }

        #[test]
        fn error_round_trip(code in 1u8.., message in ".{0,40}") {
            let e = ReplyError { kind: ReplyErrorKind::from_code(code), message };
            prop_assert_eq!(decode_response_meta(encode_reply_error(&e)).unwrap(), ResponseMeta::Error(e));
        }

        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_request_meta(Bytes::from(data.clone()));
            let _ = decode_response_meta(Bytes::from(data));
        }

        #[test]
        fn mutated_meta_never_panics(i in any::<prop::sample::Index>(), b in any::<u8>(), cut in any::<prop::sample::Index>()) {
            let mut h = RequestHead::new("POST", "/a");
            h.headers.append("Host", "x");
            let mut m = encode_request_meta(&h, &RequestExtra { host: "x".into(), client_ip: Some("::1".parse().unwrap()), body: BodyFraming::Length(9), trailers: false }).to_vec();
            let at = i.index(m.len());
            m[at] = b;
            m.truncate(cut.index(m.len() + 1));
            let _ = decode_request_meta(Bytes::from(m));
        }
    }
}
