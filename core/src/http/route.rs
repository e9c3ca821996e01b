//! The host and path a request is routed on, normalised once by the edge (`docs/routing.md`).
//!
//! A public request can spell one resource many ways: `Host: App.Example.com.:80`, an
//! absolute-form target, `//admin`, `/x/../admin`, `/%61dmin`. If the edge, the connector's
//! ingress rules and the origin each read a different spelling, a rule can be bypassed. So the
//! edge reduces the request to one canonical host and one canonical origin-form target
//! ([`RequestRoute::of`]), routes on them, forwards the request with exactly them (request line
//! and `Host`), and names the host in the stream's OPEN metadata (`docs/http-meta.md`); the
//! connector matches its rules on those same values. What cannot be reduced without guessing
//! how the origin would read it (an encoded `/` or `\`, an encoded NUL, userinfo, an invalid
//! host) is refused with 400.
//!
//! The functions are pure and total: any bytes give a value or an error, never a panic, and
//! normalising a normalised value gives it back unchanged.

use std::net::Ipv6Addr;

use bytes::Bytes;

use super::error::{Fault, HttpError};
use super::head::RequestHead;

/// The longest host name accepted (RFC 1035 §2.3.4: 253 characters without the root dot).
pub const MAX_HOST_LEN: usize = 253;
/// The longest label of a host name (RFC 1035 §2.3.4).
const MAX_LABEL_LEN: usize = 63;

/// Where a request goes: its normalised host and origin-form target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRoute {
    host: String,
    target: Bytes,
    path_len: usize,
}

impl RequestRoute {
    /// Normalises the host and target of a request as the edge received it
    /// (`docs/routing.md`):
    ///
    /// - the host comes from an absolute-form target's authority when there is one (RFC 9112
    ///   §3.2.2: the `Host` field is then ignored), else from `Host`; it is lowercased, its
    ///   port and one trailing dot are dropped ([`normalize_host`]);
    /// - the target becomes origin form: path normalised by [`normalize_path`], query kept as
    ///   sent. `*` (for `OPTIONS`) stays `*`.
    ///
    /// Errors are [`HttpError::MalformedHead`] from the client (400): a missing or invalid
    /// host, an unsupported target form (authority form, other schemes), userinfo, a fragment,
    /// or a path [`normalize_path`] refuses.
    pub fn of(head: &RequestHead) -> Result<RequestRoute, HttpError> {
        let target = &head.target[..];
        if target == b"*" {
            let host = head.host().ok_or(bad("missing Host header"))?;
            return Ok(RequestRoute {
                host: normalize_host(host)?,
                target: Bytes::from_static(b"*"),
                path_len: 1,
            });
        }
        let (host, rest) = match split_absolute(target)? {
            Some(abs) => (normalize_host(abs.authority)?, abs.rest),
            None => {
                let host = head.host().ok_or(bad("missing Host header"))?;
                (normalize_host(host)?, target)
            }
        };
        let (target, path_len) = normalize_origin_form(rest)?;
        Ok(RequestRoute {
            host,
            target: Bytes::from(target),
            path_len,
        })
    }

    /// The normalised host: lowercase, no port, no trailing dot.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The normalised target: `/path?query` (or `*`).
    pub fn target(&self) -> &Bytes {
        &self.target
    }

    /// The normalised path: the target up to its query (ASCII; what ingress rules match).
    pub fn path(&self) -> &str {
        // The path is ASCII by construction (every other byte is percent-encoded).
        std::str::from_utf8(&self.target[..self.path_len]).unwrap_or("/")
    }

    /// Rewrites `head` to the normalised request: the request line's target, and `Host`
    /// (replacing what the client sent, or adding it to an HTTP/1.0 request that routed by an
    /// absolute-form target).
    pub fn apply(&self, head: &mut RequestHead) {
        head.target = self.target.clone();
        head.headers.set("Host", Bytes::from(self.host.clone()));
    }
}

/// The path of a normalised target: up to the first `?`.
pub fn target_path(target: &[u8]) -> &[u8] {
    let end = target
        .iter()
        .position(|&b| b == b'?')
        .unwrap_or(target.len());
    &target[..end]
}

/// Whether `target` is already what [`RequestRoute`] makes of a target: `*`, or an origin-form
/// target whose path [`normalize_path`] leaves unchanged. The connector checks OPEN metadata
/// with it.
pub fn is_normalized_target(target: &[u8]) -> bool {
    if target == b"*" {
        return true;
    }
    target.first() == Some(&b'/')
        && !target.contains(&b'#')
        && normalize_path(target_path(target)).is_ok_and(|p| p == target_path(target))
}

/// Normalises a `Host` value or an authority: lowercase, no port, no trailing dot.
///
/// Accepted: a DNS-style name (letters, digits, `-`, `_`; labels of 1 to 63 characters; at
/// most [`MAX_HOST_LEN`] characters) with at most one trailing dot, or an IPv6 literal in
/// brackets (written back in its canonical form, `[::1]`), each with an optional `:port` of
/// at most five digits and at most 65535 (an empty port is allowed, RFC 3986 §3.2.3). Anything
/// else is a 400 ([`HttpError::MalformedHead`]): userinfo, percent-encoding, empty labels,
/// other characters.
pub fn normalize_host(raw: &[u8]) -> Result<String, HttpError> {
    let (name, port) = if raw.first() == Some(&b'[') {
        let close = raw
            .iter()
            .position(|&b| b == b']')
            .ok_or(bad("invalid IPv6 host"))?;
        let after = &raw[close + 1..];
        let port = match after.split_first() {
            None => None,
            Some((b':', p)) => Some(p),
            Some(_) => return Err(bad("invalid host")),
        };
        (&raw[..=close], port)
    } else {
        match raw.iter().rposition(|&b| b == b':') {
            Some(i) => (&raw[..i], Some(&raw[i + 1..])),
            None => (raw, None),
        }
    };
    if let Some(p) = port {
        let valid = p.len() <= 5
            && p.iter().all(u8::is_ascii_digit)
            && p.iter().fold(0u32, |n, &d| n * 10 + u32::from(d - b'0')) <= 65535;
        if !valid {
            return Err(bad("invalid port in the host"));
        }
    }
    if let Some(inner) = name.strip_prefix(b"[").and_then(|n| n.strip_suffix(b"]")) {
        let ip: Ipv6Addr = std::str::from_utf8(inner)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(bad("invalid IPv6 host"))?;
        return Ok(format!("[{ip}]"));
    }
    let name = name.strip_suffix(b".").unwrap_or(name);
    if name.is_empty() || name.len() > MAX_HOST_LEN {
        return Err(bad("invalid host"));
    }
    for label in name.split(|&b| b == b'.') {
        let valid = !label.is_empty()
            && label.len() <= MAX_LABEL_LEN
            && label
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            return Err(bad("invalid host"));
        }
    }
    // ASCII by the check above.
    Ok(String::from_utf8_lossy(name).to_ascii_lowercase())
}

/// Normalises the path of a request target (RFC 3986 §6.2.2): the result starts with `/`, has
/// no empty segment (`//` collapses), no `.` or `..` segment (removed per RFC 3986 §5.2.4; a
/// `..` at the root stays at the root), and no percent-encoding of an unreserved character
/// (`%61` becomes `a`, `%2E` becomes `.` before dot segments are removed); other
/// percent-encodings get upper-case hex digits; bytes outside visible ASCII, and `?` and `#`
/// (which a path cannot hold), are percent-encoded. A trailing `/` stays (as does the one a final `.` or `..` leaves).
///
/// Refused with 400, because an origin could read them as something other than what the rules
/// matched: an encoded `/` (`%2F`) or `\` (`%5C`), an encoded NUL (`%00`), a literal `\` or
/// NUL, a `%` not followed by two hex digits. Paths are case-sensitive: `/ADMIN` is not `/admin`.
pub fn normalize_path(raw: &[u8]) -> Result<Vec<u8>, HttpError> {
    // One buffer: every kept segment is `/` and its bytes, so removing the last one (for `..`)
    // truncates to the last `/`.
    let mut out = Vec::with_capacity(raw.len() + 1);
    let mut trailing = false;
    let mut parts = raw.split(|&b| b == b'/').peekable();
    while let Some(part) = parts.next() {
        let last = parts.peek().is_none();
        let start = out.len();
        out.push(b'/');
        push_segment(&mut out, part)?;
        match &out[start + 1..] {
            b"" | b"." => {
                out.truncate(start);
                trailing = last;
            }
            b".." => {
                out.truncate(start);
                let prev = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                out.truncate(prev);
                trailing = last;
            }
            _ => trailing = false,
        }
    }
    if trailing || out.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// Appends one path segment (no `/` in it) with its percent-encoding normalised, see
/// [`normalize_path`].
fn push_segment(out: &mut Vec<u8>, raw: &[u8]) -> Result<(), HttpError> {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let (Some(h), Some(l)) = (
                raw.get(i + 1).and_then(|&c| hex(c)),
                raw.get(i + 2).and_then(|&c| hex(c)),
            ) else {
                return Err(bad("invalid percent-encoding in the request path"));
            };
            let v = (h << 4) | l;
            match v {
                b'/' => return Err(bad("encoded slash (%2F) in the request path")),
                b'\\' => return Err(bad("encoded backslash (%5C) in the request path")),
                0 => return Err(bad("encoded NUL (%00) in the request path")),
                _ if is_unreserved(v) => out.push(v),
                _ => push_encoded(out, v),
            }
            i += 3;
            continue;
        }
        match b {
            b'\\' => return Err(bad("backslash in the request path")),
            0 => return Err(bad("NUL in the request path")),
            // Not part of a path: encoded, so the result reads as one path in any target.
            b'?' | b'#' => push_encoded(out, b),
            0x21..=0x7e => out.push(b),
            _ => push_encoded(out, b),
        }
        i += 1;
    }
    Ok(())
}

/// An absolute-form target split: `http://{authority}{rest}`.
struct Absolute<'a> {
    authority: &'a [u8],
    /// `/path?query`, `?query` or empty.
    rest: &'a [u8],
}

/// Splits an absolute-form target (`http://authority/path?query`, RFC 9112 §3.2.2) into its
/// authority and the rest; `None` for origin form.
fn split_absolute(target: &[u8]) -> Result<Option<Absolute<'_>>, HttpError> {
    if target.first() == Some(&b'/') {
        return Ok(None);
    }
    let rest = strip_prefix_ignore_case(target, b"http://")
        .or_else(|| strip_prefix_ignore_case(target, b"https://"))
        .ok_or(bad("unsupported request target form"))?;
    let end = rest
        .iter()
        .position(|&b| matches!(b, b'/' | b'?' | b'#'))
        .unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains(&b'@') {
        return Err(bad("userinfo in the request target"));
    }
    Ok(Some(Absolute {
        authority,
        rest: tail,
    }))
}

/// Normalises `/path?query` (or an empty or `?query`-only rest of an absolute-form target,
/// whose path is `/`). Returns the target and the length of its path.
fn normalize_origin_form(rest: &[u8]) -> Result<(Vec<u8>, usize), HttpError> {
    if rest.contains(&b'#') {
        return Err(bad("fragment in the request target"));
    }
    let path = target_path(rest);
    let query = &rest[path.len()..];
    if !path.is_empty() && path[0] != b'/' {
        return Err(bad("unsupported request target form"));
    }
    let mut out = normalize_path(path)?;
    let path_len = out.len();
    out.extend_from_slice(query);
    Ok((out, path_len))
}

fn strip_prefix_ignore_case<'a>(s: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix))
        .then(|| &s[prefix.len()..])
}

/// RFC 3986 §2.3.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn push_encoded(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.extend_from_slice(&[b'%', HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]]);
}

fn bad(reason: &'static str) -> HttpError {
    HttpError::MalformedHead {
        from: Fault::Client,
        reason,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn host(s: &str) -> Result<String, String> {
        normalize_host(s.as_bytes()).map_err(|e| e.to_string())
    }

    fn path(s: &str) -> Result<String, String> {
        normalize_path(s.as_bytes())
            .map(|p| String::from_utf8(p).unwrap())
            .map_err(|e| e.to_string())
    }

    fn route(target: &str, host: Option<&str>) -> Result<(String, String, String), String> {
        let mut h = RequestHead::new("GET", target.to_owned());
        if let Some(v) = host {
            h.headers.append("Host", v.to_owned());
        }
        let r = RequestRoute::of(&h).map_err(|e| e.to_string())?;
        let t = String::from_utf8(r.target().to_vec()).unwrap();
        Ok((r.host().to_owned(), t, r.path().to_owned()))
    }

    #[test]
    fn hosts_lose_case_port_and_trailing_dot() {
        for (raw, want) in [
            ("raw.test", "raw.test"),
            ("RAW.Test", "raw.test"),
            ("raw.test.", "raw.test"),
            ("raw.test.:80", "raw.test"),
            ("raw.test:", "raw.test"),
            ("raw.test:65535", "raw.test"),
            ("a_b-c.d", "a_b-c.d"),
            ("127.0.0.1:8080", "127.0.0.1"),
            ("[::1]:80", "[::1]"),
            ("[0:0::0001]", "[::1]"),
            ("[2001:DB8::A]", "[2001:db8::a]"),
            ("localhost", "localhost"),
        ] {
            assert_eq!(host(raw).as_deref(), Ok(want), "{raw}");
        }
        for raw in [
            "",
            ".",
            ":80",
            "raw..test",
            "raw.test..",
            ".raw.test",
            "raw.test:99999",
            "raw.test:123456",
            "raw.test:8x",
            "raw.test:80:80",
            "u@raw.test",
            "raw%2Etest",
            "raw test",
            "[::1",
            "[::1]x",
            "[nope]",
            "[::1]:70000",
            "é.test",
        ] {
            assert!(host(raw).is_err(), "{raw:?} should be refused");
        }
        assert!(host(&"a".repeat(64)).is_err());
        assert!(host(&["a"; 128].join(".")).is_err(), "255 characters");
        assert!(host(&["a"; 127].join(".")).is_ok(), "253 characters");
    }

    #[test]
    fn paths_collapse_slashes_and_dot_segments() {
        for (raw, want) in [
            ("/", "/"),
            ("", "/"),
            ("//", "/"),
            ("//admin", "/admin"),
            ("/a//b///c", "/a/b/c"),
            ("/./admin", "/admin"),
            ("/x/../admin", "/admin"),
            ("/../admin", "/admin"),
            ("/../../a/./b/../c", "/a/c"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/", "/a/"),
            ("/a//", "/a/"),
            ("/..", "/"),
            ("/...", "/..."),
            ("/a..b/.c", "/a..b/.c"),
            ("/ADMIN", "/ADMIN"),
        ] {
            assert_eq!(path(raw).as_deref(), Ok(want), "{raw}");
        }
    }

    #[test]
    fn percent_encoding_is_normalised_or_refused() {
        for (raw, want) in [
            ("/%61dmin", "/admin"),
            ("/%41%7e%2d%5F%2E", "/A~-_."),
            ("/x/%2e%2E/admin", "/admin"),
            ("/%2e/a", "/a"),
            ("/a%20b", "/a%20b"),
            ("/a%3fb", "/a%3Fb"),
            ("/%c3%a9", "/%C3%A9"),
            ("/%25", "/%25"),
            ("/%2561", "/%2561"),
            ("/\u{e9}", "/%C3%A9"),
            ("/a?b#c", "/a%3Fb%23c"),
        ] {
            assert_eq!(path(raw).as_deref(), Ok(want), "{raw}");
        }
        for raw in [
            "/admin%2F",
            "/admin%2f",
            "/%5Cadmin",
            "/%5cadmin",
            "/a\\b",
            "/%00",
            "/a\0b",
            "/%",
            "/%4",
            "/%zz",
            "/%%61",
        ] {
            assert!(path(raw).is_err(), "{raw:?} should be refused");
        }
    }

    #[test]
    fn targets_become_origin_form_and_the_authority_wins() {
        let ok = |t: &str, h: Option<&str>| route(t, h).unwrap();
        assert_eq!(
            ok("/a//b?x=//y", Some("A.test.")),
            ("a.test".into(), "/a/b?x=//y".into(), "/a/b".into())
        );
        assert_eq!(
            ok("http://raw.test/admin", Some("raw.test")),
            ("raw.test".into(), "/admin".into(), "/admin".into())
        );
        // RFC 9112 §3.2.2: the authority replaces a conflicting Host.
        assert_eq!(
            ok("HTTP://RAW.test:80//admin?q", Some("other.test")),
            ("raw.test".into(), "/admin?q".into(), "/admin".into())
        );
        assert_eq!(
            ok("https://raw.test", None),
            ("raw.test".into(), "/".into(), "/".into())
        );
        assert_eq!(
            ok("http://raw.test?q", Some("x")),
            ("raw.test".into(), "/?q".into(), "/".into())
        );
        assert_eq!(
            ok("*", Some("raw.test")),
            ("raw.test".into(), "*".into(), "*".into())
        );
        for (t, h) in [
            ("/a", None),
            ("/a", Some("bad host")),
            ("raw.test:443", Some("raw.test")),
            ("ftp://raw.test/", Some("raw.test")),
            ("http://u:p@raw.test/", Some("raw.test")),
            ("http:///admin", Some("raw.test")),
            ("http://raw.test/a#f", Some("raw.test")),
            ("/a#f", Some("raw.test")),
            ("admin", Some("raw.test")),
            ("/admin%2F", Some("raw.test")),
        ] {
            let e = route(t, h).unwrap_err();
            assert!(e.starts_with("malformed head"), "{t}: {e}");
        }
        // An HTTP/1.0 request with an absolute-form target gets the Host it routed on.
        let mut h = RequestHead::new("GET", "http://raw.test/x");
        RequestRoute::of(&h).unwrap().apply(&mut h);
        assert_eq!(h.host().map(|v| &v[..]), Some(&b"raw.test"[..]));
        assert_eq!(&h.target[..], b"/x");
    }

    #[test]
    fn normalised_targets_are_recognised() {
        assert!(is_normalized_target(b"/a/b?x=//y/./"));
        assert!(is_normalized_target(b"*"));
        assert!(is_normalized_target(b"/?%2F"));
        for t in [
            &b"//a"[..],
            b"/a/./b",
            b"/a/../b",
            b"/%61",
            b"/%2F",
            b"/%c3",
            b"a",
            b"",
            b"/a#b",
            b"http://x/",
        ] {
            assert!(!is_normalized_target(t), "{}", String::from_utf8_lossy(t));
        }
    }

    /// Paths built from the pieces that matter: slashes, dots, percent signs, hex digits,
    /// letters, and any byte now and then.
    fn path_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"/".to_vec()),
            Just(b"//".to_vec()),
            Just(b".".to_vec()),
            Just(b"..".to_vec()),
            Just(b"%2e".to_vec()),
            Just(b"%2E".to_vec()),
            Just(b"%2f".to_vec()),
            Just(b"%61".to_vec()),
            Just(b"%25".to_vec()),
            Just(b"%".to_vec()),
            Just(b"a".to_vec()),
            Just(b"F".to_vec()),
            Just(b"2".to_vec()),
            any::<u8>().prop_map(|b| vec![b]),
        ];
        prop::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    fn assert_canonical(p: &[u8]) {
        let s = String::from_utf8(p.to_vec()).expect("ASCII");
        assert!(s.starts_with('/'), "{s}");
        assert!(s.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{s}");
        for bad in ["//", "/./", "/../"] {
            assert!(!s.contains(bad), "{s} contains {bad}");
        }
        assert!(!s.ends_with("/.") && !s.ends_with("/.."), "{s}");
        let upper = s.to_ascii_uppercase();
        assert!(!upper.contains("%2F") && !upper.contains("%5C"), "{s}");
        assert!(!s.contains('\\'), "{s}");
    }

    proptest! {
        #[test]
        fn path_normalisation_is_idempotent_and_canonical(raw in path_bytes()) {
            if let Ok(once) = normalize_path(&raw) {
                assert_canonical(&once);
                prop_assert_eq!(normalize_path(&once).unwrap(), once.clone());
                let mut target = once.clone();
                target.extend_from_slice(b"?q");
                prop_assert!(is_normalized_target(&target));
            }
        }

        #[test]
        fn path_normalisation_never_panics(raw in prop::collection::vec(any::<u8>(), 0..200)) {
            if let Ok(once) = normalize_path(&raw) {
                assert_canonical(&once);
                prop_assert_eq!(normalize_path(&once).unwrap(), once);
            }
        }

        #[test]
        fn host_normalisation_is_idempotent(raw in "[a-zA-Z0-9._:\\[\\]-]{0,30}") {
            if let Ok(once) = normalize_host(raw.as_bytes()) {
                prop_assert_eq!(normalize_host(once.as_bytes()).unwrap(), once.clone());
                prop_assert!(!once.ends_with('.') && !once.bytes().any(|b| b.is_ascii_uppercase()));
                prop_assert!(once.starts_with('[') || !once.contains(':'));
            }
        }

        #[test]
        fn routes_never_panic_and_are_fixed_points(
            target in prop::collection::vec(any::<u8>(), 0..120),
            host in prop::collection::vec(any::<u8>(), 0..40),
        ) {
            let _ = normalize_host(&host);
            let mut h = RequestHead::new("GET", target);
            h.headers.append("Host", host);
            if let Ok(r) = RequestRoute::of(&h) {
                prop_assert!(is_normalized_target(r.target()));
                let mut again = h.clone();
                r.apply(&mut again);
                prop_assert_eq!(RequestRoute::of(&again).unwrap(), r);
            }
        }
    }
}
