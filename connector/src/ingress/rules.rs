//! The ordered list of ingress rules and request matching.

use regex::Regex;

use super::hostname::{HostPattern, HostPatternError, host_without_port};
use super::rule::Rule;
use super::service::Service;
use crate::config::OriginRequest;
use crate::config::raw::RawRule;
use crate::error::{Error, Result};

/// Validated ingress rules, in order. Never empty, and the last rule (only the last) matches
/// every request, so [`IngressRules::match_request`] always finds a rule.
#[derive(Debug, Clone)]
pub struct IngressRules {
    rules: Vec<Rule>,
}

/// The rule a request matched.
#[derive(Debug, Clone, Copy)]
pub struct RuleMatch<'a> {
    /// The rule's position, from 0.
    pub index: usize,
    /// The rule.
    pub rule: &'a Rule,
}

impl RuleMatch<'_> {
    /// The rule's number as cloudflared prints it, from 1.
    pub fn number(&self) -> usize {
        self.index + 1
    }
}

impl IngressRules {
    /// The rules, in order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The first rule matching a request, as cloudflared: in order, first match wins. `host` is
    /// the `Host` header (any port is ignored, case does not matter); `path` is the request path,
    /// which a rule's regex may match anywhere (unanchored).
    pub fn match_request(&self, host: &str, path: &str) -> RuleMatch<'_> {
        let host = host_without_port(host);
        let last = self.rules.len() - 1;
        let index = self
            .rules
            .iter()
            .position(|r| r.matches(host, path))
            .unwrap_or(last);
        RuleMatch {
            index,
            rule: &self.rules[index],
        }
    }

    /// A single catch-all rule to `url` (`--url`). A URL without a scheme gets `http://`, as in
    /// cloudflared.
    pub fn from_url(url: &str, defaults: &OriginRequest) -> Result<IngressRules> {
        let full =
            if url.contains("://") || url.starts_with("unix:") || url.starts_with("unix+tls:") {
                url.to_owned()
            } else {
                format!("http://{url}")
            };
        let service = Service::parse(&full).map_err(|reason| Error::InvalidUrl {
            url: url.to_owned(),
            reason,
        })?;
        Ok(IngressRules {
            rules: vec![Rule {
                hostname: HostPattern::Any,
                path: None,
                service,
                origin_request: defaults.clone(),
            }],
        })
    }

    /// Validates the rules of a config file, in cloudflared's order: per rule, the service, then
    /// the hostname (port, wildcard, catch-all position), then the path regex.
    pub(crate) fn from_raw(raw: &[RawRule], defaults: &OriginRequest) -> Result<IngressRules> {
        if raw.is_empty() {
            return Err(Error::NoIngressRules);
        }
        let last = raw.len() - 1;
        let mut rules = Vec::with_capacity(raw.len());
        for (i, r) in raw.iter().enumerate() {
            let number = i + 1;
            let service_text = r.service.as_deref().unwrap_or("");
            let service = if service_text.is_empty() {
                Err("the rule has no service".to_owned())
            } else {
                Service::parse(service_text)
            }
            .map_err(|reason| Error::InvalidService {
                rule: number,
                service: service_text.to_owned(),
                reason,
            })?;
            let hostname_text = r.hostname.as_deref().unwrap_or("");
            let hostname = HostPattern::parse(hostname_text).map_err(|e| match e {
                HostPatternError::ContainsPort => Error::HostnameContainsPort { rule: number },
                HostPatternError::BadWildcard => Error::BadWildcard { rule: number },
            })?;
            let path_text = r.path.as_deref().unwrap_or("");
            let catch_all = hostname.is_any() && path_text.is_empty();
            if i == last && !catch_all {
                return Err(Error::LastRuleNotCatchAll);
            }
            if i != last && catch_all {
                return Err(Error::RuleShouldNotBeCatchAll {
                    rule: number,
                    hostname: hostname_text.to_owned(),
                });
            }
            let path = if path_text.is_empty() {
                None
            } else {
                Some(
                    Regex::new(path_text).map_err(|source| Error::InvalidPathRegex {
                        rule: number,
                        source: Box::new(source),
                    })?,
                )
            };
            rules.push(Rule {
                hostname,
                path,
                service,
                origin_request: defaults
                    .overlay(&r.origin_request, &format!("ingress[{i}].originRequest"))?,
            });
        }
        Ok(IngressRules { rules })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn rules(yaml: &str) -> IngressRules {
        match Config::from_yaml_str(yaml) {
            Ok(Config {
                ingress: Some(r), ..
            }) => r,
            Ok(_) => panic!("no rules"),
            Err(e) => panic!("should load: {e}"),
        }
    }

    fn refused(yaml: &str) -> Error {
        match Config::from_yaml_str(yaml) {
            Ok(_) => panic!("should be refused:\n{yaml}"),
            Err(e) => e,
        }
    }

    const RULES: &str = r#"
ingress:
  - hostname: api.example.com
    path: /v1/
    service: http://localhost:1
  - hostname: api.example.com
    service: http://localhost:2
  - hostname: "*.example.com"
    service: http://localhost:3
  - path: \.(jpg|png)$
    service: http://localhost:4
  - service: http_status:404
"#;

    fn n(r: &IngressRules, host: &str, path: &str) -> usize {
        r.match_request(host, path).number()
    }

    #[test]
    fn first_match_wins_and_path_is_unanchored() {
        let r = rules(RULES);
        assert_eq!(n(&r, "api.example.com", "/v1/users"), 1);
        assert_eq!(n(&r, "api.example.com", "/x/v1/users"), 1, "unanchored");
        assert_eq!(n(&r, "api.example.com", "/v2/users"), 2);
        assert_eq!(n(&r, "www.example.com", "/v1/"), 3);
        assert_eq!(n(&r, "other.org", "/a/b.png"), 4);
        assert_eq!(n(&r, "other.org", "/a/b.png?x"), 5);
        assert_eq!(n(&r, "example.com", "/"), 5, "apex is not a subdomain");
    }

    #[test]
    fn host_port_and_case_are_ignored() {
        let r = rules(RULES);
        assert_eq!(n(&r, "API.Example.COM:8443", "/v2"), 2);
        assert_eq!(n(&r, "a.b.example.com:80", "/"), 3);
    }

    #[test]
    fn single_rule_catch_all() {
        let r = rules("ingress:\n  - service: http://localhost:8080\n");
        assert_eq!(n(&r, "anything", "/"), 1);
        let r = rules("ingress:\n  - hostname: '*'\n    service: hello_world\n");
        assert_eq!(n(&r, "anything", "/"), 1);
    }

    #[test]
    fn display_like_cloudflared() {
        let r = rules(RULES);
        assert_eq!(
            r.rules()[0].to_string(),
            "\thostname: api.example.com\n\tpath: /v1/\n\tservice: http://localhost:1"
        );
        assert_eq!(r.rules()[4].to_string(), "\tservice: http_status:404");
    }

    #[test]
    fn last_rule_must_be_catch_all() {
        let e = refused("ingress:\n  - hostname: a.com\n    service: http://x\n");
        assert!(matches!(e, Error::LastRuleNotCatchAll), "{e}");
        assert!(
            e.to_string()
                .contains("the last ingress rule must match all URLs")
        );
        let e = refused("ingress:\n  - path: /a\n    service: http://x\n");
        assert!(matches!(e, Error::LastRuleNotCatchAll), "{e}");
        let e = refused("ingress:\n  - hostname: '*'\n    path: /a\n    service: http://x\n");
        assert!(matches!(e, Error::LastRuleNotCatchAll), "{e}");
    }

    #[test]
    fn only_the_last_rule_may_be_catch_all() {
        let e =
            refused("ingress:\n  - hostname: '*'\n    service: http://x\n  - service: http://y\n");
        assert!(
            matches!(e, Error::RuleShouldNotBeCatchAll { rule: 1, ref hostname } if hostname == "*"),
            "{e}"
        );
        assert!(
            e.to_string()
                .contains("rules which follow it will never be triggered")
        );
        let e = refused("ingress:\n  - service: http://x\n  - service: http://y\n");
        assert!(
            matches!(e, Error::RuleShouldNotBeCatchAll { rule: 1, .. }),
            "{e}"
        );
    }

    #[test]
    fn hostname_errors() {
        let e = refused(
            "ingress:\n  - hostname: a.com:80\n    service: http://x\n  - service: http://y\n",
        );
        assert!(matches!(e, Error::HostnameContainsPort { rule: 1 }), "{e}");
        assert!(e.to_string().contains("hostname cannot contain a port"));
        let e = refused(
            "ingress:\n  - hostname: a.com\n    service: http://x\n  - hostname: a.*.com\n    service: http://x\n  - service: http://y\n",
        );
        assert!(matches!(e, Error::BadWildcard { rule: 2 }), "{e}");
        assert!(e.to_string().contains("at most one wildcard"));
    }

    #[test]
    fn regex_and_service_errors() {
        let e = refused(
            "ingress:\n  - hostname: a.com\n    path: '*'\n    service: http://x\n  - service: http://y\n",
        );
        assert!(matches!(e, Error::InvalidPathRegex { rule: 1, .. }), "{e}");
        assert!(e.to_string().starts_with("rule #1 has an invalid regex"));
        let e = refused("ingress:\n  - service: http://localhost:8000/x\n");
        assert!(matches!(e, Error::InvalidService { rule: 1, .. }), "{e}");
        assert!(
            e.to_string()
                .contains("don't support proxying to a different path")
        );
        let e = refused(
            "ingress:\n  - hostname: a.com\n    service: http://x\n  - service: localhost\n",
        );
        assert!(matches!(e, Error::InvalidService { rule: 2, .. }), "{e}");
        assert!(
            e.to_string()
                .contains("please make sure it has a scheme and a hostname")
        );
        let e = refused("ingress:\n  - hostname: a.com\n  - service: http://y\n");
        assert!(matches!(e, Error::InvalidService { rule: 1, .. }), "{e}");
        let e = refused("ingress:\n  - service: http_status:abc\n");
        assert!(e.to_string().contains("invalid HTTP status"), "{e}");
    }

    #[test]
    fn url_flag_single_rule() {
        let d = OriginRequest::default();
        let r = IngressRules::from_url("localhost:3000", &d).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.rules()[0].service.to_string(), "http://localhost:3000");
        assert!(r.rules()[0].is_catch_all());
        let r = IngressRules::from_url("https://localhost", &d).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.match_request("x", "/").number(), 1);
        assert!(IngressRules::from_url("http://localhost/x", &d).is_err());
    }
}
