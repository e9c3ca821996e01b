//! Finding and removing the fields ringtun does not know.
//!
//! cloudflared has many more fields (`warp-routing`, `protocol`, `metrics`,
//! `originRequest.proxyType`, `access`, ...). A cloudflared config must still load, so an unknown
//! field is not an error: it is removed from the YAML tree before deserializing, and named, with
//! its full path, in a [`ConfigWarning`]. A top-level key that is the long name of a `ringtun`
//! flag (`metrics`, `loglevel`, `protocol`, ...) is removed without a warning: the command line
//! applies it as that flag ([`crate::cli::parse_args`]).

use serde_yaml_ng::{Mapping, Value};

use super::raw::{ORIGIN_KEYS, RULE_KEYS, TOP_KEYS};

/// A field of the config file that ringtun ignores.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigWarning {
    /// The field's path, like `ingress[2].originRequest.proxyType` (indices count from 0).
    pub field: String,
}

impl std::fmt::Display for ConfigWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "config field {} is not supported by ringtun and is ignored",
            self.field
        )
    }
}

/// Removes unknown keys from a parsed config document and returns their paths, in file order.
pub(crate) fn strip_unknown(doc: &mut Value) -> Vec<ConfigWarning> {
    let mut warnings = Vec::new();
    let Value::Mapping(top) = doc else {
        return warnings;
    };
    top.retain(|key, _| {
        !key.as_str()
            .is_some_and(|k| !TOP_KEYS.contains(&k) && crate::cli::is_flag_key(k))
    });
    prune(top, "", TOP_KEYS, &mut warnings);
    if let Some(Value::Mapping(origin)) = top.get_mut("originRequest") {
        prune(origin, "originRequest", ORIGIN_KEYS, &mut warnings);
    }
    if let Some(Value::Sequence(rules)) = top.get_mut("ingress") {
        for (i, rule) in rules.iter_mut().enumerate() {
            let Value::Mapping(rule) = rule else { continue };
            let path = format!("ingress[{i}]");
            prune(rule, &path, RULE_KEYS, &mut warnings);
            if let Some(Value::Mapping(origin)) = rule.get_mut("originRequest") {
                prune(
                    origin,
                    &format!("{path}.originRequest"),
                    ORIGIN_KEYS,
                    &mut warnings,
                );
            }
        }
    }
    warnings
}

fn prune(map: &mut Mapping, prefix: &str, known: &[&str], warnings: &mut Vec<ConfigWarning>) {
    map.retain(|key, _| {
        let name = match key {
            Value::String(s) => s.clone(),
            other => serde_yaml_ng::to_string(other)
                .map(|s| s.trim_end().to_owned())
                .unwrap_or_else(|_| "?".to_owned()),
        };
        if known.contains(&name.as_str()) {
            return true;
        }
        let field = if prefix.is_empty() {
            name
        } else {
            format!("{prefix}.{name}")
        };
        warnings.push(ConfigWarning { field });
        false
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(yaml: &str) -> Vec<String> {
        let mut doc: Value = serde_yaml_ng::from_str(yaml).unwrap_or(Value::Null);
        strip_unknown(&mut doc)
            .into_iter()
            .map(|w| w.field)
            .collect()
    }

    #[test]
    fn names_unknown_fields_with_their_path() {
        let yaml = r#"
tunnel: t
protocol: quic
metrics: 127.0.0.1:2000
warp-routing:
  enabled: true
originRequest:
  connectTimeout: 10s
  proxyType: socks
ingress:
  - hostname: a.example.com
    service: http://localhost:1
    access:
      required: true
  - hostname: b.example.com
    service: http://localhost:2
  - hostname: c.example.com
    service: http://localhost:3
    originRequest:
      proxyType: socks
      noTLSVerify: true
  - service: http_status:404
"#;
        assert_eq!(
            fields(yaml),
            [
                "warp-routing",
                "originRequest.proxyType",
                "ingress[0].access",
                "ingress[2].originRequest.proxyType",
            ]
        );
    }

    #[test]
    fn warning_text_names_the_path() {
        let w = ConfigWarning {
            field: "ingress[2].originRequest.proxyType".into(),
        };
        assert!(w.to_string().contains("ingress[2].originRequest.proxyType"));
    }

    #[test]
    fn known_only_config_has_no_warnings() {
        let yaml = "tunnel: t\ncredentials-file: /x.json\ningress:\n  - service: hello_world\n";
        assert!(fields(yaml).is_empty());
    }
}
