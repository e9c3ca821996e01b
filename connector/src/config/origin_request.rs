//! Settings for talking to an origin, after defaults and per-rule overrides are applied.

use std::time::Duration;

use super::ca_pool::OriginCaPool;
use super::raw::RawOriginRequest;
use crate::error::{Error, Result};

/// The default of `bufferedBodyLimit`: the most of a chunked request body that
/// `disableChunkedEncoding` buffers to send it with a `Content-Length`.
pub const DEFAULT_BUFFERED_BODY_LIMIT: u64 = 8 * 1024 * 1024;

/// How the connector talks to an origin service: the global `originRequest` block with a rule's
/// own `originRequest` laid over it, field by field, as cloudflared does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginRequest {
    /// `connectTimeout`: how long to wait for a TCP connect to the origin. Default 30 s.
    pub connect_timeout: Duration,
    /// `keepAliveConnections`: idle connections kept per pool. Default 100.
    pub keep_alive_connections: usize,
    /// `keepAliveTimeout`: how long an idle pooled connection is kept. Default 90 s.
    pub keep_alive_timeout: Duration,
    /// `noTLSVerify`: accept any certificate from an `https://` origin. Insecure.
    pub danger_no_tls_verify: bool,
    /// `httpHostHeader`: the `Host` header sent to the origin instead of the client's.
    pub http_host_header: Option<String>,
    /// `originServerName`: the TLS server name expected from an `https://` origin.
    pub origin_server_name: Option<String>,
    /// `caPool`: CA certificates trusted for the origin's certificate, besides the web PKI.
    pub ca_pool: Option<OriginCaPool>,
    /// `tlsTimeout`: how long the TLS handshake with an origin may take. Default 10 s.
    pub tls_timeout: Duration,
    /// `disableChunkedEncoding`: a request body the client sends chunked is buffered and sent
    /// with a `Content-Length` (for origins that cannot read chunked bodies, like WSGI servers).
    pub disable_chunked_encoding: bool,
    /// `bufferedBodyLimit` (ringtun's own): the most such a body may hold; beyond it the client
    /// gets 413. Default [`DEFAULT_BUFFERED_BODY_LIMIT`].
    pub buffered_body_limit: u64,
    /// `http2Origin`: speak HTTP/2 to the origin (h2 with ALPN for `https://` and `unix+tls:`,
    /// h2c with prior knowledge for `http://` and `unix:`), one multiplexed connection per
    /// origin and worker. Default false (HTTP/1.1).
    pub http2_origin: bool,
}

impl Default for OriginRequest {
    /// cloudflared's defaults.
    fn default() -> Self {
        OriginRequest {
            connect_timeout: Duration::from_secs(30),
            keep_alive_connections: 100,
            keep_alive_timeout: Duration::from_secs(90),
            danger_no_tls_verify: false,
            http_host_header: None,
            origin_server_name: None,
            ca_pool: None,
            tls_timeout: Duration::from_secs(10),
            disable_chunked_encoding: false,
            buffered_body_limit: DEFAULT_BUFFERED_BODY_LIMIT,
            http2_origin: false,
        }
    }
}

impl OriginRequest {
    /// These settings with every field that `raw` names replaced. `at` is the block's path in
    /// the file (`originRequest`, `ingress[2].originRequest`), for errors: a `caPool` file is
    /// read here, so a missing or bad one fails the load.
    pub(crate) fn overlay(&self, raw: &RawOriginRequest, at: &str) -> Result<OriginRequest> {
        let ca_pool = match &raw.ca_pool {
            None => self.ca_pool.clone(),
            Some(p) => Some(OriginCaPool::load(p).map_err(|message| Error::ConfigField {
                field: format!("{at}.caPool"),
                message,
            })?),
        };
        if raw.buffered_body_limit == Some(0) {
            return Err(Error::ConfigField {
                field: format!("{at}.bufferedBodyLimit"),
                message: "must be at least 1 byte".into(),
            });
        }
        Ok(OriginRequest {
            connect_timeout: raw.connect_timeout.map_or(self.connect_timeout, |d| d.0),
            keep_alive_connections: raw
                .keep_alive_connections
                .unwrap_or(self.keep_alive_connections),
            keep_alive_timeout: raw
                .keep_alive_timeout
                .map_or(self.keep_alive_timeout, |d| d.0),
            danger_no_tls_verify: raw.no_tls_verify.unwrap_or(self.danger_no_tls_verify),
            http_host_header: raw
                .http_host_header
                .clone()
                .or_else(|| self.http_host_header.clone()),
            origin_server_name: raw
                .origin_server_name
                .clone()
                .or_else(|| self.origin_server_name.clone()),
            ca_pool,
            tls_timeout: raw.tls_timeout.map_or(self.tls_timeout, |d| d.0),
            disable_chunked_encoding: raw
                .disable_chunked_encoding
                .unwrap_or(self.disable_chunked_encoding),
            buffered_body_limit: raw.buffered_body_limit.unwrap_or(self.buffered_body_limit),
            http2_origin: raw.http2_origin.unwrap_or(self.http2_origin),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::duration::ConfigDuration;

    #[test]
    fn overlay_replaces_only_named_fields() {
        let base = OriginRequest {
            http_host_header: Some("base".into()),
            ..OriginRequest::default()
        };
        let raw = RawOriginRequest {
            connect_timeout: Some(ConfigDuration(Duration::from_secs(5))),
            no_tls_verify: Some(true),
            ..RawOriginRequest::default()
        };
        let merged = base
            .overlay(&raw, "originRequest")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(merged.connect_timeout, Duration::from_secs(5));
        assert!(merged.danger_no_tls_verify);
        assert_eq!(merged.keep_alive_connections, 100);
        assert_eq!(merged.keep_alive_timeout, Duration::from_secs(90));
        assert_eq!(merged.http_host_header.as_deref(), Some("base"));
        assert_eq!(merged.tls_timeout, Duration::from_secs(10));
        assert!(!merged.disable_chunked_encoding);
        assert_eq!(merged.buffered_body_limit, DEFAULT_BUFFERED_BODY_LIMIT);
        assert!(!merged.http2_origin);
        let rule = RawOriginRequest {
            http2_origin: Some(true),
            ..RawOriginRequest::default()
        };
        let on = merged
            .overlay(&rule, "ingress[0].originRequest")
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(on.http2_origin);
        assert!(
            on.overlay(&RawOriginRequest::default(), "x")
                .unwrap_or_else(|e| panic!("{e}"))
                .http2_origin,
            "a rule that does not name it keeps the global value"
        );
    }

    #[test]
    fn a_missing_ca_pool_names_the_field_and_the_file() {
        let raw = RawOriginRequest {
            ca_pool: Some("/nonexistent/ca.pem".into()),
            ..RawOriginRequest::default()
        };
        let e = OriginRequest::default()
            .overlay(&raw, "ingress[1].originRequest")
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(e.contains("ingress[1].originRequest.caPool"), "{e}");
        assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    }
}
