//! One origin connection, plain TCP or TLS, split into the halves an exchange drives from two
//! tasks, plus a handle that shuts it down from outside (which completes a read in flight, so
//! no read is ever dropped while the kernel owns its buffer).
//!
//! `https://` origins get a rustls client: the web PKI roots, or with `noTLSVerify` a verifier
//! that accepts any certificate (warned about once per origin). The server name (SNI and the
//! name verified) is `originServerName`, else the service URL's host.

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::{Arc, Mutex, OnceLock};

use compio::BufResult;
use compio::buf::{IoBuf, IoBufMut, IoVectoredBuf};
use compio::io::{AsyncRead, AsyncWrite};
use compio::net::TcpStream;
use ringtun_core::link::{Shutdown, Transport};
use ringtun_core::tls::{
    TlsError, TlsReader, TlsStream, TlsWriter, danger_origin_client_config_no_verify,
    origin_client_config,
};
use rustls::ClientConfig;

/// The read half of an origin connection.
#[derive(Debug)]
pub enum ConnReader {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS.
    Tls(TlsReader),
}

/// The write half of an origin connection.
#[derive(Debug)]
pub enum ConnWriter {
    /// Plain TCP.
    Plain(TcpStream),
    /// TLS.
    Tls(TlsWriter),
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

impl OriginConn {
    /// A plain TCP connection.
    pub fn plain(tcp: TcpStream) -> OriginConn {
        let (r, w, s) = tcp.split();
        OriginConn {
            reader: ConnReader::Plain(r),
            writer: ConnWriter::Plain(w),
            closer: Rc::new(s),
        }
    }

    /// Runs the TLS handshake over `tcp` for `server_name`.
    pub async fn tls(
        tcp: TcpStream,
        server_name: &str,
        danger_no_verify: bool,
    ) -> Result<OriginConn, TlsError> {
        let config = client_config(danger_no_verify)?;
        let tls = TlsStream::connect(tcp, config, server_name).await?;
        let (r, w, s) = tls.split();
        Ok(OriginConn {
            reader: ConnReader::Tls(r),
            writer: ConnWriter::Tls(w),
            closer: Rc::new(s),
        })
    }
}

/// The process-wide origin client configuration for a verify mode, built once.
fn client_config(danger_no_verify: bool) -> Result<Arc<ClientConfig>, TlsError> {
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
        }
    }
}

impl AsyncWrite for ConnWriter {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            ConnWriter::Plain(t) => t.write(buf).await,
            ConnWriter::Tls(t) => t.write(buf).await,
        }
    }

    async fn write_vectored<T: IoVectoredBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        match self {
            ConnWriter::Plain(t) => t.write_vectored(buf).await,
            ConnWriter::Tls(t) => t.write_vectored(buf).await,
        }
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        match self {
            ConnWriter::Plain(t) => t.flush().await,
            ConnWriter::Tls(t) => t.flush().await,
        }
    }

    async fn shutdown(&mut self) -> std::io::Result<()> {
        match self {
            ConnWriter::Plain(t) => t.shutdown().await,
            ConnWriter::Tls(t) => t.shutdown().await,
        }
    }
}
