//! The tests' one HTTP/1.1 client: [`Client`] reads responses one at a time off any byte stream by
//! their framing, and everything else here is built on it ([`parse_response`] reads a response
//! already received in full, [`http_get`] is one `Connection: close` request).
//!
//! Responses are read by their framing (Content-Length, chunked, none for HEAD, 1xx, 204 and 304,
//! else until close), so a stray byte between two responses on a keep-alive connection shows up as
//! a bad next response rather than being skipped.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a read of [`Client::connect`] or [`send_raw`] waits for the peer. Generous: the
/// machine is shared and debug builds are slow; no test asserts on how long anything took.
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// The headers, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (chunked bodies decoded).
    pub body: Vec<u8>,
}

impl Response {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// Whether the server said `Connection: close`.
    pub fn closes(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"))
    }
}

/// A keep-alive HTTP/1.1 client on one connection (`S` is a [`TcpStream`] unless a test reads
/// from something else): requests go out as given and responses are read one at a time.
pub struct Client<S = TcpStream> {
    /// The connection.
    pub stream: S,
    buf: Vec<u8>,
}

impl Client<TcpStream> {
    /// Connects to `addr` (reads time out after [`READ_TIMEOUT`]); panics when it cannot.
    pub fn connect(addr: SocketAddr) -> Client {
        Client::try_connect(addr).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Client::connect`] that returns the error.
    pub fn try_connect(addr: SocketAddr) -> Result<Client, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
        stream
            .set_read_timeout(Some(READ_TIMEOUT))
            .map_err(|e| format!("read timeout: {e}"))?;
        Ok(Client::over(stream))
    }

    /// Shuts the write half down (the server sees end of file).
    pub fn half_close(&mut self) {
        self.stream
            .shutdown(std::net::Shutdown::Write)
            .unwrap_or_else(|e| panic!("half-close: {e}"));
    }

    /// `GET PATH` with `Host: HOST` on this connection, and its response.
    pub fn get(&mut self, host: &str, path: &str) -> Response {
        self.request(format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
    }
}

impl<S: Read> Client<S> {
    /// A client reading from `stream` (already connected, or a byte slice).
    pub fn over(stream: S) -> Client<S> {
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads the next response; `to_head`: it answers a HEAD request (no body). Panics on a read
    /// error or a malformed response.
    pub fn response(&mut self, to_head: bool) -> Response {
        self.try_response(to_head).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`Client::response`] that returns what went wrong.
    pub fn try_response(&mut self, to_head: bool) -> Result<Response, String> {
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            if self.fill()? == 0 {
                return Err(format!(
                    "the connection closed before a response head; got {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            }
        };
        let head: Vec<u8> = self.buf.drain(..end + 4).collect();
        let text = String::from_utf8_lossy(&head[..end]).into_owned();
        let (status, headers) = parse_head(&text).map_err(|e| format!("{e}: {text:?}"))?;
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        response.body = if to_head || (100..200).contains(&status) || status == 204 || status == 304
        {
            Vec::new()
        } else if response
            .header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
        {
            self.chunked_body()?
        } else if let Some(len) = response.header("content-length") {
            let len = len
                .parse()
                .map_err(|_| format!("bad Content-Length in {text:?}"))?;
            self.take(len)?
        } else {
            while self.fill()? > 0 {}
            std::mem::take(&mut self.buf)
        };
        Ok(response)
    }

    /// Whether the server has closed the connection (a read returns end of file; any byte or a
    /// read timeout means it has not).
    pub fn closed_by_peer(&mut self) -> bool {
        self.buf.is_empty() && matches!(self.stream.read(&mut [0u8; 1]), Ok(0))
    }

    /// The next `n` bytes as they are (after an upgrade, say).
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        self.take(n).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Every byte until the server closes.
    pub fn read_to_end(&mut self) -> Vec<u8> {
        while self.fill().unwrap_or_else(|e| panic!("{e}")) > 0 {}
        std::mem::take(&mut self.buf)
    }

    fn fill(&mut self) -> Result<usize, String> {
        let mut chunk = [0u8; 64 * 1024];
        let n = self
            .stream
            .read(&mut chunk)
            .map_err(|e| format!("reading a response: {e}"))?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    fn take(&mut self, n: usize) -> Result<Vec<u8>, String> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(format!(
                    "the connection closed {} bytes short",
                    n - self.buf.len()
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    fn line(&mut self) -> Result<String, String> {
        loop {
            if let Some(eol) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..eol + 2).collect();
                return Ok(String::from_utf8_lossy(&line[..eol]).into_owned());
            }
            if self.fill()? == 0 {
                return Err("the connection closed inside a chunked body".to_owned());
            }
        }
    }

    fn chunked_body(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line = self.line()?;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| format!("bad chunk size line {line:?}"))?;
            if size == 0 {
                // Trailer fields, then the empty line.
                while !self.line()?.is_empty() {}
                return Ok(body);
            }
            body.extend(self.take(size)?);
            if self.take(2)? != b"\r\n" {
                return Err("chunk data not followed by CRLF".to_owned());
            }
        }
    }
}

impl<S: Read + Write> Client<S> {
    /// Writes `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("sending {} bytes: {e}", bytes.len()));
    }

    /// Sends `request` (head and body) and reads one response to it (not for HEAD).
    pub fn request(&mut self, request: &[u8]) -> Response {
        self.send(request);
        self.response(false)
    }

    /// Reads one response to a request with method `method` (no body for `HEAD`).
    pub fn read(&mut self, method: &str) -> Response {
        self.response(method.eq_ignore_ascii_case("HEAD"))
    }
}

/// The status and fields (names lowercased) of a response head without its final empty line.
fn parse_head(head: &str) -> Result<(u16, Vec<(String, String)>), String> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty head")?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Ok((status, headers))
}

/// Parses one complete response (head, then a Content-Length, chunked or until-close body).
pub fn parse_response(raw: &[u8]) -> Result<Response, String> {
    Client::over(raw).try_response(false)
}

/// Connects to `addr`, writes `request` as is, half-closes nothing, and reads until the peer
/// closes (send `Connection: close`) or 30 s of silence.
pub fn send_raw(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("read timeout: {e}"));
    s.write_all(request)
        .unwrap_or_else(|e| panic!("sending to {addr}: {e}"));
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// `GET PATH` with `Host: HOST` and `Connection: close`, parsed.
pub fn http_get(addr: SocketAddr, host: &str, path: &str) -> Response {
    http_get_with(addr, host, path, &[])
}

/// [`http_get`] with extra headers.
pub fn http_get_with(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Response {
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let raw = send_raw(addr, req.as_bytes());
    parse_response(&raw).unwrap_or_else(|e| {
        panic!(
            "bad response from {addr}: {e}\n{}",
            String::from_utf8_lossy(&raw)
        )
    })
}

/// Reads a response head byte by byte (so no bytes after it, upgraded ones say, are consumed).
pub fn read_head(s: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte)
            .unwrap_or_else(|e| panic!("reading a response head: {e}; got {head:?}"));
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_read_by_their_framing() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi\
                    HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n\
                    HTTP/1.1 204 No Content\r\n\r\n\
                    HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close";
        let mut c = Client::over(&raw[..]);
        assert_eq!(c.response(false).text(), "hi");
        assert_eq!(c.response(false).text(), "abc");
        assert_eq!(c.response(false).status, 204);
        let last = c.response(false);
        assert!(last.closes());
        assert_eq!(last.text(), "until close");
        assert!(c.try_response(false).is_err());
    }

    /// The harness's own response parser: a unit test here, so it runs once.
    #[test]
    fn harness_parses_length_chunked_and_close_delimited_responses() {
        let r =
            parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: b\r\n\r\nhi").unwrap();
        assert_eq!(
            (r.status, r.text().as_str(), r.header("x-a")),
            (200, "hi", Some("b"))
        );
        let r = parse_response(
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1\r\nd\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!((r.status, r.text().as_str()), (404, "abcd"));
        let r = parse_response(b"HTTP/1.1 502 Bad Gateway\r\n\r\nbye").unwrap();
        assert_eq!((r.status, r.text().as_str()), (502, "bye"));
    }
}
