//! One validated ingress rule.

use std::fmt;

use regex::Regex;

use super::hostname::HostPattern;
use super::service::Service;
use crate::config::OriginRequest;

/// An ingress rule after validation: hostname pattern, compiled path regex, parsed service and
/// its effective origin settings.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Which hosts it matches.
    pub hostname: HostPattern,
    /// An unanchored regex on the request path; `None` matches every path.
    pub path: Option<Regex>,
    /// Where matching requests go.
    pub service: Service,
    /// The global `originRequest` with this rule's own laid over it.
    pub origin_request: OriginRequest,
}

impl Rule {
    /// Whether a request for `host` (without port) and `path` matches this rule.
    pub fn matches(&self, host: &str, path: &str) -> bool {
        self.hostname.matches(host) && self.path.as_ref().is_none_or(|re| re.is_match(path))
    }

    /// Whether the rule matches every request (no hostname or `*`, no path).
    pub fn is_catch_all(&self) -> bool {
        self.hostname.is_any() && self.path.is_none()
    }
}

impl fmt::Display for Rule {
    /// cloudflared's layout for `ingress rule`: one tab-indented line per set field.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.hostname.is_any() {
            writeln!(f, "\thostname: {}", self.hostname)?;
        }
        if let Some(re) = &self.path {
            writeln!(f, "\tpath: {}", re.as_str())?;
        }
        write!(f, "\tservice: {}", self.service)
    }
}
