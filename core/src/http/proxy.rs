//! Proxy header rules: hop-by-hop removal (RFC 9110 §7.6.1), `X-Forwarded-*`, the connector ID
//! header, `Host` override, and the questions a proxy asks of a head (upgrade? 100-continue?
//! keep-alive?).
//!
//! The split of work along the request path: the edge calls [`remove_hop_by_hop`],
//! [`append_forwarded_for`] and [`set_forwarded_proto`], then sets the routed target and `Host`
//! ([`crate::http::RequestRoute::apply`]), before it encodes the request into the stream's OPEN
//! metadata; the connector calls [`set_connector_id`], [`override_host`] and
//! [`crate::http::set_framing_headers`] before it writes the request to the origin.

use std::net::IpAddr;

use bytes::Bytes;

use super::framing::BodyFraming;
use super::head::{RequestHead, ResponseHead, Version};
use super::headers::{Headers, tokens};

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
mod tests {
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
