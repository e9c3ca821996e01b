//! The public HTTPS listener (`--public-https`): TLS 1.2 and 1.3 with ALPN `h2` and
//! `http/1.1`, then the HTTP/2 connection of `super` for `h2`, or the HTTP/1.1 path of
//! `dataplane/http` (generic over the stream) for `http/1.1` and for a client that offers no
//! ALPN. The certificate is the operator's (`--public-tls-cert`, `--public-tls-key`) or else
//! the edge's own, signed by the CA in its state directory.
//!
//! A client that offers ALPN with neither fails the handshake (`no_application_protocol`). The
//! handshake must end within `--public-tls-handshake-timeout` (`ringtun_edge_limit_hits_total
//! {reason="tls_handshake_timeout"}`); one that fails (not TLS, no common protocol or
//! version) counts in `ringtun_edge_public_errors_total{cause="tls_handshake"}`.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use compio::net::{TcpListener, TcpStream};
use ringtun_core::tls::TlsStream;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::dataplane::http::{self, Accepted, watch_conn};
use crate::dataplane::limits::ClientSlot;
use crate::dataplane::watchdog::ReadKind;
use crate::dataplane::worker::Worker;
use crate::error::{Error, Result};
use crate::settings::H2Settings;
use crate::state_dir::TlsMaterial;

/// The ALPN protocol of HTTP/2 over TLS (RFC 9113 §3.2).
const H2_ALPN: &[u8] = b"h2";
/// The ALPN protocol of HTTP/1.1 (RFC 7301 §6).
const HTTP1_ALPN: &[u8] = b"http/1.1";

/// The public HTTPS listener's configuration: the operator's certificate files or the edge's
/// own material.
pub(crate) fn server_config(h2: &H2Settings, own: &TlsMaterial) -> Result<Arc<ServerConfig>> {
    let (chain, key) = match &h2.public_tls {
        Some((cert, key)) => {
            let read = |p: &std::path::Path| {
                std::fs::read(p)
                    .map_err(|e| Error::Config(format!("cannot read {}: {e}", p.display())))
            };
            let chain = CertificateDer::pem_slice_iter(&read(cert)?)
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| {
                    Error::Config(format!("{}: bad certificate pem: {e}", cert.display()))
                })?;
            let key = PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| {
                Error::Config(format!("{}: bad private key pem: {e}", key.display()))
            })?;
            (chain, key)
        }
        None => (own.cert_chain_der.clone(), own.key_der.clone_key()),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("public TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| Error::Config(format!("public TLS certificate or key: {e}")))?;
    // The server's preference order: HTTP/2 for a client that offers both.
    cfg.alpn_protocols = vec![H2_ALPN.to_vec(), HTTP1_ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

/// Accepts public HTTPS connections on this worker's socket.
pub(crate) async fn accept_loop(w: Rc<Worker>, listener: TcpListener, config: Arc<ServerConfig>) {
    loop {
        match listener.accept().await {
            Ok((s, peer)) => {
                let _ = s.set_nodelay(true);
                // Over its IP's limit: closed at once (no TLS to carry an error page yet).
                let Some(slot) = w.client_slot(peer) else {
                    continue;
                };
                let w = Rc::clone(&w);
                compio::runtime::spawn(serve(w, s, peer, slot, Arc::clone(&config))).detach();
            }
            Err(_) if w.plane.is_draining() => return,
            Err(e) => {
                tracing::warn!(error = %e, "public HTTPS accept failed");
                compio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One HTTPS connection: the TLS handshake within its deadline, then HTTP/2 or HTTP/1.1 as
/// ALPN chose.
async fn serve(
    w: Rc<Worker>,
    s: TcpStream,
    peer: SocketAddr,
    slot: ClientSlot,
    config: Arc<ServerConfig>,
) {
    let watch = watch_conn(&w, &s, peer, true);
    watch.start(w.plane.h2.tls_handshake_timeout, ReadKind::TlsHandshake);
    let tls = TlsStream::accept(s.clone(), config).await;
    watch.stop();
    let tls = match tls {
        Ok(tls) => tls,
        Err(e) => {
            if !watch.timed_out(ReadKind::TlsHandshake) {
                w.plane.registry.metrics().public_error("tls_handshake");
            }
            tracing::debug!(%peer, error = %e, "public TLS handshake failed");
            watch.finish();
            return;
        }
    };
    if tls.alpn_protocol().as_deref() == Some(H2_ALPN) {
        super::serve(w, tls, peer, BytesMut::new(), watch, Some(slot), "https").await;
        return;
    }
    let conn = Accepted {
        sock: s,
        peer,
        watch,
        slot: Some(slot),
    };
    http::serve(w, tls, conn, BytesMut::new(), 0, None).await;
}
