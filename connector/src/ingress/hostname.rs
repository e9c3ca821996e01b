//! Hostname patterns of ingress rules and matching a request's `Host` against them.

use std::fmt;

/// A rule's `hostname`, validated and lowercased.
///
/// Matching is case-insensitive (hostnames are, RFC 4343). `*.example.com` matches any depth of
/// subdomain (`a.example.com`, `a.b.example.com`) but not `example.com` itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// No hostname, or `*`: every host.
    Any,
    /// Exactly this host (lowercased).
    Exact(String),
    /// `*.suffix`: holds the suffix with its leading dot (`.example.com`), lowercased.
    Subdomains(String),
}

/// Why a hostname pattern was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPatternError {
    /// It names a port.
    ContainsPort,
    /// A `*` somewhere other than a leading `*.`.
    BadWildcard,
}

impl HostPattern {
    /// Parses a rule's `hostname` (empty means none).
    ///
    /// Like cloudflared, a port is refused first, then any `*` past the first character. Unlike
    /// cloudflared, `*foo.example.com` is refused too: cloudflared accepts it, but then it only
    /// matches that literal text. One trailing dot is dropped (`example.com.` is
    /// `example.com`): requests are matched on their normalised host, which never has one
    /// (`docs/routing.md`).
    pub fn parse(text: &str) -> Result<HostPattern, HostPatternError> {
        if text.is_empty() || text == "*" {
            return Ok(HostPattern::Any);
        }
        if split_host_port(text).is_some() {
            return Err(HostPatternError::ContainsPort);
        }
        let lower = text.strip_suffix('.').unwrap_or(text).to_ascii_lowercase();
        match lower.strip_prefix('*') {
            Some(suffix)
                if suffix.starts_with('.') && suffix.len() > 1 && !suffix.contains('*') =>
            {
                Ok(HostPattern::Subdomains(suffix.to_owned()))
            }
            Some(_) => Err(HostPatternError::BadWildcard),
            None if lower.contains('*') => Err(HostPatternError::BadWildcard),
            None => Ok(HostPattern::Exact(lower)),
        }
    }

    /// Whether `host` (already without port) matches. Case-insensitive.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Any => true,
            HostPattern::Exact(h) => h.eq_ignore_ascii_case(host),
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len()
                    && host
                        .get(host.len() - suffix.len()..)
                        .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
            }
        }
    }

    /// Whether this pattern matches every host.
    pub fn is_any(&self) -> bool {
        matches!(self, HostPattern::Any)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Any => f.write_str("*"),
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Subdomains(s) => write!(f, "*{s}"),
        }
    }
}

/// Splits `host:port` or `[v6]:port` the way Go's `net.SplitHostPort` does; `None` when there is
/// no port (including a bare IPv6 address).
pub(crate) fn split_host_port(s: &str) -> Option<(&str, &str)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return Some((host, after.strip_prefix(':')?));
    }
    let (host, port) = s.rsplit_once(':')?;
    if host.contains(':') {
        return None;
    }
    Some((host, port))
}

/// The host part of a `Host` header: the port removed, IPv6 brackets removed.
pub(crate) fn host_without_port(host: &str) -> &str {
    match split_host_port(host) {
        Some((h, _)) => h,
        None => host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> HostPattern {
        match HostPattern::parse(s) {
            Ok(p) => p,
            Err(e) => panic!("{s:?}: {e:?}"),
        }
    }

    #[test]
    fn wildcard_matches_any_depth_but_not_apex() {
        let w = p("*.example.com");
        assert!(w.matches("a.example.com"));
        assert!(w.matches("a.b.c.example.com"));
        assert!(!w.matches("example.com"));
        assert!(!w.matches("badexample.com"));
        assert!(!w.matches("a.example.org"));
    }

    #[test]
    fn case_insensitive_and_trailing_dot() {
        assert!(p("MyApp.Example.com").matches("myapp.example.COM"));
        assert!(p("myapp.example.com.").matches("myapp.example.com"));
        assert!(p("*.example.com.").matches("a.example.com"));
        assert!(p("*.Example.com").matches("Foo.EXAMPLE.com"));
        assert!(!p("a.example.com").matches("b.example.com"));
    }

    #[test]
    fn refused_patterns() {
        assert_eq!(
            HostPattern::parse("example.com:8080"),
            Err(HostPatternError::ContainsPort)
        );
        for bad in [
            "a.*.example.com",
            "*.*.example.com",
            "example.*",
            "*example.com",
            "*.",
        ] {
            assert_eq!(
                HostPattern::parse(bad),
                Err(HostPatternError::BadWildcard),
                "{bad}"
            );
        }
        assert_eq!(p(""), HostPattern::Any);
        assert_eq!(p("*"), HostPattern::Any);
    }

    #[test]
    fn port_is_removed_from_host_headers() {
        assert_eq!(host_without_port("example.com:8080"), "example.com");
        assert_eq!(host_without_port("example.com"), "example.com");
        assert_eq!(host_without_port("[::1]:80"), "::1");
        assert_eq!(host_without_port("[::1]"), "::1");
        assert_eq!(host_without_port("::1"), "::1");
    }
}
