//! Proxy header rules: hop-by-hop removal (RFC 9110 §7.6.1), `X-Forwarded-*`, the connector ID
//! header, `Host` override, and the questions a proxy asks of a head (upgrade? 100-continue?
//! keep-alive?).
//!
//! The split of work along the request path: the edge rewrites the request and encodes it
//! into the stream's OPEN metadata in one pass over the parsed fields
//! ([`crate::tunnel::forward_request_meta`]: what [`strip_for_forwarding`],
//! [`append_forwarded_for`], [`set_forwarded_proto`] and [`crate::http::RequestRoute::apply`]
//! would do to a copy, without the copy), and writes the connector's response head for the
//! client the same way ([`encode_client_response`]); the connector calls
//! [`strip_for_forwarding`], [`set_connector_id`], [`override_host`] and
//! [`crate::http::set_framing_headers`] before it writes the request to the origin.

use std::net::IpAddr;

use bytes::Bytes;

use super::framing::BodyFraming;
use super::head::{RequestHead, ResponseHead, Version};
use super::headers::{Header, Headers, tokens};

/// The header that names the connector that served a request, towards the origin. Chosen over
/// a `Cf-` name because it is ringtun's own, and spelled like `X-Forwarded-For` so origins log it
/// the same way.
pub const CONNECTOR_ID_HEADER: &str = "X-Ringtun-Connector-Id";

/// Hop-by-hop header fields that never cross a proxy (RFC 9110 §7.6.1), besides every field
/// that `Connection` lists.
pub const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authorization",
];

/// Fields that describe the message or its target for every recipient, so a `Connection`
/// option can never make them hop-by-hop: RFC 9110 §7.6.1 forbids a sender to list such a
/// field, and a proxy that obeyed the listing would lose the host the request was routed on
/// (`Connection: host`) or its length. `Transfer-Encoding` is hop-by-hop anyway ([`HOP_BY_HOP`];
/// bodies are re-framed).
pub const END_TO_END: [&str; 2] = ["host", "content-length"];

/// Removes the hop-by-hop fields: [`HOP_BY_HOP`] and every field named in `Connection`, except
/// the [`END_TO_END`] fields, which a `Connection` option never removes.
///
/// With `keep_upgrade` (forwarding an upgrade request or a 101 response), `Upgrade` stays and
/// `Connection: upgrade` is put back, so the next hop sees the upgrade. `Transfer-Encoding` goes
/// too: the writer re-frames the body ([`crate::http::set_framing_headers`]).
pub fn remove_hop_by_hop(headers: &mut Headers, keep_upgrade: bool) {
    let listed: Vec<Bytes> = headers
        .get_all("connection")
        .flat_map(|v| tokens(v).map(|t| v.slice_ref(t)))
        .filter(|t| {
            !END_TO_END
                .iter()
                .any(|n| t.eq_ignore_ascii_case(n.as_bytes()))
        })
        .collect();
    headers.retain(|h| {
        let named = listed.iter().any(|t| h.name.eq_ignore_ascii_case(t));
        let hop = HOP_BY_HOP.iter().any(|n| h.is(n));
        let keep = keep_upgrade && h.is("upgrade");
        keep || !(named || hop)
    });
    if keep_upgrade && headers.contains("upgrade") {
        headers.append(
            Bytes::from_static(b"Connection"),
            Bytes::from_static(b"upgrade"),
        );
    }
}

/// Appends `client` to `X-Forwarded-For`: `existing, client` when the request already has the
/// field (several fields are joined into one, in order), else just `client`.
pub fn append_forwarded_for(headers: &mut Headers, client: IpAddr) {
    let mut list = Vec::new();
    for v in headers.get_all("x-forwarded-for") {
        if !v.is_empty() {
            if !list.is_empty() {
                list.extend_from_slice(b", ");
            }
            list.extend_from_slice(v);
        }
    }
    if !list.is_empty() {
        list.extend_from_slice(b", ");
    }
    list.extend_from_slice(client.to_string().as_bytes());
    headers.set("X-Forwarded-For", list);
}

/// Sets `X-Forwarded-Proto` to `proto` (`http` or `https`), replacing what the client sent.
pub fn set_forwarded_proto(headers: &mut Headers, proto: &'static str) {
    headers.set("X-Forwarded-Proto", Bytes::from_static(proto.as_bytes()));
}

/// Sets the header `name` (by default [`CONNECTOR_ID_HEADER`]; configurable because some
/// origins already expect another name) to the connector's ID, replacing what the client sent
/// (a client must not be able to pose as a connector).
pub fn set_connector_id<N>(headers: &mut Headers, name: N, id: impl Into<Bytes>)
where
    N: Into<Bytes> + AsRef<[u8]>,
{
    headers.set(name, id);
}

/// Replaces `Host` with `host` (cloudflared's `httpHostHeader`).
pub fn override_host(headers: &mut Headers, host: impl Into<Bytes>) {
    headers.set("Host", host);
}

/// Whether `h` is a hop-by-hop field of `all` (the fields it came with): one of [`HOP_BY_HOP`]
/// or listed in a `Connection` field, never one of [`END_TO_END`]. With `keep_upgrade`,
/// `Upgrade` is kept. The rule of [`remove_hop_by_hop`], asked of one field.
pub(crate) fn is_hop(h: &Header, all: &Headers, keep_upgrade: bool) -> bool {
    if keep_upgrade && h.is("upgrade") {
        return false;
    }
    if HOP_BY_HOP.iter().any(|n| h.is(n)) {
        return true;
    }
    !END_TO_END.iter().any(|n| h.is(n))
        && all
            .get_all("connection")
            .any(|v| tokens(v).any(|t| h.name.eq_ignore_ascii_case(t)))
}

/// Whether a proxy drops the request field `h` of `all` when it forwards the request: a
/// hop-by-hop field ([`is_hop`], `Upgrade` kept with `upgrade`) or `Expect` (each hop answers
/// `100 Continue` to its own client). The one rule behind [`strip_for_forwarding`] and the
/// edge's [`crate::tunnel::forward_request_meta`].
pub(crate) fn is_dropped_on_forward(h: &Header, all: &Headers, upgrade: bool) -> bool {
    h.is("expect") || is_hop(h, all, upgrade)
}

/// Removes from a request's fields what a proxy does not forward: the hop-by-hop fields
/// ([`remove_hop_by_hop`], `Upgrade` kept and `Connection: upgrade` put back with `upgrade`)
/// and `Expect`. The connector calls it before it writes a request to its origin; the edge
/// applies the same rule while it encodes OPEN metadata
/// ([`crate::tunnel::forward_request_meta`]).
pub fn strip_for_forwarding(headers: &mut Headers, upgrade: bool) {
    remove_hop_by_hop(headers, upgrade);
    headers.remove("expect");
}

/// The head of a response forwarded to a client (`HTTP/1.1`, whatever version the origin
/// spoke): the hop-by-hop fields removed ([`remove_hop_by_hop`]), with `framing` (when `Some`)
/// announced in place of the origin's `Content-Length` and `Transfer-Encoding`
/// ([`crate::http::set_framing_headers`]), and `Connection: close` when `close`. The same bytes
/// as applying those steps to the head and encoding it, written in one pass from its fields
/// into one buffer of the right size.
pub fn encode_client_response(
    head: &ResponseHead,
    framing: Option<BodyFraming>,
    close: bool,
) -> Bytes {
    const CLOSE: &[u8] = b"Connection: close\r\n";
    const CHUNKED: &[u8] = b"Transfer-Encoding: chunked\r\n";
    const LENGTH: &[u8] = b"Content-Length: ";
    let all = &head.headers;
    let reframed =
        |h: &Header| framing.is_some() && (h.is("content-length") || h.is("transfer-encoding"));
    let kept = || {
        all.iter()
            .filter(|h| !is_hop(h, all, false) && !reframed(h))
    };
    let mut digits = [0u8; 20];
    let length = match framing {
        Some(BodyFraming::Length(n)) => decimal(n, &mut digits),
        _ => &[],
    };
    let size = head.reason.len()
        + 15
        + kept()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum::<usize>()
        + match framing {
            Some(BodyFraming::Length(_)) => LENGTH.len() + length.len() + 2,
            Some(BodyFraming::Chunked) => CHUNKED.len(),
            _ => 0,
        }
        + if close { CLOSE.len() } else { 0 }
        + 2;
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(b"HTTP/1.1 ");
    let s = head.status.min(999);
    out.extend_from_slice(&[
        b'0' + (s / 100) as u8,
        b'0' + (s / 10 % 10) as u8,
        b'0' + (s % 10) as u8,
    ]);
    out.push(b' ');
    out.extend_from_slice(&head.reason);
    out.extend_from_slice(b"\r\n");
    for h in kept() {
        out.extend_from_slice(&h.name);
        out.extend_from_slice(b": ");
        out.extend_from_slice(&h.value);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        Some(BodyFraming::Length(_)) => {
            out.extend_from_slice(LENGTH);
            out.extend_from_slice(length);
            out.extend_from_slice(b"\r\n");
        }
        Some(BodyFraming::Chunked) => out.extend_from_slice(CHUNKED),
        _ => {}
    }
    if close {
        out.extend_from_slice(CLOSE);
    }
    out.extend_from_slice(b"\r\n");
    debug_assert_eq!(out.len(), size, "the head was sized exactly");
    Bytes::from(out)
}

/// `n` in decimal, in the tail of `digits`.
fn decimal(mut n: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &digits[i..];
        }
    }
}

/// Whether the request asks for a WebSocket: `Upgrade: websocket` and `Connection: upgrade`
/// on an HTTP/1.1 request.
pub fn is_websocket_upgrade(head: &RequestHead) -> bool {
    is_upgrade_request(head) && head.headers.has_token("upgrade", "websocket")
}

/// Whether the request asks for any protocol upgrade: an `Upgrade` field and `Connection:
/// upgrade` on an HTTP/1.1 request.
pub fn is_upgrade_request(head: &RequestHead) -> bool {
    head.version == Version::Http11
        && head.headers.contains("upgrade")
        && head.headers.has_token("connection", "upgrade")
}

/// Whether the response accepts an upgrade (`101 Switching Protocols`): after its head the
/// connection carries the new protocol both ways.
pub fn is_switching_protocols(head: &ResponseHead) -> bool {
    head.status == 101
}

/// Whether the client waits for `100 Continue` before sending the body (`Expect:
/// 100-continue` on HTTP/1.1; RFC 9110 §10.1.1 says to ignore it from HTTP/1.0).
pub fn expects_continue(head: &RequestHead) -> bool {
    head.version == Version::Http11
        && head
            .headers
            .get_all("expect")
            .any(|v| v.eq_ignore_ascii_case(b"100-continue"))
}

/// Whether a message with this version and headers leaves the connection open: HTTP/1.1
/// unless `Connection: close`; HTTP/1.0 only with `Connection: keep-alive`.
pub fn keep_alive(version: Version, headers: &Headers) -> bool {
    match version {
        Version::Http11 => !headers.has_token("connection", "close"),
        Version::Http10 => {
            headers.has_token("connection", "keep-alive")
                && !headers.has_token("connection", "close")
        }
    }
}

/// Whether the client connection may serve another request after this one.
pub fn request_keep_alive(head: &RequestHead) -> bool {
    keep_alive(head.version, &head.headers)
}

/// Whether the connection that carried this response may carry another exchange: the
/// response's own [`keep_alive`] rule, and never after a close-delimited body or a 101.
pub fn response_keep_alive(head: &ResponseHead, framing: BodyFraming) -> bool {
    framing != BodyFraming::CloseDelimited
        && head.status != 101
        && keep_alive(head.version, &head.headers)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use proptest::prelude::*;

    use super::*;

    fn names(h: &Headers) -> Vec<String> {
        h.iter()
            .map(|f| String::from_utf8_lossy(&f.name).into_owned())
            .collect()
    }

    #[test]
    fn hop_by_hop_removal_includes_connection_listed_fields() {
        let mut h = Headers::new();
        for (n, v) in [
            ("Host", "a"),
            ("Connection", "keep-alive, X-Secret"),
            ("connection", "Foo"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "X-T"),
            ("Transfer-Encoding", "chunked"),
            ("Upgrade", "websocket"),
            ("x-secret", "1"),
            ("FOO", "2"),
            ("Accept", "*/*"),
        ] {
            h.append(n, v);
        }
        let mut plain = h.clone();
        remove_hop_by_hop(&mut plain, false);
        assert_eq!(names(&plain), ["Host", "Accept"]);
        let mut up = h;
        remove_hop_by_hop(&mut up, true);
        assert_eq!(names(&up), ["Host", "Upgrade", "Accept", "Connection"]);
        assert!(up.has_token("connection", "upgrade"));
    }

    #[test]
    fn connection_never_removes_end_to_end_fields() {
        let mut h = Headers::new();
        for (n, v) in [
            ("Host", "raw.test"),
            ("Content-Length", "3"),
            ("Connection", "HOST, content-length, transfer-encoding, X-A"),
            ("Transfer-Encoding", "chunked"),
            ("X-A", "1"),
        ] {
            h.append(n, v);
        }
        remove_hop_by_hop(&mut h, false);
        assert_eq!(names(&h), ["Host", "Content-Length"]);
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = Headers::new();
        append_forwarded_for(&mut h, "10.0.0.1".parse().unwrap());
        assert_eq!(
            h.get("x-forwarded-for").map(|v| &v[..]),
            Some(&b"10.0.0.1"[..])
        );
        let mut h = Headers::new();
        h.append("X-Forwarded-For", "1.1.1.1, 2.2.2.2");
        h.append("A", "b");
        h.append("x-forwarded-for", "3.3.3.3");
        append_forwarded_for(&mut h, "::1".parse().unwrap());
        assert_eq!(h.get_all("x-forwarded-for").count(), 1);
        assert_eq!(
            h.get("x-forwarded-for").map(|v| &v[..]),
            Some(&b"1.1.1.1, 2.2.2.2, 3.3.3.3, ::1"[..])
        );
        set_forwarded_proto(&mut h, "https");
        set_connector_id(&mut h, CONNECTOR_ID_HEADER, "abc");
        set_connector_id(&mut h, String::from("X-Custom-Connector"), "abc");
        assert_eq!(
            h.get("x-custom-connector").map(|v| &v[..]),
            Some(&b"abc"[..])
        );
        override_host(&mut h, "origin.local");
        assert_eq!(
            h.get("x-forwarded-proto").map(|v| &v[..]),
            Some(&b"https"[..])
        );
        assert_eq!(
            h.get(CONNECTOR_ID_HEADER).map(|v| &v[..]),
            Some(&b"abc"[..])
        );
        assert_eq!(h.get("host").map(|v| &v[..]), Some(&b"origin.local"[..]));
    }

    /// The fields of the heads the one-pass rewrites are checked on: hop-by-hop fields, fields
    /// named in `Connection` (also the end-to-end ones and the `X-Forwarded-*` ones), several
    /// `X-Forwarded-For`, `Expect`, framing fields.
    pub(crate) fn field() -> impl Strategy<Value = (String, String)> {
        let names = prop::sample::select(vec![
            "Host",
            "host",
            "Connection",
            "connection",
            "Keep-Alive",
            "TE",
            "Trailer",
            "Transfer-Encoding",
            "Upgrade",
            "Proxy-Authorization",
            "X-Forwarded-For",
            "x-forwarded-for",
            "X-Forwarded-Proto",
            "Expect",
            "Content-Length",
            "Accept",
            "X-A",
        ]);
        let values = prop::sample::select(vec![
            "",
            "1.1.1.1",
            "close",
            "upgrade",
            "keep-alive, X-A",
            "X-Forwarded-For",
            "x-forwarded-proto, Upgrade",
            "host, content-length",
            "websocket",
            "chunked",
            "5",
            "100-continue",
            "*/*",
        ]);
        (names, values).prop_map(|(n, v)| (n.to_owned(), v.to_owned()))
    }

    proptest! {
        #[test]
        fn encode_client_response_is_the_steps_in_one_pass(
            fields in prop::collection::vec(field(), 0..12),
            framing in prop::sample::select(vec![
                None,
                Some(BodyFraming::Length(0)),
                Some(BodyFraming::Length(1234567)),
                Some(BodyFraming::Chunked),
                Some(BodyFraming::CloseDelimited),
                Some(BodyFraming::Empty),
            ]),
            close in any::<bool>(),
            v10 in any::<bool>(),
        ) {
            let mut rh = ResponseHead::new(200);
            if v10 {
                rh.version = Version::Http10;
            }
            for (n, v) in &fields {
                rh.headers.append(n.clone(), v.clone());
            }
            let mut want = rh.clone();
            remove_hop_by_hop(&mut want.headers, false);
            if let Some(f) = framing {
                crate::http::set_framing_headers(&mut want.headers, f);
            }
            if close {
                want.headers.append("Connection", "close");
            }
            want.version = Version::Http11;
            prop_assert_eq!(encode_client_response(&rh, framing, close), want.to_bytes());
        }
    }

    #[test]
    fn upgrade_and_continue_detection() {
        let mut r = RequestHead::new("GET", "/ws");
        r.headers.append("Upgrade", "WebSocket");
        assert!(!is_websocket_upgrade(&r));
        r.headers.append("Connection", "keep-alive, Upgrade");
        assert!(is_websocket_upgrade(&r));
        r.version = Version::Http10;
        assert!(!is_upgrade_request(&r));
        assert!(is_switching_protocols(&ResponseHead::new(101)));
        assert!(!is_switching_protocols(&ResponseHead::new(200)));

        let mut r = RequestHead::new("PUT", "/");
        assert!(!expects_continue(&r));
        r.headers.append("Expect", "100-Continue");
        assert!(expects_continue(&r));
        r.version = Version::Http10;
        assert!(!expects_continue(&r));
    }

    #[test]
    fn keep_alive_rules() {
        let mut h = Headers::new();
        assert!(keep_alive(Version::Http11, &h));
        assert!(!keep_alive(Version::Http10, &h));
        h.append("Connection", "Keep-Alive");
        assert!(keep_alive(Version::Http10, &h));
        h.append("Connection", "close");
        assert!(!keep_alive(Version::Http11, &h));
        assert!(!keep_alive(Version::Http10, &h));
        let r = ResponseHead::new(200);
        assert!(response_keep_alive(&r, BodyFraming::Length(1)));
        assert!(!response_keep_alive(&r, BodyFraming::CloseDelimited));
        assert!(!response_keep_alive(
            &ResponseHead::new(101),
            BodyFraming::Empty
        ));
    }
}
