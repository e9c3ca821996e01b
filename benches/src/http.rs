//! HTTP/1.1 for the load generator and the test origin: target URLs, request building, and an
//! incremental response parser with Content-Length, chunked and read-until-close bodies.
//!
//! Heads are parsed by `httparse`; bodies are framed here. The parser never buffers a body: it
//! reports how many bytes of the input it consumed, so the caller can discard them and keep its
//! read buffer small. Anything malformed is a [`LoadError::Http`], which the generator counts as
//! an error and answers by closing the connection; nothing here panics on peer input.

use std::net::{SocketAddr, ToSocketAddrs};

use crate::LoadError;

/// Largest response or request head accepted, in bytes.
pub const MAX_HEAD: usize = 64 * 1024;
/// Most headers accepted in one head.
pub const MAX_HEADERS: usize = 64;
/// Longest chunk-size line (with extensions) accepted.
const MAX_CHUNK_LINE: usize = 1024;

/// A parsed `http://host:port/path` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `host[:port]` as written in the URL (the default `Host` header).
    pub authority: String,
    /// The path and query, at least `/`.
    pub path: String,
    /// The resolved socket address.
    pub addr: SocketAddr,
}

impl Target {
    /// Parses and resolves an `http://` URL. `https` is refused: ringtun-load measures
    /// plaintext hops.
    pub fn parse(url: &str) -> Result<Self, LoadError> {
        let bad = |reason| LoadError::BadTarget {
            target: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// URLs are supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(bad("missing host"));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_owned()
        } else {
            format!("{authority}:80")
        };
        let addr = resolve(&with_port).ok_or_else(|| bad("cannot resolve host"))?;
        Ok(Self {
            authority: authority.to_owned(),
            path: path.to_owned(),
            addr,
        })
    }
}

/// Resolves `host:port` to its first address.
pub fn resolve(host_port: &str) -> Option<SocketAddr> {
    host_port.to_socket_addrs().ok()?.next()
}

/// What goes into each request.
#[derive(Debug, Clone, Default)]
pub struct RequestSpec {
    /// Method, e.g. `GET`.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// `Host` header value.
    pub host: String,
    /// Extra headers, each `(name, value)`.
    pub headers: Vec<(String, String)>,
    /// Request body; sent with a `Content-Length`.
    pub body: Vec<u8>,
}

impl RequestSpec {
    /// Serializes the request once; the generator sends these same bytes every time.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(128 + self.body.len());
        out.extend_from_slice(format!("{} {} HTTP/1.1\r\n", self.method, self.path).as_bytes());
        let user_has = |n: &str| self.headers.iter().any(|(h, _)| h.eq_ignore_ascii_case(n));
        if !user_has("host") {
            out.extend_from_slice(format!("Host: {}\r\n", self.host).as_bytes());
        }
        for (name, value) in &self.headers {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        if !self.body.is_empty() && !user_has("content-length") {
            out.extend_from_slice(format!("Content-Length: {}\r\n", self.body.len()).as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        out
    }

    /// Whether responses to this request carry no body whatever their headers say.
    pub fn is_head(&self) -> bool {
        self.method.eq_ignore_ascii_case("HEAD")
    }
}

/// Parses a `Name: value` header argument.
pub fn parse_header_arg(arg: &str) -> Result<(String, String), LoadError> {
    let (name, value) = arg.split_once(':').ok_or_else(|| LoadError::BadOption {
        option: "--header",
        reason: format!("{arg:?} is not \"Name: value\""),
    })?;
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(LoadError::BadOption {
            option: "--header",
            reason: format!("bad header name in {arg:?}"),
        });
    }
    Ok((name.to_owned(), value.trim().to_owned()))
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    None,
    Length(u64),
    Chunked,
    UntilClose,
}

/// Body framing from a head's headers (RFC 9112 §6.3, simplified: no request may be
/// read-until-close).
fn framing(headers: &[httparse::Header<'_>], is_response: bool) -> Result<Framing, LoadError> {
    let mut length: Option<u64> = None;
    let mut chunked = false;
    for h in headers {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            let v = std::str::from_utf8(h.value).map_err(|_| http_err("bad transfer-encoding"))?;
            let last = v.rsplit(',').next().unwrap_or("").trim();
            if last.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if !is_response {
                return Err(http_err("unsupported transfer-encoding"));
            }
        } else if h.name.eq_ignore_ascii_case("content-length") {
            let v = std::str::from_utf8(h.value)
                .ok()
                .and_then(|s| {
                    let s = s.trim();
                    (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then_some(s)
                })
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or_else(|| http_err("bad content-length"))?;
            if length.is_some_and(|l| l != v) {
                return Err(http_err("conflicting content-length"));
            }
            length = Some(v);
        }
    }
    Ok(if chunked {
        Framing::Chunked
    } else if let Some(l) = length {
        if l == 0 {
            Framing::None
        } else {
            Framing::Length(l)
        }
    } else if is_response {
        Framing::UntilClose
    } else {
        Framing::None
    })
}

fn http_err(reason: &'static str) -> LoadError {
    LoadError::Http { reason }
}

fn has_token(headers: &[httparse::Header<'_>], name: &str, token: &str) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case(name)
            && std::str::from_utf8(h.value)
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Where the body decoder is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyState {
    /// Reading a head.
    Head,
    /// `n` more body bytes.
    Fixed(u64),
    /// Expecting a chunk-size line.
    ChunkSize,
    /// `n` more bytes of chunk data.
    ChunkData(u64),
    /// Expecting the CRLF after chunk data.
    ChunkDataEnd,
    /// Reading trailer lines until an empty one.
    Trailers,
    /// Everything until the peer closes.
    UntilClose,
}

/// The result of feeding bytes to a [`ResponseParser`] or [`RequestParser`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The message is not complete; `consumed` leading bytes were used and may be dropped.
    NeedMore {
        /// Bytes of the input used.
        consumed: usize,
    },
    /// The message is complete after `consumed` bytes of the input.
    Done {
        /// Bytes of the input used.
        consumed: usize,
    },
}

/// What a completed message looked like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MessageInfo {
    /// The final status code (responses) or 0 (requests).
    pub status: u16,
    /// The peer asked to close the connection after this message.
    pub close: bool,
    /// Body bytes seen.
    pub body_len: u64,
}

/// Shared body-decoding machinery.
#[derive(Debug, Clone)]
struct Body {
    state: BodyState,
    info: MessageInfo,
}

impl Body {
    fn new() -> Self {
        Self {
            state: BodyState::Head,
            info: MessageInfo::default(),
        }
    }

    fn start(&mut self, framing: Framing) {
        self.state = match framing {
            Framing::None => BodyState::Head,
            Framing::Length(n) => BodyState::Fixed(n),
            Framing::Chunked => BodyState::ChunkSize,
            Framing::UntilClose => BodyState::UntilClose,
        };
    }

    /// Decodes body bytes from `buf`; returns `(consumed, done)`. `on_data` sees body data.
    fn feed(
        &mut self,
        buf: &[u8],
        mut on_data: impl FnMut(&[u8]),
    ) -> Result<(usize, bool), LoadError> {
        let mut pos = 0;
        loop {
            let rest = &buf[pos..];
            match self.state {
                BodyState::Head => return Ok((pos, true)),
                BodyState::UntilClose => {
                    on_data(rest);
                    self.info.body_len += rest.len() as u64;
                    return Ok((buf.len(), false));
                }
                BodyState::Fixed(n) | BodyState::ChunkData(n) => {
                    let take = usize::try_from(n).unwrap_or(usize::MAX).min(rest.len());
                    on_data(&rest[..take]);
                    self.info.body_len += take as u64;
                    pos += take;
                    let left = n - take as u64;
                    self.state = match (self.state, left) {
                        (BodyState::Fixed(_), 0) => BodyState::Head,
                        (BodyState::Fixed(_), l) => BodyState::Fixed(l),
                        (_, 0) => BodyState::ChunkDataEnd,
                        (_, l) => BodyState::ChunkData(l),
                    };
                    if left > 0 {
                        return Ok((pos, false));
                    }
                }
                BodyState::ChunkDataEnd => {
                    if rest.len() < 2 {
                        return Ok((pos, false));
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(http_err("missing crlf after chunk data"));
                    }
                    pos += 2;
                    self.state = BodyState::ChunkSize;
                }
                BodyState::ChunkSize => {
                    let Some(end) = find_crlf(rest, MAX_CHUNK_LINE)? else {
                        return Ok((pos, false));
                    };
                    let line = &rest[..end];
                    let hex = line.split(|&b| b == b';').next().unwrap_or(&[]);
                    let size = parse_hex(trim_ascii(hex))?;
                    pos += end + 2;
                    self.state = if size == 0 {
                        BodyState::Trailers
                    } else {
                        BodyState::ChunkData(size)
                    };
                }
                BodyState::Trailers => {
                    let Some(end) = find_crlf(rest, MAX_HEAD)? else {
                        return Ok((pos, false));
                    };
                    pos += end + 2;
                    if end == 0 {
                        self.state = BodyState::Head;
                    }
                }
            }
        }
    }
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end.max(start)]
}

/// Position of the first CRLF, or `None` when not there yet; an error past `limit` bytes.
fn find_crlf(buf: &[u8], limit: usize) -> Result<Option<usize>, LoadError> {
    match buf.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i <= limit => Ok(Some(i)),
        Some(_) => Err(http_err("line too long")),
        None if buf.len() > limit => Err(http_err("line too long")),
        None => Ok(None),
    }
}

fn parse_hex(digits: &[u8]) -> Result<u64, LoadError> {
    if digits.is_empty() || digits.len() > 15 {
        return Err(http_err("bad chunk size"));
    }
    let mut v: u64 = 0;
    for &d in digits {
        let n = (d as char)
            .to_digit(16)
            .ok_or_else(|| http_err("bad chunk size"))?;
        v = v * 16 + u64::from(n);
    }
    Ok(v)
}

/// Incremental parser for one HTTP/1.1 response at a time.
///
/// Feed it the unconsumed bytes of the read buffer after every read; drop the `consumed`
/// bytes it reports. After [`Step::Done`], [`ResponseParser::info`] describes the response and
/// [`ResponseParser::reset`] prepares it for the next one.
#[derive(Debug, Clone)]
pub struct ResponseParser {
    body: Body,
    head_request: bool,
}

impl ResponseParser {
    /// A parser for responses to requests with method HEAD when `head_request` (they have no
    /// body whatever their headers say).
    pub fn new(head_request: bool) -> Self {
        Self {
            body: Body::new(),
            head_request,
        }
    }

    /// Forgets the previous response.
    pub fn reset(&mut self) {
        self.body = Body::new();
    }

    /// The status, close flag and body size of the last completed response.
    pub fn info(&self) -> MessageInfo {
        self.body.info
    }

    /// Feeds bytes. See [`Step`].
    pub fn feed(&mut self, buf: &[u8]) -> Result<Step, LoadError> {
        let mut pos = 0;
        if self.body.state == BodyState::Head {
            // Skip interim (1xx) responses until the final head.
            loop {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut headers);
                let n = match resp.parse(&buf[pos..]) {
                    Ok(httparse::Status::Complete(n)) => n,
                    Ok(httparse::Status::Partial) => {
                        if buf.len() - pos > MAX_HEAD {
                            return Err(http_err("response head too large"));
                        }
                        return Ok(Step::NeedMore { consumed: pos });
                    }
                    Err(_) => return Err(http_err("bad response head")),
                };
                let status = resp.code.unwrap_or(0);
                pos += n;
                if (100..200).contains(&status) && status != 101 {
                    continue;
                }
                let close = has_token(resp.headers, "connection", "close")
                    || resp.version == Some(0)
                        && !has_token(resp.headers, "connection", "keep-alive");
                let no_body = self.head_request || status == 204 || status == 304 || status == 101;
                let fr = if no_body {
                    Framing::None
                } else {
                    framing(resp.headers, true)?
                };
                self.body.info = MessageInfo {
                    status,
                    close: close || fr == Framing::UntilClose,
                    body_len: 0,
                };
                self.body.start(fr);
                if fr == Framing::None {
                    return Ok(Step::Done { consumed: pos });
                }
                break;
            }
        }
        let (used, done) = self.body.feed(&buf[pos..], |_| {})?;
        pos += used;
        Ok(if done {
            Step::Done { consumed: pos }
        } else {
            Step::NeedMore { consumed: pos }
        })
    }

    /// The peer closed the connection: completes a read-until-close body, else an error.
    pub fn finish_eof(&mut self) -> Result<(), LoadError> {
        if self.body.state == BodyState::UntilClose {
            self.body.state = BodyState::Head;
            Ok(())
        } else {
            Err(http_err("connection closed mid-response"))
        }
    }
}

/// Incremental parser for requests, used by the test origin. It keeps the request body when
/// asked to (for echo).
#[derive(Debug, Clone)]
pub struct RequestParser {
    body: Body,
    keep_body: bool,
    /// The body of the last request when `keep_body`.
    pub body_bytes: Vec<u8>,
}

impl RequestParser {
    /// A parser; `keep_body` collects bodies into [`RequestParser::body_bytes`].
    pub fn new(keep_body: bool) -> Self {
        Self {
            body: Body::new(),
            keep_body,
            body_bytes: Vec::new(),
        }
    }

    /// The close flag of the last completed request.
    pub fn info(&self) -> MessageInfo {
        self.body.info
    }

    /// Feeds bytes. See [`Step`]. Clears [`RequestParser::body_bytes`] at each new request.
    pub fn feed(&mut self, buf: &[u8]) -> Result<Step, LoadError> {
        let mut pos = 0;
        if self.body.state == BodyState::Head {
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut req = httparse::Request::new(&mut headers);
            let n = match req.parse(buf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) => {
                    if buf.len() > MAX_HEAD {
                        return Err(http_err("request head too large"));
                    }
                    return Ok(Step::NeedMore { consumed: 0 });
                }
                Err(_) => return Err(http_err("bad request head")),
            };
            pos = n;
            let close = has_token(req.headers, "connection", "close")
                || req.version == Some(0) && !has_token(req.headers, "connection", "keep-alive");
            self.body.info = MessageInfo {
                status: 0,
                close,
                body_len: 0,
            };
            self.body_bytes.clear();
            let fr = framing(req.headers, false)?;
            self.body.start(fr);
            if fr == Framing::None {
                return Ok(Step::Done { consumed: pos });
            }
        }
        let keep = self.keep_body;
        let sink = &mut self.body_bytes;
        let (used, done) = self.body.feed(&buf[pos..], |d| {
            if keep {
                sink.extend_from_slice(d);
            }
        })?;
        pos += used;
        Ok(if done {
            Step::Done { consumed: pos }
        } else {
            Step::NeedMore { consumed: pos }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `piece` bytes, as a socket would deliver it, and returns the
    /// completed responses' infos and any error.
    fn feed_all(input: &[u8], piece: usize) -> Result<Vec<MessageInfo>, LoadError> {
        let mut p = ResponseParser::new(false);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        for chunk in input.chunks(piece.max(1)) {
            buf.extend_from_slice(chunk);
            loop {
                match p.feed(&buf)? {
                    Step::NeedMore { consumed } => {
                        buf.drain(..consumed);
                        break;
                    }
                    Step::Done { consumed } => {
                        buf.drain(..consumed);
                        out.push(p.info());
                        p.reset();
                        if buf.is_empty() {
                            break;
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    #[test]
    fn content_length_any_split() {
        let msg = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhelloHTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n";
        for piece in 1..msg.len() {
            let r = feed_all(msg, piece).expect("valid");
            assert_eq!(r.len(), 2, "piece {piece}");
            assert_eq!((r[0].status, r[0].body_len), (200, 5));
            assert_eq!((r[1].status, r[1].body_len), (404, 0));
        }
    }

    #[test]
    fn chunked_any_split() {
        let msg = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: y\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n";
        for piece in 1..msg.len() {
            let r = feed_all(msg, piece).expect("valid");
            assert_eq!(r.len(), 2, "piece {piece}");
            assert_eq!((r[0].status, r[0].body_len), (200, 31));
            assert_eq!(r[1].status, 204);
        }
    }

    #[test]
    fn interim_and_close() {
        let msg = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok";
        let r = feed_all(msg, 7).expect("valid");
        assert_eq!(r.len(), 1);
        assert!(r[0].close);
        assert_eq!(r[0].body_len, 2);
    }

    #[test]
    fn until_close_and_head() {
        let mut p = ResponseParser::new(false);
        let msg = b"HTTP/1.1 200 OK\r\n\r\nstream";
        assert_eq!(
            p.feed(msg).ok(),
            Some(Step::NeedMore {
                consumed: msg.len()
            })
        );
        assert!(p.finish_eof().is_ok());
        let mut h = ResponseParser::new(true);
        let msg = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n";
        assert_eq!(
            h.feed(msg).ok(),
            Some(Step::Done {
                consumed: msg.len()
            })
        );
        let mut q = ResponseParser::new(false);
        let _ = q.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc");
        assert!(q.finish_eof().is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        let cases: &[&[u8]] = &[
            b"garbage\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nab\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
            b"\x00\x01\x02\xff\r\n\r\n",
        ];
        for c in cases {
            assert!(feed_all(c, 3).is_err(), "{:?}", String::from_utf8_lossy(c));
        }
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        assert!(feed_all(&huge, 4096).is_err());
    }

    #[test]
    fn request_encode_and_parse() {
        let spec = RequestSpec {
            method: "POST".into(),
            path: "/x?y=1".into(),
            host: "example.com".into(),
            headers: vec![("X-A".into(), "b".into())],
            body: b"hello".to_vec(),
        };
        let bytes = spec.encode();
        let mut p = RequestParser::new(true);
        assert_eq!(
            p.feed(&bytes).ok(),
            Some(Step::Done {
                consumed: bytes.len()
            })
        );
        assert_eq!(p.body_bytes, b"hello");
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.starts_with("POST /x?y=1 HTTP/1.1\r\nHost: example.com\r\n"));
        assert!(text.contains("Content-Length: 5\r\n"));
    }

    #[test]
    fn targets_and_headers() {
        let t = Target::parse("http://127.0.0.1:8080/a/b").expect("valid");
        assert_eq!(t.authority, "127.0.0.1:8080");
        assert_eq!(t.path, "/a/b");
        assert_eq!(t.addr.port(), 8080);
        assert_eq!(
            Target::parse("http://127.0.0.1:9").map(|t| t.path).ok(),
            Some("/".into())
        );
        assert!(Target::parse("https://127.0.0.1/").is_err());
        assert!(Target::parse("http:///x").is_err());
        assert_eq!(
            parse_header_arg("X-Y:  z ").ok(),
            Some(("X-Y".to_owned(), "z".to_owned()))
        );
        assert!(parse_header_arg("nocolon").is_err());
    }
}
