//! Settings for talking to an origin, after defaults and per-rule overrides are applied.

use std::time::Duration;

use super::raw::RawOriginRequest;

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
        }
    }
}

impl OriginRequest {
    /// These settings with every field that `raw` names replaced.
    pub(crate) fn overlay(&self, raw: &RawOriginRequest) -> OriginRequest {
        OriginRequest {
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
        }
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
        let merged = base.overlay(&raw);
        assert_eq!(merged.connect_timeout, Duration::from_secs(5));
        assert!(merged.danger_no_tls_verify);
        assert_eq!(merged.keep_alive_connections, 100);
        assert_eq!(merged.keep_alive_timeout, Duration::from_secs(90));
        assert_eq!(merged.http_host_header.as_deref(), Some("base"));
    }
}
