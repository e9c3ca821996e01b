//! A per-node circuit breaker: after `threshold` consecutive failures the node is skipped for
//! `cooldown`; then one attempt is let through (half open), whose success closes the breaker
//! and whose failure opens it again. No IO and no clock of its own: the caller passes `now`.
use std::time::{Duration, Instant};

/// One peer node's breaker (per worker).
#[derive(Debug, Clone, Default)]
pub(crate) struct Breaker {
    failures: u32,
    open_until: Option<Instant>,
}

impl Breaker {
    /// Whether the node may be tried now. Past the cooldown the breaker lets attempts through
    /// again, but it stays one failure away from opening until one succeeds.
    pub(crate) fn allows(&self, now: Instant) -> bool {
        self.open_until.is_none_or(|until| now >= until)
    }

    /// An attempt reached the node.
    pub(crate) fn success(&mut self) {
        self.failures = 0;
        self.open_until = None;
    }

    /// An attempt failed; returns whether the breaker opened now.
    pub(crate) fn failure(&mut self, now: Instant, threshold: u32, cooldown: Duration) -> bool {
        self.failures = self.failures.saturating_add(1);
        if self.failures >= threshold.max(1) {
            self.open_until = Some(now + cooldown);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_failures_and_half_opens_after_the_cooldown() {
        let t0 = Instant::now();
        let cool = Duration::from_secs(5);
        let mut b = Breaker::default();
        assert!(b.allows(t0));
        assert!(!b.failure(t0, 3, cool));
        assert!(!b.failure(t0, 3, cool));
        assert!(b.allows(t0), "two failures of three: still closed");
        assert!(b.failure(t0, 3, cool), "the third opens it");
        assert!(!b.allows(t0 + Duration::from_secs(4)));
        assert!(b.allows(t0 + cool), "half open after the cooldown");
        // A failure while half open opens it again at once.
        assert!(b.failure(t0 + cool, 3, cool));
        assert!(!b.allows(t0 + cool + Duration::from_secs(1)));
        // A success closes it and resets the count.
        b.success();
        assert!(b.allows(t0 + cool));
        assert!(!b.failure(t0, 3, cool));
    }

    #[test]
    fn a_success_between_failures_resets_the_count() {
        let t0 = Instant::now();
        let mut b = Breaker::default();
        let cool = Duration::from_secs(1);
        assert!(!b.failure(t0, 2, cool));
        b.success();
        assert!(!b.failure(t0, 2, cool));
        assert!(b.allows(t0));
    }
}
