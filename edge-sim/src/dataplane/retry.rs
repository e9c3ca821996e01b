//! Where a public request goes next: open a stream here, hand the connection to another worker,
//! or fail — decided without IO, from what the replica choice said and what was tried.
//!
//! A request goes to another replica (at most [`MAX_ATTEMPTS`] tries) when the connector or the
//! mux refused its stream before processing, or when it is idempotent without a body and its
//! link died before any response byte (see `request.rs`). A connection moves between workers
//! at most [`MAX_HOPS`] times: once for the policy's first choice, once more for a retry.

use std::fmt::Display;

use ringtun_core::http::NO_CONNECTOR_DETAIL;
use uuid::Uuid;

/// How many replicas a request is tried on at most.
pub(crate) const MAX_ATTEMPTS: usize = 3;

/// How many times one public connection may move between workers: once for the policy's first
/// choice (a replica with no link on the accepting worker), once more for a retry after a
/// refusal. The bound keeps a connection from bouncing between workers.
pub(crate) const MAX_HOPS: u8 = 2;

/// What the replica choice found (`Worker::pick` without the link itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    /// A link on this worker.
    Local,
    /// Only a link on this other worker.
    Elsewhere(usize),
    /// No live connector.
    Nothing,
}

/// The next step for the request.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Open the stream on the chosen local link.
    Open,
    /// Move the connection to worker `to`; it will have moved `hops` times.
    HandOff {
        /// The worker.
        to: usize,
        /// The connection's hop count after this move.
        hops: u8,
    },
    /// Answer the client with an error.
    Fail(Failure),
}

/// An error answer: status, the `public_errors_total` cause, and the detail for the body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Failure {
    /// HTTP status.
    pub(crate) status: u16,
    /// Metric cause label.
    pub(crate) cause: &'static str,
    /// What failed, for the client.
    pub(crate) detail: String,
}

impl Failure {
    /// 502: no link of the tunnel on this node, and no node that holds one could take the
    /// request (`detail` names them).
    pub(crate) fn peer(detail: String) -> Failure {
        Failure {
            status: 502,
            cause: "peer",
            detail,
        }
    }

    /// 503: the tunnel has no live connector this request could go to.
    pub(crate) fn no_connector() -> Failure {
        Failure {
            status: 503,
            cause: "no_connector",
            detail: NO_CONNECTOR_DETAIL.to_owned(),
        }
    }
}

/// Why one attempt may be retried on another replica (`ringtun_edge_retries_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryReason {
    /// Refused before processing (`LinkError::is_retry_safe`), or nothing was sent at all.
    Refused,
    /// An idempotent request without a body whose link died before any response byte.
    LinkLost,
}

/// Whether `method` may run twice (RFC 9110 idempotent methods).
pub(crate) fn is_idempotent(method: &[u8]) -> bool {
    matches!(
        method,
        b"GET" | b"HEAD" | b"OPTIONS" | b"TRACE" | b"PUT" | b"DELETE"
    )
}

/// The retry state of one request.
#[derive(Debug)]
pub(crate) struct Retries {
    hops: u8,
    tried: Vec<Uuid>,
    last_error: Option<String>,
}

impl Retries {
    /// A request on a connection that moved `hops` times so far.
    pub(crate) fn new(hops: u8) -> Retries {
        Retries {
            hops,
            tried: Vec::new(),
            last_error: None,
        }
    }

    /// The connectors tried already (the replica choice skips them).
    pub(crate) fn excluded(&self) -> &[Uuid] {
        &self.tried
    }

    /// Whether the replica choice may pick a connector without a link on this worker. The first
    /// choice moves only a fresh connection (one that moved already stays, or it could
    /// bounce); a retry after a refusal may move it once more. `replayable`: nothing of the
    /// request was consumed that cannot be resent.
    pub(crate) fn may_move(&self, replayable: bool) -> bool {
        replayable
            && if self.tried.is_empty() {
                self.hops == 0
            } else {
                self.hops < MAX_HOPS
            }
    }

    /// What to do with the replica choice's answer.
    pub(crate) fn decide(&self, choice: Choice, replayable: bool) -> Decision {
        match choice {
            Choice::Local => Decision::Open,
            Choice::Elsewhere(to) if self.hops < MAX_HOPS && replayable => Decision::HandOff {
                to,
                hops: self.hops + 1,
            },
            Choice::Elsewhere(_) | Choice::Nothing => Decision::Fail(match &self.last_error {
                None => Failure::no_connector(),
                Some(e) => Failure {
                    status: 502,
                    cause: "connector",
                    detail: format!(
                        "no other replica could take the request after: {e} (tried {})",
                        self.tried.len()
                    ),
                },
            }),
        }
    }

    /// The attempt on `connector` was not processed and may go elsewhere: `None` to choose
    /// again (the caller counts the retry), or the failure once [`MAX_ATTEMPTS`] were made.
    pub(crate) fn not_processed(
        &mut self,
        connector: Uuid,
        error: &dyn Display,
    ) -> Option<Failure> {
        if self.tried.len() + 1 < MAX_ATTEMPTS {
            self.tried.push(connector);
            self.last_error = Some(error.to_string());
            return None;
        }
        Some(Failure {
            status: 502,
            cause: "connector",
            detail: format!(
                "the connector failed the request: {error} (gave up after {MAX_ATTEMPTS} attempts)"
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_connection_may_move_once_and_then_stays() {
        let fresh = Retries::new(0);
        assert!(fresh.may_move(true));
        assert!(!fresh.may_move(false), "a consumed body cannot be replayed");
        assert_eq!(fresh.decide(Choice::Local, true), Decision::Open);
        assert_eq!(
            fresh.decide(Choice::Elsewhere(3), true),
            Decision::HandOff { to: 3, hops: 1 }
        );
        // Moved once: its first choice stays here, but a worker elsewhere still takes it.
        let moved = Retries::new(1);
        assert!(!moved.may_move(true));
        assert_eq!(
            moved.decide(Choice::Elsewhere(0), true),
            Decision::HandOff { to: 0, hops: 2 }
        );
    }

    #[test]
    fn a_retry_may_move_once_more_but_never_past_max_hops() {
        let mut r = Retries::new(1);
        assert_eq!(r.not_processed(Uuid::new_v4(), &"refused"), None);
        assert!(r.may_move(true), "a retry after a refusal may move");
        let mut r = Retries::new(MAX_HOPS);
        assert_eq!(r.not_processed(Uuid::new_v4(), &"refused"), None);
        assert!(!r.may_move(true));
        assert!(matches!(
            r.decide(Choice::Elsewhere(1), true),
            Decision::Fail(Failure { status: 502, .. })
        ));
    }

    #[test]
    fn a_body_that_cannot_be_replayed_never_moves() {
        let r = Retries::new(0);
        assert_eq!(
            r.decide(Choice::Elsewhere(1), false),
            Decision::Fail(Failure::no_connector())
        );
    }

    #[test]
    fn nothing_to_choose_is_503_before_any_try_and_502_after() {
        let mut r = Retries::new(0);
        assert_eq!(
            r.decide(Choice::Nothing, true),
            Decision::Fail(Failure::no_connector())
        );
        let a = Uuid::new_v4();
        assert_eq!(r.not_processed(a, &"stream refused"), None);
        assert_eq!(r.excluded(), [a]);
        match r.decide(Choice::Nothing, true) {
            Decision::Fail(f) => {
                assert_eq!((f.status, f.cause), (502, "connector"));
                assert!(f.detail.contains("stream refused"), "{}", f.detail);
                assert!(f.detail.contains("tried 1"), "{}", f.detail);
            }
            d => panic!("{d:?}"),
        }
    }

    #[test]
    fn gives_up_after_max_attempts() {
        let mut r = Retries::new(0);
        for _ in 1..MAX_ATTEMPTS {
            assert_eq!(r.not_processed(Uuid::new_v4(), &"refused"), None);
        }
        let f = r
            .not_processed(Uuid::new_v4(), &"refused")
            .expect("the last attempt fails");
        assert_eq!((f.status, f.cause), (502, "connector"));
        assert!(
            f.detail.contains("gave up after 3 attempts"),
            "{}",
            f.detail
        );
        assert_eq!(r.excluded().len(), MAX_ATTEMPTS - 1);
    }

    #[test]
    fn idempotent_methods() {
        for m in ["GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"] {
            assert!(is_idempotent(m.as_bytes()), "{m}");
        }
        for m in ["POST", "PATCH", "CONNECT", "get"] {
            assert!(!is_idempotent(m.as_bytes()), "{m}");
        }
    }
}
