//! Which worker serves a registered link.
//!
//! The kernel hands a link's TCP connection to whichever worker's `SO_REUSEPORT` socket its
//! hash picks, so a connector's links can all land on one worker. A public connection is
//! served on the worker that accepted it, with a link of the chosen connector on that worker
//! (see `worker::Worker::pick`); a worker without one hands the connection over. So where the
//! links sit decides which workers a tunnel's traffic runs on.
//!
//! Once a link has registered (the edge then knows its tunnel and connector), [`Placement`]
//! seats it on the worker with the fewest links of **that connector** (in the same data-center
//! group, then in all), then of its tunnel, then of all tunnels; a tie keeps it where it was
//! accepted (no move), else goes to the lowest index. A connector with at least as many links
//! as the edge has workers thus has one on every worker, and every worker serves the tunnel's
//! requests itself: no hand-off per request, and the choice among replicas is made once, on
//! the worker that accepted the connection. When the seat is another worker, the link (its
//! socket and TLS session) moves there through the worker's mailbox, once, before it carries
//! any stream: the cost is per link, not per request.
//!
//! The counts are control-plane state behind a `Mutex` (touched when a link comes or goes,
//! never per request); a [`Seat`] holds its place until the link ends. Seats are taken at the
//! moment of the choice, so links of one connector registering at once on several workers do
//! not all choose the same empty worker.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use uuid::Uuid;

/// Link counts per worker.
#[derive(Debug)]
pub(crate) struct Placement {
    workers: usize,
    counts: Mutex<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    /// Links per worker, all tunnels.
    all: Vec<usize>,
    /// Links per tunnel, per worker.
    tunnels: HashMap<Uuid, Vec<usize>>,
    /// Links per connector, per worker: `[not home, home]` (`home`: in the public data
    /// center, which `same-dc-first` prefers).
    connectors: HashMap<Uuid, Vec<[usize; 2]>>,
}

/// A link's place on a worker, held while the link lives; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Seat {
    placement: Arc<Placement>,
    tunnel: Uuid,
    connector: Uuid,
    home: bool,
    worker: usize,
}

impl Seat {
    /// The worker the link lives on.
    pub(crate) fn worker(&self) -> usize {
        self.worker
    }
}

impl Placement {
    /// Empty counts for `workers` workers.
    pub(crate) fn new(workers: usize) -> Placement {
        let workers = workers.max(1);
        Placement {
            workers,
            counts: Mutex::new(Counts {
                all: vec![0; workers],
                ..Counts::default()
            }),
        }
    }

    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seats a link of `connector` (of `tunnel`; `home`: in the public data center) that
    /// worker `from` accepted (see the module doc for the order).
    pub(crate) fn seat(
        self: &Arc<Self>,
        tunnel: Uuid,
        connector: Uuid,
        home: bool,
        from: usize,
    ) -> Seat {
        let n = self.workers;
        let mut c = self.counts();
        let worker = {
            let conn = c.connectors.get(&connector);
            let tun = c.tunnels.get(&tunnel);
            (0..n)
                .min_by_key(|&w| {
                    let mine = conn.map_or([0, 0], |v| v[w]);
                    (
                        mine[usize::from(home)],
                        mine[0] + mine[1],
                        tun.map_or(0, |v| v[w]),
                        c.all[w],
                        w != from,
                        w,
                    )
                })
                .unwrap_or(0)
        };
        c.all[worker] += 1;
        c.tunnels.entry(tunnel).or_insert_with(|| vec![0; n])[worker] += 1;
        c.connectors
            .entry(connector)
            .or_insert_with(|| vec![[0, 0]; n])[worker][usize::from(home)] += 1;
        Seat {
            placement: Arc::clone(self),
            tunnel,
            connector,
            home,
            worker,
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut c = self.placement.counts();
        let w = self.worker;
        if let Some(n) = c.all.get_mut(w) {
            *n = n.saturating_sub(1);
        }
        if let Some(v) = c.tunnels.get_mut(&self.tunnel) {
            v[w] = v[w].saturating_sub(1);
            if v.iter().all(|&n| n == 0) {
                c.tunnels.remove(&self.tunnel);
            }
        }
        if let Some(v) = c.connectors.get_mut(&self.connector) {
            let k = usize::from(self.home);
            v[w][k] = v[w][k].saturating_sub(1);
            if v.iter().all(|n| n[0] + n[1] == 0) {
                c.connectors.remove(&self.connector);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Uuid> {
        (0..n).map(|_| Uuid::new_v4()).collect()
    }

    #[test]
    fn one_connectors_links_take_a_worker_each_wherever_they_were_accepted() {
        let p = Arc::new(Placement::new(4));
        let (t, c) = (Uuid::new_v4(), Uuid::new_v4());
        // All four accepted by worker 0 (the case that made one worker do all the work).
        let seats: Vec<Seat> = (0..4).map(|_| p.seat(t, c, false, 0)).collect();
        let mut on: Vec<usize> = seats.iter().map(Seat::worker).collect();
        assert_eq!(on[0], 0, "a tie keeps the link where it was accepted");
        on.sort_unstable();
        assert_eq!(on, [0, 1, 2, 3]);
        // A fifth link doubles up somewhere; eight give two each.
        let more: Vec<Seat> = (0..4).map(|_| p.seat(t, c, false, 3)).collect();
        let mut per = [0; 4];
        for s in seats.iter().chain(&more) {
            per[s.worker()] += 1;
        }
        assert_eq!(per, [2, 2, 2, 2]);
    }

    #[test]
    fn every_replica_gets_a_link_on_every_worker_whatever_the_interleaving() {
        let p = Arc::new(Placement::new(4));
        let t = Uuid::new_v4();
        let replicas = ids(2);
        // Replicas register alternately, accepted by workers 0 and 1 only: without the
        // per-connector count, replica A would get workers 0 and 2, replica B 1 and 3.
        let mut seats = Vec::new();
        for i in 0..8 {
            seats.push((i % 2, p.seat(t, replicas[i % 2], false, i % 2)));
        }
        for r in 0..2 {
            let mut on: Vec<usize> = seats
                .iter()
                .filter(|(o, _)| *o == r)
                .map(|(_, s)| s.worker())
                .collect();
            on.sort_unstable();
            assert_eq!(on, [0, 1, 2, 3], "replica {r}");
        }
    }

    #[test]
    fn home_links_spread_apart_from_the_others() {
        let p = Arc::new(Placement::new(4));
        let (t, c) = (Uuid::new_v4(), Uuid::new_v4());
        let a = p.seat(t, c, true, 0);
        let b = p.seat(t, c, false, 0);
        let h = p.seat(t, c, true, 0);
        assert_ne!(a.worker(), h.worker(), "two home links on one worker");
        assert_ne!(a.worker(), b.worker());
    }

    #[test]
    fn a_freed_seat_is_taken_again_and_the_maps_empty() {
        let p = Arc::new(Placement::new(2));
        let (t, c) = (Uuid::new_v4(), Uuid::new_v4());
        let a = p.seat(t, c, false, 0);
        let b = p.seat(t, c, false, 0);
        assert_eq!((a.worker(), b.worker()), (0, 1));
        drop(b);
        assert_eq!(p.seat(t, c, false, 0).worker(), 1);
        drop(a);
        let counts = p.counts();
        assert!(counts.tunnels.is_empty() && counts.connectors.is_empty());
        assert_eq!(counts.all, [0, 0]);
    }

    #[test]
    fn other_tunnels_links_break_ties() {
        let p = Arc::new(Placement::new(3));
        let busy = Uuid::new_v4();
        let _x = p.seat(busy, Uuid::new_v4(), false, 0);
        let _y = p.seat(busy, Uuid::new_v4(), false, 1);
        // Workers 0 and 1 hold a link each: a new tunnel's first link goes to worker 2.
        assert_eq!(p.seat(Uuid::new_v4(), Uuid::new_v4(), false, 0).worker(), 2);
    }
}
