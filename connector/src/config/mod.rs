//! The connector's YAML config, in cloudflared's layout.
//!
//! Loading goes in three steps, so a cloudflared `config.yml` loads unchanged:
//! 1. parse the text into a YAML tree;
//! 2. remove the fields ringtun does not know, and warn about each by its path
//!    ([`ConfigWarning`]);
//! 3. deserialize the rest into serde structs and convert them once into validated settings:
//!    [`Config`] with its [`IngressRules`] (compiled regexes,
//!    parsed services) and [`OriginRequest`] defaults.
//!
//! Where the file is found when `--config` is absent: see [`find_config_file`].

mod ca_pool;
mod duration;
mod locate;
mod origin_request;
pub(crate) mod raw;
mod unknown;

use std::path::{Path, PathBuf};

pub use ca_pool::OriginCaPool;
pub use duration::{ConfigDuration, parse_duration};
pub use locate::{default_locations, find_config_file};
pub use origin_request::{DEFAULT_BUFFERED_BODY_LIMIT, OriginRequest};
pub use unknown::ConfigWarning;

use crate::error::{Error, Result};
use crate::ingress::IngressRules;
use raw::RawConfig;

/// How many links a connector keeps by default (`--ha-connections`, `ha-connections:`).
pub const DEFAULT_HA_CONNECTIONS: usize = 4;

/// The most links one connector may keep. Each link costs the edge a TLS session and a slot;
/// more than a handful adds no availability.
pub const MAX_HA_CONNECTIONS: usize = 16;

/// Checks a number of links (`--ha-connections`, `ha-connections:`): 1 to
/// [`MAX_HA_CONNECTIONS`]. The error is the reason.
pub fn check_ha_connections(n: i128) -> std::result::Result<usize, String> {
    match usize::try_from(n) {
        Ok(n) if (1..=MAX_HA_CONNECTIONS).contains(&n) => Ok(n),
        _ => Err(format!(
            "ha-connections must be from 1 to {MAX_HA_CONNECTIONS}, not {n}"
        )),
    }
}

/// A loaded and validated config file.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from; `None` when parsed from a string.
    pub source: Option<PathBuf>,
    /// `tunnel`: the tunnel's name or ID.
    pub tunnel: Option<String>,
    /// `credentials-file`: where the tunnel's credentials JSON is.
    pub credentials_file: Option<PathBuf>,
    /// `ha-connections`: how many links to keep (checked: 1 to [`MAX_HA_CONNECTIONS`]);
    /// `--ha-connections` overrides it.
    pub ha_connections: Option<usize>,
    /// The global `originRequest` settings, with defaults filled in.
    pub origin_request: OriginRequest,
    /// The ingress rules; `None` when the file has none (then `--url` must give the origin).
    pub ingress: Option<IngressRules>,
    /// Fields that were ignored, in file order. Each was also logged at warn level.
    pub warnings: Vec<ConfigWarning>,
}

impl Config {
    /// Reads, parses and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ConfigRead {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text, path)?;
        config.source = Some(path.to_owned());
        Ok(config)
    }

    /// Parses and validates config text (as if read from a file named `<string>`).
    pub fn from_yaml_str(text: &str) -> Result<Config> {
        Self::parse(text, Path::new("<string>"))
    }

    fn parse(text: &str, path: &Path) -> Result<Config> {
        let mut doc: serde_yaml_ng::Value =
            serde_yaml_ng::from_str(text).map_err(|source| Error::ConfigYaml {
                path: path.to_owned(),
                source,
            })?;
        match doc {
            serde_yaml_ng::Value::Null => doc = serde_yaml_ng::Value::Mapping(Default::default()),
            serde_yaml_ng::Value::Mapping(_) => {}
            _ => {
                return Err(Error::ConfigField {
                    field: "(top level)".into(),
                    message: "the config file must be a mapping of fields".into(),
                });
            }
        }
        let (raw, warnings): (RawConfig, _) = unknown::deserialize(doc).map_err(|e| {
            let field = e.path().to_string();
            Error::ConfigField {
                field,
                message: e.into_inner().to_string(),
            }
        })?;
        for w in &warnings {
            tracing::warn!(field = %w.field, file = %path.display(), "unsupported config field ignored");
        }
        let ha_connections = raw
            .ha_connections
            .map(|n| check_ha_connections(n.into()))
            .transpose()
            .map_err(|message| Error::ConfigField {
                field: "ha-connections".into(),
                message,
            })?;
        let origin_request =
            OriginRequest::default().overlay(&raw.origin_request, "originRequest")?;
        let ingress = if raw.ingress.is_empty() {
            None
        } else {
            Some(IngressRules::from_raw(&raw.ingress, &origin_request)?)
        };
        let no_verify = std::iter::once(&origin_request)
            .chain(
                ingress
                    .iter()
                    .flat_map(|r| r.rules().iter().map(|r| &r.origin_request)),
            )
            .any(|o| o.danger_no_tls_verify);
        if no_verify {
            tracing::warn!(
                file = %path.display(),
                "noTLSVerify is set: certificates of https origins are not checked"
            );
        }
        Ok(Config {
            source: None,
            tunnel: raw.tunnel,
            credentials_file: raw.credentials_file,
            ha_connections,
            origin_request,
            ingress,
            warnings,
        })
    }

    /// The ingress rules to serve, given an optional `--url`.
    ///
    /// As in cloudflared: `--url` alone is a single catch-all rule to that URL; `--url` together
    /// with ingress rules in the file is an error; neither is an error too.
    pub fn ingress_for(&self, url: Option<&str>) -> Result<IngressRules> {
        match (url, &self.ingress) {
            (Some(_), Some(_)) => Err(Error::UrlIncompatibleWithIngress),
            (Some(url), None) => IngressRules::from_url(url, &self.origin_request),
            (None, Some(rules)) => Ok(rules.clone()),
            (None, None) => Err(Error::NoIngressRules),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn load(yaml: &str) -> Config {
        match Config::from_yaml_str(yaml) {
            Ok(c) => c,
            Err(e) => panic!("config should load: {e}"),
        }
    }

    fn load_err(yaml: &str) -> Error {
        match Config::from_yaml_str(yaml) {
            Ok(_) => panic!("config should be refused"),
            Err(e) => e,
        }
    }

    #[test]
    fn globals_and_per_rule_overrides() {
        let c = load(
            r#"
tunnel: 6ff42ae2-765d-4adf-8112-31c55c1551ef
credentials-file: /root/.cloudflared/6ff42ae2-765d-4adf-8112-31c55c1551ef.json
originRequest:
  connectTimeout: 10s
  keepAliveTimeout: 1m30s
ingress:
  - hostname: a.example.com
    service: https://localhost:8443
    originRequest:
      noTLSVerify: true
      originServerName: internal.example.com
      connectTimeout: 2s
  - service: http_status:404
"#,
        );
        assert_eq!(
            c.tunnel.as_deref(),
            Some("6ff42ae2-765d-4adf-8112-31c55c1551ef")
        );
        assert_eq!(c.origin_request.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.origin_request.keep_alive_timeout, Duration::from_secs(90));
        let Some(rules) = &c.ingress else {
            panic!("rules expected")
        };
        let r0 = &rules.rules()[0].origin_request;
        assert_eq!(r0.connect_timeout, Duration::from_secs(2));
        assert!(r0.danger_no_tls_verify);
        assert_eq!(r0.keep_alive_timeout, Duration::from_secs(90));
        assert_eq!(
            r0.origin_server_name.as_deref(),
            Some("internal.example.com")
        );
        let r1 = &rules.rules()[1].origin_request;
        assert_eq!(r1.connect_timeout, Duration::from_secs(10));
        assert!(!r1.danger_no_tls_verify);
    }

    #[test]
    fn unknown_fields_are_warned_not_fatal() {
        let c = load(
            "loglevel: debug\nwarp-routing: {}\ningress:\n  - service: http://localhost:1\n    originRequest:\n      proxyType: socks\n",
        );
        // `loglevel` is a flag written as a key: the command line applies it, no warning.
        let fields: Vec<_> = c.warnings.iter().map(|w| w.field.as_str()).collect();
        assert_eq!(
            fields,
            ["warp-routing", "ingress[0].originRequest.proxyType"]
        );
    }

    #[test]
    fn bad_field_value_names_its_path() {
        let e = load_err(
            "ingress:\n  - service: http://localhost:1\n    originRequest:\n      connectTimeout: 30\n",
        );
        let msg = e.to_string();
        assert!(
            msg.contains("ingress[0].originRequest.connectTimeout"),
            "{msg}"
        );
        assert!(msg.contains("\"30s\""), "{msg}");
    }

    #[test]
    fn ha_connections_is_checked() {
        let any = "ingress:\n  - service: http_status:404\n";
        assert_eq!(load(any).ha_connections, None);
        assert_eq!(
            load(&format!("ha-connections: 16\n{any}")).ha_connections,
            Some(16)
        );
        assert_eq!(
            load(&format!("ha-connections: 1\n{any}")).ha_connections,
            Some(1)
        );
        for bad in ["0", "17", "256", "-1"] {
            let e = load_err(&format!("ha-connections: {bad}\n{any}")).to_string();
            assert!(
                e.contains("ha-connections") && e.contains(&format!("from 1 to 16, not {bad}")),
                "{bad}: {e}"
            );
        }
        assert!(
            load_err(&format!("ha-connections: two\n{any}"))
                .to_string()
                .contains("ha-connections")
        );
        assert_eq!(check_ha_connections(4), Ok(4));
        assert!(check_ha_connections(i128::from(u64::MAX) + 1).is_err());
    }

    #[test]
    fn yaml_syntax_error() {
        assert!(matches!(load_err("ingress: [\n"), Error::ConfigYaml { .. }));
        assert!(matches!(load_err("- a\n- b\n"), Error::ConfigField { .. }));
    }

    #[test]
    fn empty_file_and_url() {
        let c = load("");
        assert!(c.ingress.is_none());
        assert!(matches!(c.ingress_for(None), Err(Error::NoIngressRules)));
        let rules = match c.ingress_for(Some("localhost:8080")) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(rules.rules().len(), 1);
        assert_eq!(
            rules.rules()[0].service.to_string(),
            "http://localhost:8080"
        );
        let c = load("ingress:\n  - service: hello_world\n");
        assert!(matches!(
            c.ingress_for(Some("http://x")),
            Err(Error::UrlIncompatibleWithIngress)
        ));
    }
}
