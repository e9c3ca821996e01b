//! A snapshot of the routes for the request path, and the hostname and name rules.
//!
//! The public side must not take the registry's lock per request. It keeps a [`RouteTable`]
//! and refreshes it when [`super::Registry::routes_version`] moves.
use std::collections::HashMap;

use uuid::Uuid;

use crate::error::{Error, Result};
use crate::settings::LbPolicy;

/// Hostname → tunnel and port → tunnel, ready for lookups.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    pub(crate) exact: HashMap<String, Uuid>,
    /// `(".example.com", tunnel)` for `*.example.com`, longest suffix first.
    pub(crate) wildcards: Vec<(String, Uuid)>,
    pub(crate) tcp: HashMap<u16, Uuid>,
    /// Tunnels with their own load-balancing policy (the others use the edge default).
    pub(crate) policies: HashMap<Uuid, LbPolicy>,
}

impl RouteTable {
    /// The tunnel serving `host` (a `Host` header: case and a `:port` are ignored). An exact
    /// route wins over a wildcard; `*.example.com` matches any depth below `example.com` but not
    /// `example.com` itself; the longest wildcard wins.
    pub fn tunnel_for_host(&self, host: &str) -> Option<Uuid> {
        let host = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
        if let Some(id) = self.exact.get(&host) {
            return Some(*id);
        }
        self.wildcards
            .iter()
            .find(|(suffix, _)| host.len() > suffix.len() && host.ends_with(suffix.as_str()))
            .map(|(_, id)| *id)
    }

    /// The tunnel serving public TCP port `port`.
    pub fn tunnel_for_port(&self, port: u16) -> Option<Uuid> {
        self.tcp.get(&port).copied()
    }

    /// The tunnel's own load-balancing policy, if it has one.
    pub fn policy(&self, tunnel: Uuid) -> Option<LbPolicy> {
        self.policies.get(&tunnel).copied()
    }

    /// The routed TCP ports and their tunnels.
    pub fn tcp_ports(&self) -> impl Iterator<Item = (u16, Uuid)> + '_ {
        self.tcp.iter().map(|(p, id)| (*p, *id))
    }

    pub(crate) fn add_dns(&mut self, hostname: &str, tunnel: Uuid) {
        match hostname.strip_prefix('*') {
            Some(suffix) => {
                self.wildcards.push((suffix.to_owned(), tunnel));
                self.wildcards.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
            }
            None => {
                self.exact.insert(hostname.to_owned(), tunnel);
            }
        }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // An IPv6 literal: `[::1]:8080`.
        return host.find(']').map_or(host, |end| &host[..=end]);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Normalizes and checks a route hostname: lowercase, letters, digits, `-` and `.`, labels of
/// 1 to 63 characters, at most 253 in all, optionally starting with `*.`.
pub fn normalize_hostname(hostname: &str) -> Result<String> {
    let host = hostname.trim().trim_end_matches('.').to_ascii_lowercase();
    let bare = host.strip_prefix("*.").unwrap_or(&host);
    let bad = |why: &str| {
        Err(Error::Invalid(format!(
            "invalid hostname {hostname:?}: {why}"
        )))
    };
    if bare.is_empty() || host.len() > 253 {
        return bad("empty or longer than 253 characters");
    }
    for label in bare.split('.') {
        if label.is_empty() || label.len() > 63 {
            return bad("every label needs 1 to 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return bad("only letters, digits, '-', '.' and a leading '*.' are allowed");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return bad("a label cannot start or end with '-'");
        }
    }
    if host.starts_with("*.") && !bare.contains('.') {
        return bad("a wildcard needs a domain with at least two labels");
    }
    Ok(host)
}

/// Checks a tunnel name: 1 to 64 characters of letters, digits, `-`, `_` and `.`, and not
/// shaped like a UUID (names and IDs share one lookup).
pub fn validate_tunnel_name(name: &str) -> Result<()> {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if name.is_empty() || name.len() > 64 || !ok_chars {
        return Err(Error::Invalid(format!(
            "invalid tunnel name {name:?}: use 1 to 64 letters, digits, '-', '_' or '.'"
        )));
    }
    if Uuid::parse_str(name).is_ok() {
        return Err(Error::Invalid(format!(
            "invalid tunnel name {name:?}: a name cannot look like a tunnel ID"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames() {
        assert_eq!(
            normalize_hostname("App.Example.COM.").expect("valid"),
            "app.example.com"
        );
        assert_eq!(
            normalize_hostname("*.example.com").expect("valid"),
            "*.example.com"
        );
        for bad in [
            "", "*.", "*.com", "a..b", "a_b.com", "-a.com", "a.*.com", "x y",
        ] {
            assert!(normalize_hostname(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn names() {
        assert!(validate_tunnel_name("my-tunnel_1.prod").is_ok());
        for bad in ["", "a b", "a/b", "3f2c1a9e-8a7b-4c3d-9e2f-1a2b3c4d5e6f"] {
            assert!(validate_tunnel_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lookups() {
        let (a, b, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        let mut t = RouteTable::default();
        t.add_dns("*.example.com", a);
        t.add_dns("*.deep.example.com", b);
        t.add_dns("www.example.com", c);
        assert_eq!(t.tunnel_for_host("WWW.example.com:8080"), Some(c));
        assert_eq!(t.tunnel_for_host("x.example.com"), Some(a));
        assert_eq!(t.tunnel_for_host("x.y.example.com"), Some(a));
        assert_eq!(t.tunnel_for_host("x.deep.example.com"), Some(b));
        assert_eq!(t.tunnel_for_host("example.com"), None);
        assert_eq!(t.tunnel_for_host("badexample.com"), None);
        assert_eq!(t.tunnel_for_host("[::1]:80"), None);
    }
}
