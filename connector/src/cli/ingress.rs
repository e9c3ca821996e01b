//! `ringtun ingress validate` and `ringtun ingress rule URL`.

use ringtun_core::http::{normalize_host, normalize_path};

use super::{GlobalArgs, RuleArgs};
use crate::config::{Config, find_config_file};
use crate::error::{Error, Result};

/// `ingress validate`: loads the config and checks its rules. Prints `OK`; an error is returned
/// for the caller to print. Ignored fields are logged as warnings while loading.
pub fn validate(global: &GlobalArgs) -> Result<()> {
    let path = find_config_file(global.config.as_deref())?;
    println!("Validating rules from {}", path.display());
    let config = Config::load(&path)?;
    if config.ingress.is_none() {
        return Err(Error::NoIngressRules);
    }
    println!("OK");
    Ok(())
}

/// `ingress rule URL`: prints which rule a request to URL would match, as cloudflared does:
/// `Matched rule #N` and the rule's fields. The host and path are normalised as the edge does
/// for a real request (`docs/routing.md`), so `http://App.test.//a/../admin` answers what a
/// request for it would get.
pub fn rule(global: &GlobalArgs, args: &RuleArgs) -> Result<()> {
    let (host, path) = split_request_url(&args.url)?;
    let invalid = |e: ringtun_core::http::HttpError| Error::InvalidUrl {
        url: args.url.clone(),
        reason: e.to_string(),
    };
    let host = normalize_host(host.as_bytes()).map_err(invalid)?;
    let path = normalize_path(path.as_bytes()).map_err(invalid)?;
    let path = String::from_utf8_lossy(&path);
    let file = find_config_file(global.config.as_deref())?;
    println!("Using rules from {}", file.display());
    let config = Config::load(&file)?;
    let rules = config.ingress.as_ref().ok_or(Error::NoIngressRules)?;
    let m = rules.match_request(&host, &path);
    println!("Matched rule #{}", m.number());
    println!("{}", m.rule);
    Ok(())
}

/// Splits `scheme://host[:port]/path?query` into host (with port) and path (without query,
/// `/` when empty).
fn split_request_url(url: &str) -> Result<(&str, String)> {
    let invalid = |reason: &str| Error::InvalidUrl {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let (_, rest) = url
        .split_once("://")
        .ok_or_else(|| invalid("it has no scheme; write it like https://app.example.com/path"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        return Err(invalid("it has no hostname"));
    }
    let path = tail.split(['?', '#']).next().unwrap_or("");
    let path = if path.is_empty() { "/" } else { path };
    Ok((host, path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_urls() {
        fn ok(u: &str) -> (&str, String) {
            split_request_url(u).unwrap_or_else(|e| panic!("{e}"))
        }
        assert_eq!(ok("https://a.example.com"), ("a.example.com", "/".into()));
        assert_eq!(
            ok("http://a.example.com:8080/x/y?q=1#f"),
            ("a.example.com:8080", "/x/y".into())
        );
        assert_eq!(ok("http://u:p@h/z"), ("h", "/z".into()));
        assert!(split_request_url("a.example.com/x").is_err());
        assert!(split_request_url("http:///x").is_err());
    }
}
