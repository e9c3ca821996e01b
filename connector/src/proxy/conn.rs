//! One origin connection (plain TCP, TLS over TCP, a Unix socket, or TLS over a Unix socket)
//! split into the halves an exchange drives from two tasks, plus a handle that shuts it down
//! from outside (which completes a read in flight, so no read is ever dropped while the kernel
//! owns its buffer). [`open`] dials one: the connect within `connectTimeout`, then the TLS
//! handshake within `tlsTimeout`.
//!
//! `https://` and `unix+tls:` origins get a rustls client ([`OriginTls`]): the web PKI roots
//! plus the rule's `caPool` when it names one, or with `noTLSVerify` a verifier that accepts any
//! certificate (warned about once per origin). The server name (SNI and the name verified) is
//! `originServerName`, else the service URL's host, else (Unix sockets, which have none) the
//! request's host, as cloudflared does.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::Path;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use compio::BufResult;
use compio::buf::{IoBuf, IoBufMut, IoVectoredBuf};
use compio::io::{AsyncRead, AsyncWrite};
use compio::net::{TcpStream, UnixStream};
use ringtun_core::http::{origin_refused_detail, origin_timeout_detail};
use ringtun_core::link::{Shutdown, Transport};
use ringtun_core::rt::net::{SocketTuning, connect};
use ringtun_core::tls::{
    TlsError, TlsReader, TlsStream, TlsWriter, danger_origin_client_config_no_verify,
    origin_client_config,
};
use ringtun_core::tunnel::ReplyErrorKind;
use rustls::ClientConfig;

use crate::config::OriginRequest;
use crate::observe::ErrorCause;

/// The read half of an origin connection.
#[derive(Debug)]
pub enum ConnReader {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(TlsReader),
    /// A plain Unix socket.
    Unix(UnixStream),
    /// TLS over a Unix socket.
    UnixTls(TlsReader<UnixStream>),
}

/// The write half of an origin connection.
#[derive(Debug)]
pub enum ConnWriter {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS over TCP.
    Tls(TlsWriter),
    /// A plain Unix socket.
    Unix(UnixStream),
    /// TLS over a Unix socket.
    UnixTls(TlsWriter<UnixStream>),
}

/// An open origin connection.
pub struct OriginConn {
    /// Reads responses.
    pub reader: ConnReader,
    /// Writes requests.
    pub writer: ConnWriter,
    /// Ends both halves from outside.
    pub closer: Rc<dyn Shutdown>,
}

impl std::fmt::Debug for OriginConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginConn")
            .field("reader", &self.reader)
            .finish_non_exhaustive()
    }
}

/// The TLS side of an origin connection: the server name and the client configuration (trusted
/// roots and verify mode). Two are equal when they use the same name and the very same
/// configuration, so pooled connections never cross a `caPool` or `noTLSVerify` boundary; the
/// configuration is held here, so its address is not reused while a pool key names it.
#[derive(Clone)]
pub struct OriginTls {
    /// SNI and the name the certificate must hold.
    pub server_name: String,
    config: Arc<ClientConfig>,
    /// `noTLSVerify`: the certificate is not checked.
    pub danger_no_verify: bool,
}

impl OriginTls {
    /// The TLS settings of a rule for an origin whose default server name is `default_name`
    /// (the URL's host, or for a Unix socket the request's host).
    pub fn new(or: &OriginRequest, default_name: &str) -> Result<OriginTls, TlsError> {
        let config = if or.danger_no_tls_verify {
            process_config(true)?
        } else if let Some(pool) = &or.ca_pool {
            pool.client_config().clone()
        } else {
            process_config(false)?
        };
        Ok(OriginTls {
            server_name: or
                .origin_server_name
                .clone()
                .unwrap_or_else(|| default_name.to_owned()),
            config,
            danger_no_verify: or.danger_no_tls_verify,
        })
    }
}

impl OriginTls {
    /// These settings offering HTTP/2 in ALPN (`h2` only) instead of HTTP/1.1, for
    /// `http2Origin`. The configuration is copied once per connection dialled (an HTTP/2
    /// connection carries many requests).
    fn for_h2(&self) -> OriginTls {
        let mut config = (*self.config).clone();
        config.alpn_protocols = vec![H2_ALPN.to_vec()];
        OriginTls {
            server_name: self.server_name.clone(),
            config: Arc::new(config),
            danger_no_verify: self.danger_no_verify,
        }
    }
}

/// HTTP/2's ALPN protocol ID (RFC 9113 §3.2).
const H2_ALPN: &[u8] = b"h2";

/// The application protocol a new origin connection is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// HTTP/1.1 (ALPN `http/1.1` over TLS).
    Http1,
    /// HTTP/2 (`http2Origin`): over TLS only `h2` is offered and the origin must agree to it;
    /// over plain TCP or a Unix socket, h2c with prior knowledge.
    Http2,
}

impl std::fmt::Debug for OriginTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginTls")
            .field("server_name", &self.server_name)
            .field("danger_no_verify", &self.danger_no_verify)
            .finish_non_exhaustive()
    }
}

impl PartialEq for OriginTls {
    fn eq(&self, other: &Self) -> bool {
        self.server_name == other.server_name && Arc::ptr_eq(&self.config, &other.config)
    }
}

impl Eq for OriginTls {}

impl Hash for OriginTls {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.server_name.hash(state);
        Arc::as_ptr(&self.config).hash(state);
    }
}

/// The process-wide origin client configuration for a verify mode (web PKI roots, or none),
/// built once.
fn process_config(danger_no_verify: bool) -> Result<Arc<ClientConfig>, TlsError> {
    static VERIFIED: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    static DANGER: OnceLock<Result<Arc<ClientConfig>, String>> = OnceLock::new();
    let cell = if danger_no_verify { &DANGER } else { &VERIFIED };
    cell.get_or_init(|| {
        let built = if danger_no_verify {
            danger_origin_client_config_no_verify()
        } else {
            let roots = rustls::RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            origin_client_config(roots)
        };
        built.map_err(|e| e.to_string())
    })
    .clone()
    .map_err(TlsError::Config)
}

/// Where to dial.
#[derive(Debug, Clone, Copy)]
pub enum Dial<'a> {
    /// A resolved TCP address.
    Tcp(SocketAddr),
    /// A Unix socket.
    Unix(&'a Path),
}

/// Why an origin connection could not be opened: the reply for the client and the metric
/// cause.
#[derive(Debug)]
pub struct OpenFailed {
    /// The error reply (its status).
    pub kind: ReplyErrorKind,
    /// `ringtun_request_errors_total{cause}`.
    pub cause: ErrorCause,
    /// The detail for the client.
    pub message: String,
}

impl OpenFailed {
    fn new(kind: ReplyErrorKind, message: String) -> OpenFailed {
        OpenFailed {
            kind,
            cause: ErrorCause::from(kind),
            message,
        }
    }
}

/// Connects to an origin within the rule's `connectTimeout`, then runs the TLS handshake (when
/// `tls` is given) within its `tlsTimeout`. `name` is the origin as messages show it
/// (`host:port` or `unix:/path`). For [`Proto::Http2`] over TLS, an origin that does not agree
/// to `h2` in ALPN is an invalid-origin error (502) saying so.
pub async fn open(
    dial: Dial<'_>,
    tls: Option<&OriginTls>,
    name: &str,
    or: &OriginRequest,
    proto: Proto,
) -> Result<OriginConn, OpenFailed> {
    let connected = match dial {
        Dial::Tcp(addr) => {
            compio::time::timeout(or.connect_timeout, connect(addr, &SocketTuning::default()))
                .await
                .map(|r| r.map(Socket::Tcp))
        }
        Dial::Unix(path) => compio::time::timeout(or.connect_timeout, UnixStream::connect(path))
            .await
            .map(|r| r.map(Socket::Unix)),
    };
    let socket = match connected {
        Ok(Ok(s)) => s,
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::TimedOut => {
            return Err(OpenFailed::new(
                ReplyErrorKind::OriginTimeout,
                origin_timeout_detail(name),
            ));
        }
        Ok(Err(e)) => {
            tracing::info!(origin = %name, error = %e, "origin connect failed");
            return Err(OpenFailed::new(
                ReplyErrorKind::OriginRefused,
                origin_refused_detail(name),
            ));
        }
        Err(_) => {
            return Err(OpenFailed::new(
                ReplyErrorKind::OriginTimeout,
                origin_timeout_detail(name),
            ));
        }
    };
    let Some(tls) = tls else {
        return Ok(match socket {
            Socket::Tcp(s) => {
                OriginConn::from_parts(s.split(), ConnReader::Plain, ConnWriter::Plain)
            }
            Socket::Unix(s) => {
                let (r, w) = s.into_split();
                let closer = Rc::new(UnixShutdown(w.clone()));
                OriginConn {
                    reader: ConnReader::Unix(r),
                    writer: ConnWriter::Unix(w),
                    closer,
                }
            }
        });
    };
    if tls.danger_no_verify {
        warn_no_verify_once(name);
    }
    let h2;
    let tls = match proto {
        Proto::Http1 => tls,
        Proto::Http2 => {
            h2 = tls.for_h2();
            &h2
        }
    };
    // The protocol the origin agreed to in ALPN.
    let agreed = std::cell::RefCell::new(None);
    let handshake = async {
        match socket {
            Socket::Tcp(s) => TlsStream::connect(s, tls.config.clone(), &tls.server_name)
                .await
                .map(|t| {
                    *agreed.borrow_mut() = t.alpn_protocol();
                    OriginConn::from_parts(t.split(), ConnReader::Tls, ConnWriter::Tls)
                }),
            Socket::Unix(s) => TlsStream::connect(s, tls.config.clone(), &tls.server_name)
                .await
                .map(|t| {
                    *agreed.borrow_mut() = t.alpn_protocol();
                    OriginConn::from_parts(t.split(), ConnReader::UnixTls, ConnWriter::UnixTls)
                }),
        }
    };
    match compio::time::timeout(or.tls_timeout, handshake).await {
        Ok(Ok(_)) if proto == Proto::Http2 && agreed.borrow().as_deref() != Some(H2_ALPN) => {
            let offered = match agreed.borrow().as_deref() {
                Some(p) => format!("it chose {}", String::from_utf8_lossy(p)),
                None => "it chose no protocol".to_owned(),
            };
            tracing::info!(origin = %name, %offered, "origin refused HTTP/2 in ALPN");
            Err(OpenFailed::new(
                ReplyErrorKind::OriginInvalid,
                format!(
                    "origin {name} does not speak HTTP/2: http2Origin is set, the connector \
                     offered only h2 in TLS ALPN and {offered}; enable HTTP/2 on the origin or \
                     unset http2Origin"
                ),
            ))
        }
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => {
            tracing::info!(origin = %name, server_name = %tls.server_name, error = %e, "origin tls handshake failed");
            let mut detail = tls_failure_detail(name, &tls.server_name, &e);
            if proto == Proto::Http2 {
                detail.push_str(
                    " (http2Origin is set: the connector offered only h2 in ALPN; an origin \
                     without HTTP/2 refuses that)",
                );
            }
            Err(OpenFailed::new(ReplyErrorKind::OriginInvalid, detail))
        }
        Err(_) => {
            tracing::debug!(origin = %name, timeout = ?or.tls_timeout, "origin tls handshake timed out");
            Err(OpenFailed {
                kind: ReplyErrorKind::OriginInvalid,
                cause: ErrorCause::OriginTlsTimeout,
                message: format!(
                    "tls handshake with origin {name} did not finish within tlsTimeout ({})",
                    humanize(or.tls_timeout)
                ),
            })
        }
    }
}

/// The 502 detail for a failed handshake; a rejected certificate names the settings that fix
/// it.
fn tls_failure_detail(name: &str, server_name: &str, e: &TlsError) -> String {
    match e {
        TlsError::BadCertificate(why) => format!(
            "tls handshake with origin {name} (server name {server_name}) failed: its \
             certificate was rejected: {why}; trust its CA with originRequest.caPool, or set \
             originRequest.originServerName to a name the certificate holds"
        ),
        other => {
            format!("tls handshake with origin {name} (server name {server_name}) failed: {other}")
        }
    }
}

/// `1.5s`, `10s`, `250ms`: a timeout as the config writes it.
fn humanize(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// A connected socket before the TLS decision.
enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl OriginConn {
    fn from_parts<R, W, S: Shutdown>(
        (r, w, s): (R, W, S),
        reader: impl FnOnce(R) -> ConnReader,
        writer: impl FnOnce(W) -> ConnWriter,
    ) -> OriginConn {
        OriginConn {
            reader: reader(r),
            writer: writer(w),
            closer: Rc::new(s),
        }
    }
}

/// Shuts a Unix socket down with `shutdown(2)`, which completes a read in flight on it.
struct UnixShutdown(UnixStream);

impl Shutdown for UnixShutdown {
    fn shutdown(&self) -> std::io::Result<()> {
        match socket2::SockRef::from(&self.0).shutdown(std::net::Shutdown::Both) {
            Err(e) if e.kind() == std::io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}

/// Logs, once per origin and process, that its certificate is not checked.
pub fn warn_no_verify_once(origin: &str) {
    static WARNED: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let Ok(mut warned) = WARNED.lock() else {
        return;
    };
    if warned
        .get_or_insert_with(HashSet::new)
        .insert(origin.to_owned())
    {
        tracing::warn!(
            origin,
            "DANGER: noTLSVerify is set; the origin's certificate is not verified"
        );
    }
}

impl AsyncRead for ConnReader {
    async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        match self {
            ConnReader::Plain(t) => t.read(buf).await,
            ConnReader::Tls(t) => t.read(buf).await,
            ConnReader::Unix(t) => t.read(buf).await,
            ConnReader::UnixTls(t) => t.read(buf).await,
        }
    }
}

impl AsyncWrite for ConnWriter {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            ConnWriter::Plain(t) => t.write(buf).await,
            ConnWriter::Tls(t) => t.write(buf).await,
            ConnWriter::Unix(t) => t.write(buf).await,
            ConnWriter::UnixTls(t) => t.write(buf).await,
        }
    }

    async fn write_vectored<T: IoVectoredBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            ConnWriter::Plain(t) => t.write_vectored(buf).await,
            ConnWriter::Tls(t) => t.write_vectored(buf).await,
            ConnWriter::Unix(t) => t.write_vectored(buf).await,
            ConnWriter::UnixTls(t) => t.write_vectored(buf).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ConnWriter::Plain(t) => t.flush().await,
            ConnWriter::Tls(t) => t.flush().await,
            ConnWriter::Unix(t) => t.flush().await,
            ConnWriter::UnixTls(t) => t.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            ConnWriter::Plain(t) => t.shutdown().await,
            ConnWriter::Tls(t) => t.shutdown().await,
            ConnWriter::Unix(t) => t.shutdown().await,
            ConnWriter::UnixTls(t) => t.shutdown().await,
        }
    }
}
