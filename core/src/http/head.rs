//! Request and response heads: parsing with `httparse` (zero-copy: every field is a slice of
//! the received buffer) and serializing back to HTTP/1.1 bytes.

use std::mem::MaybeUninit;
use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::error::{Fault, HttpError};
use super::headers::{Header, Headers};
use super::response::reason_phrase;

/// The most header fields a head may have, whatever [`HeadLimits::max_headers`] says: the
/// parser's field slots live on the stack.
pub const MAX_HEADERS_CAP: usize = 256;

/// Request heads with at most this many fields are parsed without a temporary allocation.
const SMALL_HEAD_FIELDS: usize = 24;

/// Limits on a head being parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadLimits {
    /// The largest head in bytes, start line and final empty line included (default 64 KiB).
    pub max_head_bytes: usize,
    /// The most header fields (default 100, at most [`MAX_HEADERS_CAP`]).
    pub max_headers: usize,
}

impl Default for HeadLimits {
    fn default() -> HeadLimits {
        HeadLimits {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
        }
    }
}

/// The HTTP version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// HTTP/1.0.
    Http10,
    /// HTTP/1.1.
    Http11,
}

impl Version {
    /// `HTTP/1.0` or `HTTP/1.1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Version::Http10 => "HTTP/1.0",
            Version::Http11 => "HTTP/1.1",
        }
    }
}

/// A request head: request line and header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, e.g. `GET` (case-sensitive, as sent).
    pub method: Bytes,
    /// The request target, e.g. `/path?q` (as sent).
    pub target: Bytes,
    /// The version.
    pub version: Version,
    /// The header fields in order.
    pub headers: Headers,
}

impl RequestHead {
    /// A head with no header fields.
    pub fn new(method: impl Into<Bytes>, target: impl Into<Bytes>) -> RequestHead {
        RequestHead {
            method: method.into(),
            target: target.into(),
            version: Version::Http11,
            headers: Headers::new(),
        }
    }

    /// Whether the method is `HEAD`.
    pub fn is_head(&self) -> bool {
        &self.method[..] == b"HEAD"
    }

    /// The `Host` header's value, if any.
    pub fn host(&self) -> Option<&Bytes> {
        self.headers.get("host")
    }

    /// The host name of the `Host` header without its port (`[::1]:80` gives `[::1]`), for
    /// routing. Compare it ASCII case-insensitively.
    pub fn host_name(&self) -> Option<&[u8]> {
        let host = &self.host()?[..];
        let end = match host.iter().rposition(|&b| b == b':') {
            // A colon inside brackets belongs to an IPv6 literal, not to a port.
            Some(i) if !host[i..].contains(&b']') => i,
            _ => host.len(),
        };
        Some(&host[..end])
    }

    /// The number of bytes [`RequestHead::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        self.method.len() + self.target.len() + 12 + self.headers.encoded_len() + 2
    }

    /// Appends the head in HTTP/1.x syntax, final empty line included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.extend_from_slice(&self.method);
        out.push(b' ');
        out.extend_from_slice(&self.target);
        out.push(b' ');
        out.extend_from_slice(self.version.as_str().as_bytes());
        out.extend_from_slice(b"\r\n");
        self.headers.encode(out);
        out.extend_from_slice(b"\r\n");
    }

    /// The head in HTTP/1.x syntax as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        Bytes::from(v)
    }
}

/// A response head: status line and header fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseHead {
    /// The version.
    pub version: Version,
    /// The status code (100..=999).
    pub status: u16,
    /// The reason phrase as sent (may be empty).
    pub reason: Bytes,
    /// The header fields in order.
    pub headers: Headers,
}

impl ResponseHead {
    /// An HTTP/1.1 head with the status's usual reason phrase and no header fields.
    pub fn new(status: u16) -> ResponseHead {
        ResponseHead {
            version: Version::Http11,
            status,
            reason: Bytes::from_static(reason_phrase(status).as_bytes()),
            headers: Headers::new(),
        }
    }

    /// Whether the status is informational (1xx).
    pub fn is_informational(&self) -> bool {
        (100..200).contains(&self.status)
    }

    /// The number of bytes [`ResponseHead::encode`] writes.
    pub fn encoded_len(&self) -> usize {
        self.reason.len() + 15 + self.headers.encoded_len() + 2
    }

    /// Appends the head in HTTP/1.x syntax, final empty line included.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.reserve(self.encoded_len());
        out.extend_from_slice(self.version.as_str().as_bytes());
        out.push(b' ');
        let s = self.status.min(999);
        out.extend_from_slice(&[
            b'0' + (s / 100) as u8,
            b'0' + (s / 10 % 10) as u8,
            b'0' + (s % 10) as u8,
        ]);
        out.push(b' ');
        out.extend_from_slice(&self.reason);
        out.extend_from_slice(b"\r\n");
        self.headers.encode(out);
        out.extend_from_slice(b"\r\n");
    }

    /// The head in HTTP/1.x syntax as one buffer.
    pub fn to_bytes(&self) -> Bytes {
        let mut v = Vec::with_capacity(self.encoded_len());
        self.encode(&mut v);
        Bytes::from(v)
    }
}

/// Parses a request head from the front of `buf`.
///
/// Returns `Ok(None)` when the head is not complete yet (read more and call again). On success
/// the head's bytes are split off `buf`, which keeps what follows (the start of the body or the
/// next request). Errors are [`Fault::Client`]: [`HttpError::HeadTooLarge`] and
/// [`HttpError::TooManyHeaders`] (431), [`HttpError::MalformedHead`] (400), including an
/// HTTP/1.1 request without exactly one `Host`.
pub fn parse_request(
    buf: &mut BytesMut,
    limits: &HeadLimits,
) -> Result<Option<RequestHead>, HttpError> {
    let from = Fault::Client;
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    // Uninitialised slots: the parser writes only the fields it finds, so a small head does not
    // pay for clearing all [`MAX_HEADERS_CAP`] of them.
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS_CAP];
    let max_headers = limits.max_headers.min(MAX_HEADERS_CAP);
    let mut req = httparse::Request::new(&mut []);
    let len = match req.parse_with_uninit_headers(window, &mut slots[..max_headers]) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return partial(buf.len(), limits, from),
        Err(e) => return Err(parse_error(e, limits, from)),
    };
    let base = window.as_ptr() as usize;
    let method = req.method.map(|m| range(base, m.as_bytes()));
    let target = req.path.map(|p| range(base, p.as_bytes()));
    let version = version(req.version, from)?;
    let (Some(method), Some(target)) = (method, target) else {
        return Err(HttpError::MalformedHead {
            from,
            reason: "incomplete request line",
        });
    };
    let hosts = req
        .headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("host"))
        .count();
    if version == Version::Http11 && hosts != 1 {
        return Err(HttpError::MalformedHead {
            from,
            reason: "an HTTP/1.1 request needs exactly one Host header",
        });
    }
    // The fields' places are taken before the head's bytes are split off (which ends the
    // parser's borrow of `buf`): on the stack for a usual head, else in a vector.
    let n = req.headers.len();
    let place = |h: &httparse::Header<'_>| {
        let (name, value) = (range(base, h.name.as_bytes()), range(base, h.value));
        [name.start, name.end, value.start, value.end]
    };
    let mut small = [[0usize; 4]; SMALL_HEAD_FIELDS];
    let large: Vec<[usize; 4]>;
    let places: &[[usize; 4]] = if n <= SMALL_HEAD_FIELDS {
        for (slot, h) in small.iter_mut().zip(req.headers.iter()) {
            *slot = place(h);
        }
        &small[..n]
    } else {
        large = req.headers.iter().map(place).collect();
        &large
    };
    let head = buf.split_to(len).freeze();
    let mut headers = Headers::with_capacity(n);
    for &[ns, ne, vs, ve] in places {
        headers.append(head.slice(ns..ne), head.slice(vs..ve));
    }
    Ok(Some(RequestHead {
        method: head.slice(method),
        target: head.slice(target),
        version,
        headers,
    }))
}

/// Parses a response head from the front of `buf`; like [`parse_request`], but errors are
/// [`Fault::Origin`] (and so map to 502).
pub fn parse_response(
    buf: &mut BytesMut,
    limits: &HeadLimits,
) -> Result<Option<ResponseHead>, HttpError> {
    let from = Fault::Origin;
    let window = &buf[..buf.len().min(limits.max_head_bytes)];
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS_CAP];
    let max_headers = limits.max_headers.min(MAX_HEADERS_CAP);
    let mut res = httparse::Response::new(&mut slots[..max_headers]);
    let len = match res.parse(window) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return partial(buf.len(), limits, from),
        Err(e) => return Err(parse_error(e, limits, from)),
    };
    let base = window.as_ptr() as usize;
    let version = version(res.version, from)?;
    let Some(status) = res.code else {
        return Err(HttpError::MalformedHead {
            from,
            reason: "incomplete status line",
        });
    };
    let reason = res.reason.map(|r| range(base, r.as_bytes()));
    let fields = field_ranges(base, res.headers);
    let head = buf.split_to(len).freeze();
    Ok(Some(ResponseHead {
        version,
        status,
        reason: reason.map(|r| head.slice(r)).unwrap_or_default(),
        headers: build_headers(&head, fields),
    }))
}

fn partial<T>(have: usize, limits: &HeadLimits, from: Fault) -> Result<Option<T>, HttpError> {
    if have >= limits.max_head_bytes {
        Err(HttpError::HeadTooLarge {
            from,
            limit: limits.max_head_bytes,
        })
    } else {
        Ok(None)
    }
}

fn parse_error(e: httparse::Error, limits: &HeadLimits, from: Fault) -> HttpError {
    let reason = match e {
        httparse::Error::TooManyHeaders => {
            return HttpError::TooManyHeaders {
                from,
                limit: limits.max_headers.min(MAX_HEADERS_CAP),
            };
        }
        httparse::Error::HeaderName => "invalid header name",
        httparse::Error::HeaderValue => "invalid header value",
        httparse::Error::NewLine => "invalid line ending",
        httparse::Error::Status => "invalid status code",
        httparse::Error::Token => "invalid token in the start line",
        httparse::Error::Version => "invalid or unsupported HTTP version",
    };
    HttpError::MalformedHead { from, reason }
}

fn version(v: Option<u8>, from: Fault) -> Result<Version, HttpError> {
    match v {
        Some(0) => Ok(Version::Http10),
        Some(1) => Ok(Version::Http11),
        _ => Err(HttpError::MalformedHead {
            from,
            reason: "invalid or unsupported HTTP version",
        }),
    }
}

/// Where `part` sits in the buffer that starts at address `base`.
fn range(base: usize, part: &[u8]) -> Range<usize> {
    let start = (part.as_ptr() as usize).saturating_sub(base);
    start..start + part.len()
}

fn field_ranges(base: usize, fields: &[httparse::Header<'_>]) -> Vec<(Range<usize>, Range<usize>)> {
    fields
        .iter()
        .map(|h| (range(base, h.name.as_bytes()), range(base, h.value)))
        .collect()
}

fn build_headers(head: &Bytes, fields: Vec<(Range<usize>, Range<usize>)>) -> Headers {
    fields
        .into_iter()
        .map(|(n, v)| Header {
            name: head.slice(n),
            value: head.slice(v),
        })
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::Classify;
    use crate::http::status_of;
    use proptest::prelude::*;

    fn buf(s: &[u8]) -> BytesMut {
        BytesMut::from(s)
    }

    #[test]
    fn parses_a_request_and_keeps_the_rest() {
        let mut b =
            buf(b"POST /a?b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nX-Y:  z \r\n\r\nabc");
        let h = parse_request(&mut b, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(&h.method[..], b"POST");
        assert_eq!(&h.target[..], b"/a?b");
        assert_eq!(h.version, Version::Http11);
        assert_eq!(h.headers.len(), 3);
        assert_eq!(h.headers.get("x-y").map(|v| &v[..]), Some(&b"z"[..]));
        assert_eq!(&b[..], b"abc");
    }

    #[test]
    fn leading_empty_lines_and_host_names() {
        let mut b = buf(b"\r\nGET / HTTP/1.1\r\nHost: App.Example:8080\r\n\r\n");
        let h = parse_request(&mut b, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(h.host_name(), Some(&b"App.Example"[..]));
        assert!(b.is_empty());
        for (host, name) in [
            ("a", "a"),
            ("[::1]:80", "[::1]"),
            ("[::1]", "[::1]"),
            ("a:", "a"),
        ] {
            let mut h = RequestHead::new("GET", "/");
            h.headers.append("Host", host);
            assert_eq!(h.host_name(), Some(name.as_bytes()));
        }
        assert_eq!(RequestHead::new("GET", "/").host_name(), None);
    }

    #[test]
    fn partial_heads_need_more() {
        let full = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        for cut in 0..full.len() {
            let mut b = buf(&full[..cut]);
            assert!(
                parse_request(&mut b, &HeadLimits::default())
                    .unwrap()
                    .is_none()
            );
            assert_eq!(b.len(), cut);
        }
    }

    #[test]
    fn oversized_heads_get_431() {
        let limits = HeadLimits {
            max_head_bytes: 64,
            max_headers: 100,
        };
        // Incomplete and already over the limit.
        let mut b2 = buf(b"GET / HTTP/1.1\r\nHost: x\r\nX: ");
        b2.extend_from_slice(&[b'a'; 100]);
        let e = parse_request(&mut b2, &limits).unwrap_err();
        assert!(matches!(e, HttpError::HeadTooLarge { limit: 64, .. }));
        assert_eq!(status_of(&e), 431);
        // Complete, but longer than the limit.
        b2.extend_from_slice(b"\r\n\r\n");
        assert_eq!(
            status_of(&parse_request(&mut b2, &limits).unwrap_err()),
            431
        );
        // The default limit is 64 KiB.
        let mut big = buf(b"GET / HTTP/1.1\r\nHost: x\r\nX: ");
        big.extend_from_slice(&vec![b'a'; 64 * 1024]);
        assert_eq!(
            status_of(&parse_request(&mut big, &HeadLimits::default()).unwrap_err()),
            431
        );
    }

    #[test]
    fn too_many_headers_get_431() {
        let limits = HeadLimits {
            max_head_bytes: 64 * 1024,
            max_headers: 3,
        };
        let mut b = buf(b"GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n");
        let e = parse_request(&mut b, &limits).unwrap_err();
        assert!(matches!(e, HttpError::TooManyHeaders { limit: 3, .. }));
        assert_eq!(status_of(&e), 431);
    }

    #[test]
    fn malformed_heads_get_400() {
        for bad in [
            &b"GET / HTTP/1.1\r\nHost: x\r\nBad Name: v\r\n\r\n"[..],
            b"GET / HTTP/2.0\r\nHost: x\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: x\r\nA: b\0c\r\n\r\n",
            b"G@T / HTTP/1.1\r\nHost: x\r\n\r\n",
        ] {
            let e = parse_request(&mut buf(bad), &HeadLimits::default()).unwrap_err();
            assert_eq!(
                status_of(&e),
                400,
                "{e} for {:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // HTTP/1.0 does not need Host.
        assert!(
            parse_request(&mut buf(b"GET / HTTP/1.0\r\n\r\n"), &HeadLimits::default())
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn parses_a_response() {
        let mut b = buf(b"HTTP/1.0 404 Not Found\r\nA: b\r\n\r\nbody");
        let h = parse_response(&mut b, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(h.status, 404);
        assert_eq!(&h.reason[..], b"Not Found");
        assert_eq!(h.version, Version::Http10);
        assert_eq!(&b[..], b"body");
        let e =
            parse_response(&mut buf(b"HTTP/1.1 abc\r\n\r\n"), &HeadLimits::default()).unwrap_err();
        assert_eq!(e.fault(), Fault::Origin);
        assert_eq!(status_of(&e), 502);
    }

    #[test]
    fn serializes() {
        let mut h = RequestHead::new("GET", "/x");
        h.headers.append("Host", "h");
        assert_eq!(&h.to_bytes()[..], b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(h.to_bytes().len(), h.encoded_len());
        let mut r = ResponseHead::new(204);
        r.headers.append("A", "b");
        assert_eq!(
            &r.to_bytes()[..],
            b"HTTP/1.1 204 No Content\r\nA: b\r\n\r\n"
        );
        assert_eq!(r.to_bytes().len(), r.encoded_len());
    }

    fn token() -> impl Strategy<Value = String> {
        "[A-Za-z0-9!#$%&'*+.^_`|~-]{1,12}"
    }

    fn value() -> impl Strategy<Value = String> {
        "([!-~]([ !-~]{0,20}[!-~])?)?"
    }

    fn headers() -> impl Strategy<Value = Vec<(String, String)>> {
        prop::collection::vec((token(), value()), 0..20)
    }

    proptest! {
        #[test]
        fn request_round_trip(method in token(), target in "/[!-~]{0,30}", hs in headers(), v10 in any::<bool>()) {
            let mut h = RequestHead::new(method, target);
            h.version = if v10 { Version::Http10 } else { Version::Http11 };
            h.headers.append("Host", "example.com");
            for (n, v) in hs {
                if !n.eq_ignore_ascii_case("host") {
                    h.headers.append(n, v);
                }
            }
            let mut b = BytesMut::from(&h.to_bytes()[..]);
            b.extend_from_slice(b"tail");
            let back = parse_request(&mut b, &HeadLimits::default()).unwrap().unwrap();
            prop_assert_eq!(back, h);
            prop_assert_eq!(&b[..], b"tail");
        }

        #[test]
        fn response_round_trip(status in 100u16..1000, reason in value(), hs in headers()) {
            let mut h = ResponseHead::new(status);
            h.reason = Bytes::from(reason);
            for (n, v) in hs {
                h.headers.append(n, v);
            }
            let mut b = BytesMut::from(&h.to_bytes()[..]);
            let back = parse_response(&mut b, &HeadLimits::default()).unwrap().unwrap();
            prop_assert_eq!(back, h);
            prop_assert!(b.is_empty());
        }

        #[test]
        fn garbage_never_panics(data in prop::collection::vec(any::<u8>(), 0..300)) {
            let _ = parse_request(&mut BytesMut::from(&data[..]), &HeadLimits::default());
            let _ = parse_response(&mut BytesMut::from(&data[..]), &HeadLimits::default());
        }
    }
}
