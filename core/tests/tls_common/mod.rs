//! Helpers shared by the `tls_*` and `handshake_*` integration tests: a throwaway CA and
//! server certificate.

#![allow(dead_code)]

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::{ClientConfig, ServerConfig};

/// The name the test server certificate is issued for.
pub const SERVER_NAME: &str = "edge.ringtun.test";

/// A CA (PEM) and a server configuration whose certificate it signed.
pub struct Pki {
    pub ca_pem: String,
    pub server: Arc<ServerConfig>,
    pub client: Arc<ClientConfig>,
}

/// Makes a fresh CA and a server certificate for [`SERVER_NAME`] and `127.0.0.1`.
pub fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("ca params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca cert");
    let key = rcgen::KeyPair::generate().expect("server key");
    let params = rcgen::CertificateParams::new(vec![SERVER_NAME.to_string(), "127.0.0.1".into()])
        .expect("server params");
    let cert = params.signed_by(&key, &ca).expect("server cert");
    let chain: Vec<CertificateDer<'static>> = vec![cert.der().clone(), ca.der().clone()];
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let server = ringtun_core::tls::server_config(chain, key).expect("server config");
    let ca_pem = ca.pem();
    let client = ringtun_core::tls::client_config(ca_pem.as_bytes()).expect("client config");
    Pki {
        ca_pem,
        server,
        client,
    }
}
