//! Large bodies through the whole path with real processes: public client → `ringtun-edge` →
//! link → `ringtun tunnel run` → an in-test origin, 1 GiB each way, with flat memory (large bodies
//! are streamed, never buffered whole).
//!
//! Neither end ever holds a body: the client generates the upload on the fly as a chunked body
//! and checks the download as it reads it; the origin counts and checksums the upload as it reads
//! it and generates the download on the fly. Both sides produce the same byte stream from
//! [`Gen`] and compare counts and [`Fnv`] checksums. While a transfer runs the RSS of the edge
//! and the connector is sampled every 200 ms; a peak far below the body size shows the body is
//! streamed, not buffered. The figures are printed (`--nocapture`), never asserted on as timings.
//!
//! The 1 GiB runs are ignored by default:
//! `cargo test --release -p ringtun-connector --test e2e big:: -- --ignored --nocapture`.
#![allow(clippy::unwrap_used)]

use ringtun_test_support::e2e;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use e2e::{Connector, Edge, RssSampler, STEP_TIMEOUT, Service, Tunnel, http_get};

/// One GiB.
const GIB: u64 = 1 << 30;

/// The size of a generated block, the unit every body is made of.
const BLOCK: usize = 64 * 1024;

/// The most RSS the edge or the connector may reach while 1 GiB goes through: far below the
/// body, so only a streamed body fits.
const RSS_BOUND: u64 = 200 * 1024 * 1024;

/// The tunnel's hostname.
const HOST: &str = "big.ringtun.test";

/// A deterministic byte stream (xorshift64 words, little-endian), produced in [`BLOCK`]s.
struct Gen(u64);

impl Gen {
    fn new() -> Gen {
        Gen(0x9e37_79b9_7f4a_7c15)
    }

    fn fill(&mut self, block: &mut [u8]) {
        for word in block.chunks_exact_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            word.copy_from_slice(&self.0.to_le_bytes());
        }
    }
}

/// A running FNV-1a 64 checksum and byte count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fnv {
    hash: u64,
    len: u64,
}

impl Fnv {
    fn new() -> Fnv {
        Fnv {
            hash: 0xcbf2_9ce4_8422_2325,
            len: 0,
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.hash = (self.hash ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.len += bytes.len() as u64;
    }

    /// `LEN HASH`, as the origin answers an upload.
    fn text(&self) -> String {
        format!("{} {:016x}", self.len, self.hash)
    }
}

/// The checksum of the first `len` bytes of [`Gen`]'s stream (`len` a multiple of [`BLOCK`]).
fn expected(len: u64) -> Fnv {
    let mut generator = Gen::new();
    let mut block = vec![0u8; BLOCK];
    let mut sum = Fnv::new();
    for _ in 0..len / BLOCK as u64 {
        generator.fill(&mut block);
        sum.update(&block);
    }
    sum
}

/// Reads a body of `reader` incrementally, chunked or `Content-Length`, into a checksum.
fn read_body(reader: &mut impl BufRead, chunked: bool, length: Option<u64>) -> Fnv {
    let mut sum = Fnv::new();
    let mut buf = vec![0u8; BLOCK];
    let mut copy = |reader: &mut dyn Read, mut left: u64, sum: &mut Fnv| {
        while left > 0 {
            let want = left.min(buf.len() as u64) as usize;
            let n = reader.read(&mut buf[..want]).unwrap();
            assert!(n > 0, "body ended {left} bytes early");
            sum.update(&buf[..n]);
            left -= n as u64;
        }
    };
    if chunked {
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let size = line.split(';').next().unwrap_or("").trim();
            let size = u64::from_str_radix(size, 16)
                .unwrap_or_else(|_| panic!("bad chunk size line {line:?}"));
            if size == 0 {
                // Trailers (none expected) up to the empty line.
                loop {
                    line.clear();
                    reader.read_line(&mut line).unwrap();
                    if line.trim().is_empty() {
                        return sum;
                    }
                }
            }
            copy(reader, size, &mut sum);
            line.clear();
            reader.read_line(&mut line).unwrap();
            assert_eq!(line, "\r\n", "chunk not followed by CRLF");
        }
    } else {
        copy(reader, length.unwrap_or(0), &mut sum);
        sum
    }
}

/// A response or request head: the first line and the headers, names lowercased.
struct Head {
    line: String,
    headers: Vec<(String, String)>,
}

impl Head {
    /// Reads a head; `None` when the peer closed before one began.
    fn read(reader: &mut impl BufRead) -> Option<Head> {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            reader.read_line(&mut h).ok()?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
            }
        }
        Some(Head {
            line: line.trim_end().to_owned(),
            headers,
        })
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn chunked(&self) -> bool {
        self.header("transfer-encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    }

    fn length(&self) -> Option<u64> {
        self.header("content-length").and_then(|v| v.parse().ok())
    }
}

/// The in-test origin on `127.0.0.1:0`: `POST /upload` answers `LEN HASH` of the body it read;
/// `GET /download/LEN` answers LEN generated bytes; anything else answers `ok`. A thread per
/// connection; the threads end with the test process.
fn start_origin() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming().map_while(Result::ok) {
            std::thread::spawn(move || serve(conn));
        }
    });
    addr
}

fn serve(conn: TcpStream) {
    let mut writer = conn.try_clone().unwrap();
    let mut reader = BufReader::with_capacity(BLOCK, conn);
    while let Some(head) = Head::read(&mut reader) {
        let path = head
            .line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_owned();
        let body = read_body(&mut reader, head.chunked(), head.length());
        let result = if path == "/upload" {
            let text = body.text();
            write!(
                writer,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{text}",
                text.len()
            )
        } else if let Some(len) = path.strip_prefix("/download/") {
            let len: u64 = len.parse().unwrap();
            stream_download(&mut writer, len)
        } else {
            writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        };
        if result.is_err() {
            return;
        }
    }
}

fn stream_download(writer: &mut TcpStream, len: u64) -> std::io::Result<()> {
    write!(writer, "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\r\n")?;
    let mut generator = Gen::new();
    let mut block = vec![0u8; BLOCK];
    for _ in 0..len / BLOCK as u64 {
        generator.fill(&mut block);
        writer.write_all(&block)?;
    }
    Ok(())
}

/// An edge, a tunnel routed at [`HOST`], one connector in front of the in-test origin, ready to
/// serve.
struct Setup {
    _dir: tempfile::TempDir,
    edge: Edge,
    connector: Connector,
    public: SocketAddr,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let edge = Edge::start(dir.path());
    let tunnel = Tunnel::create(&edge, "big");
    tunnel.route_dns(&edge, HOST);
    let origin = start_origin();
    let connector = Connector::run(&edge, &tunnel, &Service::Url(format!("http://{origin}")));
    edge.wait_connectors("big", 1);
    let public = edge.public_http();
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        let r = http_get(public, HOST, "/ready");
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not served: {} {}",
            r.status,
            r.text()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    Setup {
        _dir: dir,
        edge,
        connector,
        public,
    }
}

impl Setup {
    /// Runs `transfer` while sampling the edge's and the connector's RSS; prints and returns the
    /// peaks (edge, connector).
    fn measured(&self, what: &str, transfer: impl FnOnce()) -> (u64, u64) {
        let pids = vec![self.edge.proc.id(), self.connector.proc.id()];
        let sampler = RssSampler::start(pids, Duration::from_millis(200));
        let started = Instant::now();
        transfer();
        let took = started.elapsed();
        let peaks = sampler.finish();
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        println!(
            "{what}: {:.1} s; peak RSS edge {:.1} MiB, connector {:.1} MiB",
            took.as_secs_f64(),
            mib(peaks[0]),
            mib(peaks[1])
        );
        (peaks[0], peaks[1])
    }
}

/// POSTs `len` generated bytes as a chunked body and returns the origin's answer.
fn upload(public: SocketAddr, len: u64) -> String {
    let conn = TcpStream::connect(public).unwrap();
    // A stalled path fails the test instead of hanging it.
    conn.set_write_timeout(Some(STEP_TIMEOUT)).unwrap();
    conn.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    let mut writer = conn.try_clone().unwrap();
    write!(
        writer,
        "POST /upload HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut generator = Gen::new();
    let mut block = vec![0u8; BLOCK];
    let size_line = format!("{BLOCK:x}\r\n");
    for _ in 0..len / BLOCK as u64 {
        generator.fill(&mut block);
        writer.write_all(size_line.as_bytes()).unwrap();
        writer.write_all(&block).unwrap();
        writer.write_all(b"\r\n").unwrap();
    }
    writer.write_all(b"0\r\n\r\n").unwrap();
    let mut reader = BufReader::new(conn);
    let head = Head::read(&mut reader).expect("a response");
    assert!(head.line.starts_with("HTTP/1.1 200"), "{}", head.line);
    let mut text = String::new();
    reader.read_to_string(&mut text).unwrap();
    text
}

/// GETs `len` generated bytes and returns their checksum, read incrementally.
fn download(public: SocketAddr, len: u64) -> Fnv {
    let mut conn = TcpStream::connect(public).unwrap();
    conn.set_read_timeout(Some(STEP_TIMEOUT)).unwrap();
    write!(
        conn,
        "GET /download/{len} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut reader = BufReader::with_capacity(BLOCK, conn);
    let head = Head::read(&mut reader).expect("a response");
    assert!(head.line.starts_with("HTTP/1.1 200"), "{}", head.line);
    if !head.chunked() {
        assert_eq!(head.length(), Some(len), "{}", head.line);
    }
    read_body(&mut reader, head.chunked(), head.length())
}

fn upload_flat(len: u64, bound: u64) {
    let s = setup();
    let want = expected(len);
    let mut answer = String::new();
    let (edge, connector) = s.measured(&format!("upload of {len} bytes"), || {
        answer = upload(s.public, len);
    });
    assert_eq!(answer, want.text(), "the origin's count and checksum");
    assert!(
        edge < bound && connector < bound,
        "peak RSS edge {edge} B, connector {connector} B, bound {bound} B"
    );
}

fn download_flat(len: u64, bound: u64) {
    let s = setup();
    let want = expected(len);
    let mut got = Fnv::new();
    let (edge, connector) = s.measured(&format!("download of {len} bytes"), || {
        got = download(s.public, len);
    });
    assert_eq!(got, want, "count and checksum of what arrived");
    assert!(
        edge < bound && connector < bound,
        "peak RSS edge {edge} B, connector {connector} B, bound {bound} B"
    );
}

#[test]
#[ignore = "1 GiB each way; run with --ignored (release recommended)"]
fn upload_of_1_gib_streams_with_flat_memory() {
    upload_flat(GIB, RSS_BOUND);
}

#[test]
#[ignore = "1 GiB each way; run with --ignored (release recommended)"]
fn download_of_1_gib_streams_with_flat_memory() {
    download_flat(GIB, RSS_BOUND);
}

#[test]
fn the_generator_and_checksum_agree_across_read_sizes() {
    let mut generator = Gen::new();
    let mut block = vec![0u8; BLOCK];
    let mut whole = Fnv::new();
    let mut pieces = Fnv::new();
    for _ in 0..4 {
        generator.fill(&mut block);
        whole.update(&block);
        for piece in block.chunks(1000) {
            pieces.update(piece);
        }
    }
    assert_eq!(whole, pieces);
    assert_eq!(whole, expected(4 * BLOCK as u64));
    assert_ne!(expected(BLOCK as u64), expected(2 * BLOCK as u64));
}
