//! Reading the config file while naming the fields ringtun does not know.
//!
//! cloudflared has many more fields (`warp-routing`, `protocol`, `metrics`,
//! `originRequest.proxyType`, `access`, ...). A cloudflared config must still load, so an unknown
//! field is not an error: [`deserialize`] reads the document into the [`super::raw`] structs
//! with `serde_ignored`, which reports every field the structs skip, and each is named, with its
//! full path, in a [`ConfigWarning`]. The structs are then the one list of known fields. A
//! top-level key that is the long name of a `ringtun` flag (`metrics`, `loglevel`, `protocol`,
//! ...) is skipped without a warning: the command line applies it as that flag
//! ([`crate::cli::parse_args`]).

use serde::de::DeserializeOwned;
use serde_ignored::Path;
use serde_yaml_ng::Value;

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

/// Deserializes a config document into `T` (with the path of a field that has the wrong type
/// in the error) and returns the paths of the fields `T` does not know, in file order.
pub(crate) fn deserialize<T: DeserializeOwned>(
    doc: Value,
) -> Result<(T, Vec<ConfigWarning>), serde_path_to_error::Error<serde_yaml_ng::Error>> {
    let mut warnings = Vec::new();
    let mut skipped = |path: Path<'_>| {
        if let Path::Map {
            parent: Path::Root,
            key,
        } = &path
            && crate::cli::is_flag_key(key)
        {
            return;
        }
        warnings.push(ConfigWarning {
            field: field_path(&path),
        });
    };
    let value =
        serde_path_to_error::deserialize(serde_ignored::Deserializer::new(doc, &mut skipped))?;
    Ok((value, warnings))
}

/// `ingress[2].originRequest.proxyType`: keys joined by dots, indices in brackets.
fn field_path(path: &Path<'_>) -> String {
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", field_path(parent)),
        Path::Map { parent, key } => match field_path(parent) {
            p if p.is_empty() => key.clone(),
            p => format!("{p}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => field_path(parent),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(yaml: &str) -> Vec<String> {
        let doc: Value = serde_yaml_ng::from_str(yaml).unwrap_or(Value::Null);
        let (_, warnings): (super::super::raw::RawConfig, _) =
            deserialize(doc).unwrap_or_else(|e| panic!("{e}"));
        warnings.into_iter().map(|w| w.field).collect()
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
