//! Building rustls configurations for links: the connector trusts the edge's own CA, the edge
//! presents its certificate chain. TLS 1.3 only, ALPN [`ALPN`].
//!
//! Also the client side towards `https://` origins, which are not ours: TLS 1.2 and 1.3, ALPN
//! `http/1.1`, trust from a given root store, or (insecure, by operator choice) none at all.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

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
        .map_err(TlsError::ConfigRejected)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

/// The ALPN protocol offered to `https://` origins.
pub const HTTP1_ALPN: &[u8] = b"http/1.1";

/// A client configuration for HTTP/1.1 origins that trusts `roots` (for example the web PKI
/// roots). TLS 1.2 and 1.3; the server name is given per connection.
pub fn origin_client_config(roots: RootCertStore) -> Result<Arc<ClientConfig>, TlsError> {
    let mut cfg = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::ConfigRejected)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![HTTP1_ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

/// A client configuration for HTTP/1.1 origins that accepts **any** certificate for any name
/// (cloudflared's `noTLSVerify`). DANGER: the connection is encrypted but the origin is not
/// authenticated. Handshake signatures are still checked, so the peer must hold the key of the
/// certificate it shows.
pub fn danger_origin_client_config_no_verify() -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let mut cfg = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::ConfigRejected)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(DangerAcceptAnyCertificate(provider)))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![HTTP1_ALPN.to_vec()];
    Ok(Arc::new(cfg))
}

/// The verifier behind [`danger_origin_client_config_no_verify`].
#[derive(Debug)]
struct DangerAcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for DangerAcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A server configuration presenting `cert_chain` (leaf first, DER) with `key` (DER).
pub fn server_config(
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(TlsError::ConfigRejected)?
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
