//! HTTP/2 from public clients: the TLS public listener (ALPN `h2` and `http/1.1`, its handshake
//! deadline) and the limits one HTTP/2 connection lives under. Each limit has a flag, a config key and a default; `docs/limits.md`
//! lists them with what a client sees when it hits one.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// Default concurrent streams one HTTP/2 connection may have open.
pub const DEFAULT_H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// Default largest request header list (HPACK-decoded size, RFC 9113 §6.5.2), in bytes.
pub const DEFAULT_H2_MAX_HEADER_LIST_SIZE: u32 = 64 * 1024;
/// Default receive window of one stream (request body bytes in flight), in bytes.
pub const DEFAULT_H2_STREAM_WINDOW: u32 = 256 * 1024;
/// Default receive window of a whole connection, in bytes.
pub const DEFAULT_H2_CONNECTION_WINDOW: u32 = 1024 * 1024;
/// Default streams a client may reset within [`H2_RESET_WINDOW`] on one connection.
pub const DEFAULT_H2_MAX_CLIENT_RESETS: usize = 200;
/// Default streams the edge may have to reset (refused, malformed) on one connection.
pub const DEFAULT_H2_MAX_REFUSED_STREAMS: usize = 100;
/// Default seconds a public HTTPS client has to complete its TLS handshake.
pub const DEFAULT_PUBLIC_TLS_HANDSHAKE_TIMEOUT_SECS: u64 = 10;
/// The window in which client resets are counted against `--h2-max-client-resets`.
pub const H2_RESET_WINDOW: std::time::Duration = std::time::Duration::from_secs(10);

/// The flags of public HTTP/2 (flattened into the binary's command line).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct H2Flags {
    /// Public HTTPS address: TLS with ALPN `h2` (HTTP/2) and `http/1.1` (also for a client
    /// without ALPN) [default: none].
    #[arg(long, value_name = "ADDR")]
    pub public_https: Option<SocketAddr>,
    /// PEM certificate chain of the public HTTPS listener [default: the edge's own
    /// certificate, signed by its CA].
    #[arg(long, value_name = "FILE")]
    pub public_tls_cert: Option<PathBuf>,
    /// PEM private key of --public-tls-cert.
    #[arg(long, value_name = "FILE")]
    pub public_tls_key: Option<PathBuf>,
    /// Seconds a public HTTPS client has to complete its TLS handshake; past it the
    /// connection is closed [default: 10].
    #[arg(long, value_name = "SECS")]
    pub public_tls_handshake_timeout: Option<u64>,
    /// Concurrent streams per HTTP/2 connection; more are refused (RST_STREAM
    /// REFUSED_STREAM) [default: 100].
    #[arg(long, value_name = "N")]
    pub h2_max_concurrent_streams: Option<u32>,
    /// Largest HTTP/2 request header list in bytes; larger: 431 [default: 65536].
    #[arg(long, value_name = "BYTES")]
    pub h2_max_header_list_size: Option<u32>,
    /// Receive window of one HTTP/2 stream in bytes [default: 262144].
    #[arg(long, value_name = "BYTES")]
    pub h2_stream_window: Option<u32>,
    /// Receive window of one HTTP/2 connection in bytes [default: 1048576].
    #[arg(long, value_name = "BYTES")]
    pub h2_connection_window: Option<u32>,
    /// Streams a client may reset within 10 s on one connection; past it: GOAWAY
    /// ENHANCE_YOUR_CALM [default: 200].
    #[arg(long, value_name = "N")]
    pub h2_max_client_resets: Option<usize>,
    /// Streams the edge may have to refuse or reset on one connection; past it: GOAWAY
    /// ENHANCE_YOUR_CALM [default: 100].
    #[arg(long, value_name = "N")]
    pub h2_max_refused_streams: Option<usize>,
}

/// The HTTP/2 part of the config file (same names as the flags).
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct H2File {
    /// `public-https`.
    pub public_https: Option<SocketAddr>,
    /// `public-tls-cert`.
    pub public_tls_cert: Option<PathBuf>,
    /// `public-tls-key`.
    pub public_tls_key: Option<PathBuf>,
    /// `public-tls-handshake-timeout`.
    pub public_tls_handshake_timeout: Option<u64>,
    /// `h2-max-concurrent-streams`.
    pub h2_max_concurrent_streams: Option<u32>,
    /// `h2-max-header-list-size`.
    pub h2_max_header_list_size: Option<u32>,
    /// `h2-stream-window`.
    pub h2_stream_window: Option<u32>,
    /// `h2-connection-window`.
    pub h2_connection_window: Option<u32>,
    /// `h2-max-client-resets`.
    pub h2_max_client_resets: Option<usize>,
    /// `h2-max-refused-streams`.
    pub h2_max_refused_streams: Option<usize>,
}

/// Validated HTTP/2 settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct H2Settings {
    /// The public HTTPS listener, if any.
    pub public_https: Option<SocketAddr>,
    /// Its certificate chain and key (PEM files); `None`: the edge's own.
    pub public_tls: Option<(PathBuf, PathBuf)>,
    /// How long a public HTTPS client has for its TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Concurrent streams per connection.
    pub max_concurrent_streams: u32,
    /// Largest request header list.
    pub max_header_list_size: u32,
    /// Receive window per stream; also the most response bytes queued per stream.
    pub stream_window: u32,
    /// Receive window per connection.
    pub connection_window: u32,
    /// Client resets per connection within [`H2_RESET_WINDOW`].
    pub max_client_resets: usize,
    /// Streams the edge may reset per connection.
    pub max_refused_streams: usize,
}

impl Default for H2Settings {
    fn default() -> Self {
        H2Settings {
            public_https: None,
            public_tls: None,
            tls_handshake_timeout: Duration::from_secs(DEFAULT_PUBLIC_TLS_HANDSHAKE_TIMEOUT_SECS),
            max_concurrent_streams: DEFAULT_H2_MAX_CONCURRENT_STREAMS,
            max_header_list_size: DEFAULT_H2_MAX_HEADER_LIST_SIZE,
            stream_window: DEFAULT_H2_STREAM_WINDOW,
            connection_window: DEFAULT_H2_CONNECTION_WINDOW,
            max_client_resets: DEFAULT_H2_MAX_CLIENT_RESETS,
            max_refused_streams: DEFAULT_H2_MAX_REFUSED_STREAMS,
        }
    }
}

/// The smallest window HTTP/2 allows to be announced (RFC 9113 §6.9.2) and the largest.
const MIN_WINDOW: u32 = 65_535;
const MAX_WINDOW: u32 = (1 << 31) - 1;

impl H2Settings {
    /// Flags over the file over the defaults, validated.
    pub(super) fn from_parts(file: &H2File, o: &H2Flags) -> Result<H2Settings> {
        let d = H2Settings::default();
        let at_least = |name: &str, v: Option<u64>, min: u64, max: u64| match v {
            Some(n) if n < min || n > max => Err(Error::Config(format!(
                "{name} must be between {min} and {max}"
            ))),
            _ => Ok(()),
        };
        let streams = o
            .h2_max_concurrent_streams
            .or(file.h2_max_concurrent_streams);
        at_least(
            "h2-max-concurrent-streams",
            streams.map(u64::from),
            1,
            u64::from(u32::MAX),
        )?;
        let headers = o.h2_max_header_list_size.or(file.h2_max_header_list_size);
        at_least(
            "h2-max-header-list-size",
            headers.map(u64::from),
            1024,
            u64::from(u32::MAX),
        )?;
        let stream_window = o.h2_stream_window.or(file.h2_stream_window);
        at_least(
            "h2-stream-window",
            stream_window.map(u64::from),
            u64::from(MIN_WINDOW),
            u64::from(MAX_WINDOW),
        )?;
        let conn_window = o.h2_connection_window.or(file.h2_connection_window);
        at_least(
            "h2-connection-window",
            conn_window.map(u64::from),
            u64::from(MIN_WINDOW),
            u64::from(MAX_WINDOW),
        )?;
        let resets = o.h2_max_client_resets.or(file.h2_max_client_resets);
        at_least(
            "h2-max-client-resets",
            resets.map(|n| n as u64),
            1,
            u64::MAX,
        )?;
        let refused = o.h2_max_refused_streams.or(file.h2_max_refused_streams);
        at_least(
            "h2-max-refused-streams",
            refused.map(|n| n as u64),
            1,
            u64::MAX,
        )?;
        let handshake = o
            .public_tls_handshake_timeout
            .or(file.public_tls_handshake_timeout);
        at_least(
            "public-tls-handshake-timeout",
            handshake,
            1,
            u64::from(u32::MAX),
        )?;
        let cert = o.public_tls_cert.clone().or(file.public_tls_cert.clone());
        let key = o.public_tls_key.clone().or(file.public_tls_key.clone());
        let public_tls = match (cert, key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => {
                return Err(Error::Config(
                    "public-tls-cert and public-tls-key go together".into(),
                ));
            }
        };
        Ok(H2Settings {
            public_https: o.public_https.or(file.public_https),
            public_tls,
            tls_handshake_timeout: handshake.map_or(d.tls_handshake_timeout, Duration::from_secs),
            max_concurrent_streams: streams.unwrap_or(d.max_concurrent_streams),
            max_header_list_size: headers.unwrap_or(d.max_header_list_size),
            stream_window: stream_window.unwrap_or(d.stream_window),
            connection_window: conn_window.unwrap_or(d.connection_window),
            max_client_resets: resets.unwrap_or(d.max_client_resets),
            max_refused_streams: refused.unwrap_or(d.max_refused_streams),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_flags_over_file_and_bounds() {
        let d = H2Settings::from_parts(&H2File::default(), &H2Flags::default()).expect("valid");
        assert_eq!(d, H2Settings::default());
        let file = H2File {
            h2_max_concurrent_streams: Some(10),
            h2_stream_window: Some(100_000),
            ..H2File::default()
        };
        let flags = H2Flags {
            h2_max_concurrent_streams: Some(20),
            ..H2Flags::default()
        };
        let s = H2Settings::from_parts(&file, &flags).expect("valid");
        assert_eq!(s.max_concurrent_streams, 20, "the flag wins");
        assert_eq!(s.stream_window, 100_000);
        for (flags, key) in [
            (
                H2Flags {
                    h2_max_concurrent_streams: Some(0),
                    ..H2Flags::default()
                },
                "h2-max-concurrent-streams",
            ),
            (
                H2Flags {
                    h2_stream_window: Some(1000),
                    ..H2Flags::default()
                },
                "h2-stream-window",
            ),
            (
                H2Flags {
                    public_tls_cert: Some("c.pem".into()),
                    ..H2Flags::default()
                },
                "public-tls-key",
            ),
        ] {
            let e = H2Settings::from_parts(&H2File::default(), &flags).expect_err("invalid");
            assert!(e.to_string().contains(key), "{e}");
        }
    }
}
