//! What a client of the control-plane servers (the admin API, `--metrics`) may use, and the
//! reasons a connection is refused or cut short (see [`super::server`]).
use std::time::Duration;

/// Default [`Limits::timeout`], seconds.
pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
/// Default [`Limits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// Default [`Limits::max_head_bytes`].
pub const DEFAULT_MAX_HEAD_BYTES: usize = 16 * 1024;
/// Default [`Limits::max_body_bytes`].
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;
/// At most one warning per this interval and server when clients hit a limit.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// What a client of the admin API or the metrics server may use. Each server applies them on
/// its own (flags `--admin-timeout`, `--admin-max-connections`, `--admin-max-head-bytes`,
/// `--admin-max-body-bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time to send the whole request, head and body, from the accept; and again to take the
    /// response. Past it: 408 (or a plain close when nothing arrived) and the connection closes.
    pub timeout: Duration,
    /// Connections served at once; more are answered 503 and closed.
    pub max_connections: usize,
    /// The largest request head (request line and header fields); larger: 431.
    pub max_head_bytes: usize,
    /// The largest request body; larger: 413, refused from `Content-Length` before it is read.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            timeout: Duration::from_secs(DEFAULT_TIMEOUT_SECS),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

impl Limits {
    /// The limits from optional settings (seconds, count, bytes, bytes); `None` keeps the
    /// default. Check them with [`Limits::validate`].
    pub fn from_options(
        timeout_secs: Option<u64>,
        max_connections: Option<usize>,
        max_head_bytes: Option<usize>,
        max_body_bytes: Option<usize>,
    ) -> Limits {
        let d = Limits::default();
        Limits {
            timeout: timeout_secs.map_or(d.timeout, Duration::from_secs),
            max_connections: max_connections.unwrap_or(d.max_connections),
            max_head_bytes: max_head_bytes.unwrap_or(d.max_head_bytes),
            max_body_bytes: max_body_bytes.unwrap_or(d.max_body_bytes),
        }
    }

    /// A clear message naming the setting when a limit makes no sense.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.timeout.is_zero() {
            return Err("admin-timeout must be at least 1 second".into());
        }
        if self.max_connections == 0 {
            return Err("admin-max-connections must be at least 1".into());
        }
        if self.max_head_bytes < 1024 {
            return Err("admin-max-head-bytes must be at least 1024".into());
        }
        Ok(())
    }
}

/// Why a connection was refused or cut short: the `reason` label of
/// `ringtun_edge_control_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// Over [`Limits::max_connections`]: 503.
    Connections,
    /// The head did not arrive within [`Limits::timeout`]: 408, or a close when nothing came.
    HeadTimeout,
    /// The body did not arrive within [`Limits::timeout`]: 408.
    BodyTimeout,
    /// The response was not taken within [`Limits::timeout`]: the connection is closed.
    WriteTimeout,
    /// The head is over [`Limits::max_head_bytes`] or has too many fields: 431.
    HeadTooLarge,
    /// The body is over [`Limits::max_body_bytes`]: 413.
    BodyTooLarge,
    /// The head or the body framing is not valid HTTP/1.1: 400.
    BadRequest,
}

impl Rejection {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Rejection::Connections => "connections",
            Rejection::HeadTimeout => "head_timeout",
            Rejection::BodyTimeout => "body_timeout",
            Rejection::WriteTimeout => "write_timeout",
            Rejection::HeadTooLarge => "head_too_large",
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::BadRequest => "bad_request",
        }
    }
}
