//! The public side's limits: what one client, one connection or one tunnel may hold at the
//! edge. Each has a flag, a config key and a default; `docs/limits.md` lists them with what a
//! client sees when it hits one.

use std::time::Duration;

use super::{FileConfig, Overrides};
use crate::error::{Error, Result};

/// Default seconds a response write may make no progress.
pub const DEFAULT_CLIENT_WRITE_TIMEOUT_SECS: u64 = 30;
/// Default bytes per second a request body must average (after a grace of the body timeout).
pub const DEFAULT_REQUEST_BODY_MIN_RATE: u64 = 1024;
/// Default seconds a TCP-route connection may be idle.
pub const DEFAULT_TCP_IDLE_TIMEOUT_SECS: u64 = 300;
/// Default seconds an upgraded connection may be idle.
pub const DEFAULT_UPGRADE_IDLE_TIMEOUT_SECS: u64 = 300;
/// Default concurrent public connections per client IP.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 1024;
/// Default concurrent streams per tunnel at the edge: half of what a connector's default four
/// links can hold (4 × 1024), so one tunnel's clients meet this limit, with a clear 503, well
/// before the links refuse streams.
pub const DEFAULT_TUNNEL_STREAM_LIMIT: usize = 2048;

/// Validated public limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicLimits {
    /// How long a response write to a client may make no progress.
    pub client_write_timeout: Duration,
    /// Bytes per second a request body must average; 0: no minimum.
    pub request_body_min_rate: u64,
    /// How long a TCP-route connection may go without a byte either way.
    pub tcp_idle_timeout: Duration,
    /// How long an upgraded connection may go without a byte either way.
    pub upgrade_idle_timeout: Duration,
    /// Concurrent public connections (HTTP and TCP routes) per client IP.
    pub max_connections_per_ip: usize,
    /// Concurrent streams per tunnel at the edge.
    pub tunnel_stream_limit: usize,
}

impl Default for PublicLimits {
    fn default() -> Self {
        PublicLimits {
            client_write_timeout: Duration::from_secs(DEFAULT_CLIENT_WRITE_TIMEOUT_SECS),
            request_body_min_rate: DEFAULT_REQUEST_BODY_MIN_RATE,
            tcp_idle_timeout: Duration::from_secs(DEFAULT_TCP_IDLE_TIMEOUT_SECS),
            upgrade_idle_timeout: Duration::from_secs(DEFAULT_UPGRADE_IDLE_TIMEOUT_SECS),
            max_connections_per_ip: DEFAULT_MAX_CONNECTIONS_PER_IP,
            tunnel_stream_limit: DEFAULT_TUNNEL_STREAM_LIMIT,
        }
    }
}

impl PublicLimits {
    /// Flags over the file over the defaults, validated.
    pub(super) fn from_parts(file: &FileConfig, o: &Overrides) -> Result<PublicLimits> {
        let d = PublicLimits::default();
        let secs = |name: &str, flag: Option<u64>, file: Option<u64>, default: Duration| match flag
            .or(file)
        {
            None => Ok(default),
            Some(0) => Err(Error::Config(format!("{name} must be at least 1 second"))),
            Some(n) => Ok(Duration::from_secs(n)),
        };
        let count =
            |name: &str, flag: Option<usize>, file: Option<usize>, default: usize| match flag
                .or(file)
            {
                None => Ok(default),
                Some(0) => Err(Error::Config(format!("{name} must be at least 1"))),
                Some(n) => Ok(n),
            };
        Ok(PublicLimits {
            client_write_timeout: secs(
                "client-write-timeout",
                o.client_write_timeout,
                file.client_write_timeout,
                d.client_write_timeout,
            )?,
            request_body_min_rate: o
                .request_body_min_rate
                .or(file.request_body_min_rate)
                .unwrap_or(d.request_body_min_rate),
            tcp_idle_timeout: secs(
                "tcp-idle-timeout",
                o.tcp_idle_timeout,
                file.tcp_idle_timeout,
                d.tcp_idle_timeout,
            )?,
            upgrade_idle_timeout: secs(
                "upgrade-idle-timeout",
                o.upgrade_idle_timeout,
                file.upgrade_idle_timeout,
                d.upgrade_idle_timeout,
            )?,
            max_connections_per_ip: count(
                "max-connections-per-ip",
                o.max_connections_per_ip,
                file.max_connections_per_ip,
                d.max_connections_per_ip,
            )?,
            tunnel_stream_limit: count(
                "tunnel-stream-limit",
                o.tunnel_stream_limit,
                file.tunnel_stream_limit,
                d.tunnel_stream_limit,
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Settings;

    #[test]
    fn defaults_file_and_flags() {
        assert_eq!(Settings::default().public_limits, PublicLimits::default());
        let file = FileConfig::parse(
            "client-write-timeout = 5\ntunnel-stream-limit = 10\nrequest-body-min-rate = 0\n",
        )
        .expect("valid toml");
        let s = Settings::from_parts(
            file,
            Overrides {
                tunnel_stream_limit: Some(20),
                tcp_idle_timeout: Some(7),
                ..Overrides::default()
            },
        )
        .expect("valid");
        let l = s.public_limits;
        assert_eq!(l.client_write_timeout, Duration::from_secs(5));
        assert_eq!(l.tunnel_stream_limit, 20, "the flag wins over the file");
        assert_eq!(l.tcp_idle_timeout, Duration::from_secs(7));
        assert_eq!(l.request_body_min_rate, 0, "0 turns the minimum rate off");
    }

    #[test]
    fn zero_is_rejected_with_the_key_named() {
        for (o, key) in [
            (
                Overrides {
                    client_write_timeout: Some(0),
                    ..Overrides::default()
                },
                "client-write-timeout",
            ),
            (
                Overrides {
                    max_connections_per_ip: Some(0),
                    ..Overrides::default()
                },
                "max-connections-per-ip",
            ),
            (
                Overrides {
                    tunnel_stream_limit: Some(0),
                    ..Overrides::default()
                },
                "tunnel-stream-limit",
            ),
        ] {
            let err = Settings::from_parts(FileConfig::default(), o).expect_err("invalid");
            assert!(err.to_string().contains(key), "{err}");
        }
    }
}
