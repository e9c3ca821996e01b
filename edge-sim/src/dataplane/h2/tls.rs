//! The public HTTPS listener (`--public-https`): TLS 1.2 and 1.3 with ALPN `h2`, then the
//! HTTP/2 connection of `super`. The certificate is the operator's (`--public-tls-cert`,
//! `--public-tls-key`) or else the edge's own, signed by the CA in its state directory.
//!
//! Only `h2` is offered: a client that offers ALPN without it fails the handshake
//! (`no_application_protocol`); one that offers no ALPN is spoken to in HTTP/2.

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

use crate::dataplane::limits::ClientSlot;
use crate::dataplane::watchdog::{HEAD_TIMEOUT, ReadKind, Watch, watchdog};
use crate::dataplane::worker::Worker;
use crate::error::{Error, Result};
use crate::settings::H2Settings;
use crate::state_dir::TlsMaterial;

/// The ALPN protocol of HTTP/2 over TLS (RFC 9113 §3.2).
const H2_ALPN: &[u8] = b"h2";

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
    cfg.alpn_protocols = vec![H2_ALPN.to_vec()];
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

/// One HTTPS connection: the TLS handshake within the head deadline, then HTTP/2.
async fn serve(
    w: Rc<Worker>,
    s: TcpStream,
    peer: SocketAddr,
    slot: ClientSlot,
    config: Arc<ServerConfig>,
) {
    let limits = &w.plane.limits;
    let watch = Rc::new(Watch::new(limits.client_write_timeout));
    let tick = watch.shortest(&[w.plane.request_body_timeout]) / 4;
    let metrics = Arc::clone(w.plane.registry.metrics());
    compio::runtime::spawn(watchdog(Rc::clone(&watch), s.clone(), tick, peer, metrics)).detach();
    watch.start(HEAD_TIMEOUT, ReadKind::Head);
    let tls = TlsStream::accept(s, config).await;
    watch.stop();
    match tls {
        Ok(tls) => {
            super::serve(w, tls, peer, BytesMut::new(), watch, Some(slot), "https").await;
        }
        Err(e) => {
            tracing::debug!(%peer, error = %e, "public TLS handshake failed");
            watch.finish();
        }
    }
}
