//! Body framing (RFC 9112 §6): how long a message's body is, decided from its head, with the
//! request-smuggling shapes rejected.
//!
//! The rules are strict on purpose. A proxy that reads a message's length differently from the
//! server behind it lets a client hide a second request inside the first, so anything ambiguous
//! (both `Content-Length` and `Transfer-Encoding`, differing `Content-Length`s, a transfer coding
//! list that does not end in `chunked`) is refused rather than guessed. The same strictness
//! applies to origin responses, because the edge re-frames them for clients.

use bytes::Bytes;

use super::error::{Fault, HttpError};
use super::head::{RequestHead, ResponseHead, Version};
use super::headers::{Headers, tokens, trim};

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BodyFraming {
    /// No body at all (a request without `Content-Length` or `Transfer-Encoding`; a response
    /// to HEAD; a 1xx, 204 or 304 response).
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the sender closes the connection (responses only).
    CloseDelimited,
}

impl BodyFraming {
    /// Whether there is no body to read or write.
    pub fn is_empty(&self) -> bool {
        matches!(self, BodyFraming::Empty | BodyFraming::Length(0))
    }
}

/// The framing of a request's body (RFC 9112 §6.3). Errors are [`HttpError::InvalidFraming`]
/// from [`Fault::Client`] (400).
pub fn request_framing(head: &RequestHead) -> Result<BodyFraming, HttpError> {
    if head.version == Version::Http10 && head.headers.contains("transfer-encoding") {
        // RFC 9112 §6.1: HTTP/1.0 has no transfer codings; such framing is faulty.
        return Err(HttpError::InvalidFraming {
            from: Fault::Client,
            reason: "Transfer-Encoding in an HTTP/1.0 request",
        });
    }
    framing_of(&head.headers, Fault::Client)
        .map(|f| f.unwrap_or(BodyFraming::Empty))
        .map_err(|reason| HttpError::InvalidFraming {
            from: Fault::Client,
            reason,
        })
}

/// The framing of a response's body (RFC 9112 §6.3), given the request's method. Errors are
/// [`HttpError::InvalidFraming`] from [`Fault::Origin`] (502).
///
/// A `101 Switching Protocols` response has [`BodyFraming::Empty`]: what follows it is the
/// upgraded protocol, not a body.
pub fn response_framing(
    head: &ResponseHead,
    request_method: &[u8],
) -> Result<BodyFraming, HttpError> {
    if request_method == b"HEAD"
        || head.is_informational()
        || head.status == 204
        || head.status == 304
    {
        return Ok(BodyFraming::Empty);
    }
    framing_of(&head.headers, Fault::Origin)
        .map(|f| f.unwrap_or(BodyFraming::CloseDelimited))
        .map_err(|reason| HttpError::InvalidFraming {
            from: Fault::Origin,
            reason,
        })
}

/// The framing the headers announce, `None` when they announce none.
fn framing_of(headers: &Headers, from: Fault) -> Result<Option<BodyFraming>, &'static str> {
    let has_te = headers.contains("transfer-encoding");
    let length = content_length(headers)?;
    if has_te && length.is_some() {
        return Err("both Content-Length and Transfer-Encoding are present");
    }
    if has_te {
        let mut codings = headers
            .get_all("transfer-encoding")
            .flat_map(|v| tokens(v))
            .peekable();
        let mut chunked_last = false;
        let mut any = false;
        while let Some(c) = codings.next() {
            any = true;
            let is_chunked = c.eq_ignore_ascii_case(b"chunked");
            if is_chunked && codings.peek().is_some() {
                return Err("chunked is not the last transfer coding");
            }
            if !is_chunked && from == Fault::Client {
                // We re-frame bodies and drop Transfer-Encoding, so a coding we do not decode
                // would be lost; for a request, refuse it (RFC 9112 §6.1 allows 501; a clear
                // 400 serves clients as well).
                return Err("unsupported transfer coding (only chunked is accepted)");
            }
            chunked_last = is_chunked;
        }
        if !any {
            return Err("empty Transfer-Encoding");
        }
        return match (chunked_last, from) {
            (true, _) => Ok(Some(BodyFraming::Chunked)),
            // RFC 9112 §6.3 rule 4: a request must end in chunked; a response is read until close.
            (false, Fault::Client) => Err("Transfer-Encoding does not end in chunked"),
            (false, _) => Ok(Some(BodyFraming::CloseDelimited)),
        };
    }
    Ok(length.map(BodyFraming::Length))
}

/// The `Content-Length`, checking that every field and list element agrees and is a number.
fn content_length(headers: &Headers) -> Result<Option<u64>, &'static str> {
    let mut found: Option<u64> = None;
    for v in headers.get_all("content-length") {
        // A list like `5, 5` is allowed when every element is the same (RFC 9110 §8.6).
        for part in v.split(|&b| b == b',') {
            let n = parse_decimal(trim(part)).ok_or("Content-Length is not a number")?;
            match found {
                Some(prev) if prev != n => return Err("differing Content-Length values"),
                _ => found = Some(n),
            }
        }
    }
    Ok(found)
}

/// A non-negative decimal that fits in a `u64`, digits only.
pub(crate) fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &b| {
        if b.is_ascii_digit() {
            n.checked_mul(10)?.checked_add(u64::from(b - b'0'))
        } else {
            None
        }
    })
}

/// Rewrites `Content-Length` and `Transfer-Encoding` to announce `framing`: used when a message
/// crosses the tunnel and is written out again with the framing the writer chose.
/// [`BodyFraming::Empty`] and [`BodyFraming::CloseDelimited`] announce nothing.
pub fn set_framing_headers(headers: &mut Headers, framing: BodyFraming) {
    headers.remove("transfer-encoding");
    headers.remove("content-length");
    match framing {
        BodyFraming::Length(n) => headers.append(
            Bytes::from_static(b"Content-Length"),
            Bytes::from(n.to_string()),
        ),
        BodyFraming::Chunked => headers.append(
            Bytes::from_static(b"Transfer-Encoding"),
            Bytes::from_static(b"chunked"),
        ),
        BodyFraming::Empty | BodyFraming::CloseDelimited => {}
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::error::Classify;
    use crate::http::status_of;

    fn req(fields: &[(&'static str, &'static str)]) -> RequestHead {
        let mut h = RequestHead::new("POST", "/");
        for (n, v) in fields {
            h.headers.append(*n, *v);
        }
        h
    }

    fn res(status: u16, fields: &[(&'static str, &'static str)]) -> ResponseHead {
        let mut h = ResponseHead::new(status);
        for (n, v) in fields {
            h.headers.append(*n, *v);
        }
        h
    }

    #[test]
    fn request_framings() {
        assert_eq!(request_framing(&req(&[])).unwrap(), BodyFraming::Empty);
        assert_eq!(
            request_framing(&req(&[("Content-Length", "12")])).unwrap(),
            BodyFraming::Length(12)
        );
        assert_eq!(
            request_framing(&req(&[("Content-Length", "5"), ("content-length", "5, 5")])).unwrap(),
            BodyFraming::Length(5)
        );
        assert_eq!(
            request_framing(&req(&[("Transfer-Encoding", "Chunked")])).unwrap(),
            BodyFraming::Chunked
        );
    }

    #[test]
    fn every_smuggling_shape_is_rejected() {
        let shapes: &[&[(&str, &str)]] = &[
            &[("Content-Length", "5"), ("Transfer-Encoding", "chunked")],
            &[("Transfer-Encoding", "chunked"), ("Content-Length", "0")],
            &[("Content-Length", "5"), ("Content-Length", "6")],
            &[("Content-Length", "5, 6")],
            &[("Content-Length", "abc")],
            &[("Content-Length", "-1")],
            &[("Content-Length", "+5")],
            &[("Content-Length", "0x10")],
            &[("Content-Length", "")],
            &[("Content-Length", "99999999999999999999")],
            &[("Transfer-Encoding", "gzip")],
            &[("Transfer-Encoding", "chunked, gzip")],
            &[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked"),
            ],
            &[("Transfer-Encoding", "gzip, chunked")],
            &[("Transfer-Encoding", "identity")],
            &[("Transfer-Encoding", "")],
            &[("Transfer-Encoding", "xchunked")],
        ];
        let mut old = req(&[("Transfer-Encoding", "chunked")]);
        old.version = Version::Http10;
        assert_eq!(status_of(&request_framing(&old).unwrap_err()), 400);
        for shape in shapes {
            let head = req(shape);
            let e = request_framing(&head).unwrap_err();
            assert_eq!(status_of(&e), 400, "{shape:?}");
            assert_eq!(e.fault(), Fault::Client);
            assert!(matches!(e, HttpError::InvalidFraming { .. }));
        }
    }

    #[test]
    fn response_framings() {
        assert_eq!(
            response_framing(&res(200, &[]), b"GET").unwrap(),
            BodyFraming::CloseDelimited
        );
        assert_eq!(
            response_framing(&res(200, &[("Content-Length", "7")]), b"GET").unwrap(),
            BodyFraming::Length(7)
        );
        assert_eq!(
            response_framing(&res(200, &[("Transfer-Encoding", "gzip, chunked")]), b"GET").unwrap(),
            BodyFraming::Chunked
        );
        assert_eq!(
            response_framing(&res(200, &[("Transfer-Encoding", "gzip")]), b"GET").unwrap(),
            BodyFraming::CloseDelimited
        );
        let e = response_framing(
            &res(
                200,
                &[("Content-Length", "1"), ("Transfer-Encoding", "chunked")],
            ),
            b"GET",
        )
        .unwrap_err();
        assert_eq!(status_of(&e), 502);
        assert_eq!(e.fault(), Fault::Origin);
    }

    #[test]
    fn head_204_304_1xx_have_no_body() {
        let cl = [("Content-Length", "10")];
        assert_eq!(
            response_framing(&res(200, &cl), b"HEAD").unwrap(),
            BodyFraming::Empty
        );
        assert_eq!(
            response_framing(&res(204, &cl), b"GET").unwrap(),
            BodyFraming::Empty
        );
        assert_eq!(
            response_framing(&res(304, &cl), b"GET").unwrap(),
            BodyFraming::Empty
        );
        assert_eq!(
            response_framing(&res(100, &[]), b"POST").unwrap(),
            BodyFraming::Empty
        );
        assert_eq!(
            response_framing(&res(101, &[]), b"GET").unwrap(),
            BodyFraming::Empty
        );
    }

    #[test]
    fn framing_headers_are_rewritten() {
        let mut h = req(&[("Transfer-Encoding", "chunked"), ("A", "b")]).headers;
        set_framing_headers(&mut h, BodyFraming::Length(3));
        assert_eq!(h.get("content-length").map(|v| &v[..]), Some(&b"3"[..]));
        assert!(!h.contains("transfer-encoding"));
        set_framing_headers(&mut h, BodyFraming::Chunked);
        assert!(h.has_token("transfer-encoding", "chunked"));
        assert!(!h.contains("content-length"));
    }
}
