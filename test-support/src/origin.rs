//! The in-test origins on std threads, shared by the fake-edge tests ([`crate::fake_edge`]) and
//! the end-to-end harness ([`crate::e2e`]), plus the small loopback helpers both use.
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
//! - `/length-only`: like an origin that cannot read chunked bodies (WSGI, Python's
//!   `http.server`): a chunked request gets `411 Length Required`, else the body back;
//! - anything else (`/head` for instance): the request head as the body.
//!
//! `HEAD` gets the head the `GET` would get, without the body. [`TestOrigin::start_unix`]
//! serves the same on a Unix socket. [`TlsOrigin`] is a smaller HTTPS origin (TCP or Unix
//! socket) with a certificate from a CA of its own, for `caPool` and `unix+tls:`.
//! [`HeadEchoOrigin`] answers every request with its own head and echoes WebSocket bytes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A connected socket the test origins serve: TCP or Unix.
pub trait Conn: Read + Write + Send + Sized + 'static {
    /// A second handle on the same socket.
    fn try_clone_conn(&self) -> std::io::Result<Self>;
    /// `shutdown(2)`.
    fn shut(&self, how: std::net::Shutdown) -> std::io::Result<()>;
}

impl Conn for TcpStream {
    fn try_clone_conn(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn shut(&self, how: std::net::Shutdown) -> std::io::Result<()> {
        self.shutdown(how)
    }
}

impl Conn for UnixStream {
    fn try_clone_conn(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn shut(&self, how: std::net::Shutdown) -> std::io::Result<()> {
        self.shutdown(how)
    }
}

/// Serves every connection of `incoming` on a thread of its own with `serve`.
fn accept_loop<C: Conn>(
    incoming: impl Iterator<Item = std::io::Result<C>> + Send + 'static,
    serve: impl Fn(C) + Send + Sync + 'static,
) {
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for c in incoming {
            let Ok(c) = c else { return };
            let serve = serve.clone();
            std::thread::spawn(move || serve(c));
        }
    });
}

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

    /// Serves the same routes on a new Unix socket at `path` (`addr` is then a closed port).
    pub fn start_unix(path: &Path) -> TestOrigin {
        let l = UnixListener::bind(path).unwrap();
        let log = Arc::new(OriginLog::default());
        let log2 = log.clone();
        accept_loop(
            std::iter::from_fn(move || Some(l.accept().map(|(c, _)| c))),
            move |c: UnixStream| {
                log2.connections.fetch_add(1, Ordering::SeqCst);
                let _ = serve_origin(c, &log2);
            },
        );
        TestOrigin {
            addr: closed_port(),
            log,
        }
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
    accept_loop(
        std::iter::from_fn(move || Some(l.accept().map(|(c, _)| c))),
        move |c: TcpStream| {
            log2.connections.fetch_add(1, Ordering::SeqCst);
            let _ = serve_origin(c, &log2);
        },
    );
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

fn serve_origin<C: Conn>(c: C, log: &OriginLog) -> std::io::Result<()> {
    let mut r = BufReader::new(c.try_clone_conn()?);
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
            w.shut(std::net::Shutdown::Write)?;
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
            "/length-only" if lower.contains("\r\ntransfer-encoding: chunked") => Reply {
                head: "HTTP/1.1 411 Length Required\r\nContent-Length: 25\r\n".to_owned(),
                body: Body::Bytes(b"chunked bodies not read\r\n".to_vec()),
            },
            "/length-only" => Reply::fixed("", body),
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
                w.shut(std::net::Shutdown::Both)?;
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
                w.shut(std::net::Shutdown::Both)?;
                return Ok(());
            }
            "/bye" => {
                // Keep-alive by the headers, but the origin closes right after (an idle close).
                w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye")?;
                w.flush()?;
                w.shut(std::net::Shutdown::Both)?;
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

fn write_reply(w: &mut impl Write, reply: Reply, head_only: bool) -> std::io::Result<()> {
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

/// A loopback address that refuses every connection for the rest of the test process: a
/// refused origin. A TCP socket stays bound to it without listening (and is never closed), so
/// no other test's listener on port 0 can be given the port meanwhile. (A port that was merely
/// free a moment ago can be: a test once got 200 from a "refused" origin that way.)
pub fn closed_port() -> SocketAddr {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
    s.bind(&any.into()).unwrap();
    let addr = s.local_addr().unwrap().as_socket().unwrap();
    // Held until the process exits: the port must stay refused for as long as a test may use it.
    std::mem::forget(s);
    addr
}

/// A loopback port that was free a moment ago, for a listener the test asks a process to bind.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// What a [`TlsOrigin`] saw.
#[derive(Default)]
pub struct TlsLog {
    /// Connections accepted.
    pub connections: AtomicUsize,
    /// The SNI of each completed handshake (`None`: none sent).
    pub server_names: Mutex<Vec<Option<String>>>,
}

/// An HTTPS/1.1 origin with a certificate for `names`, signed by a CA of its own (`ca_pem`,
/// for `caPool`). Any request gets 200 `secure hello` (keep-alive); a WebSocket upgrade gets
/// `101`, then its bytes echoed until EOF.
pub struct TlsOrigin {
    /// The CA that signed the origin's certificate, PEM.
    pub ca_pem: String,
    /// What it saw.
    pub log: Arc<TlsLog>,
    config: Arc<rustls::ServerConfig>,
}

impl TlsOrigin {
    /// A CA and a certificate for `names` (not listening yet).
    pub fn new(names: &[&str]) -> TlsOrigin {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let cert = rcgen::CertificateParams::new(names)
            .unwrap()
            .signed_by(&key, &ca)
            .unwrap();
        let chain = vec![cert.der().clone()];
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        TlsOrigin {
            ca_pem: ca.pem(),
            log: Arc::default(),
            config: Arc::new(config),
        }
    }

    /// Serves on `127.0.0.1:0`; returns the address.
    pub fn listen_tcp(&self) -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        self.serve(std::iter::from_fn(move || Some(l.accept().map(|(c, _)| c))));
        addr
    }

    /// Serves on a new Unix socket at `path`.
    pub fn listen_unix(&self, path: &Path) -> PathBuf {
        let l = UnixListener::bind(path).unwrap();
        self.serve(std::iter::from_fn(move || Some(l.accept().map(|(c, _)| c))));
        path.to_owned()
    }

    fn serve<C: Conn>(&self, incoming: impl Iterator<Item = std::io::Result<C>> + Send + 'static) {
        let config = self.config.clone();
        let log = self.log.clone();
        accept_loop(incoming, move |c: C| {
            log.connections.fetch_add(1, Ordering::SeqCst);
            let _ = serve_tls(c, config.clone(), &log);
        });
    }
}

fn serve_tls<C: Conn>(
    mut c: C,
    config: Arc<rustls::ServerConfig>,
    log: &TlsLog,
) -> std::io::Result<()> {
    let mut conn = rustls::ServerConnection::new(config).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(&mut c)?;
    }
    log.server_names
        .lock()
        .unwrap()
        .push(conn.server_name().map(str::to_owned));
    let mut r = BufReader::new(rustls::StreamOwned::new(conn, c));
    loop {
        let Some(head) = read_head(&mut r)? else {
            return Ok(());
        };
        let lower = head.to_ascii_lowercase();
        let body = read_body(&mut r, &lower)?;
        if lower.contains("\r\nupgrade: websocket") {
            let w = r.get_mut();
            w.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            )?;
            w.flush()?;
            // One thread: echo what comes, as it comes, until the client's EOF.
            let mut buf = vec![0; 16 * 1024];
            loop {
                let n = match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let w = r.get_mut();
                w.write_all(&buf[..n])?;
                w.flush()?;
            }
            let w = r.get_mut();
            w.conn.send_close_notify();
            w.flush()?;
            return w.sock.shut(std::net::Shutdown::Write);
        }
        let text = format!("secure hello ({} body bytes)", body.len());
        let w = r.get_mut();
        write!(
            w,
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
            text.len()
        )?;
        w.flush()?;
    }
}

/// An in-test origin on `127.0.0.1:0` that answers every request with its own head as the body
/// (so a test sees the headers the connector sent), keeps connections alive, and answers an
/// `Upgrade: websocket` request with `101` and then echoes raw bytes until the peer closes.
/// Its threads end when the test process does.
pub struct HeadEchoOrigin {
    /// The listening address.
    pub addr: SocketAddr,
}

impl HeadEchoOrigin {
    /// Binds and starts accepting.
    pub fn start() -> HeadEchoOrigin {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for conn in listener.incoming().map_while(Result::ok) {
                std::thread::spawn(move || serve_head_echo(conn));
            }
        });
        HeadEchoOrigin { addr }
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// One connection of [`HeadEchoOrigin`]: requests without bodies are all it expects.
fn serve_head_echo(mut conn: TcpStream) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            match conn.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head: Vec<u8> = buf.drain(..end + 4).collect();
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        if text.contains("\r\nupgrade: websocket") {
            let reply = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
            if conn.write_all(reply).is_err() || conn.write_all(&buf).is_err() {
                return;
            }
            loop {
                match conn.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if conn.write_all(&chunk[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        }
        let mut reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
            head.len()
        )
        .into_bytes();
        reply.extend_from_slice(&head);
        if conn.write_all(&reply).is_err() {
            return;
        }
    }
}
