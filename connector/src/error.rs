//! The crate's one error type.
//!
//! Every variant says whose fault it was and whether trying again can help, in the workspace's
//! one vocabulary ([`Classify`]). Validation messages follow cloudflared's wording where cloudflared
//! has one, lowercased, so that users searching for a cloudflared error find the same rule.

use std::path::PathBuf;

use ringtun_core::error::{Classify, Fault};

/// The error a variant was caused by, kept as its source: a library's error, or a message where
/// there is none (`String` converts with `.into()`).
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Errors of the connector library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No config file was given and none was found in the default places.
    #[error(
        "no config file found (looked in {searched}); pass --config FILE or set RINGTUN_CONFIG, \
         or serve a single origin without a config file with `ringtun tunnel run --url URL`"
    )]
    ConfigNotFound {
        /// The places looked at, in order, comma-separated.
        searched: String,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}: {source}")]
    ConfigRead {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The config file is not valid YAML.
    #[error("config file {path} is not valid YAML: {source}")]
    ConfigYaml {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: serde_yaml_ng::Error,
    },
    /// A known field has a value of the wrong type or shape.
    #[error("config field {field}: {message}")]
    ConfigField {
        /// The field's path, like `ingress[1].originRequest.connectTimeout`.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// The config has no ingress rules and no `--url` was given.
    #[error("the config file doesn't contain any ingress rules")]
    NoIngressRules,
    /// The last rule has a hostname or a path, so some requests would match nothing.
    #[error(
        "the last ingress rule must match all URLs (i.e. it should not have a hostname or path filter)"
    )]
    LastRuleNotCatchAll,
    /// A rule before the last matches everything, so the rules after it never run.
    #[error(
        "rule #{rule} is matching the hostname '{hostname}', but this will match every hostname, \
         meaning the rules which follow it will never be triggered"
    )]
    RuleShouldNotBeCatchAll {
        /// The rule's number, counting from 1 as cloudflared does.
        rule: usize,
        /// The rule's hostname (empty or `*`).
        hostname: String,
    },
    /// A hostname pattern has a `*` anywhere but as a leading `*.`.
    #[error(
        "rule #{rule}: hostname patterns can have at most one wildcard character (\"*\") and it can \
         only be used for subdomains, e.g. \"*.example.com\""
    )]
    BadWildcard {
        /// The rule's number, from 1.
        rule: usize,
    },
    /// A hostname pattern names a port.
    #[error("rule #{rule}: hostname cannot contain a port")]
    HostnameContainsPort {
        /// The rule's number, from 1.
        rule: usize,
    },
    /// A rule's `path` is not a valid regular expression.
    #[error("rule #{rule} has an invalid regex: {source}")]
    InvalidPathRegex {
        /// The rule's number, from 1.
        rule: usize,
        /// The regex compiler's error.
        source: Box<regex::Error>,
    },
    /// A rule's `service` cannot be used.
    #[error("rule #{rule}: {service} is an invalid address, {reason}")]
    InvalidService {
        /// The rule's number, from 1 (0 for `--url`).
        rule: usize,
        /// The service as written.
        service: String,
        /// Why it is refused.
        reason: String,
    },
    /// `--url` was given together with a config that has ingress rules.
    #[error(
        "you can't set the --url flag (or $RINGTUN_URL) when using multiple-origin ingress rules"
    )]
    UrlIncompatibleWithIngress,
    /// A URL given on the command line cannot be used.
    #[error("{url} is not a usable URL: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// Why.
        reason: String,
    },
    /// `$HOME` is not set, so the default locations cannot be found.
    #[error("cannot find the home directory: $HOME is not set")]
    NoHomeDir,
    /// The credentials file does not exist.
    #[error(
        "credentials file {path} does not exist; create the tunnel with `ringtun tunnel create` \
         or point to the file with --credentials-file"
    )]
    CredentialsMissing {
        /// The file.
        path: PathBuf,
    },
    /// The credentials file could not be read or written.
    #[error("cannot access credentials file {path}: {source}")]
    CredentialsIo {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// The credentials file already exists; it is never overwritten.
    #[error("credentials file {path} already exists; refusing to overwrite it")]
    CredentialsExist {
        /// The file.
        path: PathBuf,
    },
    /// The credentials file is not the expected JSON.
    #[error("credentials file {path} is not valid: {source}")]
    CredentialsJson {
        /// The file.
        path: PathBuf,
        /// The JSON error, with line and column.
        source: serde_json::Error,
    },
    /// The admin API token is missing.
    #[error(
        "no admin API token: pass --api-token, set RINGTUN_API_TOKEN, or run next to the edge's \
         state directory ({path} could not be read: {source})"
    )]
    ApiTokenMissing {
        /// The token file looked at.
        path: PathBuf,
        /// Why it could not be read.
        source: std::io::Error,
    },
    /// The edge's admin API could not be reached (refused, timed out, not HTTP).
    #[error(
        "cannot reach the edge admin API at {addr}: {source} (is ringtun-edge running? set \
         --edge-api or RINGTUN_EDGE_API)"
    )]
    EdgeUnreachable {
        /// The admin API address tried.
        addr: String,
        /// What went wrong.
        source: Cause,
    },
    /// The edge answered 401: the admin API token is wrong.
    #[error(
        "the edge refused the API token (from {source_name}); use the token in the edge's \
         state directory (admin-token)"
    )]
    ApiTokenRefused {
        /// Where the token came from: `--api-token`, `RINGTUN_API_TOKEN` or the token file.
        source_name: String,
    },
    /// The edge refused the request (4xx other than 401); the message is the edge's own.
    #[error("{message}")]
    EdgeRejected {
        /// The HTTP status.
        status: u16,
        /// The edge's error text.
        message: String,
    },
    /// The edge failed to serve the request (5xx).
    #[error("the edge failed (HTTP {status}): {message}")]
    EdgeFailed {
        /// The HTTP status.
        status: u16,
        /// The edge's error text.
        message: String,
    },
    /// The edge answered with a body this connector does not understand.
    #[error("unexpected answer from the edge to {request}: {source}")]
    EdgeBadResponse {
        /// The request, like `GET /tunnels`.
        request: String,
        /// What did not parse.
        source: Cause,
    },
    /// A step of `ringtun demo` failed.
    #[error("demo step \"{step}\" failed: {reason}")]
    Demo {
        /// The step, like `start ringtun-edge`.
        step: String,
        /// What went wrong, with the last lines of the child involved.
        reason: String,
    },
    /// The edge refused this connector for good (bad secret, unknown tunnel, connector limit);
    /// the message is the edge's own.
    #[error("the edge refused this connector: {message}")]
    EdgeRefusedConnector {
        /// The edge's message.
        message: String,
    },
    /// No edge server address is known: `--edge` was empty and discovery listed none.
    #[error("no edge servers to connect to (pass --edge ADDR or check the edge's /discovery)")]
    NoEdgeServers,
    /// An `--edge` address is not `IP:PORT`.
    #[error("edge address {addr} is not IP:PORT")]
    BadEdgeAddress {
        /// The address as given.
        addr: String,
    },
    /// TLS links need the edge CA and none was given: the credentials file has none and
    /// `--cacert` was not passed. The CA is never fetched from the edge without authentication.
    #[error(
        "no edge CA to verify links with: the credentials file {credentials} has no EdgeCA. \
         Re-create the credentials with `ringtun tunnel create` (it stores the edge's CA), or \
         pass --cacert FILE with the edge's CA certificate in PEM (`ca.pem` in the edge's state \
         directory); ringtun never trusts a CA fetched from the edge without authentication"
    )]
    EdgeCaMissing {
        /// The credentials file without a CA.
        credentials: PathBuf,
    },
    /// The edge CA that was given cannot be read or holds no usable certificate.
    #[error("the edge CA from {from} cannot be used: {source}")]
    EdgeCaUnusable {
        /// Where it came from, like `--cacert /etc/ringtun/ca.pem`.
        from: String,
        /// Why.
        source: Cause,
    },
    /// The tunnel ID in the credentials file is not a UUID.
    #[error("tunnel ID {id} in the credentials is not a UUID")]
    BadTunnelId {
        /// The ID as written.
        id: String,
    },
    /// `tunnel run NAME` was given credentials of another tunnel.
    #[error(
        "tunnel {given} does not match the credentials file {path}, which is for tunnel {file_tunnel}: pass the right --credentials-file (or `credentials-file` in the config), or run that tunnel"
    )]
    TunnelMismatch {
        /// The tunnel asked for (NAME|ID, from the command line or the config's `tunnel`).
        given: String,
        /// The credentials file.
        path: std::path::PathBuf,
        /// The tunnel the file is for (name and ID).
        file_tunnel: String,
    },
    /// `tunnel run` was given no tunnel, and the config names none.
    #[error(
        "no tunnel to run: pass NAME|ID, set `tunnel` in the config, or pass --credentials-file"
    )]
    NoTunnel,
    /// The worker runtime could not start.
    #[error("cannot start the workers: {source}")]
    Runtime {
        /// Why.
        #[from]
        source: ringtun_core::rt::RtError,
    },
    /// The metrics server (`--metrics ADDR`) could not start.
    #[error("cannot serve metrics on {addr}: {source} (check --metrics / RINGTUN_METRICS)")]
    MetricsServer {
        /// The address given.
        addr: String,
        /// Why.
        source: Cause,
    },
    /// `tunnel ready`: the connector's metrics server could not be asked.
    #[error(
        "cannot reach the connector's metrics server at {addr}: {source} (is `ringtun tunnel run \
         --metrics {addr}` running?)"
    )]
    MetricsUnreachable {
        /// The address given.
        addr: String,
        /// Why.
        source: Cause,
    },
    /// `tunnel ready`: the connector answered, but is not ready.
    #[error("connector not ready (HTTP {status} from {addr}/ready): {body}")]
    NotReady {
        /// The metrics server's address.
        addr: String,
        /// The HTTP status `/ready` answered.
        status: u16,
        /// Its body.
        body: String,
    },
    /// `--pidfile FILE` could not be written.
    #[error("cannot write the pidfile {path}: {source}")]
    PidFile {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// `--token` / `TUNNEL_TOKEN` is not a token from `ringtun tunnel token`. The token's text is
    /// never repeated: it may hold a secret.
    #[error(
        "the tunnel token (--token, TUNNEL_TOKEN or --token-file) is malformed: {reason}; print \
         a new one with `ringtun tunnel token NAME`"
    )]
    BadToken {
        /// What is wrong with it.
        reason: String,
    },
    /// `--token-file FILE` could not be read.
    #[error("cannot read the tunnel token from --token-file {path}: {source}")]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The IO error.
        source: std::io::Error,
    },
    /// `tunnel token`: the credentials file belongs to another tunnel.
    #[error(
        "the credentials file {path} is for tunnel {found}, not {wanted}; pass the right one with \
         --credentials-file"
    )]
    CredentialsMismatch {
        /// The file.
        path: PathBuf,
        /// The tunnel ID asked for.
        wanted: String,
        /// The tunnel ID in the file.
        found: String,
    },
    /// The command is declared but its implementation has not landed yet.
    #[error("`ringtun {command}` is not implemented yet")]
    NotImplemented {
        /// The command, like `tunnel create`.
        command: &'static str,
    },
}

/// The edge is [`Fault::Peer`]; the operator (a config file, a flag, a credentials file, the
/// local machine) and this connector itself (a feature not there yet) are [`Fault::Local`].
impl Classify for Error {
    fn fault(&self) -> Fault {
        match self {
            Error::EdgeUnreachable { .. }
            | Error::EdgeFailed { .. }
            | Error::EdgeRefusedConnector { .. }
            | Error::EdgeBadResponse { .. } => Fault::Peer,
            _ => Fault::Local,
        }
    }

    /// Safe only when the edge was down or failed: trying the same thing again, unchanged, may
    /// then succeed (the connector retries only reads, [`crate::run::retry_at_start`]). The rest
    /// need the operator to change a file, a flag, the request or the build.
    fn is_retry_safe(&self) -> bool {
        matches!(
            self,
            Error::EdgeUnreachable { .. } | Error::EdgeFailed { .. }
        )
    }
}

impl Error {
    /// The process exit code for this error: 2 for a command that does not exist yet, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::NotImplemented { .. } => 2,
            _ => 1,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    /// Whose fault, whether `retry_at_start` tries again, and the exit code: the edge's answers
    /// are the peer's, and only an unreachable or failing edge is worth asking again.
    #[test]
    fn faults_retries_and_exit_codes() {
        let table = [
            (
                Error::EdgeUnreachable {
                    addr: "a".into(),
                    source: "r".into(),
                },
                Fault::Peer,
                true,
                1,
            ),
            (
                Error::EdgeFailed {
                    status: 500,
                    message: "m".into(),
                },
                Fault::Peer,
                true,
                1,
            ),
            (
                Error::EdgeRefusedConnector {
                    message: "m".into(),
                },
                Fault::Peer,
                false,
                1,
            ),
            (
                Error::EdgeBadResponse {
                    request: "GET /".into(),
                    source: "r".into(),
                },
                Fault::Peer,
                false,
                1,
            ),
            (
                Error::EdgeRejected {
                    status: 409,
                    message: "m".into(),
                },
                Fault::Local,
                false,
                1,
            ),
            (
                Error::ApiTokenRefused {
                    source_name: "--api-token".into(),
                },
                Fault::Local,
                false,
                1,
            ),
            (Error::NoIngressRules, Fault::Local, false, 1),
            (Error::NoEdgeServers, Fault::Local, false, 1),
            (
                Error::NotImplemented {
                    command: "tunnel x",
                },
                Fault::Local,
                false,
                2,
            ),
        ];
        for (e, fault, retry, exit) in table {
            assert_eq!(e.fault(), fault, "{e:?}");
            assert_eq!(e.is_retry_safe(), retry, "{e:?}");
            assert_eq!(e.exit_code(), exit, "{e:?}");
        }
    }
}
