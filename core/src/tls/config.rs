//! Building rustls configurations for links: the connector trusts the edge's own CA, the edge
//! presents its certificate chain. TLS 1.3 only, ALPN [`ALPN`].

use std::sync::Arc;

use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::error::TlsError;

/// The ALPN protocol name both ends of a link offer.
pub const ALPN: &[u8] = b"ringtun/1";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring::default_provider())
}

/// A client configuration that trusts exactly the CA certificates in `ca_pem` (PEM, one or
/// more `CERTIFICATE` blocks; no web PKI roots). The server name is given per connection to
/// [`TlsStream::connect`](super::TlsStream::connect).
pub fn client_config(ca_pem: &[u8]) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    let mut n = 0;
    for cert in CertificateDer::pem_slice_iter(ca_pem) {
        let cert = cert.map_err(|e| TlsError::Config(format!("bad ca pem: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| TlsError::Config(format!("bad ca certificate: {e}")))?;
        n += 1;
    }
    if n == 0 {
        return Err(TlsError::Config("no certificate in the ca pem".into()));
    }
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

/// A server configuration presenting `cert_chain` (leaf first, DER) with `key` (DER).
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(cert_chain, key)
        .map_err(|e| TlsError::Config(format!("bad certificate or key: {e}")))?;
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    // Links are long-lived and not resumed: no session tickets to send or keep.
    cfg.send_tls13_tickets = 0;
    Ok(Arc::new(cfg))
}

/// [`server_config`] from PEM: the certificate chain (leaf first) and the private key.
pub fn server_config_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Config(format!("bad certificate pem: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError::Config("no certificate in the pem".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| TlsError::Config(format!("bad private key pem: {e}")))?;
    server_config(chain, key)
}
