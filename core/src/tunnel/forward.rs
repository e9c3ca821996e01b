//! The edge's rewrite of a request head for its connector, written straight into OPEN metadata
//! (`docs/http-meta.md`): the rules of [`crate::http`]'s proxy helpers applied in one pass over
//! the parsed fields, without a copy of the head. The connector's side of the same rule (what a
//! proxy does not forward) is [`strip_for_forwarding`](crate::http::strip_for_forwarding), applied before it writes to an origin.

use std::net::IpAddr;

use bytes::Bytes;

use super::meta::{EmitFields, FieldSink, RequestStart, encode_request_fields};
use crate::http::{BodyFraming, Header, RequestHead, RequestRoute, is_dropped_on_forward};

/// The OPEN metadata for a request the edge forwards (`docs/http-meta.md`): the head as the
/// client sent it, without what a proxy does not forward ([`strip_for_forwarding`](crate::http::strip_for_forwarding): the
/// hop-by-hop fields and `Expect`, `Upgrade` kept for an `upgrade` request), `client` appended
/// to `X-Forwarded-For` ([`append_forwarded_for`](crate::http::append_forwarded_for)), `X-Forwarded-Proto` set to `proto`, and the
/// routed target and `Host` of `route` ([`RequestRoute::apply`]). The result is the same as
/// applying those steps to a copy of the head and calling [`encode_request_meta`](super::encode_request_meta), but the fields are
/// written straight from the parsed slices into one buffer of the right size: no copy of the
/// field list, no strings for the new values.
pub fn forward_request_meta(
    head: &RequestHead,
    route: &RequestRoute,
    client: IpAddr,
    proto: &'static str,
    upgrade: bool,
    body: BodyFraming,
) -> Bytes {
    forward_request_meta_with(head, route, client, proto, upgrade, body, false)
}

/// [`forward_request_meta`] with the `trailers` flag of
/// [`RequestExtra`](super::RequestExtra): the stream will carry the request body in
/// chunked encoding with its trailer section (only with [`BodyFraming::Chunked`]).
pub fn forward_request_meta_with(
    head: &RequestHead,
    route: &RequestRoute,
    client: IpAddr,
    proto: &'static str,
    upgrade: bool,
    body: BodyFraming,
    trailers: bool,
) -> Bytes {
    let mut ip = [0u8; 64];
    let ip_len = {
        use std::io::Write;
        let mut rest = &mut ip[..];
        // An address's text is at most 45 bytes: the buffer always takes it.
        let _ = write!(rest, "{client}");
        64 - rest.len()
    };
    let fields = Forwarded {
        head,
        host: route.host().as_bytes(),
        client: &ip[..ip_len],
        proto: proto.as_bytes(),
        upgrade,
    };
    let start = RequestStart {
        version: head.version,
        body,
        trailers,
        client_ip: Some(client),
        method: &head.method,
        host: route.host().as_bytes(),
        target: route.target(),
    };
    encode_request_fields(&start, &fields)
}

/// The fields of a forwarded request (see [`forward_request_meta`]).
struct Forwarded<'a> {
    head: &'a RequestHead,
    host: &'a [u8],
    client: &'a [u8],
    proto: &'a [u8],
    upgrade: bool,
}

impl Forwarded<'_> {
    /// The fields that stay, in order.
    fn kept(&self) -> impl Iterator<Item = &Header> + Clone {
        let all = &self.head.headers;
        all.iter()
            .filter(move |h| !is_dropped_on_forward(h, all, self.upgrade))
    }
}

impl EmitFields for Forwarded<'_> {
    fn emit<S: FieldSink>(&self, sink: &mut S) {
        // `X-Forwarded-For`: the values that stay, joined, then the client.
        let xff = self
            .kept()
            .filter(|h| h.is("x-forwarded-for") && !h.value.is_empty())
            .flat_map(|h| [&h.value[..], b", "])
            .chain(std::iter::once(self.client));
        let (mut seen_xff, mut seen_proto, mut seen_host, mut kept_upgrade) =
            (false, false, false, false);
        // Replaced fields keep the first one's place and spelling; later ones go.
        for h in self.kept() {
            if h.is("x-forwarded-for") {
                if !std::mem::replace(&mut seen_xff, true) {
                    sink.field(&h.name, xff.clone());
                }
            } else if h.is("x-forwarded-proto") {
                if !std::mem::replace(&mut seen_proto, true) {
                    sink.field(&h.name, std::iter::once(self.proto));
                }
            } else if h.is("host") {
                if !std::mem::replace(&mut seen_host, true) {
                    sink.field(&h.name, std::iter::once(self.host));
                }
            } else {
                kept_upgrade |= h.is("upgrade");
                sink.field(&h.name, std::iter::once(&h.value[..]));
            }
        }
        if self.upgrade && kept_upgrade {
            sink.field(b"Connection", std::iter::once(&b"upgrade"[..]));
        }
        if !seen_xff {
            sink.field(b"X-Forwarded-For", xff);
        }
        if !seen_proto {
            sink.field(b"X-Forwarded-Proto", std::iter::once(self.proto));
        }
        if !seen_host {
            sink.field(b"Host", std::iter::once(self.host));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::http::{
        Version, append_forwarded_for, proxy_field_strategy as field, set_forwarded_proto,
        strip_for_forwarding,
    };

    proptest! {
        #[test]
        fn forward_request_meta_is_the_steps_in_one_pass(
            fields in prop::collection::vec(field(), 0..12),
            upgrade in any::<bool>(),
            v6 in any::<bool>(),
        ) {
            let mut head = RequestHead::new("GET", "/a/b?c");
            head.version = Version::Http10;
            for (n, v) in &fields {
                head.headers.append(n.clone(), v.clone());
            }
            let mut routed = head.clone();
            routed.headers.retain(|h| !h.is("host"));
            routed.headers.append("Host", "App.Example.com:8080");
            let route = RequestRoute::of(&routed).unwrap();
            let client: IpAddr = if v6 { "2001:db8::1".parse().unwrap() } else { "10.1.2.3".parse().unwrap() };
            let body = BodyFraming::Length(7);
            let mut fwd = head.clone();
            strip_for_forwarding(&mut fwd.headers, upgrade);
            append_forwarded_for(&mut fwd.headers, client);
            set_forwarded_proto(&mut fwd.headers, "http");
            route.apply(&mut fwd);
            let extra = crate::tunnel::RequestExtra {
                host: route.host().to_owned(),
                client_ip: Some(client),
                body,
                trailers: false,
            };
            let want = crate::tunnel::encode_request_meta(&fwd, &extra);
            let got = forward_request_meta(&head, &route, client, "http", upgrade, body);
            prop_assert_eq!(got, want);
        }
    }
}
