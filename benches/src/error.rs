//! [`LoadError`]: the one error type of the `ringtun-benches` library.
//!
//! Every variant says whose fault it is and whether a retry may work ([`Classify`]). Nothing here
//! is retried automatically: a load run that
//! meets an error either counts it (peer faults during a run) or stops (local faults at setup).

use std::io;

use ringtun_core::error::{Classify, Fault};
use ringtun_core::rt::RtError;

/// What can go wrong in ringtun-load.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The target is not something ringtun-load can load (user's fault; not retryable).
    #[error("bad target {target:?}: {reason}")]
    BadTarget {
        /// The target as given.
        target: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A command-line option has a bad value (user's fault; not retryable).
    #[error("bad option {option}: {reason}")]
    BadOption {
        /// The option's name.
        option: &'static str,
        /// Why it was refused.
        reason: String,
    },
    /// The peer sent bytes that are not valid HTTP/1.1 (origin's fault; retry on a new
    /// connection).
    #[error("malformed http from peer: {reason}")]
    Http {
        /// What was wrong.
        reason: &'static str,
    },
    /// The thread-per-core runtime failed to start (local fault).
    #[error("runtime: {0}")]
    Runtime(#[from] RtError),
    /// Local IO failed: binding a listener, writing an output file (local fault).
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        source: io::Error,
    },
    /// The link benchmark failed (local fault: it runs both ends itself).
    #[error("link benchmark: {0}")]
    LinkBench(String),
    /// A JSON report could not be read or a histogram in it could not be decoded (user's or
    /// local fault; not retryable).
    #[error("bad report: {reason}")]
    BadReport {
        /// What was wrong.
        reason: String,
    },
    /// A JSON report could not be written or parsed (user's or local fault; not retryable).
    #[error("bad report: {0}")]
    ReportJson(#[from] serde_json::Error),
}

impl Classify for LoadError {
    /// The target's bad HTTP is [`Fault::Origin`]; everything else is [`Fault::Local`] (the
    /// user's options and files, this machine, or ringtun-load itself).
    fn fault(&self) -> Fault {
        match self {
            Self::Http { .. } => Fault::Origin,
            Self::Runtime(e) => e.fault(),
            Self::BadTarget { .. }
            | Self::BadOption { .. }
            | Self::Io { .. }
            | Self::LinkBench(_)
            | Self::BadReport { .. }
            | Self::ReportJson(_) => Fault::Local,
        }
    }

    /// Safe only for the target's bad HTTP, on a fresh connection.
    fn is_retry_safe(&self) -> bool {
        matches!(self, Self::Http { .. })
    }
}

impl LoadError {
    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant: whose fault and whether a retry on a fresh connection may work.
    #[test]
    fn every_error_has_a_fault_and_a_retry_answer() {
        let json = serde_json::from_str::<u8>("x").err();
        let mut table = vec![
            (
                LoadError::BadTarget {
                    target: "x".into(),
                    reason: "x",
                },
                Fault::Local,
                false,
            ),
            (
                LoadError::BadOption {
                    option: "--x",
                    reason: "x".into(),
                },
                Fault::Local,
                false,
            ),
            (LoadError::Http { reason: "x" }, Fault::Origin, true),
            (
                LoadError::Runtime(RtError::WorkerLost { worker: 0 }),
                Fault::Local,
                false,
            ),
            (
                LoadError::io("x", io::Error::other("x")),
                Fault::Local,
                false,
            ),
            (LoadError::LinkBench("x".into()), Fault::Local, false),
            (
                LoadError::BadReport { reason: "x".into() },
                Fault::Local,
                false,
            ),
        ];
        table.extend(json.map(|e| (LoadError::ReportJson(e), Fault::Local, false)));
        assert_eq!(table.len(), 8, "every variant is in the table");
        for (e, fault, retry) in table {
            assert_eq!(e.fault(), fault, "{e:?}");
            assert_eq!(e.is_retry_safe(), retry, "{e:?}");
        }
    }
}
