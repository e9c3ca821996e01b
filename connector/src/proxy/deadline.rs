//! The origin response deadline of every exchange on one worker, kept by one sweep task instead
//! of a timer task per request.
//!
//! An exchange registers a [`Watch`] once its request is on the way; the entry lives in a slab
//! that the worker reuses, so a request allocates nothing for its deadline. While any entry is
//! registered, one task per worker wakes every tick (a tenth of the timeout, between 10 ms and
//! 1 s), and shuts down the connection of each entry whose deadline passed with no progress of
//! its request body (which ends the read in flight instead of dropping it); progress moves the
//! deadline a whole timeout on. A deadline is therefore kept to within one tick.
//!
//! The sweep task ends when the last entry is gone and the next registration starts it again.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use ringtun_core::link::Shutdown;

/// The shortest tick of the sweep.
const MIN_TICK: Duration = Duration::from_millis(10);
/// The longest tick of the sweep.
const MAX_TICK: Duration = Duration::from_secs(1);

/// Progress of a request body written by a task of its own, read by the sweep.
#[derive(Debug, Default)]
pub struct Sending {
    /// The request body ended cleanly.
    pub done: Cell<bool>,
    /// Writes completed so far: while the request body still flows, the origin is not late.
    pub writes: Cell<u64>,
}

/// One registered deadline.
struct Entry {
    deadline: Instant,
    limit: Duration,
    /// The body writer's progress (none when the request went out whole before the watch).
    sending: Option<Rc<Sending>>,
    /// `sending.writes` when the deadline was last set.
    seen: u64,
    fired: bool,
    closer: Rc<dyn Shutdown>,
}

#[derive(Default)]
struct Inner {
    entries: RefCell<Slab>,
    tick: Cell<Option<Duration>>,
    sweeping: Cell<bool>,
}

/// Entries by index; freed slots are reused, so the slab grows only to the worker's peak of
/// concurrent exchanges.
#[derive(Default)]
struct Slab {
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    busy: usize,
}

/// The response deadlines of one worker's exchanges.
#[derive(Default)]
pub struct Deadlines {
    inner: Rc<Inner>,
}

impl std::fmt::Debug for Deadlines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deadlines")
            .field("busy", &self.inner.entries.borrow().busy)
            .finish_non_exhaustive()
    }
}

impl Deadlines {
    /// Shuts `closer` down when `limit` passes without a response head and without a write of
    /// `sending` (if any) in a whole `limit`, until the returned watch drops.
    pub fn watch(
        &self,
        closer: &Rc<dyn Shutdown>,
        limit: Duration,
        sending: Option<Rc<Sending>>,
    ) -> Watch {
        let entry = Entry {
            deadline: Instant::now() + limit,
            limit,
            seen: sending.as_ref().map_or(0, |s| s.writes.get()),
            sending,
            fired: false,
            closer: closer.clone(),
        };
        let index = {
            let mut slab = self.inner.entries.borrow_mut();
            slab.busy += 1;
            match slab.free.pop() {
                Some(i) if i < slab.slots.len() => {
                    slab.slots[i] = Some(entry);
                    i
                }
                _ => {
                    slab.slots.push(Some(entry));
                    slab.slots.len() - 1
                }
            }
        };
        let tick = (limit / 10).clamp(MIN_TICK, MAX_TICK);
        if self.inner.tick.get().is_none_or(|t| tick < t) {
            self.inner.tick.set(Some(tick));
        }
        if !self.inner.sweeping.replace(true) {
            compio::runtime::spawn(sweep(self.inner.clone())).detach();
        }
        Watch {
            inner: self.inner.clone(),
            index,
        }
    }
}

/// Wakes every tick while entries are registered and fires the overdue ones.
async fn sweep(inner: Rc<Inner>) {
    loop {
        let tick = inner.tick.get().unwrap_or(MAX_TICK);
        compio::time::sleep(tick).await;
        let mut slab = inner.entries.borrow_mut();
        if slab.busy == 0 {
            inner.sweeping.set(false);
            inner.tick.set(None);
            return;
        }
        let now = Instant::now();
        for e in slab.slots.iter_mut().flatten() {
            if e.fired || now < e.deadline {
                continue;
            }
            let writes = e.sending.as_ref().map_or(e.seen, |s| s.writes.get());
            if writes != e.seen {
                e.seen = writes;
                e.deadline = now + e.limit;
                continue;
            }
            e.fired = true;
            let _ = e.closer.shutdown();
        }
    }
}

/// A registered deadline; dropping it unregisters it.
pub struct Watch {
    inner: Rc<Inner>,
    index: usize,
}

impl Watch {
    /// Whether the deadline passed and the connection was shut down.
    pub fn fired(&self) -> bool {
        self.inner
            .entries
            .borrow()
            .slots
            .get(self.index)
            .is_some_and(|e| e.as_ref().is_some_and(|e| e.fired))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let mut slab = self.inner.entries.borrow_mut();
        if slab
            .slots
            .get_mut(self.index)
            .is_some_and(|e| e.take().is_some())
        {
            slab.busy -= 1;
            slab.free.push(self.index);
        }
    }
}
