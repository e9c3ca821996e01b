//! The tunnel credentials file: what `tunnel create` writes and `tunnel run` reads.
//!
//! JSON with cloudflared's field names where cloudflared has the field (`AccountTag`,
//! `TunnelSecret`, `TunnelID`) plus ringtun's own (`TunnelName`, `EdgeCA`):
//!
//! ```json
//! {"AccountTag": "...", "TunnelID": "<uuid>", "TunnelName": "web",
//!  "TunnelSecret": "<base64>", "EdgeCA": "-----BEGIN CERTIFICATE-----..."}
//! ```
//!
//! A *token* ([`TunnelToken`], `ringtun tunnel token NAME`) carries the same in one line, plus
//! where the edge's discovery answers, so `tunnel run --token T` needs nothing else on the host.
//!
//! The file is created with mode 0600 in the `open` call itself, so it is never readable by
//! others, not even for an instant; an existing file is never overwritten. Reading a file that
//! others can read works, with a warning.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The tunnel's secret is the one type the registration proof takes
/// ([`ringtun_core::handshake::TunnelSecret`], whose `Debug` prints `***`); in a credentials
/// file and a token it is standard base64 (`secret_base64` below).
pub use ringtun_core::handshake::TunnelSecret;

/// A [`TunnelSecret`] as standard base64, for `#[serde(with = "secret_base64")]`: an empty or
/// non-base64 secret is refused.
mod secret_base64 {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    use super::TunnelSecret;

    pub(super) fn serialize<S: Serializer>(
        secret: &TunnelSecret,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(secret.expose()))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<TunnelSecret, D::Error> {
        let text = String::deserialize(d)?;
        let bytes = STANDARD.decode(text.trim()).map_err(|e| {
            serde::de::Error::custom(format!("TunnelSecret is not valid base64: {e}"))
        })?;
        if bytes.is_empty() {
            return Err(serde::de::Error::custom("TunnelSecret is empty"));
        }
        Ok(TunnelSecret::new(bytes))
    }
}

/// The contents of a credentials file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credentials {
    /// cloudflared's account tag; kept when present, unused by ringtun.
    #[serde(
        rename = "AccountTag",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub account_tag: Option<String>,
    /// The tunnel's ID (a UUID).
    #[serde(rename = "TunnelID")]
    pub tunnel_id: String,
    /// The tunnel's name, as given to `tunnel create`. Absent in cloudflared's files.
    #[serde(rename = "TunnelName", default)]
    pub tunnel_name: String,
    /// The secret proven to the edge at registration.
    #[serde(rename = "TunnelSecret", with = "secret_base64")]
    pub tunnel_secret: TunnelSecret,
    /// The PEM certificate of the edge's CA, to trust for links; absent means the system roots.
    #[serde(rename = "EdgeCA", default, skip_serializing_if = "Option::is_none")]
    pub edge_ca: Option<String>,
}

impl Credentials {
    /// Reads and parses a credentials file. Logs a warning when group or others may read it.
    pub fn read(path: &Path) -> Result<Credentials> {
        let text = std::fs::read_to_string(path).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                Error::CredentialsMissing {
                    path: path.to_owned(),
                }
            } else {
                Error::CredentialsIo {
                    path: path.to_owned(),
                    source,
                }
            }
        })?;
        if let Ok(meta) = std::fs::metadata(path)
            && is_too_open(meta.mode())
        {
            tracing::warn!(
                file = %path.display(),
                mode = format_args!("{:o}", meta.mode() & 0o777),
                "credentials file is readable by others; run chmod 600 on it"
            );
        }
        serde_json::from_str(&text).map_err(|source| Error::CredentialsJson {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes a new credentials file with mode 0600, creating its directory (mode 0700) if
    /// needed. Refuses to overwrite an existing file.
    pub fn write(&self, path: &Path) -> Result<()> {
        let io_err = |source| Error::CredentialsIo {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io_err)?;
        }
        let mut json =
            serde_json::to_vec_pretty(self).map_err(|source| Error::CredentialsJson {
                path: path.to_owned(),
                source,
            })?;
        json.push(b'\n');
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::AlreadyExists {
                    Error::CredentialsExist {
                        path: path.to_owned(),
                    }
                } else {
                    io_err(source)
                }
            })?;
        file.write_all(&json).map_err(io_err)?;
        file.sync_all().map_err(io_err)
    }
}

/// What `tunnel run --token` (or `TUNNEL_TOKEN`) needs, in one line: standard base64 of a small
/// JSON object, as cloudflared's tokens are, with cloudflared's keys where it has them:
///
/// ```json
/// {"a": "<account tag, optional>", "t": "<tunnel UUID>", "s": "<secret, base64>",
///  "c": "<edge CA, PEM>", "e": "<edge admin API address, for GET /discovery>"}
/// ```
///
/// A cloudflared token (no `c`, no `e`) decodes too; `--cacert` and `--edge-api` then supply
/// what it lacks. Its `Debug` hides the secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TunnelToken {
    /// cloudflared's account tag; kept when present, unused by ringtun.
    #[serde(rename = "a", default, skip_serializing_if = "Option::is_none")]
    pub account_tag: Option<String>,
    /// The tunnel's ID (a UUID).
    #[serde(rename = "t")]
    pub tunnel_id: String,
    /// The tunnel's secret.
    #[serde(rename = "s", with = "secret_base64")]
    pub secret: TunnelSecret,
    /// The edge CA in PEM, trusted for links as a credentials file's `EdgeCA` is.
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    pub edge_ca: Option<String>,
    /// The edge's admin API address, asked for `GET /discovery` (which needs no admin token).
    #[serde(rename = "e", default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

impl TunnelToken {
    /// The token for a tunnel's credentials, with the edge's discovery address.
    pub fn new(credentials: &Credentials, endpoint: &str) -> TunnelToken {
        TunnelToken {
            account_tag: credentials.account_tag.clone(),
            tunnel_id: credentials.tunnel_id.clone(),
            secret: credentials.tunnel_secret.clone(),
            edge_ca: credentials.edge_ca.clone(),
            endpoint: Some(endpoint.trim().to_owned()).filter(|e| !e.is_empty()),
        }
    }

    /// The token's text: standard base64 of its JSON.
    pub fn encode(&self) -> String {
        // Serializing strings and a secret into JSON cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        STANDARD.encode(json)
    }

    /// Reads a token's text. The error never repeats the text: it holds the secret.
    pub fn decode(text: &str) -> Result<TunnelToken> {
        let bad = |reason: String| Error::BadToken { reason };
        let text = text.trim();
        if text.is_empty() {
            return Err(bad("it is empty".to_owned()));
        }
        let json = STANDARD
            .decode(text)
            .map_err(|e| bad(format!("it is not base64 ({e})")))?;
        let token: TunnelToken = serde_json::from_slice(&json).map_err(|e| {
            bad(format!(
                "it does not hold a tunnel token's JSON ({})",
                e.classify_reason()
            ))
        })?;
        if uuid::Uuid::parse_str(token.tunnel_id.trim()).is_err() {
            return Err(bad("its tunnel ID (\"t\") is not a UUID".to_owned()));
        }
        Ok(token)
    }

    /// The token as credentials, for `tunnel run`.
    pub fn credentials(&self) -> Credentials {
        Credentials {
            account_tag: self.account_tag.clone(),
            tunnel_id: self.tunnel_id.clone(),
            tunnel_name: String::new(),
            tunnel_secret: self.secret.clone(),
            edge_ca: self.edge_ca.clone(),
        }
    }
}

/// The part of a JSON error that says what was wrong without quoting the input.
trait ClassifyReason {
    fn classify_reason(&self) -> String;
}

impl ClassifyReason for serde_json::Error {
    fn classify_reason(&self) -> String {
        match self.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                "not JSON".to_owned()
            }
            serde_json::error::Category::Io => "unreadable".to_owned(),
            // Data errors name the field (`missing field `t``) and the expected type; a
            // secret that is not base64 says only that.
            serde_json::error::Category::Data => {
                let text = self.to_string();
                text.split(" at line ").next().unwrap_or("").to_owned()
            }
        }
    }
}

/// Whether a file mode lets group or others read or write.
pub fn is_too_open(mode: u32) -> bool {
    mode & 0o077 != 0
}

/// `~/.ringtun/<tunnel ID>.json`, where `tunnel create` writes by default.
pub fn default_credentials_path(tunnel_id: &str) -> Result<PathBuf> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or(Error::NoHomeDir)?;
    Ok(PathBuf::from(home)
        .join(".ringtun")
        .join(format!("{tunnel_id}.json")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Credentials {
        Credentials {
            account_tag: None,
            tunnel_id: "6ff42ae2-765d-4adf-8112-31c55c1551ef".into(),
            tunnel_name: "web".into(),
            tunnel_secret: TunnelSecret::new(vec![1, 2, 3, 250, 251, 252]),
            edge_ca: Some("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".into()),
        }
    }

    fn tmp() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
    }

    #[test]
    fn round_trip_with_mode_0600() {
        let dir = tmp();
        let path = dir.path().join("sub").join("creds.json");
        let c = sample();
        c.write(&path).unwrap_or_else(|e| panic!("{e}"));
        let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(meta.mode() & 0o777, 0o600);
        let back = Credentials::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, c);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(text.contains("\"TunnelSecret\": \"AQID+vv8\""), "{text}");
        assert!(text.contains("\"TunnelID\""));
        assert!(!text.contains("AccountTag"));
        assert!(matches!(
            c.write(&path),
            Err(Error::CredentialsExist { .. })
        ));
    }

    #[test]
    fn secret_debug_is_hidden() {
        let dbg = format!("{:?}", sample());
        assert!(dbg.contains("tunnel_secret: ***"), "{dbg}");
        assert!(!dbg.contains("250"));
    }

    #[test]
    fn reads_a_cloudflared_file() {
        let dir = tmp();
        let path = dir.path().join("cf.json");
        std::fs::write(
            &path,
            r#"{"AccountTag":"abc","TunnelSecret":"c2VjcmV0","TunnelID":"6ff42ae2-765d-4adf-8112-31c55c1551ef","Endpoint":""}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let c = Credentials::read(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.account_tag.as_deref(), Some("abc"));
        assert_eq!(c.tunnel_secret.expose(), b"secret");
        assert_eq!(c.tunnel_name, "");
    }

    #[test]
    fn read_errors_are_clear() {
        let dir = tmp();
        let missing = dir.path().join("none.json");
        assert!(matches!(
            Credentials::read(&missing),
            Err(Error::CredentialsMissing { .. })
        ));
        let bad = dir.path().join("bad.json");
        std::fs::write(&bad, "{not json").unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(
            Credentials::read(&bad),
            Err(Error::CredentialsJson { .. })
        ));
        let b64 = dir.path().join("b64.json");
        std::fs::write(&b64, r#"{"TunnelID":"x","TunnelSecret":"!!!"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        let e = Credentials::read(&b64)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("not valid base64"), "{e}");
    }

    #[test]
    fn tokens_round_trip_and_bad_ones_are_refused_without_echo() {
        let c = sample();
        let token = TunnelToken::new(&c, "edge.example.net:7800");
        let text = token.encode();
        let back = TunnelToken::decode(&format!(" {text}\n")).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, token);
        assert_eq!(back.credentials().tunnel_secret, c.tunnel_secret);
        assert_eq!(back.credentials().edge_ca, c.edge_ca);
        assert_eq!(back.endpoint.as_deref(), Some("edge.example.net:7800"));
        // cloudflared's shape: a, t, s only.
        let cf = STANDARD
            .encode(r#"{"a":"acct","t":"6ff42ae2-765d-4adf-8112-31c55c1551ef","s":"c2VjcmV0"}"#);
        let t = TunnelToken::decode(&cf).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((t.edge_ca, t.endpoint), (None, None));
        for (bad, why) in [
            ("", "empty"),
            ("%%%not-base64", "not base64"),
            (&STANDARD.encode("hello"), "not JSON"),
            (
                &STANDARD.encode(r#"{"t":"x","s":"c2VjcmV0"}"#),
                "not a UUID",
            ),
            (
                &STANDARD.encode(r#"{"t":"6ff42ae2-765d-4adf-8112-31c55c1551ef"}"#),
                "missing field",
            ),
            (
                &STANDARD.encode(r#"{"t":"6ff42ae2-765d-4adf-8112-31c55c1551ef","s":"!!"}"#),
                "not valid base64",
            ),
        ] {
            let e = TunnelToken::decode(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(e.contains("token") && e.contains(why), "{bad}: {e}");
            assert!(bad.is_empty() || !e.contains(bad), "{e}");
        }
    }

    #[test]
    fn mode_check() {
        assert!(!is_too_open(0o100600));
        assert!(!is_too_open(0o400));
        assert!(is_too_open(0o644));
        assert!(is_too_open(0o660));
    }
}
