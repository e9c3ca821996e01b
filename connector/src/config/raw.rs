//! The config file as written: serde structs for the fields ringtun knows.
//!
//! These structs are the one list of known fields. They do not deny unknown fields: a
//! cloudflared config has many ringtun ignores, and [`super::unknown::deserialize`] names each
//! one in a warning instead of refusing the file.

use std::path::PathBuf;

use serde::Deserialize;

use super::duration::ConfigDuration;

/// Top-level keys ringtun understands: the fields of [`RawConfig`] as serde names them (read
/// from the derive, so this cannot drift from the struct).
pub(crate) fn top_keys() -> &'static [&'static str] {
    field_names::<RawConfig>()
}

/// The field names serde's derive gives to `deserialize_struct` for `T` (empty for a type
/// that is not a struct).
fn field_names<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    use serde::de::value::Error;
    use serde::de::{Error as _, Visitor};

    /// A deserializer that only records the field list it is asked for, then fails.
    struct Fields<'a>(&'a mut &'static [&'static str]);

    impl<'de> serde::Deserializer<'de> for Fields<'_> {
        type Error = Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Error> {
            Err(Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Error> {
            *self.0 = fields;
            Err(Error::custom("field names recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
            byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map enum
            identifier ignored_any
        }
    }

    let mut fields: &'static [&'static str] = &[];
    let _ = T::deserialize(Fields(&mut fields));
    fields
}

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawConfig {
    pub tunnel: Option<String>,
    #[serde(rename = "credentials-file")]
    pub credentials_file: Option<PathBuf>,
    /// Signed, so that a negative number gets the range error rather than a type error.
    #[serde(rename = "ha-connections")]
    pub ha_connections: Option<i64>,
    pub ingress: Vec<RawRule>,
    #[serde(rename = "originRequest")]
    pub origin_request: RawOriginRequest,
}

/// One entry of `ingress`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RawRule {
    pub hostname: Option<String>,
    pub path: Option<String>,
    pub service: Option<String>,
    #[serde(rename = "originRequest")]
    pub origin_request: RawOriginRequest,
}

/// An `originRequest` block; every field optional so a rule overrides only what it names.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub(crate) struct RawOriginRequest {
    #[serde(rename = "connectTimeout")]
    pub connect_timeout: Option<ConfigDuration>,
    #[serde(rename = "keepAliveConnections")]
    pub keep_alive_connections: Option<usize>,
    #[serde(rename = "keepAliveTimeout")]
    pub keep_alive_timeout: Option<ConfigDuration>,
    #[serde(rename = "noTLSVerify")]
    pub no_tls_verify: Option<bool>,
    #[serde(rename = "httpHostHeader")]
    pub http_host_header: Option<String>,
    #[serde(rename = "originServerName")]
    pub origin_server_name: Option<String>,
    #[serde(rename = "caPool")]
    pub ca_pool: Option<PathBuf>,
    #[serde(rename = "tlsTimeout")]
    pub tls_timeout: Option<ConfigDuration>,
    #[serde(rename = "disableChunkedEncoding")]
    pub disable_chunked_encoding: Option<bool>,
    #[serde(rename = "bufferedBodyLimit")]
    pub buffered_body_limit: Option<u64>,
    #[serde(rename = "http2Origin")]
    pub http2_origin: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_keys_are_the_struct_fields_as_written_in_the_file() {
        assert_eq!(
            top_keys(),
            [
                "tunnel",
                "credentials-file",
                "ha-connections",
                "ingress",
                "originRequest"
            ]
        );
    }
}
