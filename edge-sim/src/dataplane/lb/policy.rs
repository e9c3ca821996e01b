//! The policies: which of the candidates the caller has filtered takes the next stream.
//!
//! A policy reads a candidate through [`Replica`] and draws its randomness from the source it
//! is given (the worker passes its thread's generator, the tests a seeded one), so every rule
//! here runs in a unit test without links, workers or sockets. It never counts the choice:
//! `choice.rs` does, once, when the choice routes a stream.
//!
//! - `p2c`: two distinct random candidates; the lower `outstanding / weight` wins. A tie goes
//!   to the lower `served / weight` (so sequential traffic, where nothing is ever outstanding,
//!   still spreads evenly and by weight), then to a coin flip.
//! - `round-robin`: the candidate with the lowest `served / weight` (ties: the first). With
//!   equal weights that is a plain rotation; weights 3 and 1 give `a b a a` patterns, never
//!   bursts. Because `served` is one shared counter per connector, the rotation stays even
//!   fleet-wide even when the workers see different candidate sets (a replica whose links all
//!   landed on one worker); a per-worker rotation, or nginx's smooth WRR over shared
//!   `current` counters, skewed up to 3.8:1 over 100 replicas (perf/replicas.sh).
//! - `random`: probability proportional to weight.
//! - `same-dc-first`: the caller narrows the candidates to the public data center; then p2c.
//!
//! `served` counts the choices made for the connector, plus a base it starts with
//! ([`fair_base`]): the tunnel's average `served / weight` at the moment it appeared (times its
//! weight). A replica that joins a busy tunnel therefore gets its fair share from then on, not
//! every request until it has "caught up" with replicas that served for hours.

use std::sync::Arc;

use rand::Rng;
use uuid::Uuid;

use crate::settings::LbPolicy;

/// What the replica choice reads of a connector (and counts on it). Implemented by
/// [`super::ConnectorLoad`]; the tests may use it directly, with no link behind it.
pub trait Replica {
    /// The connector's ID.
    fn id(&self) -> Uuid;
    /// Its load-balancing weight (at least 1).
    fn weight(&self) -> u64;
    /// Whether it takes streams only when no active replica is left.
    fn is_standby(&self) -> bool;
    /// Whether it takes no new streams.
    fn is_draining(&self) -> bool;
    /// Streams open to it now, on every worker.
    fn outstanding(&self) -> usize;
    /// Choices made for it, plus its base.
    fn served(&self) -> u64;
    /// Counts one choice made for it.
    fn count_choice(&self);
    /// Gives back a choice counted for a stream it did not get.
    fn uncount_choice(&self);
    /// Its live links on `worker` (`home_only`: only those in the public data center).
    fn links_at(&self, worker: usize, home_only: bool) -> usize;
    /// Its live links on every worker (`home_only` as above).
    fn live_links(&self, home_only: bool) -> usize;
}

impl<T: Replica + ?Sized> Replica for Arc<T> {
    fn id(&self) -> Uuid {
        (**self).id()
    }
    fn weight(&self) -> u64 {
        (**self).weight()
    }
    fn is_standby(&self) -> bool {
        (**self).is_standby()
    }
    fn is_draining(&self) -> bool {
        (**self).is_draining()
    }
    fn outstanding(&self) -> usize {
        (**self).outstanding()
    }
    fn served(&self) -> u64 {
        (**self).served()
    }
    fn count_choice(&self) {
        (**self).count_choice();
    }
    fn uncount_choice(&self) {
        (**self).uncount_choice();
    }
    fn links_at(&self, worker: usize, home_only: bool) -> usize {
        (**self).links_at(worker, home_only)
    }
    fn live_links(&self, home_only: bool) -> usize {
        (**self).live_links(home_only)
    }
}

/// Chooses one of `candidates` by `policy` (`None` only when there is none), without counting
/// the choice. The caller has filtered them (see `choice.rs`).
pub fn choose<'a, C: Replica + ?Sized, R: Rng + ?Sized>(
    policy: LbPolicy,
    candidates: &[&'a C],
    rng: &mut R,
) -> Option<&'a C> {
    Some(match candidates.len() {
        0 => return None,
        1 => candidates[0],
        _ => match policy {
            LbPolicy::P2c | LbPolicy::SameDcFirst => p2c(candidates, rng),
            LbPolicy::RoundRobin => least_served(candidates),
            LbPolicy::Random => weighted_random(candidates, rng),
        },
    })
}

/// `x / wx` against `y / wy` without division: `x · wy` against `y · wx` (weights ≥ 1; u128
/// cannot overflow).
fn per_weight(x: u64, wx: u64, y: u64, wy: u64) -> std::cmp::Ordering {
    (u128::from(x) * u128::from(wy)).cmp(&(u128::from(y) * u128::from(wx)))
}

/// Power of two choices by outstanding streams per weight (ties: requests per weight, then a
/// coin). `candidates` has at least two entries.
fn p2c<'a, C: Replica + ?Sized, R: Rng + ?Sized>(candidates: &[&'a C], rng: &mut R) -> &'a C {
    let n = candidates.len();
    let a = rng.random_range(0..n);
    let mut b = rng.random_range(0..n - 1);
    if b >= a {
        b += 1;
    }
    let (ca, cb) = (candidates[a], candidates[b]);
    // Not `outstanding + 1`: with nothing outstanding that would hand every request to the
    // heavier replica; as a tie it goes to served per weight, which keeps the ratio.
    let (oa, ob) = (ca.outstanding() as u64, cb.outstanding() as u64);
    let order = per_weight(oa, ca.weight(), ob, cb.weight())
        .then_with(|| per_weight(ca.served(), ca.weight(), cb.served(), cb.weight()));
    match order {
        std::cmp::Ordering::Less => ca,
        std::cmp::Ordering::Greater => cb,
        std::cmp::Ordering::Equal if rng.random::<bool>() => ca,
        std::cmp::Ordering::Equal => cb,
    }
}

/// Where a connector of weight `weight` joining a tunnel starts its `served` count: the
/// tunnel's `(served, weight)` pairs averaged per unit of weight, times `weight` (0 for the
/// tunnel's first connector).
pub fn fair_base(existing: impl Iterator<Item = (u64, u64)>, weight: u16) -> u64 {
    let (served, weights) = existing.fold((0u128, 0u128), |(s, w), (cs, cw)| {
        (s + u128::from(cs), w + u128::from(cw.max(1)))
    });
    if weights == 0 {
        return 0;
    }
    u64::try_from(served * u128::from(weight.max(1)) / weights).unwrap_or(u64::MAX)
}

/// The candidate with the lowest served per weight (ties: the first).
fn least_served<'a, C: Replica + ?Sized>(candidates: &[&'a C]) -> &'a C {
    let mut best = candidates[0];
    for &c in &candidates[1..] {
        if per_weight(c.served(), c.weight(), best.served(), best.weight()).is_lt() {
            best = c;
        }
    }
    best
}

/// A candidate with probability proportional to its weight.
fn weighted_random<'a, C: Replica + ?Sized, R: Rng + ?Sized>(
    candidates: &[&'a C],
    rng: &mut R,
) -> &'a C {
    let total: u64 = candidates.iter().map(|c| c.weight()).sum();
    let mut r = rng.random_range(0..total.max(1));
    for &c in candidates {
        if r < c.weight() {
            return c;
        }
        r -= c.weight();
    }
    candidates[candidates.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataplane::lb::{ConnectorLoad, StreamGuard};
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use std::cell::RefCell;

    thread_local! {
        /// Seeded: every run of these tests draws the same numbers.
        static RNG: RefCell<StdRng> = RefCell::new(StdRng::seed_from_u64(11));
    }

    /// [`super::choose`] with the seeded generator, counting the choice as the replica choice
    /// does when it routes a stream.
    fn choose<'a>(
        policy: LbPolicy,
        candidates: &[&'a Arc<ConnectorLoad>],
    ) -> Option<&'a Arc<ConnectorLoad>> {
        let chosen = RNG.with(|r| super::choose(policy, candidates, &mut *r.borrow_mut()))?;
        chosen.count_choice();
        Some(chosen)
    }

    fn loads(weights: &[u16]) -> Vec<Arc<ConnectorLoad>> {
        weights
            .iter()
            .map(|&w| Arc::new(ConnectorLoad::new(Uuid::new_v4(), Uuid::nil(), 2).with_weight(w)))
            .collect()
    }

    fn counts(policy: LbPolicy, l: &[Arc<ConnectorLoad>], rounds: usize) -> Vec<usize> {
        let c: Vec<&Arc<ConnectorLoad>> = l.iter().collect();
        let mut n = vec![0; l.len()];
        for _ in 0..rounds {
            let pick = choose(policy, &c).expect("a pick");
            let i = l.iter().position(|x| x.id == pick.id).expect("a candidate");
            n[i] += 1;
            // Count it as opened, as the request path does.
            drop(pick.start_stream());
        }
        n
    }

    #[test]
    fn p2c_avoids_the_busier_of_two() {
        let l = loads(&[1, 1]);
        let _busy: Vec<StreamGuard> = (0..5).map(|_| l[0].start_stream()).collect();
        let c: Vec<&Arc<ConnectorLoad>> = l.iter().collect();
        for _ in 0..50 {
            assert_eq!(choose(LbPolicy::P2c, &c).map(|p| p.id), Some(l[1].id));
        }
    }

    #[test]
    fn p2c_compares_outstanding_per_weight() {
        // 3 / 4 beats 1 / 1: the heavier replica takes more load.
        let l = loads(&[4, 1]);
        let _a: Vec<StreamGuard> = (0..3).map(|_| l[0].start_stream()).collect();
        let _b = l[1].start_stream();
        let c: Vec<&Arc<ConnectorLoad>> = l.iter().collect();
        for _ in 0..50 {
            assert_eq!(choose(LbPolicy::P2c, &c).map(|p| p.id), Some(l[0].id));
        }
        // SameDcFirst is p2c once the caller narrowed the candidates.
        assert_eq!(
            choose(LbPolicy::SameDcFirst, &c).map(|p| p.id),
            Some(l[0].id)
        );
    }

    #[test]
    fn p2c_spreads_sequential_traffic_evenly_by_requests() {
        let n = counts(LbPolicy::P2c, &loads(&[1, 1, 1]), 3000);
        let (min, max) = (n.iter().min().copied(), n.iter().max().copied());
        assert!(min >= Some(990) && max <= Some(1010), "{n:?}");
        // With nothing outstanding, requests per weight decide: weight 3 vs 1 gets 3:1.
        let n = counts(LbPolicy::P2c, &loads(&[3, 1]), 100);
        assert!((74..=76).contains(&n[0]) && n[0] + n[1] == 100, "{n:?}");
    }

    #[test]
    fn round_robin_rotates_with_equal_weights() {
        let l = loads(&[1, 1, 1]);
        let c: Vec<&Arc<ConnectorLoad>> = l.iter().collect();
        let picks: Vec<Uuid> = (0..9)
            .filter_map(|_| choose(LbPolicy::RoundRobin, &c).map(|p| p.id))
            .collect();
        assert_eq!(picks[0..3], picks[3..6]);
        assert_eq!(picks[3..6], picks[6..9]);
        let distinct: std::collections::HashSet<_> = picks[0..3].iter().collect();
        assert_eq!(distinct.len(), 3);
    }

    #[test]
    fn round_robin_is_smooth_and_weighted() {
        let l = loads(&[3, 1]);
        let c: Vec<&Arc<ConnectorLoad>> = l.iter().collect();
        let picks: Vec<bool> = (0..400)
            .filter_map(|_| choose(LbPolicy::RoundRobin, &c).map(|p| p.id == l[0].id))
            .collect();
        assert_eq!(picks.iter().filter(|a| **a).count(), 300);
        // Smooth: each window of 4 is 3:1, never a burst of one replica.
        for w in picks.chunks(4) {
            assert_eq!(w.iter().filter(|a| **a).count(), 3, "{w:?}");
        }
        assert_eq!(
            counts(LbPolicy::RoundRobin, &loads(&[2, 5, 1]), 800),
            [200, 500, 100]
        );
    }

    #[test]
    fn a_newcomer_gets_its_share_not_everything() {
        // Two replicas that served 10,000 and 30,000 (weights 1 and 3): the average per unit
        // of weight is 10,000, so a newcomer of weight 2 starts at 20,000.
        assert_eq!(fair_base([(10_000, 1), (30_000, 3)].into_iter(), 2), 20_000);
        assert_eq!(fair_base(std::iter::empty(), 5), 0);
        let l = loads(&[1, 1]);
        for _ in 0..10_000 {
            let c: Vec<&Arc<ConnectorLoad>> = l.iter().collect();
            choose(LbPolicy::RoundRobin, &c);
        }
        let base = fair_base(l.iter().map(|c| (c.served(), c.weight())), 1);
        let mut all = loads(&[1]);
        all[0] =
            Arc::new(ConnectorLoad::new(Uuid::new_v4(), Uuid::nil(), 2).with_served_base(base));
        all.extend(l.iter().cloned());
        for policy in [LbPolicy::RoundRobin, LbPolicy::P2c] {
            let n = counts(policy, &all, 300);
            // Without the base the newcomer would take all 300 (it is 5,000 behind).
            assert!(
                n.iter().all(|&k| (90..=110).contains(&k)),
                "{policy:?}: {n:?}"
            );
        }
    }

    #[test]
    fn random_is_proportional_to_weight() {
        // Expectation 7500, standard deviation about 43: ±500 cannot flake.
        let n = counts(LbPolicy::Random, &loads(&[3, 1]), 10_000);
        assert!((7000..=8000).contains(&n[0]), "{n:?}");
        let n = counts(LbPolicy::Random, &loads(&[1, 1]), 10_000);
        assert!((4500..=5500).contains(&n[0]), "{n:?}");
    }

    #[test]
    fn single_and_empty_candidate_sets() {
        let l = loads(&[1]);
        let c: Vec<&Arc<ConnectorLoad>> = l.iter().collect();
        for p in LbPolicy::ALL {
            assert_eq!(choose(p, &c).map(|x| x.id), Some(l[0].id));
            assert!(choose(p, &[]).is_none());
        }
    }
}
