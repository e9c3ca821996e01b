//! Helpers for the `run_*` tests: a fake edge (registration + link per tunnel-contract.md), the
//! real `ringtun` binary as a child process killed on drop, and a small std-thread HTTP origin.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use bytes::Bytes;
use compio::net::TcpListener;
use ringtun_core::handshake::{Accepted, RejectCode, Rejected, TunnelSecret, edge_accept};
use ringtun_core::http::{
    BodyFraming, RequestExtra, RequestHead, ResponseMeta, decode_response_meta, encode_request_meta,
};
use ringtun_core::link::Link;
use ringtun_core::mux::{Config, Role, StreamKind};
use ringtun_core::tls::TlsStream;

pub const TUNNEL_ID: &str = "6ff42ae2-765d-4adf-8112-31c55c1551ef";
pub const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// A CA PEM and the edge's TLS server config for 127.0.0.1.
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".into()]).unwrap();
    let cert = params.signed_by(&key, &ca).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A temporary HOME with a credentials file and a config file.
pub struct Setup {
    pub home: tempfile::TempDir,
    pub creds: PathBuf,
    pub config: PathBuf,
}

pub fn setup(ca_pem: Option<&str>, ingress_yaml: &str) -> Setup {
    let home = tempfile::tempdir().unwrap();
    let creds = home.path().join("creds.json");
    let mut v = serde_json::json!({
        "TunnelID": TUNNEL_ID,
        "TunnelName": "web",
        "TunnelSecret": base64::engine::general_purpose::STANDARD.encode(SECRET),
    });
    if let Some(ca) = ca_pem {
        v["EdgeCA"] = serde_json::Value::String(ca.to_owned());
    }
    std::fs::write(&creds, v.to_string()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = home.path().join("config.yml");
    std::fs::write(&config, ingress_yaml).unwrap();
    Setup {
        home,
        creds,
        config,
    }
}

/// The `ringtun tunnel run` child; killed (and reaped) on drop.
pub struct Connector {
    pub child: Child,
    pub stderr_path: PathBuf,
}

impl Connector {
    pub fn start(s: &Setup, edge: SocketAddr, extra: &[&str]) -> Connector {
        let edge = edge.to_string();
        let mut args = vec![
            "--edge",
            edge.as_str(),
            "--ha-connections",
            "1",
            "--workers",
            "1",
        ];
        args.extend_from_slice(extra);
        Connector::spawn_with(s, &args)
    }

    /// `ringtun tunnel run --config C --credentials-file F --grace-period 5s ARGS...`.
    pub fn spawn_with(s: &Setup, args: &[&str]) -> Connector {
        Connector::spawn_env(s, args, &[])
    }

    /// [`Connector::spawn_with`] with extra environment variables.
    pub fn spawn_env(s: &Setup, args: &[&str], envs: &[(&str, &str)]) -> Connector {
        let stderr_path = s.home.path().join("connector.log");
        let log = std::fs::File::create(&stderr_path).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_ringtun"))
            .env("HOME", s.home.path())
            .env("RUST_LOG", "info,ringtun_connector=debug")
            .env_remove("RINGTUN_CONFIG")
            .env_remove("RINGTUN_URL")
            .env_remove("RINGTUN_EDGE_API")
            .envs(envs.iter().copied())
            .args(["tunnel", "run", "--config"])
            .arg(&s.config)
            .arg("--credentials-file")
            .arg(&s.creds)
            .args(["--grace-period", "5s"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Connector { child, stderr_path }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        self.child.wait().unwrap()
    }
}

impl Drop for Connector {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Accepts one link on `l`, registering it with `secret`; TLS when `tls` is given.
pub async fn accept_link(l: &TcpListener, tls: Option<&Pki>, secret: &'static [u8]) -> Link {
    accept_link_in(l, tls, secret, "dfw").await.0
}

/// Like [`accept_link`], answering with data center `dc`; also returns the link index.
pub async fn accept_link_in(
    l: &TcpListener,
    tls: Option<&Pki>,
    secret: &'static [u8],
    dc: &str,
) -> (Link, u8) {
    let (tcp, _) = l.accept().await.unwrap();
    let lookup = move |_: &ringtun_core::handshake::Register| -> Result<TunnelSecret, Rejected> {
        Ok(TunnelSecret::new(secret.to_vec()))
    };
    let dc = dc.to_owned();
    let admit = move |r: &ringtun_core::handshake::Register| -> Result<Accepted, Rejected> {
        if r.version.is_empty() {
            return Err(Rejected {
                code: RejectCode::Other(99),
                message: "no version".into(),
            });
        }
        Ok(Accepted {
            data_center: dc,
            server: "fake".into(),
        })
    };
    match tls {
        Some(p) => {
            let cfg =
                ringtun_core::tls::server_config_pem(p.cert_pem.as_bytes(), p.key_pem.as_bytes())
                    .unwrap();
            let mut s = TlsStream::accept(tcp, cfg).await.unwrap();
            let r = edge_accept(&mut s, lookup, admit).await.unwrap();
            (
                Link::spawn(s, Role::Server, Config::default()),
                r.link_index,
            )
        }
        None => {
            let mut s = tcp;
            let r = edge_accept(&mut s, lookup, admit).await.unwrap();
            (
                Link::spawn(s, Role::Server, Config::default()),
                r.link_index,
            )
        }
    }
}

/// A one-route admin API stand-in answering `GET /discovery` with `body`.
pub fn fake_admin(body: String) -> SocketAddr {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for c in l.incoming() {
            let Ok(c) = c else { return };
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut w = c;
            let mut first = String::new();
            let _ = r.read_line(&mut first);
            loop {
                let mut line = String::new();
                if r.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
            }
            let (status, text) = if first.starts_with("GET /discovery ") {
                ("200 OK", body.clone())
            } else {
                ("404 Not Found", "{\"error\":\"no\"}".to_owned())
            };
            let _ = write!(
                w,
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                text.len()
            );
        }
    });
    addr
}

/// The answer to one request through the link.
pub struct Answer {
    pub meta: ResponseMeta,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn status(&self) -> u16 {
        match &self.meta {
            ResponseMeta::Head { head, .. } => head.status,
            ResponseMeta::Error(e) => e.kind.status(),
        }
    }
}

/// Sends one request (head + body pieces) over a new stream and reads the whole answer.
pub async fn request(
    link: &Link,
    head: RequestHead,
    body: Vec<Bytes>,
    framing: BodyFraming,
) -> Answer {
    let meta = encode_request_meta(
        &head,
        &RequestExtra {
            client_ip: Some("192.0.2.7".parse().unwrap()),
            body: framing,
        },
    );
    let kind = if ringtun_core::http::is_websocket_upgrade(&head) {
        StreamKind::WebSocket
    } else {
        StreamKind::Http
    };
    let s = std::rc::Rc::new(link.open(kind, meta).unwrap());
    let w = s.clone();
    let writer = compio::runtime::spawn(async move {
        for b in body {
            w.write(b).await.unwrap();
        }
        w.finish().unwrap();
    });
    let meta = decode_response_meta(s.reply_meta().await.unwrap()).unwrap();
    let mut out = Vec::new();
    while let Some(c) = s.read().await.unwrap() {
        out.extend_from_slice(&c);
    }
    writer.await.unwrap();
    Answer { meta, body: out }
}

pub fn get(host: &str, target: &str) -> RequestHead {
    let mut h = RequestHead::new(Bytes::from_static(b"GET"), Bytes::from(target.to_owned()));
    h.headers.append("Host", host.to_owned());
    h
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    compio::runtime::Runtime::new().unwrap().block_on(f)
}

/// What the test origin saw.
#[derive(Default)]
pub struct OriginLog {
    pub connections: AtomicUsize,
    pub heads: Mutex<Vec<String>>,
}

/// A tiny HTTP/1.1 origin on std threads: keep-alive, Content-Length and chunked request
/// bodies. Routes: `/cl` (Content-Length "hello"), `/chunked` (chunked "abcdef"), `/echo`
/// (echoes the body with Content-Length), `/big?N` (N bytes, chunked), `/head` (the request
/// head as the body), `/ws` (101, then echoes raw bytes until EOF), `/bye` (answers, then closes
/// without saying so); HEAD anything: the head of `/cl`.
pub fn origin() -> (SocketAddr, Arc<OriginLog>) {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
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

fn serve_origin(c: StdStream, log: &OriginLog) -> std::io::Result<()> {
    let mut r = BufReader::new(c.try_clone()?);
    let mut w = c;
    loop {
        let mut head = String::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Ok(());
            }
            head.push_str(&line);
            if line == "\r\n" {
                break;
            }
        }
        log.heads.lock().unwrap().push(head.clone());
        let lower = head.to_ascii_lowercase();
        let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let mut body = Vec::new();
        if let Some(n) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        } else if lower.contains("transfer-encoding: chunked") {
            loop {
                let mut size = String::new();
                r.read_line(&mut size)?;
                let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; n + 2];
                r.read_exact(&mut chunk)?;
                if n == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..n]);
            }
        }
        if target == "/ws" && lower.contains("upgrade: websocket") {
            w.write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            )?;
            w.flush()?;
            std::io::copy(&mut r, &mut w)?;
            w.shutdown(std::net::Shutdown::Write)?;
            return Ok(());
        }
        if head.starts_with("HEAD ") {
            w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")?;
            continue;
        }
        if target == "/bye" {
            // Keep-alive by the headers, but the origin closes right after (an idle close).
            w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nbye")?;
            w.flush()?;
            w.shutdown(std::net::Shutdown::Both)?;
            return Ok(());
        }
        if target == "/cl" {
            w.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")?;
        } else if target == "/chunked" {
            w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n")?;
        } else if target == "/echo" {
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                body.len()
            )?;
            w.write_all(&body)?;
        } else if let Some(n) = target.strip_prefix("/big?") {
            let n: usize = n.parse().unwrap_or(0);
            w.write_all(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")?;
            let mut left = n;
            let mut i = 0u8;
            while left > 0 {
                let k = left.min(10_000);
                let piece: Vec<u8> = (0..k).map(|j| pattern(n - left + j)).collect();
                write!(w, "{k:x}\r\n")?;
                w.write_all(&piece)?;
                w.write_all(b"\r\n")?;
                left -= k;
                i = i.wrapping_add(1);
            }
            w.write_all(b"0\r\n\r\n")?;
        } else if target == "/head" {
            write!(
                w,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n",
                head.len()
            )?;
            w.write_all(head.as_bytes())?;
        } else {
            w.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")?;
        }
        w.flush()?;
    }
}

/// The byte at position `i` of test bodies.
pub fn pattern(i: usize) -> u8 {
    (i % 251) as u8
}

/// A TCP echo server.
pub fn echo_server() -> SocketAddr {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
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

/// A loopback port with nothing listening.
pub fn closed_port() -> SocketAddr {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub fn home_path(s: &Setup) -> &Path {
    s.home.path()
}
