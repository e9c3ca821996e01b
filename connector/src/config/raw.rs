//! The config file as written: serde structs for the fields ringtun knows.
//!
//! Unknown fields have been removed (and warned about) by [`super::unknown`] before these are
//! deserialized, so `deny_unknown_fields` here only guards against that list and these structs
//! drifting apart.

use std::path::PathBuf;

use serde::Deserialize;

use super::duration::ConfigDuration;

/// Top-level keys ringtun understands.
pub(crate) const TOP_KEYS: &[&str] = &[
    "tunnel",
    "credentials-file",
    "ha-connections",
    "ingress",
    "originRequest",
];
/// Keys of one ingress rule.
pub(crate) const RULE_KEYS: &[&str] = &["hostname", "path", "service", "originRequest"];
/// Keys of an `originRequest` block, global or per rule.
pub(crate) const ORIGIN_KEYS: &[&str] = &[
    "connectTimeout",
    "keepAliveConnections",
    "keepAliveTimeout",
    "noTLSVerify",
    "httpHostHeader",
    "originServerName",
    "caPool",
    "tlsTimeout",
    "disableChunkedEncoding",
    "bufferedBodyLimit",
    "http2Origin",
];

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
#[serde(default, deny_unknown_fields)]
pub(crate) struct RawRule {
    pub hostname: Option<String>,
    pub path: Option<String>,
    pub service: Option<String>,
    #[serde(rename = "originRequest")]
    pub origin_request: RawOriginRequest,
}

/// An `originRequest` block; every field optional so a rule overrides only what it names.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
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
