//! The origin service a rule sends traffic to.

use std::fmt;
use std::path::PathBuf;

/// Where matching requests go: the parsed `service:` of an ingress rule.
///
/// Accepted forms, as in cloudflared:
/// - `http://host[:port]`, `https://host[:port]` (also `ws://`, `wss://`, which are the same);
/// - `tcp://host:port` (and `ssh://`, `rdp://`, `smb://`, with their default ports);
/// - `unix:/path` and `unix+tls:/path`: HTTP (and WebSocket) over a Unix socket, the latter with
///   TLS; the path must be absolute;
/// - `http_status:NNN`;
/// - `hello_world` (also `hello-world`, `helloworld`).
///
/// A URL with a path (`http://localhost:8000/x`) is refused, as cloudflared does: the origin sees
/// the client's path unchanged. A bare trailing `/` is accepted (cloudflared refuses even that;
/// it changes nothing, so ringtun lets it pass).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    /// An HTTP or HTTPS origin.
    Http(HttpService),
    /// A raw TCP origin: the stream's bytes are piped to it.
    Tcp(TcpService),
    /// An HTTP origin on a Unix socket.
    Unix {
        /// The socket's path.
        path: PathBuf,
        /// `unix+tls:`: speak TLS over the socket.
        tls: bool,
    },
    /// Answer every request with this status and an empty body.
    HttpStatus(u16),
    /// The built-in test page.
    HelloWorld,
}

/// An `http://` or `https://` origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpService {
    /// `https` (or `wss`): TLS towards the origin.
    pub tls: bool,
    /// The host, without brackets for IPv6.
    pub host: String,
    /// The port, defaulted from the scheme when absent.
    pub port: u16,
    /// `host[:port]` as written, for display and the default `Host` header.
    pub authority: String,
}

/// A `tcp://` origin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpService {
    /// The scheme as written (`tcp`, `ssh`, `rdp`, `smb`).
    pub scheme: String,
    /// The host, without brackets for IPv6.
    pub host: String,
    /// The port.
    pub port: u16,
    /// `host[:port]` as written.
    pub authority: String,
}

impl Service {
    /// Parses a `service:` value. The error is the reason, to follow "`<service>` is an invalid
    /// address, ".
    pub fn parse(text: &str) -> Result<Service, String> {
        if let Some(path) = text.strip_prefix("unix:") {
            return unix(path, false);
        }
        if let Some(path) = text.strip_prefix("unix+tls:") {
            return unix(path, true);
        }
        if let Some(code) = text.strip_prefix("http_status:") {
            return match code.trim().parse::<u16>() {
                Ok(c) if (100..=599).contains(&c) => Ok(Service::HttpStatus(c)),
                _ => Err("invalid HTTP status: http_status needs a code from 100 to 599".into()),
            };
        }
        if matches!(text, "hello_world" | "hello-world" | "helloworld") {
            return Ok(Service::HelloWorld);
        }
        if matches!(text, "bastion" | "socks-proxy") {
            return Err(format!("the {text} service is not supported by ringtun"));
        }
        let Some((scheme, rest)) = text.split_once("://") else {
            return Err("please make sure it has a scheme and a hostname".into());
        };
        let scheme = scheme.to_ascii_lowercase();
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if !(tail.is_empty() || tail == "/") {
            return Err(
                "ingress rules don't support proxying to a different path on the \
                 origin service. The path will be the same as the eyeball request's path"
                    .into(),
            );
        }
        if authority.contains('@') {
            return Err("credentials in the service URL are not supported".into());
        }
        let (host, port) = split_authority(authority)
            .ok_or_else(|| "please make sure it has a scheme and a hostname".to_owned())?;
        if host.is_empty() {
            return Err("please make sure it has a scheme and a hostname".into());
        }
        let default_port = match scheme.as_str() {
            "http" | "ws" => Some(80),
            "https" | "wss" => Some(443),
            "ssh" => Some(22),
            "rdp" => Some(3389),
            "smb" => Some(445),
            "tcp" => None,
            other => {
                return Err(format!(
                    "unsupported scheme {other:?}; use http, https, tcp, unix:, http_status:NNN \
                     or hello_world"
                ));
            }
        };
        let port = match (port, default_port) {
            (Some(p), _) => p
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("invalid port {p:?}"))?,
            (None, Some(p)) => p,
            (None, None) => return Err(format!("{scheme}:// services need a port")),
        };
        let host = host.to_owned();
        let authority = authority.to_owned();
        Ok(match scheme.as_str() {
            "http" | "ws" | "https" | "wss" => Service::Http(HttpService {
                tls: matches!(scheme.as_str(), "https" | "wss"),
                host,
                port,
                authority,
            }),
            _ => Service::Tcp(TcpService {
                scheme,
                host,
                port,
                authority,
            }),
        })
    }
}

/// The longest Unix socket path Linux takes (`sun_path` is 108 bytes with the final NUL).
const MAX_UNIX_PATH: usize = 107;

/// A `unix:` or `unix+tls:` service: the path must be absolute, so the origin does not depend
/// on the directory the connector happens to start in, and must fit a socket address.
fn unix(path: &str, tls: bool) -> Result<Service, String> {
    if path.is_empty() {
        return Err("a unix: service needs the socket's path, like unix:/run/app.sock".into());
    }
    if !path.starts_with('/') {
        return Err(format!(
            "the socket path {path:?} is not absolute; write it from the root, like unix:/run/app.sock"
        ));
    }
    if path.contains('\0') {
        return Err("the socket path contains a NUL byte".into());
    }
    if path.len() > MAX_UNIX_PATH {
        return Err(format!(
            "the socket path is longer than the {MAX_UNIX_PATH} bytes a Unix socket address holds"
        ));
    }
    Ok(Service::Unix {
        path: PathBuf::from(path),
        tls,
    })
}

/// Splits `host[:port]` or `[v6]:port`; `None` when malformed.
fn split_authority(authority: &str) -> Option<(&str, Option<&str>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            _ => Some((host, Some(after.strip_prefix(':')?))),
        };
    }
    match authority.split_once(':') {
        None => Some((authority, None)),
        Some((h, p)) if !p.contains(':') => Some((h, Some(p))),
        Some(_) => None,
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Service::Http(h) => {
                let scheme = if h.tls { "https" } else { "http" };
                write!(f, "{scheme}://{}", h.authority)
            }
            Service::Tcp(t) => write!(f, "{}://{}", t.scheme, t.authority),
            Service::Unix { path, tls } => {
                let prefix = if *tls { "unix+tls" } else { "unix" };
                write!(f, "{prefix}:{}", path.display())
            }
            Service::HttpStatus(code) => write!(f, "http_status:{code}"),
            Service::HelloWorld => f.write_str("hello_world"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Service {
        match Service::parse(s) {
            Ok(v) => v,
            Err(e) => panic!("{s:?} should parse: {e}"),
        }
    }

    fn err(s: &str) -> String {
        match Service::parse(s) {
            Ok(v) => panic!("{s:?} should be refused, got {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn http_forms() {
        let Service::Http(h) = ok("http://localhost:8000") else {
            panic!("http expected")
        };
        assert_eq!((h.tls, h.host.as_str(), h.port), (false, "localhost", 8000));
        let Service::Http(h) = ok("https://example.com") else {
            panic!("https expected")
        };
        assert_eq!((h.tls, h.port), (true, 443));
        let Service::Http(h) = ok("http://[::1]:8080/") else {
            panic!("http expected")
        };
        assert_eq!((h.host.as_str(), h.port), ("::1", 8080));
        assert_eq!(
            ok("http://localhost:8000").to_string(),
            "http://localhost:8000"
        );
    }

    #[test]
    fn other_forms() {
        let Service::Tcp(t) = ok("tcp://localhost:2222") else {
            panic!("tcp expected")
        };
        assert_eq!(t.port, 2222);
        let Service::Tcp(t) = ok("ssh://localhost") else {
            panic!("tcp expected")
        };
        assert_eq!(t.port, 22);
        assert_eq!(
            ok("unix:/run/app.sock"),
            Service::Unix {
                path: "/run/app.sock".into(),
                tls: false
            }
        );
        assert_eq!(
            ok("unix+tls:/run/app.sock"),
            Service::Unix {
                path: "/run/app.sock".into(),
                tls: true
            }
        );
        assert_eq!(
            ok("unix+tls:/run/app.sock").to_string(),
            "unix+tls:/run/app.sock"
        );
        assert_eq!(ok("http_status:404"), Service::HttpStatus(404));
        assert_eq!(ok("hello_world"), Service::HelloWorld);
        assert_eq!(ok("hello-world"), Service::HelloWorld);
    }

    #[test]
    fn refused_forms() {
        assert!(err("http://localhost:8000/x").contains("different path"));
        assert!(err("localhost:8000").contains("scheme and a hostname"));
        assert!(err("http://:8000").contains("scheme and a hostname"));
        assert!(err("tcp://localhost").contains("need a port"));
        assert!(err("ftp://localhost").contains("unsupported scheme"));
        assert!(err("http://localhost:99999").contains("invalid port"));
        assert!(err("http_status:abc").contains("invalid HTTP status"));
        assert!(err("http_status:1000").contains("invalid HTTP status"));
        assert!(err("bastion").contains("not supported"));
        assert!(err("unix:").contains("needs the socket's path"));
        assert!(err("unix:run/app.sock").contains("not absolute"));
        assert!(err("unix+tls:./app.sock").contains("not absolute"));
        assert!(err(&format!("unix:/{}", "a".repeat(200))).contains("107 bytes"));
    }
}
