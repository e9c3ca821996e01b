//! The TLS of peer links: a node certificate issued at start by the cluster CA, and the
//! rustls configurations of both ends, each trusting that CA only. TLS 1.3, ALPN [`ALPN`].
use std::sync::Arc;

use rcgen::{CertificateParams, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair};
use rustls::crypto::{CryptoProvider, ring};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use crate::cluster::{ClusterCa, ca_params};
use crate::error::{Error, Result};

/// The ALPN protocol both ends of a peer link offer (it is not a connector link).
pub(crate) const ALPN: &[u8] = b"ringtun-peer/1";

/// The name a node's certificate is issued for, and that a dialer expects: the node ID under a
/// name no DNS resolves.
pub(crate) fn node_name(node: &str) -> String {
    format!("{node}.node.ringtun")
}

/// Both ends' TLS configurations of this node.
#[derive(Debug, Clone)]
pub(crate) struct PeerTls {
    /// The listener's: presents this node's certificate, requires a client certificate of the
    /// cluster CA.
    pub(crate) server: Arc<ServerConfig>,
    /// The dialer's: presents this node's certificate, trusts only the cluster CA.
    pub(crate) client: Arc<ClientConfig>,
}

fn tls_error(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Config(format!("peer links: {what}: {e}"))
}

impl PeerTls {
    /// Issues this node (`node`) a certificate signed by the cluster CA and builds both
    /// configurations.
    pub(crate) fn new(ca: &ClusterCa, node: &str) -> Result<PeerTls> {
        let ca_key = KeyPair::from_pem(&ca.key_pem)
            .map_err(|e| tls_error("the cluster CA key in etcd does not decode", e))?;
        let ca_der = CertificateDer::from_pem_slice(ca.cert_pem.as_bytes())
            .map_err(|e| tls_error("the cluster CA certificate in etcd does not decode", e))?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(vec![node_name(node)])?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("ringtun edge node {node}"));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::new(ca_params(), &ca_key);
        let cert = params.signed_by(&key, &issuer)?;
        let chain = vec![cert.der().clone(), ca_der.clone()];
        let key_der = PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())
            .map_err(|e| tls_error("node key", e))?;

        let mut roots = RootCertStore::empty();
        roots
            .add(ca_der)
            .map_err(|e| tls_error("the cluster CA certificate", e))?;
        let roots = Arc::new(roots);
        let provider: Arc<CryptoProvider> = Arc::new(ring::default_provider());

        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::clone(&roots), Arc::clone(&provider))
                .build()
                .map_err(|e| tls_error("client verifier", e))?;
        let mut server = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error("server config", e))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key_der.clone_key())
            .map_err(|e| tls_error("server certificate", e))?;
        server.alpn_protocols = vec![ALPN.to_vec()];
        server.send_tls13_tickets = 0;

        let mut client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| tls_error("client config", e))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key_der)
            .map_err(|e| tls_error("client certificate", e))?;
        client.alpn_protocols = vec![ALPN.to_vec()];
        Ok(PeerTls {
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }
}
