//! Replica choice: per-connector load shared across workers, and the policies.
//!
//! A [`ConnectorLoad`] is shared by every worker as an `Arc` of atomics: the request path only
//! loads and bumps them (relaxed), never locks. `outstanding` counts the streams the edge has
//! open to the connector on all workers, `requests` the streams opened to it since it
//! connected; `links` counts its live links per worker (which says where its streams can be
//! opened) and `home_links` those of them in the public data center (`same-dc-first`).
//!
//! # Policies ([`choose`])
//! The caller passes the candidates (live, not draining, standby only when no active one is
//! left; see `worker::Worker::pick`). Then:
//! - `p2c`: two distinct random candidates; the lower `outstanding / weight` wins. A tie goes
//!   to the lower `served / weight` (so sequential traffic, where nothing is ever outstanding,
//!   still spreads evenly and by weight), then to a coin flip.
//! - `round-robin`: the candidate with the lowest `served / weight` (ties: the first). With
//!   equal weights that is a plain rotation; weights 3 and 1 give `a b a a` patterns, never
//!   bursts. Because `served` is one shared counter per connector, the rotation stays even
//!   fleet-wide even when the workers see different candidate sets (a replica whose links all
//!   landed on one worker); a per-worker rotation, or nginx's smooth WRR over shared
//!   `current` counters, skewed up to 3.8:1 over 100 replicas (perf/replicas.sh).
//!
//! `served` counts the choices made for the connector, plus a base it starts with: the
//! tunnel's average `served / weight` at the moment it appeared (times its weight). A replica
//! that joins a busy tunnel therefore gets its fair share from then on, not every request
//! until it has "caught up" with replicas that served for hours.
//! - `random`: probability proportional to weight.
//! - `same-dc-first`: the caller narrows the candidates to the public data center; then p2c.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use uuid::Uuid;

use crate::registry::LiveLoad;
use crate::settings::LbPolicy;

/// What load balancing knows about one connector, shared by all workers.
#[derive(Debug)]
pub struct ConnectorLoad {
    /// The connector's ID.
    pub id: Uuid,
    /// Its tunnel.
    pub tunnel: Uuid,
    weight: u64,
    standby: bool,
    outstanding: AtomicUsize,
    requests: AtomicU64,
    /// Choices made for it, plus the base it joined with (see the module doc).
    served: AtomicU64,
    draining: AtomicBool,
    links: Box<[AtomicUsize]>,
    home_links: Box<[AtomicUsize]>,
    /// Live links per link index (control plane only: link up, down and GOAWAY).
    by_index: Mutex<HashMap<u8, usize>>,
}

impl ConnectorLoad {
    /// A connector with no links yet, for `workers` workers, weight 1, not standby.
    pub fn new(id: Uuid, tunnel: Uuid, workers: usize) -> ConnectorLoad {
        let per_worker = || (0..workers.max(1)).map(|_| AtomicUsize::new(0)).collect();
        ConnectorLoad {
            id,
            tunnel,
            weight: 1,
            standby: false,
            outstanding: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
            served: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            links: per_worker(),
            home_links: per_worker(),
            by_index: Mutex::new(HashMap::new()),
        }
    }

    /// With load-balancing weight `weight` (0 is taken as 1).
    pub fn with_weight(mut self, weight: u16) -> ConnectorLoad {
        self.weight = u64::from(weight.max(1));
        self
    }

    /// Starting from `base` choices (the tunnel's fair share so far, see the module doc).
    pub fn with_served_base(self, base: u64) -> ConnectorLoad {
        self.served.store(base, Ordering::Relaxed);
        self
    }

    /// Choices made for it plus its base: what `p2c` ties and `round-robin` compare.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// As a standby replica (or not).
    pub fn with_standby(mut self, standby: bool) -> ConnectorLoad {
        self.standby = standby;
        self
    }

    /// Its load-balancing weight (at least 1).
    pub fn weight(&self) -> u64 {
        self.weight
    }

    /// Whether it is a standby replica.
    pub fn is_standby(&self) -> bool {
        self.standby
    }

    /// Streams open to this connector now, across workers.
    pub fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Relaxed)
    }

    /// Streams opened to it since it connected.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Whether it takes no new streams.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Marks it as draining: from now on no worker opens a stream to it.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    /// Its live counters, for the admin API.
    pub fn live(&self) -> LiveLoad {
        LiveLoad {
            active_streams: self.outstanding(),
            requests: self.requests(),
            draining: self.is_draining(),
        }
    }

    /// Live links on `worker`.
    pub fn links_on(&self, worker: usize) -> usize {
        self.links
            .get(worker)
            .map_or(0, |l| l.load(Ordering::Acquire))
    }

    /// Live links on all workers.
    pub fn total_links(&self) -> usize {
        self.links.iter().map(|l| l.load(Ordering::Acquire)).sum()
    }

    /// Live links in the public data center on `worker`.
    pub fn home_links_on(&self, worker: usize) -> usize {
        self.home_links
            .get(worker)
            .map_or(0, |l| l.load(Ordering::Acquire))
    }

    /// Live links in the public data center on all workers.
    pub fn total_home_links(&self) -> usize {
        self.home_links
            .iter()
            .map(|l| l.load(Ordering::Acquire))
            .sum()
    }

    /// A link came up on `worker`; `home` when it is in the public data center.
    pub(crate) fn link_up(&self, worker: usize, home: bool) {
        if let Some(l) = self.links.get(worker) {
            l.fetch_add(1, Ordering::AcqRel);
        }
        if home && let Some(l) = self.home_links.get(worker) {
            l.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A link went down on `worker` (`home` as given to [`ConnectorLoad::link_up`]).
    pub(crate) fn link_down(&self, worker: usize, home: bool) {
        if home && let Some(l) = self.home_links.get(worker) {
            l.fetch_sub(1, Ordering::AcqRel);
        }
        if let Some(l) = self.links.get(worker) {
            l.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn indexes(&self) -> std::sync::MutexGuard<'_, HashMap<u8, usize>> {
        self.by_index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A link with index `index` came up (anywhere).
    pub(crate) fn index_up(&self, index: u8) {
        *self.indexes().entry(index).or_insert(0) += 1;
    }

    /// A link with index `index` went down.
    pub(crate) fn index_down(&self, index: u8) {
        let mut m = self.indexes();
        if let Some(n) = m.get_mut(&index) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&index);
            }
        }
    }

    /// Live links with index `index`: more than one while a link is being replaced.
    pub fn links_with_index(&self, index: u8) -> usize {
        self.indexes().get(&index).copied().unwrap_or(0)
    }

    /// Counts one stream opened to it, outstanding until the guard drops.
    pub fn start_stream(self: &Arc<Self>) -> StreamGuard {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        self.requests.fetch_add(1, Ordering::Relaxed);
        StreamGuard(Arc::clone(self))
    }
}

/// One outstanding stream of a connector; dropping it ends the count.
#[derive(Debug)]
pub struct StreamGuard(Arc<ConnectorLoad>);

impl StreamGuard {
    /// The connector the stream went to.
    pub fn connector(&self) -> uuid::Uuid {
        self.0.id
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Chooses one of `candidates` by `policy` (`None` only when there is none). The caller has
/// filtered them (see the module doc).
pub fn choose<'a>(
    policy: LbPolicy,
    candidates: &[&'a Arc<ConnectorLoad>],
) -> Option<&'a Arc<ConnectorLoad>> {
    let chosen = match candidates.len() {
        0 => return None,
        1 => candidates[0],
        _ => match policy {
            LbPolicy::P2c | LbPolicy::SameDcFirst => p2c(candidates),
            LbPolicy::RoundRobin => least_served(candidates),
            LbPolicy::Random => weighted_random(candidates),
        },
    };
    chosen.served.fetch_add(1, Ordering::Relaxed);
    Some(chosen)
}

/// `x / wx` against `y / wy` without division: `x · wy` against `y · wx` (weights ≥ 1; u128
/// cannot overflow).
fn per_weight(x: u64, wx: u64, y: u64, wy: u64) -> std::cmp::Ordering {
    (u128::from(x) * u128::from(wy)).cmp(&(u128::from(y) * u128::from(wx)))
}

/// Power of two choices by outstanding streams per weight (ties: requests per weight, then a
/// coin). `candidates` has at least two entries.
fn p2c<'a>(candidates: &[&'a Arc<ConnectorLoad>]) -> &'a Arc<ConnectorLoad> {
    let n = candidates.len();
    let a = rand::random_range(0..n);
    let mut b = rand::random_range(0..n - 1);
    if b >= a {
        b += 1;
    }
    let (ca, cb) = (candidates[a], candidates[b]);
    // Not `outstanding + 1`: with nothing outstanding that would hand every request to the
    // heavier replica; as a tie it goes to served per weight, which keeps the ratio.
    let (oa, ob) = (ca.outstanding() as u64, cb.outstanding() as u64);
    let order = per_weight(oa, ca.weight, ob, cb.weight)
        .then_with(|| per_weight(ca.served(), ca.weight, cb.served(), cb.weight));
    match order {
        std::cmp::Ordering::Less => ca,
        std::cmp::Ordering::Greater => cb,
        std::cmp::Ordering::Equal if rand::random::<bool>() => ca,
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
fn least_served<'a>(candidates: &[&'a Arc<ConnectorLoad>]) -> &'a Arc<ConnectorLoad> {
    let mut best = candidates[0];
    for &c in &candidates[1..] {
        if per_weight(c.served(), c.weight, best.served(), best.weight).is_lt() {
            best = c;
        }
    }
    best
}

/// A candidate with probability proportional to its weight.
fn weighted_random<'a>(candidates: &[&'a Arc<ConnectorLoad>]) -> &'a Arc<ConnectorLoad> {
    let total: u64 = candidates.iter().map(|c| c.weight).sum();
    let mut r = rand::random_range(0..total.max(1));
    for &c in candidates {
        if r < c.weight {
            return c;
        }
        r -= c.weight;
    }
    candidates[candidates.len() - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn guards_and_link_counts() {
        let l = loads(&[1, 1]);
        let g = l[0].start_stream();
        assert_eq!(l[0].outstanding(), 1);
        drop(g);
        assert_eq!(l[0].outstanding(), 0);
        assert_eq!(l[0].requests(), 1);
        l[1].link_up(1, true);
        l[1].link_up(0, false);
        assert_eq!(l[1].links_on(1), 1);
        assert_eq!(l[1].total_links(), 2);
        assert_eq!(l[1].home_links_on(1), 1);
        assert_eq!(l[1].total_home_links(), 1);
        l[1].link_down(1, true);
        assert_eq!(l[1].total_home_links(), 0);
        assert_eq!(l[1].total_links(), 1);
        l[0].index_up(2);
        l[0].index_up(2);
        assert_eq!(l[0].links_with_index(2), 2);
        l[0].index_down(2);
        assert_eq!(l[0].links_with_index(2), 1);
        l[0].index_down(2);
        l[0].index_down(2);
        assert_eq!(l[0].links_with_index(2), 0);
        assert!(!l[0].is_draining());
        l[0].set_draining();
        assert!(l[0].live().draining);
    }
}
