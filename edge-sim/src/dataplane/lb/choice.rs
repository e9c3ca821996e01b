//! Which replica takes a stream, and whether this worker can open it or another one must.
//!
//! [`choose_replica`] decides without IO: it reads the tunnel's connectors through
//! [`Replica`], asks the caller whether this worker holds a usable link of one (`here`), and
//! draws randomness from the source it is given. The worker turns the answer into a link or a
//! hand-off (`worker::Worker::pick`).
//!
//! 1. Candidates: connectors with a live link anywhere, not draining, not excluded (tried
//!    already); the standby ones only when no active one is among them.
//! 2. `same-dc-first`: narrowed to those with a live link in the public data center, whose
//!    links are then the only ones used (if there are none: all candidates, any link); then
//!    p2c.
//! 3. `prefer`: the connector another worker's policy chose (and counted) for a connection it
//!    handed over takes the stream here if it still has a usable link here, without a second
//!    choice. Otherwise the choice runs as below, and its count moves to where the stream
//!    goes.
//! 4. When the connection may still move (`may_hand_off`), the policy runs over all
//!    candidates, wherever their links are: a connector with no link on this worker still gets
//!    its share, the connection moving to the first other worker where it has one.
//! 5. Otherwise the policy runs among the candidates with a usable link here; only when none
//!    has one does it run among those with a link on another worker.
//!
//! The choice is counted ([`Replica::count_choice`], what round-robin and p2c ties rotate on)
//! exactly once per attempt (a retry after a refusal is another): when the answer is
//! [`Route::Here`] or [`Route::Elsewhere`], never for [`Route::Nothing`] (a caller may ask
//! again while a link is being set up), and not again by the worker a connection was handed
//! to. A choice counted for a stream the connector
//! does not get would skew round-robin and weights against connectors whose links sit on few
//! workers: they are handed off more often.

use rand::Rng;
use uuid::Uuid;

use super::policy::{Replica, choose};
use crate::settings::LbPolicy;

/// What one choice is about.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ask<'x> {
    /// The tunnel's policy.
    pub(crate) policy: LbPolicy,
    /// The worker choosing.
    pub(crate) worker: usize,
    /// How many workers the edge has.
    pub(crate) workers: usize,
    /// Connectors tried already.
    pub(crate) exclude: &'x [Uuid],
    /// Whether the connection may move to another worker for its first choice.
    pub(crate) may_hand_off: bool,
    /// The connector another worker chose for this connection.
    pub(crate) prefer: Option<Uuid>,
}

/// Where the stream goes.
#[derive(Debug)]
pub(crate) enum Route<'a, C> {
    /// A usable link of `replica` on this worker (`home_only`: one in the public data center).
    Here {
        /// The chosen replica.
        replica: &'a C,
        /// Only its links in the public data center may take the stream.
        home_only: bool,
    },
    /// `replica` has a link on that other worker, none here.
    Elsewhere(usize, &'a C),
    /// No candidate can take it.
    Nothing,
}

/// Chooses the replica for one stream (see the module doc). `all`: the tunnel's connectors;
/// `here(c, home_only)`: whether this worker holds a usable link of `c` (in the public data
/// center when `home_only`).
pub(crate) fn choose_replica<'a, C: Replica, R: Rng + ?Sized>(
    ask: &Ask<'_>,
    all: &'a [C],
    here: impl Fn(&C, bool) -> bool,
    rng: &mut R,
) -> Route<'a, C> {
    let mut live: Vec<&C> = all
        .iter()
        .filter(|c| !c.is_draining() && !ask.exclude.contains(&c.id()) && c.live_links(false) > 0)
        .collect();
    if live.iter().any(|c| !c.is_standby()) {
        live.retain(|c| !c.is_standby());
    }
    let mut policy = ask.policy;
    let mut home_only = false;
    if policy == LbPolicy::SameDcFirst {
        policy = LbPolicy::P2c;
        if live.iter().any(|c| c.live_links(true) > 0) {
            live.retain(|c| c.live_links(true) > 0);
            home_only = true;
        }
    }
    if let Some(id) = ask.prefer
        && let Some(c) = live.iter().find(|c| c.id() == id)
        && here(c, home_only)
    {
        return Route::Here {
            replica: c,
            home_only,
        };
    }
    // The preferred connector was counted by the worker that chose it; when the stream goes
    // to another one, that count is given back.
    let preferred = ask.prefer.and_then(|id| all.iter().find(|c| c.id() == id));
    if live.is_empty() {
        return Route::Nothing;
    }
    let elsewhere =
        |c: &C| (0..ask.workers).find(|&i| i != ask.worker && c.links_at(i, home_only) > 0);
    let routed = |route: Route<'a, C>| {
        if let Route::Here { replica: c, .. } | Route::Elsewhere(_, c) = &route {
            c.count_choice();
            if let Some(p) = preferred {
                p.uncount_choice();
            }
        }
        route
    };
    if ask.may_hand_off {
        let Some(c) = choose(policy, &live, rng) else {
            return Route::Nothing;
        };
        if here(c, home_only) {
            return routed(Route::Here {
                replica: c,
                home_only,
            });
        }
        return routed(elsewhere(c).map_or(Route::Nothing, |w| Route::Elsewhere(w, c)));
    }
    let local: Vec<&C> = live
        .iter()
        .copied()
        .filter(|c| here(c, home_only))
        .collect();
    if let Some(c) = choose(policy, &local, rng) {
        return routed(Route::Here {
            replica: c,
            home_only,
        });
    }
    let remote: Vec<&C> = live
        .iter()
        .copied()
        .filter(|c| elsewhere(c).is_some())
        .collect();
    match choose(policy, &remote, rng).and_then(|c| elsewhere(c).map(|w| (w, c))) {
        Some((w, c)) => routed(Route::Elsewhere(w, c)),
        None => Route::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::dataplane::lb::ConnectorLoad;

    /// A connector of weight `weight` with live links on these `(worker, home)`.
    fn replica(weight: u16, standby: bool, links: &[(usize, bool)]) -> Arc<ConnectorLoad> {
        let c = ConnectorLoad::new(Uuid::new_v4(), Uuid::nil(), 2)
            .with_weight(weight)
            .with_standby(standby);
        for &(w, home) in links {
            c.link_up(w, home);
        }
        Arc::new(c)
    }

    fn ask(policy: LbPolicy, worker: usize) -> Ask<'static> {
        Ask {
            policy,
            worker,
            workers: 2,
            exclude: &[],
            may_hand_off: true,
            prefer: None,
        }
    }

    /// Every counted link is usable: worker `w` holds one of `c` when `c` has a link there.
    fn links_of(w: usize) -> impl Fn(&Arc<ConnectorLoad>, bool) -> bool {
        move |c, home_only| c.links_at(w, home_only) > 0
    }

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    /// The replica a route names, and whether it is on this worker.
    fn named<'a>(r: &Route<'a, Arc<ConnectorLoad>>) -> Option<(Uuid, Option<usize>)> {
        match r {
            Route::Here { replica, .. } => Some((replica.id, None)),
            Route::Elsewhere(w, replica) => Some((replica.id, Some(*w))),
            Route::Nothing => None,
        }
    }

    #[test]
    fn a_standby_replica_takes_streams_only_when_no_active_one_is_left() {
        let (active, spare) = (
            replica(1, false, &[(0, false)]),
            replica(1, true, &[(0, false)]),
        );
        let all = [Arc::clone(&spare), Arc::clone(&active)];
        let mut r = rng();
        for policy in LbPolicy::ALL {
            for _ in 0..20 {
                let got = choose_replica(&ask(policy, 0), &all, links_of(0), &mut r);
                assert_eq!(named(&got), Some((active.id, None)), "{policy:?}");
            }
        }
        // Tried already: the standby is all that is left.
        let tried = [active.id];
        let retry = Ask {
            exclude: &tried,
            ..ask(LbPolicy::P2c, 0)
        };
        let got = choose_replica(&retry, &all, links_of(0), &mut r);
        assert_eq!(named(&got), Some((spare.id, None)));
        // Draining: the same.
        active.set_draining();
        let got = choose_replica(&ask(LbPolicy::RoundRobin, 0), &all, links_of(0), &mut r);
        assert_eq!(named(&got), Some((spare.id, None)));
        spare.set_draining();
        let got = choose_replica(&ask(LbPolicy::RoundRobin, 0), &all, links_of(0), &mut r);
        assert!(matches!(got, Route::Nothing), "{got:?}");
    }

    #[test]
    fn a_replica_without_a_live_link_is_no_candidate() {
        let (gone, up) = (replica(5, false, &[]), replica(1, true, &[(1, false)]));
        let all = [gone, Arc::clone(&up)];
        let got = choose_replica(&ask(LbPolicy::P2c, 0), &all, links_of(0), &mut rng());
        // Even a standby beats an active replica with no link.
        assert_eq!(named(&got), Some((up.id, Some(1))));
    }

    #[test]
    fn same_dc_first_uses_only_home_links_while_there_are_any() {
        let home = replica(1, false, &[(1, true)]);
        let away = replica(1, false, &[(0, false), (1, false)]);
        let all = [Arc::clone(&away), Arc::clone(&home)];
        let mut r = rng();
        for _ in 0..20 {
            match choose_replica(&ask(LbPolicy::SameDcFirst, 1), &all, links_of(1), &mut r) {
                Route::Here { replica, home_only } => {
                    assert_eq!((replica.id, home_only), (home.id, true));
                }
                other => panic!("{other:?}"),
            }
            // From worker 0 it is the home replica's worker 1, not the other's link here.
            let got = choose_replica(&ask(LbPolicy::SameDcFirst, 0), &all, links_of(0), &mut r);
            assert_eq!(named(&got), Some((home.id, Some(1))));
        }
        // No home link at all: every candidate and any link, by p2c.
        home.link_down(1, true);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..20 {
            match choose_replica(&ask(LbPolicy::SameDcFirst, 0), &all, links_of(0), &mut r) {
                Route::Here { replica, home_only } => {
                    assert!(!home_only);
                    seen.insert(replica.id);
                }
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(seen.len(), 1, "only `away` has a link left");
    }

    #[test]
    fn the_policy_runs_over_every_replica_when_the_connection_may_move() {
        let (a, b) = (
            replica(1, false, &[(0, false)]),
            replica(1, false, &[(1, false)]),
        );
        let all = [Arc::clone(&a), Arc::clone(&b)];
        let mut r = rng();
        let got: Vec<_> = (0..4)
            .map(|_| {
                named(&choose_replica(
                    &ask(LbPolicy::RoundRobin, 0),
                    &all,
                    links_of(0),
                    &mut r,
                ))
            })
            .collect();
        let (here, there) = (Some((a.id, None)), Some((b.id, Some(1))));
        assert_eq!(got, [here, there, here, there]);
        // It may not move: the replica with a link here takes every stream.
        let stay = Ask {
            may_hand_off: false,
            ..ask(LbPolicy::RoundRobin, 0)
        };
        for _ in 0..4 {
            assert_eq!(
                named(&choose_replica(&stay, &all, links_of(0), &mut r)),
                here
            );
        }
        // ...unless none has one.
        let tried = [a.id];
        let retry = Ask {
            exclude: &tried,
            ..stay
        };
        assert_eq!(
            named(&choose_replica(&retry, &all, links_of(0), &mut r)),
            there
        );
    }

    #[test]
    fn a_handed_over_connection_keeps_its_replica_without_a_second_count() {
        let (a, b) = (
            replica(1, false, &[(0, false)]),
            replica(1, false, &[(1, false)]),
        );
        let all = [Arc::clone(&a), Arc::clone(&b)];
        let mut r = rng();
        // Worker 0 chooses b (a is ahead) and counts it once.
        a.count_choice();
        let got = choose_replica(&ask(LbPolicy::RoundRobin, 0), &all, links_of(0), &mut r);
        assert_eq!(named(&got), Some((b.id, Some(1))));
        assert_eq!((a.served(), b.served()), (1, 1));
        // Worker 1 takes it for b without choosing or counting again.
        let moved = Ask {
            may_hand_off: false,
            prefer: Some(b.id),
            ..ask(LbPolicy::RoundRobin, 1)
        };
        let got = choose_replica(&moved, &all, links_of(1), &mut r);
        assert_eq!(named(&got), Some((b.id, None)));
        assert_eq!((a.served(), b.served()), (1, 1));
        // b lost its link here meanwhile: the stream goes to a, and the count moves with it.
        let got = choose_replica(&moved, &all, |_, _| false, &mut r);
        assert_eq!(named(&got), Some((a.id, Some(0))));
        assert_eq!((a.served(), b.served()), (2, 0));
    }

    #[test]
    fn a_choice_that_routes_nothing_is_not_counted() {
        // The chosen replica's only link is here but cannot take a stream (at its limit, or
        // closing): nothing is routed, and the caller may ask again; no count either time.
        let a = replica(1, false, &[(0, false)]);
        let all = [Arc::clone(&a)];
        for may_hand_off in [true, false] {
            let q = Ask {
                may_hand_off,
                ..ask(LbPolicy::RoundRobin, 0)
            };
            for _ in 0..3 {
                let got = choose_replica(&q, &all, |_, _| false, &mut rng());
                assert!(matches!(got, Route::Nothing), "{got:?}");
            }
        }
        assert_eq!(a.served(), 0);
    }

    /// The cause of the flaky `weights_split_traffic_in_proportion_under_round_robin`
    /// (connector/tests/e2e/steering.rs): a replica whose links sit on fewer workers is handed
    /// off more often, and a hand-off the receiving worker counted again skewed round-robin
    /// against it (its `served` ran ahead of the streams it got).
    #[test]
    fn weights_hold_when_one_replica_is_handed_off_to() {
        for policy in [LbPolicy::RoundRobin, LbPolicy::P2c] {
            // The light replica's links all sit on worker 1.
            let heavy = replica(3, false, &[(0, false), (1, false)]);
            let light = replica(1, false, &[(1, false), (1, false)]);
            let all = [Arc::clone(&heavy), Arc::clone(&light)];
            let mut r = StdRng::seed_from_u64(3);
            let mut got = [0usize; 2];
            let mut handed_off = 0;
            for _ in 0..200 {
                // The kernel spreads connections over both workers.
                let accepted = r.random_range(0..2usize);
                let first =
                    choose_replica(&ask(policy, accepted), &all, links_of(accepted), &mut r);
                let served = match first {
                    Route::Here { replica, .. } => replica.id,
                    Route::Elsewhere(w, replica) => {
                        handed_off += 1;
                        let moved = Ask {
                            may_hand_off: false,
                            prefer: Some(replica.id),
                            ..ask(policy, w)
                        };
                        let next = choose_replica(&moved, &all, links_of(w), &mut r);
                        named(&next).expect("the receiving worker has a link").0
                    }
                    Route::Nothing => panic!("{policy:?}: nothing"),
                };
                got[usize::from(served == light.id)] += 1;
            }
            assert!(handed_off > 10, "{policy:?}: {handed_off} hand-offs");
            // One count per stream: served is exactly what each replica got.
            assert_eq!(
                (heavy.served(), light.served()),
                (got[0] as u64, got[1] as u64),
                "{policy:?}"
            );
            match policy {
                LbPolicy::RoundRobin => assert_eq!(got, [150, 50]),
                _ => assert!((145..=155).contains(&got[0]), "{policy:?}: {got:?}"),
            }
        }
    }
}
