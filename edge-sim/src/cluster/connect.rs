//! Connecting to etcd: TLS towards `https://` endpoints, a client certificate, a user, and
//! calls retried when they never left.
//!
//! - `--etcd-cacert FILE`: the CA (PEM) that signed the members' certificates; needed with
//!   `https://` endpoints (no system roots are compiled in).
//! - `--etcd-cert FILE` and `--etcd-key FILE`: this node's client certificate and key (PEM),
//!   for members started with `--client-cert-auth`.
//! - `--etcd-user NAME` and `--etcd-password-file FILE`: etcd's own authentication (`etcdctl
//!   auth enable`); the password is read from the file (its trailing newline dropped), never
//!   given on the command line, where every local user could read it.
//!
//! Every file is read and checked at start, before anything connects: a missing, unreadable or
//! malformed one fails the start with a message naming its flag. What only etcd can judge (a
//! CA that did not sign the member's certificate, a client certificate the member refuses, a
//! wrong password) fails the first connection, which is bounded by `--etcd-timeout-ms`, with
//! the reason and the flags to check.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::EtcdSettings;
use crate::error::{Error, Result};

/// How this node reaches etcd beyond the endpoints (flattened into the binary's command line).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct EtcdAccessFlags {
    /// CA certificate (PEM) that signed the etcd members' certificates; needed with https://
    /// etcd endpoints.
    #[arg(long, value_name = "FILE")]
    pub etcd_cacert: Option<PathBuf>,
    /// Client certificate (PEM) for etcd members that require one (--client-cert-auth); with
    /// --etcd-key.
    #[arg(long, value_name = "FILE")]
    pub etcd_cert: Option<PathBuf>,
    /// Private key (PEM) of --etcd-cert.
    #[arg(long, value_name = "FILE")]
    pub etcd_key: Option<PathBuf>,
    /// etcd user, when etcd's authentication is enabled; with --etcd-password-file.
    #[arg(long, value_name = "NAME")]
    pub etcd_user: Option<String>,
    /// File holding the password of --etcd-user (one line; its trailing newline is dropped).
    #[arg(long, value_name = "FILE")]
    pub etcd_password_file: Option<PathBuf>,
}

impl EtcdAccessFlags {
    /// Whether any of the flags was given.
    pub(super) fn any(&self) -> bool {
        self.etcd_cacert.is_some()
            || self.etcd_cert.is_some()
            || self.etcd_key.is_some()
            || self.etcd_user.is_some()
            || self.etcd_password_file.is_some()
    }
}

/// TLS and authentication towards etcd, as checked flags: paths, read at start (see
/// [`load`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdAccess {
    /// `--etcd-cacert`: set exactly when the endpoints are `https://`.
    pub ca: Option<PathBuf>,
    /// `--etcd-cert` and `--etcd-key`.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// `--etcd-user` and `--etcd-password-file`.
    pub user: Option<(String, PathBuf)>,
}

impl EtcdAccess {
    /// Checks the flags against the endpoints' scheme (`tls`: they are `https://`).
    pub(super) fn from_flags(flags: &EtcdAccessFlags, tls: bool) -> Result<EtcdAccess> {
        let client_cert = match (&flags.etcd_cert, &flags.etcd_key) {
            (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
            (None, None) => None,
            _ => {
                return Err(Error::Config(
                    "--etcd-cert and --etcd-key go together (a client certificate and its key)"
                        .into(),
                ));
            }
        };
        let user = match (&flags.etcd_user, &flags.etcd_password_file) {
            (Some(user), Some(file)) if !user.is_empty() => Some((user.clone(), file.clone())),
            (Some(_), Some(_)) => return Err(Error::Config("--etcd-user is empty".into())),
            (None, None) => None,
            _ => {
                return Err(Error::Config(
                    "--etcd-user and --etcd-password-file go together".into(),
                ));
            }
        };
        if tls && flags.etcd_cacert.is_none() {
            return Err(Error::Config(
                "https:// etcd endpoints need --etcd-cacert (the CA that signed the members' \
                 certificates)"
                    .into(),
            ));
        }
        if !tls && (flags.etcd_cacert.is_some() || client_cert.is_some()) {
            return Err(Error::Config(
                "--etcd-cacert, --etcd-cert and --etcd-key need https:// etcd endpoints".into(),
            ));
        }
        Ok(EtcdAccess {
            ca: flags.etcd_cacert.clone(),
            client_cert,
            user,
        })
    }
}

/// Reads and checks every file the flags name, and builds the client's options.
pub(super) fn load(settings: &EtcdSettings) -> Result<ConnectOptions> {
    let timeout = settings.timeout;
    let mut options = ConnectOptions::new()
        .with_connect_timeout(timeout)
        .with_timeout(timeout)
        // A dead connection (etcd killed, a partition) is noticed within about two
        // intervals, which ends the watch and starts a new list.
        .with_keep_alive(Duration::from_secs(1), timeout)
        .with_keep_alive_while_idle(true);
    let access = &settings.access;
    if let Some(ca) = &access.ca {
        let pem = read("--etcd-cacert", ca)?;
        check_ca("--etcd-cacert", ca, &pem)?;
        let mut tls = TlsOptions::new().ca_certificate(Certificate::from_pem(&pem));
        if let Some((cert, key)) = &access.client_cert {
            let cert_pem = read("--etcd-cert", cert)?;
            let key_pem = read("--etcd-key", key)?;
            check_client_cert(cert, &cert_pem, key, &key_pem)?;
            tls = tls.identity(Identity::from_pem(cert_pem, key_pem));
        }
        options = options.with_tls(tls);
    }
    if let Some((user, file)) = &access.user {
        let password = read("--etcd-password-file", file)?;
        let password = String::from_utf8(password).map_err(|_| {
            Error::Config(format!(
                "--etcd-password-file {}: not UTF-8 text",
                file.display()
            ))
        })?;
        let password = password.trim_end_matches(['\r', '\n']);
        if password.is_empty() {
            return Err(Error::Config(format!(
                "--etcd-password-file {}: empty",
                file.display()
            )));
        }
        options = options.with_user(user.clone(), password.to_owned());
    }
    Ok(options)
}

/// Connects (bounded by the call timeout); with a user, this authenticates too.
pub(super) async fn connect(
    settings: &EtcdSettings,
    options: ConnectOptions,
) -> std::result::Result<Client, String> {
    let timeout = settings.timeout;
    let connect = Client::connect(&settings.endpoints, Some(options));
    match tokio::time::timeout(timeout, connect).await {
        Ok(Ok(client)) => Ok(client),
        Ok(Err(e)) => Err(causes(&e)),
        Err(_) => Err(format!("no connection within {timeout:?}")),
    }
}

/// An etcd error and every cause under it, in one line.
pub(super) fn causes(e: &etcd_client::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `reason` (why start-up could not use etcd) and, when it is about TLS or authentication, the
/// flags to check.
pub(super) fn with_hint(reason: String, access: &EtcdAccess) -> String {
    let lower = reason.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| lower.contains(n));
    let tls = access.ca.is_some();
    let hint = if has(&["authentication failed", "invalid user id or password"]) {
        " (check --etcd-user and --etcd-password-file)"
    } else if has(&["user name is empty"]) {
        " (etcd's authentication is on: give --etcd-user and --etcd-password-file)"
    } else if has(&["permission denied"]) && access.user.is_some() {
        " (the role of --etcd-user must grant read and write on the whole --etcd-prefix)"
    } else if has(&["permission denied"]) {
        " (etcd's authentication is on: give --etcd-user and --etcd-password-file)"
    } else if has(&["authentication is not enabled"]) {
        " (etcd's authentication is off: drop --etcd-user and --etcd-password-file)"
    } else if has(&["certificaterequired", "badcertificate", "unknownca"]) {
        " (etcd refused this node's client certificate: check --etcd-cert and --etcd-key)"
    } else if has(&[
        "connection closed",
        "connection reset",
        "connectionreset",
        "broken pipe",
    ]) {
        // A member that refuses the client certificate (or its absence) closes the connection
        // after the handshake, and the alert it sent rarely reaches the error; one that serves
        // TLS closes a plaintext HTTP/2 connection the same way. A plain member port may also
        // close a TLS ClientHello without an answer (or answer it in plaintext: see below), so
        // with TLS a closed connection names both causes.
        if !tls {
            " (etcd closed the connection: if the members serve TLS, use https:// URLs and \
             --etcd-cacert)"
        } else if access.client_cert.is_some() {
            " (etcd closed the connection: check that --etcd-cert and --etcd-key are signed by \
             a CA the members trust, their --trusted-ca-file; or the members do not serve TLS \
             there: then use http:// URLs, without --etcd-cacert)"
        } else {
            " (etcd closed the connection: members started with --client-cert-auth need a \
             client certificate, --etcd-cert and --etcd-key; or the members do not serve TLS \
             there: then use http:// URLs, without --etcd-cacert)"
        }
    } else if tls && has(&["certificate", "unknownissuer", "invalid peer"]) {
        " (check --etcd-cacert: it must be the CA that signed the members' certificates)"
    } else if tls
        && has(&[
            "tls handshake eof",
            "corrupt message",
            "invalidcontenttype",
            "invalid content type",
        ])
    {
        " (the members may not serve TLS there: then use http:// URLs, without --etcd-cacert)"
    } else if tls && has(&["no answer", "no connection"]) {
        " (unreachable, or a TLS handshake that fails: check --etcd-cacert, --etcd-cert and \
         --etcd-key)"
    } else {
        ""
    };
    reason + hint
}

/// The most a file of these flags may hold: far above any certificate bundle, key or password,
/// and a bound on what a wrong path (a device, a log file) makes the start read.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// A file a flag names (at most [`MAX_FILE_BYTES`]), or an error naming the flag.
fn read(flag: &str, path: &Path) -> Result<Vec<u8>> {
    use std::io::Read as _;
    let fail = |why: String| Error::Config(format!("{flag} {}: {why}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| fail(format!("cannot read it: {e}")))?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| fail(format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(fail(format!("larger than {MAX_FILE_BYTES} bytes")));
    }
    Ok(bytes)
}

/// The CA file holds at least one certificate rustls accepts as a trust anchor.
fn check_ca(flag: &str, path: &Path, pem: &[u8]) -> Result<()> {
    let bad = |why: String| Error::Config(format!("{flag} {}: {why}", path.display()));
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| bad(format!("not PEM: {e:?}")))?;
    if certs.is_empty() {
        return Err(bad("no PEM certificate in it".into()));
    }
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certs);
    if added == 0 {
        return Err(bad("no usable CA certificate in it".into()));
    }
    Ok(())
}

/// The client certificate and key parse, and the key is the certificate's.
fn check_client_cert(cert: &Path, cert_pem: &[u8], key: &Path, key_pem: &[u8]) -> Result<()> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::Config(format!("--etcd-cert {}: not PEM: {e:?}", cert.display())))?;
    if chain.is_empty() {
        return Err(Error::Config(format!(
            "--etcd-cert {}: no PEM certificate in it",
            cert.display()
        )));
    }
    let key_der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| {
        Error::Config(format!(
            "--etcd-key {}: no PEM private key in it: {e:?}",
            key.display()
        ))
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS towards etcd: {e}")))?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_client_auth_cert(chain, key_der)
        .map_err(|e| {
            Error::Config(format!(
                "--etcd-cert {} and --etcd-key {}: {e}",
                cert.display(),
                key.display()
            ))
        })?;
    Ok(())
}

/// Runs `call` until it returns anything but a failure to connect. With several endpoints the
/// client spreads calls over them, and one whose member is down fails at once with a refused
/// connection; such a call never reached etcd, so sending it again (to another member) cannot
/// apply it twice. The caller's timeout bounds the retries.
pub(super) async fn retry_unsent<T, F, Fut>(
    mut call: F,
) -> std::result::Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    loop {
        match call().await {
            Err(e) if never_sent(&e) => tokio::time::sleep(Duration::from_millis(20)).await,
            other => return other,
        }
    }
}

/// Whether `e` is a failure to connect (the request was never sent).
fn never_sent(e: &etcd_client::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::ConnectionRefused
        {
            return true;
        }
        if let etcd_client::Error::GRpcStatus(status) = e
            && status.message() == "tcp connect error"
        {
            return true;
        }
        source = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(ca: bool, cert: bool, key: bool, user: bool, password: bool) -> EtcdAccessFlags {
        let path = |on: bool, name: &str| on.then(|| PathBuf::from(name));
        EtcdAccessFlags {
            etcd_cacert: path(ca, "ca.pem"),
            etcd_cert: path(cert, "c.pem"),
            etcd_key: path(key, "c.key"),
            etcd_user: user.then(|| "ringtun".to_owned()),
            etcd_password_file: path(password, "pw"),
        }
    }

    #[test]
    fn the_flags_go_in_pairs_and_tls_flags_with_https() {
        let ok = EtcdAccess::from_flags(&flags(true, true, true, true, true), true)
            .expect("everything with https");
        assert_eq!(ok.ca, Some(PathBuf::from("ca.pem")));
        assert!(ok.client_cert.is_some() && ok.user.is_some());
        let plain = EtcdAccess::from_flags(&flags(false, false, false, true, true), false)
            .expect("a user over http");
        assert_eq!(plain.ca, None);
        for (f, tls, flag) in [
            (
                flags(false, false, false, false, false),
                true,
                "--etcd-cacert",
            ),
            (flags(true, false, false, false, false), false, "https://"),
            (flags(true, true, false, false, false), true, "--etcd-key"),
            (flags(true, false, true, false, false), true, "--etcd-cert"),
            (
                flags(false, false, false, true, false),
                false,
                "--etcd-password-file",
            ),
            (
                flags(false, false, false, false, true),
                false,
                "--etcd-user",
            ),
        ] {
            let err = EtcdAccess::from_flags(&f, tls).expect_err(flag).to_string();
            assert!(err.contains(flag), "{flag}: {err}");
        }
    }

    #[test]
    fn a_failure_to_start_names_the_flags_to_check() {
        let tls =
            EtcdAccess::from_flags(&flags(true, false, false, false, false), true).expect("tls");
        let mtls =
            EtcdAccess::from_flags(&flags(true, true, true, false, false), true).expect("mtls");
        let user =
            EtcdAccess::from_flags(&flags(false, false, false, true, true), false).expect("user");
        let plain = EtcdAccess::default();
        let hint = |reason: &str, access: &EtcdAccess| with_hint(reason.to_owned(), access);
        assert!(hint("invalid peer certificate: UnknownIssuer", &tls).contains("--etcd-cacert"));
        assert!(
            hint("hyper::Error(Canceled, \"connection closed\")", &tls).contains("--etcd-cert")
        );
        assert!(hint("connection closed", &mtls).contains("signed by a CA the members trust"));
        assert!(hint("connection reset by peer", &mtls).contains("http://"));
        assert!(hint("connection reset by peer", &tls).contains("http://"));
        assert!(hint("connection closed", &plain).contains("https://"));
        assert!(hint("hyper::Error(Io, Kind(ConnectionReset))", &plain).contains("https://"));
        assert!(hint("tls handshake eof", &tls).contains("http://"));
        assert!(
            hint(
                "etcdserver: authentication failed, invalid user ID or password",
                &user
            )
            .contains("--etcd-password-file")
        );
        assert!(hint("etcdserver: permission denied", &user).contains("--etcd-prefix"));
        assert!(hint("etcdserver: user name is empty", &plain).contains("--etcd-user"));
        // Nothing to add: the reason stands alone.
        assert_eq!(
            hint("no connection within 2s", &plain),
            "no connection within 2s"
        );
    }
}
