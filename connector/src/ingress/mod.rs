//! Ingress rules: which origin service a public request goes to.
//!
//! The semantics are cloudflared's, so users can bring their rules: checked in order, first match
//! wins; a hostname may start with `*.` to match subdomains of any depth (not the apex); matching
//! ignores case and the `Host` header's port; `path` is an unanchored regex on the request path;
//! the last rule, and only the last, matches everything. Validation happens once, when the config
//! is loaded ([`IngressRules`] cannot hold an invalid rule set); serving the services is left to
//! the proxy. [`LiveRules`] holds the rules a running connector serves, replaceable by a reload.

mod hostname;
mod live;
mod rule;
mod rules;
mod service;

pub use hostname::HostPattern;
pub(crate) use hostname::host_without_port;
pub use live::{LiveRules, StreamRules, WorkerRules};
pub use rule::Rule;
pub use rules::{IngressRules, RuleMatch};
pub use service::{HttpService, Service, TcpService};
