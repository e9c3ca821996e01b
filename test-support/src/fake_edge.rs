//! The fake edge of the connector's `run` tests: registration and a link per
//! `docs/tunnel-contract.md`, built from `core::{tls, handshake, link}`, facing the real `ringtun`
//! binary as a child process. The test origins are in [`crate::origin`], and the child is a
//! [`Proc`], the process guard the harness and the demo use: its output is collected and it is
//! stopped when dropped.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use compio::net::TcpListener;
use ringtun_connector::process::{Proc, STOP_GRACE};
use ringtun_core::handshake::{Accepted, RejectCode, Rejected, TunnelSecret, edge_accept};
use ringtun_core::http::{BodyFraming, RequestHead, RequestRoute};
use ringtun_core::link::Link;
use ringtun_core::mux::{Config, Role, StreamKind};
use ringtun_core::tls::TlsStream;
use ringtun_core::tunnel::{RequestExtra, ResponseMeta, decode_response_meta, encode_request_meta};

pub use crate::origin::{OriginLog, TestOrigin, closed_port, echo_server, origin, pattern};

/// The tunnel ID of the credentials [`setup`] writes.
pub const TUNNEL_ID: &str = "6ff42ae2-765d-4adf-8112-31c55c1551ef";
/// The tunnel secret of the credentials [`setup`] writes.
pub const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

/// A CA PEM and the edge's TLS server config for 127.0.0.1.
pub struct Pki {
    /// The CA certificate.
    pub ca_pem: String,
    /// The edge's certificate, for 127.0.0.1 and localhost.
    pub cert_pem: String,
    /// The edge's private key.
    pub key_pem: String,
}

/// A fresh CA and an edge certificate signed by it.
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
    /// The HOME directory (removed on drop).
    pub home: tempfile::TempDir,
    /// The credentials file (mode 0600).
    pub creds: PathBuf,
    /// The config file.
    pub config: PathBuf,
}

/// Writes credentials for [`TUNNEL_ID`] (trusting `ca_pem` for the edge when given) and a config
/// file holding `ingress_yaml` into a new temporary HOME.
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
    /// The process; its output is also in `connector.log` in the test's HOME.
    pub proc: Proc,
}

impl Connector {
    /// `ringtun tunnel run` against the fake edge at `edge`, one link and one worker, with `extra`
    /// flags.
    pub fn start(s: &Setup, edge: SocketAddr, extra: &[&str]) -> Connector {
        Connector::start_env(s, edge, extra, &[])
    }

    /// [`Connector::start`] with extra environment variables.
    pub fn start_env(
        s: &Setup,
        edge: SocketAddr,
        extra: &[&str],
        envs: &[(&str, &str)],
    ) -> Connector {
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
        Connector::spawn_env(s, &args, envs)
    }

    /// `ringtun tunnel run --config C --credentials-file F --grace-period 5s ARGS...`.
    pub fn spawn_with(s: &Setup, args: &[&str]) -> Connector {
        Connector::spawn_env(s, args, &[])
    }

    /// [`Connector::spawn_with`] with extra environment variables.
    pub fn spawn_env(s: &Setup, args: &[&str], envs: &[(&str, &str)]) -> Connector {
        let mut cmd = Command::new(crate::e2e::ringtun_bin());
        cmd.env("HOME", s.home.path())
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
            .args(args);
        let log = s.home.path().join("connector.log");
        let proc = Proc::spawn("ringtun tunnel run", cmd, &log, false).unwrap();
        Connector { proc }
    }

    /// Everything the connector printed so far.
    pub fn log(&self) -> String {
        self.proc.lines().join("\n")
    }

    /// The exit status once the connector has exited, after its output was read to the end (so
    /// [`Connector::log`] holds its last lines); `None` while it runs.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.proc.try_wait()?;
        self.proc.stop(Duration::ZERO)
    }

    /// Sends SIGTERM and waits for the exit status (blocking: not for a test whose fake edge
    /// must keep answering on this thread).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.proc.stop(STOP_GRACE).expect("the connector exited")
    }
}

impl Drop for Connector {
    /// Kills at once (the fake edge of the test may be gone, so no graceful drain is waited for).
    fn drop(&mut self) {
        self.proc.stop(Duration::ZERO);
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
    /// The REPLY metadata.
    pub meta: ResponseMeta,
    /// The whole body.
    pub body: Vec<u8>,
}

impl Answer {
    /// The status of the response, or the one the edge would answer for a REPLY error.
    pub fn status(&self) -> u16 {
        match &self.meta {
            ResponseMeta::Head { head, .. } => head.status,
            ResponseMeta::Error(e) => e.kind.status(),
        }
    }
}

/// Sends one request (head + body pieces) over a new stream and reads the whole answer. Like
/// the real edge, it routes on the normalised host and target and sends those.
pub async fn request(
    link: &Link,
    mut head: RequestHead,
    body: Vec<Bytes>,
    framing: BodyFraming,
) -> Answer {
    let route = RequestRoute::of(&head).unwrap_or_else(|e| panic!("the edge would answer: {e}"));
    route.apply(&mut head);
    let meta = encode_request_meta(
        &head,
        &RequestExtra {
            host: route.host().to_owned(),
            client_ip: Some("192.0.2.7".parse().unwrap()),
            body: framing,
            trailers: false,
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

/// `GET TARGET` with `Host: HOST`.
pub fn get(host: &str, target: &str) -> RequestHead {
    let mut h = RequestHead::new(Bytes::from_static(b"GET"), Bytes::from(target.to_owned()));
    h.headers.append("Host", host.to_owned());
    h
}

/// Runs `f` to completion on a new runtime.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    compio::runtime::Runtime::new().unwrap().block_on(f)
}

/// The HOME of `s`.
pub fn home_path(s: &Setup) -> &Path {
    s.home.path()
}
