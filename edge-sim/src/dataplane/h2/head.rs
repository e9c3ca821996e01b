//! The response head an HTTP/2 client gets: the connector's HTTP/1.1 head (or a page made
//! at the edge) without the fields HTTP/2 forbids.

use ringtun_core::http::{ResponseHead, remove_hop_by_hop};

/// Fields HTTP/2 forbids (RFC 9113 §8.2.2), on top of the hop-by-hop ones.
const CONNECTION_SPECIFIC: [&str; 5] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// An HTTP/1.1 response head as an HTTP/2 response; `None` when its status is not valid.
/// Fields whose name or value HTTP/2 cannot carry are dropped. `keep_length`: keep a
/// `Content-Length` (the connector's answers; a page made here has its body's).
pub(crate) fn response_head(mut rh: ResponseHead, keep_length: bool) -> Option<http::Response<()>> {
    remove_hop_by_hop(&mut rh.headers, false);
    let mut resp = http::Response::new(());
    *resp.status_mut() = http::StatusCode::from_u16(rh.status).ok()?;
    let headers = resp.headers_mut();
    for h in rh.headers.iter() {
        if CONNECTION_SPECIFIC.iter().any(|n| h.is(n)) || (!keep_length && h.is("content-length")) {
            continue;
        }
        let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(&h.name),
            http::HeaderValue::from_maybe_shared(h.value.clone()),
        ) else {
            continue;
        };
        headers.append(name, value);
    }
    Some(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_fields_are_dropped_and_names_lowercased() {
        let mut rh = ResponseHead::new(200);
        rh.headers.append("Connection", "close, X-Hop");
        rh.headers.append("X-Hop", "1");
        rh.headers.append("Transfer-Encoding", "chunked");
        rh.headers.append("Content-Type", "text/plain");
        rh.headers.append("Set-Cookie", "a=1");
        rh.headers.append("Set-Cookie", "b=2");
        let r = response_head(rh, true).expect("valid");
        assert_eq!(r.status(), 200);
        let h = r.headers();
        assert!(h.get("connection").is_none());
        assert!(h.get("x-hop").is_none(), "named by Connection");
        assert!(h.get("transfer-encoding").is_none());
        assert_eq!(
            h.get("content-type").map(|v| v.as_bytes()),
            Some(&b"text/plain"[..])
        );
        assert_eq!(h.get_all("set-cookie").iter().count(), 2);
    }
}
