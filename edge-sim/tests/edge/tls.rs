//! The state directory's TLS material works with rustls: the server config accepts the chain
//! and key, and a client trusting only the CA accepts the server certificate for every edge
//! server IP and `localhost`, also after it was reissued for new servers.
use std::path::Path;
use std::sync::Arc;

use ringtun_edge_sim::settings::Overrides;
use ringtun_edge_sim::{Settings, StateDir, TlsMaterial};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

fn open(dir: &Path, data_centers: Vec<String>) -> StateDir {
    let settings = Settings::load(
        None,
        Overrides {
            state_dir: Some(dir.join("state")),
            data_centers,
            ..Overrides::default()
        },
    )
    .expect("settings");
    StateDir::open(&settings).expect("state dir")
}

fn check(tls: &TlsMaterial, names: &[&str], not: &[&str]) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(tls.cert_chain_der.clone(), tls.key_der.clone_key())
        .expect("rustls accepts the chain and key");

    let ca = CertificateDer::from_pem_slice(tls.ca_pem.as_bytes()).expect("CA PEM");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("CA as a root");
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .expect("verifier");
    let (leaf, rest) = tls.cert_chain_der.split_first().expect("a leaf");
    for name in names {
        let server_name = ServerName::try_from(*name).expect("server name");
        verifier
            .verify_server_cert(leaf, rest, &server_name, &[], UnixTime::now())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    for name in not {
        let server_name = ServerName::try_from(*name).expect("server name");
        assert!(
            verifier
                .verify_server_cert(leaf, rest, &server_name, &[], UnixTime::now())
                .is_err(),
            "{name} must not be covered"
        );
    }
}

#[test]
fn tls_material_verifies_against_the_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = open(tmp.path(), vec![]);
    check(
        first.tls(),
        &[
            "localhost",
            "127.0.1.1",
            "127.0.1.2",
            "127.0.2.1",
            "127.0.2.2",
        ],
        &["127.0.3.1"],
    );
    // Reissued from the reloaded CA for new servers: still trusted through the same CA.
    let second = open(tmp.path(), vec!["ams=127.0.3.1:7844".into()]);
    assert_eq!(second.tls().ca_pem, first.tls().ca_pem);
    check(second.tls(), &["localhost", "127.0.3.1"], &["127.0.1.1"]);
}
