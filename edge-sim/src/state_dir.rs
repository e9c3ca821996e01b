//! The state directory: created at first start, reused afterwards.
//!
//! | file | mode | content |
//! |---|---|---|
//! | (the directory) | 0700 | |
//! | `admin-token` | 0600 | the admin bearer token, 64 hex digits (32 random bytes) |
//! | `ca.pem` | 0644 | the edge CA certificate; connectors trust it |
//! | `ca-key.pem` | 0600 | the CA key |
//! | `server.pem` | 0644 | the edge servers' certificate, signed by the CA |
//! | `server-key.pem` | 0600 | its key |
//! | `server-sans` | 0644 | the SANs the server certificate was issued for, one a line |
//! | `registry.db` | (SQLite) | tunnels and routes, see [`crate::registry`] |
//!
//! The server certificate covers every configured edge server IP and `localhost`. When the
//! configured servers change, it is reissued from the same CA, so connectors keep trusting it.
//! The CA's parameters are rebuilt from code on each start: its subject and key identifier depend
//! only on the constant name and the stored key, so the rebuilt issuer matches `ca.pem`.
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};
use crate::settings::Settings;

const CA_NAME: &str = "ringtun edge CA";
const TOKEN_FILE: &str = "admin-token";
const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";
const SERVER_CERT: &str = "server.pem";
const SERVER_KEY: &str = "server-key.pem";
const SERVER_SANS: &str = "server-sans";
/// The registry database's file name inside the state directory.
pub const REGISTRY_DB: &str = "registry.db";

/// The admin bearer token. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// Wraps a token read from elsewhere (a flag, a file).
    pub fn new(token: impl Into<String>) -> Self {
        AdminToken(token.into())
    }

    /// The token text, for an `Authorization: Bearer` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token, compared in time independent of where the first
    /// difference is (`subtle`, the crate `hmac` compares its tags with), so a client cannot
    /// find the token byte by byte from response times.
    pub fn matches(&self, presented: &str) -> bool {
        subtle::ConstantTimeEq::ct_eq(self.0.as_bytes(), presented.as_bytes()).into()
    }

    fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
        AdminToken(bytes.iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// The TLS material an edge server needs: feed `cert_chain_der` and `key_der` to
/// `rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(..)`.
pub struct TlsMaterial {
    /// The CA certificate in PEM, for connectors (served by `/discovery`).
    pub ca_pem: String,
    /// The server certificate chain in DER, leaf first (the leaf, then the CA).
    pub cert_chain_der: Vec<CertificateDer<'static>>,
    /// The server's private key in DER (PKCS#8).
    pub key_der: PrivateKeyDer<'static>,
}

impl Clone for TlsMaterial {
    fn clone(&self) -> Self {
        TlsMaterial {
            ca_pem: self.ca_pem.clone(),
            cert_chain_der: self.cert_chain_der.clone(),
            key_der: self.key_der.clone_key(),
        }
    }
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("cert_chain_der", &self.cert_chain_der.len())
            .field("key_der", &"***")
            .finish_non_exhaustive()
    }
}

/// A loaded state directory.
#[derive(Debug)]
pub struct StateDir {
    path: PathBuf,
    admin_token: AdminToken,
    tls: TlsMaterial,
}

impl StateDir {
    /// Creates the state directory and its files at first start, or loads them; reissues the
    /// server certificate when the configured servers changed.
    pub fn open(settings: &Settings) -> Result<StateDir> {
        let path = settings.state_dir.clone();
        if !path.exists() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .map_err(|e| Error::state("create", &path, e))?;
            tracing::info!(path = %path.display(), "state directory created");
        }

        let token_path = path.join(TOKEN_FILE);
        let admin_token = if token_path.exists() {
            let token = read(&token_path)?.trim().to_owned();
            if token.is_empty() {
                return Err(corrupt(&token_path, "empty admin token"));
            }
            AdminToken(token)
        } else {
            let token = AdminToken::generate();
            write_new(&token_path, format!("{}\n", token.0).as_bytes(), 0o600)?;
            token
        };

        let ca_key_path = path.join(CA_KEY);
        let ca_cert_path = path.join(CA_CERT);
        let (ca_key, ca_pem) = if ca_key_path.exists() && ca_cert_path.exists() {
            let key = KeyPair::from_pem(&read(&ca_key_path)?)
                .map_err(|e| corrupt(&ca_key_path, &e.to_string()))?;
            (key, read(&ca_cert_path)?)
        } else {
            let key = KeyPair::generate()?;
            let cert = ca_params(CA_NAME).self_signed(&key)?;
            write_new(&ca_key_path, key.serialize_pem().as_bytes(), 0o600)?;
            write_new(&ca_cert_path, cert.pem().as_bytes(), 0o644)?;
            // A new CA invalidates any server certificate from an older one.
            remove_if_exists(&path.join(SERVER_SANS))?;
            (key, cert.pem())
        };
        let ca_der = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| corrupt(&ca_cert_path, &e.to_string()))?;

        let sans = server_sans(settings);
        let sans_path = path.join(SERVER_SANS);
        let cert_path = path.join(SERVER_CERT);
        let key_path = path.join(SERVER_KEY);
        let current = sans_path
            .exists()
            .then(|| read(&sans_path))
            .transpose()?
            .map(|s| s.lines().map(str::to_owned).collect::<Vec<_>>());
        if current.as_ref() != Some(&sans) || !cert_path.exists() || !key_path.exists() {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(sans.clone())?;
            params
                .distinguished_name
                .push(DnType::CommonName, "ringtun edge");
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            params.use_authority_key_identifier_extension = true;
            let issuer = Issuer::new(ca_params(CA_NAME), &ca_key);
            let cert = params.signed_by(&key, &issuer)?;
            replace(&key_path, key.serialize_pem().as_bytes(), 0o600)?;
            replace(&cert_path, cert.pem().as_bytes(), 0o644)?;
            replace(
                &sans_path,
                format!("{}\n", sans.join("\n")).as_bytes(),
                0o644,
            )?;
            if current.is_some() {
                tracing::info!(sans = %sans.join(","), "server certificate reissued for new edge servers");
            }
        }
        let leaf = CertificateDer::from_pem_slice(read(&cert_path)?.as_bytes())
            .map_err(|e| corrupt(&cert_path, &e.to_string()))?;
        let key_der = PrivateKeyDer::from_pem_slice(read(&key_path)?.as_bytes())
            .map_err(|e| corrupt(&key_path, &e.to_string()))?;

        Ok(StateDir {
            path,
            admin_token,
            tls: TlsMaterial {
                ca_pem,
                cert_chain_der: vec![leaf, ca_der],
                key_der,
            },
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The admin bearer token.
    pub fn admin_token(&self) -> &AdminToken {
        &self.admin_token
    }

    /// Where the admin token is stored (what clients read by default).
    pub fn admin_token_path(&self) -> PathBuf {
        self.path.join(TOKEN_FILE)
    }

    /// The registry database path.
    pub fn registry_path(&self) -> PathBuf {
        self.path.join(REGISTRY_DB)
    }

    /// The TLS material for the edge servers.
    pub fn tls(&self) -> &TlsMaterial {
        &self.tls
    }
}

/// The parameters of a CA named `common_name` that signs server (or node) certificates: the
/// edge's own CA here, the cluster CA of peer links in `cluster/ca.rs`. An issuer built from
/// the same parameters carries the same name as the certificate.
pub(crate) fn ca_params(common_name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// `localhost`, then every distinct edge server IP, in configured order.
fn server_sans(settings: &Settings) -> Vec<String> {
    let mut sans = vec!["localhost".to_owned()];
    for addr in settings.server_addrs() {
        let ip = addr.ip().to_string();
        if !sans.contains(&ip) {
            sans.push(ip);
        }
    }
    sans
}

fn corrupt(path: &Path, reason: &str) -> Error {
    Error::CorruptState {
        path: path.to_path_buf(),
        reason: reason.to_owned(),
    }
}

fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::state("read", path, e))
}

/// Writes a file that must not exist yet, created with `mode` (so a secret is never readable by
/// others, not even briefly).
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::state("create", path, e))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| Error::state("write", path, e))?;
    // The umask may have narrowed the mode; make it exact.
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(|e| Error::state("set permissions on", path, e))
}

/// Replaces a file: write a temporary sibling with `mode`, then rename over.
fn replace(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    let tmp = path.with_extension("tmp");
    remove_if_exists(&tmp)?;
    write_new(&tmp, bytes, mode)?;
    fs::rename(&tmp, path).map_err(|e| Error::state("write", path, e))
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::state("remove", path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::Overrides;

    fn settings(dir: &Path, dcs: Vec<String>) -> Settings {
        Settings::load(
            None,
            Overrides {
                state_dir: Some(dir.join("state")),
                data_centers: dcs,
                ..Overrides::default()
            },
        )
        .expect("valid settings")
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("stat").permissions().mode() & 0o777
    }

    #[test]
    fn admin_token_matches_only_itself() {
        let t = AdminToken::new("s3cret");
        assert!(t.matches("s3cret"));
        for other in ["", "s3cre", "s3cret!", "S3cret", "x3cret"] {
            assert!(!t.matches(other), "{other:?}");
        }
    }

    #[test]
    fn first_start_then_reuse() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let s = settings(tmp.path(), vec![]);
        let first = StateDir::open(&s).expect("first start");
        let dir = first.path().to_path_buf();
        assert_eq!(mode(&dir), 0o700);
        for f in [TOKEN_FILE, CA_KEY, SERVER_KEY] {
            assert_eq!(mode(&dir.join(f)), 0o600, "{f}");
        }
        assert_eq!(first.admin_token().expose().len(), 64);
        assert_eq!(first.tls().cert_chain_der.len(), 2);
        assert!(!format!("{first:?}").contains(first.admin_token().expose()));
        let sans = read(&dir.join(SERVER_SANS)).expect("sans");
        for ip in [
            "localhost",
            "127.0.1.1",
            "127.0.1.2",
            "127.0.2.1",
            "127.0.2.2",
        ] {
            assert!(sans.lines().any(|l| l == ip), "{ip} in {sans}");
        }

        let second = StateDir::open(&s).expect("second start");
        assert_eq!(second.admin_token(), first.admin_token());
        assert_eq!(second.tls().ca_pem, first.tls().ca_pem);
        assert_eq!(second.tls().cert_chain_der, first.tls().cert_chain_der);

        // New servers: same CA and token, a new server certificate covering the new address.
        let changed = settings(tmp.path(), vec!["ams=127.0.3.1:7844".into()]);
        let third = StateDir::open(&changed).expect("third start");
        assert_eq!(third.admin_token(), first.admin_token());
        assert_eq!(third.tls().ca_pem, first.tls().ca_pem);
        assert_eq!(third.tls().cert_chain_der[1], first.tls().cert_chain_der[1]);
        assert_ne!(third.tls().cert_chain_der[0], first.tls().cert_chain_der[0]);
        let sans = read(&dir.join(SERVER_SANS)).expect("sans");
        assert!(sans.lines().any(|l| l == "127.0.3.1"));
        assert_eq!(mode(&dir.join(SERVER_KEY)), 0o600);
    }
}
