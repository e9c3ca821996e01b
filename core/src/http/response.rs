//! Short error responses that say what failed, e.g.
//! `502 Bad Gateway: origin refused the connection (127.0.0.1:9)`.
//!
//! The body is plain text and names the failure, so a user running `curl` sees at once whether
//! the tunnel, the route or the origin is at fault.
//!
//! [`status_of`] is the one table from an [`HttpError`] to the status a public client is
//! answered with; the error itself only says whose fault it was.

use bytes::Bytes;

use super::error::{Fault, HttpError};
use super::head::ResponseHead;
use crate::error::Classify;

/// The usual reason phrase of `status` (RFC 9110 §15), empty for an unknown status.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        414 => "URI Too Long",
        417 => "Expectation Failed",
        421 => "Misdirected Request",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        _ => "",
    }
}

/// A complete error response: its head (`Content-Type: text/plain; charset=utf-8`,
/// `Content-Length`, and `Connection: close` when `close`) and its body
/// `"{status} {reason}: {detail}\n"`. Write `head.to_bytes()` then the body.
pub fn error_response(status: u16, detail: &str, close: bool) -> (ResponseHead, Bytes) {
    let body = Bytes::from(format!("{status} {}: {detail}\n", reason_phrase(status)));
    let mut head = ResponseHead::new(status);
    head.headers.append(
        Bytes::from_static(b"Content-Type"),
        Bytes::from_static(b"text/plain; charset=utf-8"),
    );
    head.headers.append(
        Bytes::from_static(b"Content-Length"),
        Bytes::from(body.len().to_string()),
    );
    if close {
        head.headers.append(
            Bytes::from_static(b"Connection"),
            Bytes::from_static(b"close"),
        );
    }
    (head, body)
}

/// [`error_response`] serialized as one buffer, head and body.
pub fn error_response_bytes(status: u16, detail: &str, close: bool) -> Bytes {
    let (head, body) = error_response(status, detail, close);
    let mut v = Vec::with_capacity(head.encoded_len() + body.len());
    head.encode(&mut v);
    v.extend_from_slice(&body);
    Bytes::from(v)
}

/// The detail for 404: `no tunnel route for host {host}`.
pub fn no_route_detail(host: &str) -> String {
    format!("no tunnel route for host {host}")
}

/// The detail for 503 when a tunnel has no live connector.
pub const NO_CONNECTOR_DETAIL: &str = "tunnel has no live connector";

/// The detail for 502 when the origin refused: `origin refused the connection ({origin})`.
pub fn origin_refused_detail(origin: &str) -> String {
    format!("origin refused the connection ({origin})")
}

/// The detail for 504 when the origin timed out: `origin timed out ({origin})`.
pub fn origin_timeout_detail(origin: &str) -> String {
    format!("origin timed out ({origin})")
}

/// The status of the response to send the public client because of `e`: 431 for an oversized
/// client head, 400 for other client faults, 502 otherwise (the upstream side of the request
/// path failed).
pub fn status_of(e: &HttpError) -> u16 {
    match (e, e.fault()) {
        (HttpError::HeadTooLarge { .. } | HttpError::TooManyHeaders { .. }, Fault::Client) => 431,
        (_, Fault::Client) => 400,
        (_, Fault::Origin | Fault::Peer | Fault::Local | Fault::Network) => 502,
    }
}

/// The response to send the public client because of `e`: [`status_of`], the error's message
/// as the detail, and `Connection: close` (see [`HttpError::closes_connection`]).
pub fn response_of(e: &HttpError) -> (ResponseHead, Bytes) {
    error_response(status_of(e), &e.to_string(), true)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::http::head::{HeadLimits, parse_response};

    #[test]
    fn statuses_follow_fault() {
        let e = HttpError::HeadTooLarge {
            from: Fault::Client,
            limit: 10,
        };
        assert_eq!(status_of(&e), 431);
        let e = HttpError::HeadTooLarge {
            from: Fault::Origin,
            limit: 10,
        };
        assert_eq!(status_of(&e), 502);
        let e = HttpError::InvalidFraming {
            from: Fault::Client,
            reason: "x",
        };
        assert_eq!(status_of(&e), 400);
        assert_eq!(HttpError::InvalidMeta("x").fault(), Fault::Peer);
        assert_eq!(e.to_string(), "invalid message framing: x");
        let (head, body) = response_of(&e);
        assert_eq!(head.status, 400);
        assert!(head.headers.has_token("connection", "close"));
        assert_eq!(&body[..], b"400 Bad Request: invalid message framing: x\n");
    }

    /// Every variant, from every sender that can send it: whose fault, the status, retry.
    #[test]
    fn every_error_and_fault_has_one_status() {
        use std::io;
        // (error, fault, status)
        let mut table: Vec<(HttpError, Fault, u16)> = Vec::new();
        for from in [Fault::Client, Fault::Origin] {
            let client = from == Fault::Client;
            let (big, bad) = if client { (431, 400) } else { (502, 502) };
            table.extend([
                (HttpError::HeadTooLarge { from, limit: 1 }, from, big),
                (HttpError::TooManyHeaders { from, limit: 1 }, from, big),
                (HttpError::MalformedHead { from, reason: "x" }, from, bad),
                (HttpError::IncompleteHead { from, received: 1 }, from, bad),
                (HttpError::InvalidFraming { from, reason: "x" }, from, bad),
                (HttpError::InvalidBody { from, reason: "x" }, from, bad),
                (HttpError::IncompleteBody { from }, from, bad),
            ]);
        }
        table.extend([
            (
                HttpError::BodyLengthMismatch {
                    expected: 1,
                    actual: 2,
                },
                Fault::Local,
                502,
            ),
            (HttpError::InvalidMeta("x"), Fault::Peer, 502),
            (HttpError::Io(io::Error::other("x")), Fault::Network, 502),
        ]);
        for (e, fault, status) in &table {
            assert_eq!(e.fault(), *fault, "{e:?}");
            assert_eq!(status_of(e), *status, "{e:?}");
            assert!(!e.is_retry_safe(), "{e:?}");
            assert!(e.closes_connection(), "{e:?}");
            let (head, body) = response_of(e);
            assert_eq!(head.status, *status);
            assert!(head.headers.has_token("connection", "close"));
            assert!(String::from_utf8_lossy(&body).contains(&e.to_string()));
        }
        // A fault no variant carries today still has a status: every sender but a client
        // means the upstream side failed.
        for from in [Fault::Peer, Fault::Local, Fault::Network] {
            let e = HttpError::HeadTooLarge { from, limit: 1 };
            assert_eq!(status_of(&e), 502, "{from:?}");
        }
    }

    #[test]
    fn error_responses_parse_and_say_what_failed() {
        let all = error_response_bytes(502, &origin_refused_detail("127.0.0.1:9"), true);
        let mut buf = BytesMut::from(&all[..]);
        let head = parse_response(&mut buf, &HeadLimits::default())
            .unwrap()
            .unwrap();
        assert_eq!(head.status, 502);
        assert_eq!(
            &buf[..],
            b"502 Bad Gateway: origin refused the connection (127.0.0.1:9)\n"
        );
        assert_eq!(
            head.headers.get("content-length").map(|v| v.to_vec()),
            Some(buf.len().to_string().into_bytes())
        );
        assert!(head.headers.has_token("connection", "close"));
        for (status, detail) in [
            (400, "x".to_string()),
            (404, no_route_detail("a.example")),
            (431, "x".into()),
            (503, NO_CONNECTOR_DETAIL.into()),
            (504, origin_timeout_detail("o")),
        ] {
            let (head, body) = error_response(status, &detail, false);
            assert!(!head.headers.contains("connection"));
            assert!(String::from_utf8(body.to_vec()).unwrap().contains(&detail));
            assert!(!reason_phrase(status).is_empty());
        }
    }
}
