//! `originRequest.caPool`: a PEM file of CA certificates trusted for an origin's TLS
//! certificate, in addition to the web PKI roots, as cloudflared adds its `caPool` to the
//! system pool.
//!
//! The file is read and checked once, when the config is loaded (`tunnel run`, `ingress
//! validate`, a reload), so a missing file or a PEM without a certificate is a config error,
//! never a 502 at the first request. The rustls client configuration is built then too and
//! shared by every connection to origins that name the file. It is interned by the
//! certificates it trusts: a reload of the same file gives the same configuration, so pooled
//! origin connections (keyed by it, `proxy/pool.rs`) survive the reload.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ringtun_core::tls::origin_client_config;
use rustls::ClientConfig;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// A loaded `caPool`: the file's certificates and the client configuration that trusts them
/// and the web PKI roots.
#[derive(Clone)]
pub struct OriginCaPool {
    /// The file, as written in the config (relative paths are relative to the working
    /// directory, as in cloudflared).
    pub path: PathBuf,
    /// The certificates the file holds, in order.
    certs: Arc<[CertificateDer<'static>]>,
    /// Trusts the web PKI roots and `certs`.
    config: Arc<ClientConfig>,
}

impl OriginCaPool {
    /// Reads `path` and builds the client configuration. The error is the reason, for a
    /// [`ConfigField`](crate::error::Error::ConfigField) message.
    pub fn load(path: &Path) -> Result<OriginCaPool, String> {
        let pem = std::fs::read(path)
            .map_err(|e| format!("cannot read the CA pool {}: {e}", path.display()))?;
        OriginCaPool::from_pem(path, &pem)
    }

    /// Parses PEM text (one or more `CERTIFICATE` blocks; other blocks are skipped).
    pub fn from_pem(path: &Path, pem: &[u8]) -> Result<OriginCaPool, String> {
        let bad = |why: String| format!("the CA pool {} is not usable: {why}", path.display());
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("bad PEM: {e}")))?;
        if certs.is_empty() {
            return Err(bad("it holds no PEM CERTIFICATE block".into()));
        }
        let certs: Arc<[CertificateDer<'static>]> = certs.into();
        let config = interned_config(&certs).map_err(bad)?;
        Ok(OriginCaPool {
            path: path.to_owned(),
            certs,
            config,
        })
    }

    /// The client configuration trusting the web PKI roots and this file's certificates.
    pub fn client_config(&self) -> &Arc<ClientConfig> {
        &self.config
    }
}

/// The client configuration trusting the web PKI roots and `certs`, built once per distinct
/// set of certificates in the process (a handful: one per CA file an operator names).
fn interned_config(certs: &Arc<[CertificateDer<'static>]>) -> Result<Arc<ClientConfig>, String> {
    type Interned = HashMap<Arc<[CertificateDer<'static>]>, Arc<ClientConfig>>;
    static BUILT: Mutex<Option<Interned>> = Mutex::new(None);
    let mut built = BUILT.lock().unwrap_or_else(|p| p.into_inner());
    let built = built.get_or_insert_with(HashMap::new);
    if let Some(config) = built.get(certs) {
        return Ok(config.clone());
    }
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for (i, cert) in certs.iter().enumerate() {
        roots
            .add(cert.clone())
            .map_err(|e| format!("certificate {} is invalid: {e}", i + 1))?;
    }
    let config = origin_client_config(roots).map_err(|e| e.to_string())?;
    built.insert(certs.clone(), config.clone());
    Ok(config)
}

impl std::fmt::Debug for OriginCaPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OriginCaPool")
            .field("path", &self.path)
            .field("certs", &self.certs.len())
            .finish_non_exhaustive()
    }
}

/// Two pools are the same when they name the same file with the same certificates.
impl PartialEq for OriginCaPool {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.certs == other.certs
    }
}

impl Eq for OriginCaPool {}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_pem() -> String {
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut params =
            rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("{e}"))
            .pem()
    }

    #[test]
    fn loads_a_pem_file_of_cas() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let file = dir.path().join("cas.pem");
        std::fs::write(&file, format!("{}{}", ca_pem(), ca_pem()))
            .unwrap_or_else(|e| panic!("{e}"));
        let pool = OriginCaPool::load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pool.certs.len(), 2);
        let again = OriginCaPool::load(&file).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(pool, again);
        assert!(
            Arc::ptr_eq(pool.client_config(), again.client_config()),
            "the same certificates share one configuration"
        );
    }

    #[test]
    fn refuses_missing_files_and_bad_pem() {
        let e = OriginCaPool::load(Path::new("/nonexistent/cas.pem")).err();
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("cannot read the CA pool /nonexistent/cas.pem")),
            "{e:?}"
        );
        let e = OriginCaPool::from_pem(Path::new("x.pem"), b"not a certificate\n").err();
        assert!(
            e.as_deref()
                .is_some_and(|e| e.contains("no PEM CERTIFICATE")),
            "{e:?}"
        );
        let broken = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        let e = OriginCaPool::from_pem(Path::new("x.pem"), broken.as_bytes()).err();
        assert!(e.as_deref().is_some_and(|e| e.contains("x.pem")), "{e:?}");
    }
}
