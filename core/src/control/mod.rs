//! The control plane's HTTP: one small HTTP/1.1 server on std threads, off the data-plane
//! workers, for the edge's admin API and for both binaries' `--metrics` servers (`/ready`,
//! `/healthcheck`, `/metrics`).
//!
//! Why std threads and not the workers' runtime: probes and scrapes come now and then, must be
//! answered even when every worker is busy, and must not cost the request path anything. Why
//! not a crate: what is needed is one request per connection with deadlines and size caps on
//! everything a client sends, which [`crate::http`]'s parser and a few hundred lines give
//! (`server.rs`), tested with the rest of the workspace.
//!
//! - [`HttpServer`] (`server.rs`): accepting, the per-connection deadlines, the caps
//!   ([`Limits`]) and what a client sees at each ([`Rejection`]).
//! - [`Service`]: the routes a server answers with, given each request's [`Head`] and body.
//! - [`Reply`]: one answer.
//! - [`MetricsServer`] (`metrics.rs`): the `--metrics` server of both binaries, answering
//!   from each one's [`Probes`].

mod metrics;
mod server;

pub use metrics::{MetricsServer, Probes, answer};

pub use server::{
    DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_HEAD_BYTES, DEFAULT_TIMEOUT_SECS,
    Head, HttpServer, LOG_INTERVAL, Limits, Rejection, Service,
};

/// One answer: status, content type and body. Every answer closes its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

impl Reply {
    /// `{"error": message}` with `status`, the shape of every error a control server answers
    /// on its own (limits, bad requests).
    pub fn error(status: u16, message: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "application/json",
            body: format!("{{\"error\":{}}}", json_string(&message.into())),
        }
    }

    /// `body` as `text/plain` with `status`.
    pub fn text(status: u16, body: impl Into<String>) -> Reply {
        Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: body.into(),
        }
    }
}

/// `s` as a JSON string literal (RFC 8259 §7: quote, backslash and control characters escaped).
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_are_json_whatever_the_message() {
        assert_eq!(Reply::error(400, "nope").body, r#"{"error":"nope"}"#);
        assert_eq!(
            Reply::error(400, "a \"q\" \\ b\n\u{1}").body,
            r#"{"error":"a \"q\" \\ b\n\u0001"}"#
        );
        assert_eq!(Reply::error(503, "x").content_type, "application/json");
        assert_eq!(Reply::text(200, "OK\n").body, "OK\n");
    }
}
