//! An in-test HTTP/1.1 origin on std threads, shared by the fake-edge tests (`run_common`) and
//! the end-to-end harness (`e2e`, which includes this file by path), plus the small loopback
//! helpers both use.
//!
//! The origin keeps connections alive, reads Content-Length and chunked request bodies, counts
//! the connections it accepted and records every request head, so a test can check what reached
//! it (headers, framing) and whether the connector's pool reused a connection.
//!
//! Routes (the query is the parameter):
//! - any request with `Upgrade: websocket`: `101`, then echoes raw bytes until EOF, then
//!   half-closes;
//! - `/cl`: Content-Length `hello`; `/chunked`: chunked `abcdef`;
//! - `/echo`: the request body back with Content-Length;
//! - `/big?N`: N bytes of [`pattern`], chunked; `/sized?N`: the same with Content-Length;
//! - `/slow?MS`: sleeps MS milliseconds, then answers `slow`;
//! - `/hop`: `hop` with hop-by-hop response fields (`Connection: X-Origin-Private`,
//!   `X-Origin-Private`, `Keep-Alive`, `Proxy-Connection`, `Trailer`, `Upgrade`) and one
//!   end-to-end field, `X-Origin-Kept: yes`;
//! - `/bighead?N`: `big` with an `X-Big` field that makes the response head exactly N bytes
//!   (status line and final empty line included);
//! - `/trailers`: chunked `abc` followed by trailer fields;
//! - `/eof`: `until close` with neither Content-Length nor chunked, then closes;
//! - `/nocontent`: `204`; `/notmodified`: `304` with `Content-Length: 1234` and no body;
//! - `/close`: answers with `Connection: close`, then closes;
//! - `/bye`: answers, then closes without saying so (an idle close as the pool sees it);
//! - anything else (`/head` for instance): the request head as the body.
//!
//! `HEAD` gets the head the `GET` would get, without the body.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the test origin saw.
#[derive(Default)]
pub struct OriginLog {
    /// TCP connections accepted.
    pub connections: AtomicUsize,
    /// Every request head, as received.
    pub heads: Mutex<Vec<String>>,
}

/// A running [`origin`] (its threads end with the test process).
pub struct TestOrigin {
    /// The listening address.
    pub addr: SocketAddr,
    /// What it saw.
    pub log: Arc<OriginLog>,
}

impl TestOrigin {
    /// Binds `127.0.0.1:0` and starts serving.
    pub fn start() -> TestOrigin {
        let (addr, log) = origin();
        TestOrigin { addr, log }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.log.connections.load(Ordering::SeqCst)
    }

    /// The last request head whose request line contains `needle` (lowercased).
    pub fn head_of(&self, needle: &str) -> Option<String> {
        self.log
            .heads
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|h| h.lines().next().is_some_and(|l| l.contains(needle)))
            .map(|h| h.to_ascii_lowercase())
    }
}

/// Starts the origin on `127.0.0.1:0`; see the module doc for its routes.
pub fn origin() -> (SocketAddr, Arc<OriginLog>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let log = Arc::new(OriginLog::default());
    let log2 = log.clone();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            log2.connections.fetch_add(1, Ordering::SeqCst);
            let log = log2.clone();
            std::thread::spawn(move || {
                let _ = serve_origin(c, &log);
            });
        }
    });
    (addr, log)
}

/// A response body: bytes, or `n` bytes of [`pattern`] written chunked as they are made.
enum Body {
    Bytes(Vec<u8>),
    Pattern(usize),
}

/// One response: the head (status line and fields, without the final empty line) and body.
struct Reply {
    head: String,
    body: Body,
}

impl Reply {
    fn fixed(extra_fields: &str, body: Vec<u8>) -> Reply {
        Reply {
            head: format!(
                "HTTP/1.1 200 OK\r\n{extra_fields}Content-Length: {}\r\n",
                body.len()
            ),
            body: Body::Bytes(body),
        }
    }
}

fn serve_origin(c: TcpStream, log: &OriginLog) -> std::io::Result<()> {
    let mut r = BufReader::new(c.try_clone()?);
    let mut w = c;
    loop {
        let Some(head) = read_head(&mut r)? else {
            return Ok(());
        };
        log.heads.lock().unwrap().push(head.clone());
        let lower = head.to_ascii_lowercase();
        let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let body = read_body(&mut r, &lower)?;
        if lower.contains("\r\nupgrade: websocket") {
            w.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            )?;
            w.flush()?;
            std::io::copy(&mut r, &mut w)?;
            w.shutdown(std::net::Shutdown::Write)?;
            return Ok(());
        }
        let (path, query) = target.split_once('?').unwrap_or((&target, ""));
        let number = query.parse::<usize>().unwrap_or(0);
        let reply = match path {
            "/cl" => Reply::fixed("", b"hello".to_vec()),
            "/chunked" => Reply {
                head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n".to_owned(),
                body: Body::Bytes(b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n".to_vec()),
            },
            "/echo" => Reply::fixed("", body),
            "/big" => Reply {
                head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n".to_owned(),
                body: Body::Pattern(number),
            },
            "/sized" => Reply::fixed("", (0..number).map(pattern).collect()),
            "/slow" => {
                std::thread::sleep(Duration::from_millis(number as u64));
                Reply::fixed("", b"slow".to_vec())
            }
            "/hop" => Reply::fixed(
                "Connection: X-Origin-Private\r\nX-Origin-Private: 1\r\n\
                 Keep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\n\
                 Trailer: X-Checksum\r\nUpgrade: h2c\r\nX-Origin-Kept: yes\r\n",
                b"hop".to_vec(),
            ),
            "/bighead" => {
                let bare = "HTTP/1.1 200 OK\r\nX-Big: \r\nContent-Length: 3\r\n\r\n".len();
                let pad = "x".repeat(number.saturating_sub(bare));
                Reply {
                    head: format!("HTTP/1.1 200 OK\r\nX-Big: {pad}\r\nContent-Length: 3\r\n"),
                    body: Body::Bytes(b"big".to_vec()),
                }
            }
            "/trailers" => Reply {
                head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n"
                    .to_owned(),
                body: Body::Bytes(b"3\r\nabc\r\n0\r\nX-Sum: 6\r\n\r\n".to_vec()),
            },
            "/eof" => {
                w.write_all(b"HTTP/1.1 200 OK\r\n\r\nuntil close")?;
                w.flush()?;
                w.shutdown(std::net::Shutdown::Both)?;
                return Ok(());
            }
            "/nocontent" => Reply {
                head: "HTTP/1.1 204 No Content\r\n".to_owned(),
                body: Body::Bytes(Vec::new()),
            },
            "/notmodified" => Reply {
                head: "HTTP/1.1 304 Not Modified\r\nETag: \"v1\"\r\nContent-Length: 1234\r\n"
                    .to_owned(),
                body: Body::Bytes(Vec::new()),
            },
            "/close" => {
                w.write_all(
                    b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 5\r\n\r\nclose",
                )?;
                w.flush()?;
                w.shutdown(std::net::Shutdown::Both)?;
                return Ok(());
            }
            "/bye" => {
                // Keep-alive by the headers, but the origin closes right after (an idle close).
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye")?;
                w.flush()?;
                w.shutdown(std::net::Shutdown::Both)?;
                return Ok(());
            }
            _ => Reply::fixed("Content-Type: text/plain\r\n", head.clone().into_bytes()),
        };
        write_reply(&mut w, reply, head.starts_with("HEAD "))?;
    }
}

/// Reads a request head up to its empty line; `None` at a clean EOF before it.
fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(None);
        }
        head.push_str(&line);
        if line == "\r\n" {
            return Ok(Some(head));
        }
    }
}

/// Reads the request body the (lowercased) head announces: Content-Length or chunked.
fn read_body(r: &mut impl BufRead, lower: &str) -> std::io::Result<Vec<u8>> {
    let mut body = Vec::new();
    if let Some(n) = lower
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
    {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else if lower.contains("\r\ntransfer-encoding: chunked") {
        loop {
            let mut size = String::new();
            r.read_line(&mut size)?;
            let n = usize::from_str_radix(size.trim(), 16)
                .map_err(|_| std::io::Error::other(format!("bad chunk size {size:?}")))?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    Ok(body)
}

fn write_reply(w: &mut TcpStream, reply: Reply, head_only: bool) -> std::io::Result<()> {
    w.write_all(reply.head.as_bytes())?;
    w.write_all(b"\r\n")?;
    if !head_only {
        match reply.body {
            Body::Bytes(b) => w.write_all(&b)?,
            Body::Pattern(n) => {
                let mut done = 0;
                while done < n {
                    let k = (n - done).min(10_000);
                    let piece: Vec<u8> = (done..done + k).map(pattern).collect();
                    write!(w, "{k:x}\r\n")?;
                    w.write_all(&piece)?;
                    w.write_all(b"\r\n")?;
                    done += k;
                }
                w.write_all(b"0\r\n\r\n")?;
            }
        }
    }
    w.flush()
}

/// The byte at position `i` of test bodies.
pub fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// A TCP echo server on `127.0.0.1:0` (half-closes after the peer's EOF).
pub fn echo_server() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut c) = c else { return };
            std::thread::spawn(move || {
                let mut r = c.try_clone().unwrap();
                let _ = std::io::copy(&mut r, &mut c);
                let _ = c.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    addr
}

/// A loopback address with nothing listening (it was free a moment ago): a refused origin, or
/// a port for a listener the test asks for.
pub fn closed_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}
