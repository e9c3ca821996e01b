//! The label sets of the edge's metrics, and the rules that keep their values a bounded set
//! whatever clients send (methods and status codes of admin requests, hostnames).
use prometheus_client::encoding::EncodeLabelSet;

/// Most distinct `hostname` labels of `ringtun_edge_requests_total`; later hostnames (wildcard
/// routes can match any number) are counted under `other`.
pub const MAX_HOSTNAME_LABELS: usize = 1000;

/// The longest hostname kept as a label (a DNS name's limit); longer ones count as `other`.
pub const MAX_HOSTNAME_LABEL_LEN: usize = 253;

/// Whether `hostname` may be a label value as is: a DNS name of lowercase letters, digits, `-`,
/// `_` and `.`, at most [`MAX_HOSTNAME_LABEL_LEN`] bytes. A wildcard route matches whatever
/// `Host` a client sends, and the encoder writes label values unescaped: a `"` would break the
/// scrape and a 60 KB name would make every scrape large.
pub(super) fn valid_hostname_label(hostname: &str) -> bool {
    (1..=MAX_HOSTNAME_LABEL_LEN).contains(&hostname.len())
        && hostname
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.".contains(&b))
}

/// Labels of an admin API request. Both come from closed sets whatever the client sends (see
/// [`AdminLabels::new`]), so made-up methods cannot grow the metrics.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AdminLabels {
    /// HTTP method: one of [`STANDARD_METHODS`], or `other`.
    pub method: &'static str,
    /// Response status code (100 to 599), or `other`.
    pub code: String,
}

/// The methods of RFC 9110 §9 and PATCH: the values of the admin `method` label besides `other`.
pub const STANDARD_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

impl AdminLabels {
    /// The labels of a request with `method` (as the client sent it) answered with `code`.
    pub fn new(method: &str, code: u16) -> AdminLabels {
        AdminLabels {
            method: STANDARD_METHODS
                .iter()
                .find(|m| **m == method)
                .copied()
                .unwrap_or("other"),
            code: if (100..600).contains(&code) {
                code.to_string()
            } else {
                "other".to_owned()
            },
        }
    }
}

/// Labels of a connection the admin API or the metrics server refused or cut short.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectedLabels {
    /// `admin` or `metrics`.
    pub server: &'static str,
    /// The limit hit, e.g. `connections`, `head_timeout`, `body_too_large` (see
    /// `ringtun_core::control::Rejection`).
    pub reason: &'static str,
}

/// Labels of a per-data-center gauge.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DcLabels {
    /// Data center name.
    pub data_center: String,
}

/// Labels of a per-worker counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WorkerLabels {
    /// The worker's index.
    pub worker: String,
}

/// Labels of a public request error.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CauseLabels {
    /// What failed, e.g. `no_route`, `no_connector`, `bad_request`, `connector`, `origin`.
    pub cause: String,
}

/// Labels of a per-hostname counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HostLabels {
    /// The request's host (lowercase, without port).
    pub hostname: String,
}

/// Labels of the byte counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    /// `in` (from public clients) or `out` (to public clients).
    pub direction: String,
}

/// Labels of the retry and limit counters.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why: a retry's `refused` or `link_lost`, or a limit's name (`crate::limit::Limit`).
    pub reason: String,
}

/// Labels of a fault injection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    /// `server` or `data_center`.
    pub target: String,
    /// `down` or `up`.
    pub action: String,
}
