//! The slow-client watchdog: one small task per public connection that closes the socket when a
//! client read or write has been pending past its deadline, or when a raw pipe has been idle
//! too long.
//!
//! A read or write future in flight must never be dropped (`compio` on io_uring would lose its
//! data), so a deadline cannot be a `timeout` around the operation. Instead the connection
//! records its deadlines in a [`Watch`] and the watchdog, on a timer, shuts the socket down when
//! one passed: that completes the operation in flight with an error, and the connection sees
//! [`Watch::fired`]. The watchdog counts the limit that was hit (`Limit`, see `limit.rs`).

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use compio::net::TcpStream;

use crate::limit::Limit;
use crate::metrics::Metrics;

/// How long a client may take to send a request head, idle time between keep-alive requests
/// included. A stalled client only holds its own task; this frees its socket too.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// What a client read in flight is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadKind {
    /// A request head (or the wait for the next one on keep-alive).
    Head,
    /// A piece of a request body.
    Body,
    /// The TLS handshake of a public HTTPS connection (`--public-tls-handshake-timeout`).
    TlsHandshake,
}

/// Which deadline ended the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fired {
    /// A read of this kind.
    Read(ReadKind),
    /// A write to the client (`--client-write-timeout`).
    Write,
    /// A raw pipe without bytes either way (the idle timeouts).
    Idle,
}

impl Fired {
    /// The limit to count, if this is one.
    fn limit(self) -> Option<Limit> {
        match self {
            Fired::Read(ReadKind::Head) => None,
            Fired::Read(ReadKind::Body) => Some(Limit::RequestBodyTimeout),
            Fired::Read(ReadKind::TlsHandshake) => Some(Limit::TlsHandshakeTimeout),
            Fired::Write => Some(Limit::ClientWriteTimeout),
            Fired::Idle => Some(Limit::IdleTimeout),
        }
    }
}

/// The deadlines of one public connection, watched by [`watchdog`].
pub(crate) struct Watch {
    read: Cell<Option<(Instant, ReadKind)>>,
    write: Cell<Option<Instant>>,
    write_timeout: Duration,
    /// The idle timeout while a raw pipe runs, and the last time bytes moved.
    idle: Cell<Option<Duration>>,
    active: Cell<Instant>,
    fired: Cell<Option<Fired>>,
    done: Cell<bool>,
    waker: RefCell<Option<Waker>>,
    fired_waker: RefCell<Option<Waker>>,
}

impl Watch {
    /// A watch whose client writes may each take `write_timeout`.
    pub(crate) fn new(write_timeout: Duration) -> Watch {
        Watch {
            read: Cell::new(None),
            write: Cell::new(None),
            write_timeout,
            idle: Cell::new(None),
            active: Cell::new(Instant::now()),
            fired: Cell::new(None),
            done: Cell::new(false),
            waker: RefCell::new(None),
            fired_waker: RefCell::new(None),
        }
    }

    /// A read starts; it may take `limit`.
    pub(crate) fn start(&self, limit: Duration, kind: ReadKind) {
        self.start_until(Instant::now() + limit, kind);
    }

    /// A read starts; it must end by `deadline`.
    pub(crate) fn start_until(&self, deadline: Instant, kind: ReadKind) {
        self.read.set(Some((deadline, kind)));
    }

    /// The read ended.
    pub(crate) fn stop(&self) {
        self.read.set(None);
    }

    /// A client write starts; it may take the write timeout.
    pub(crate) fn start_write(&self) {
        self.write.set(Some(Instant::now() + self.write_timeout));
    }

    /// The client write ended.
    pub(crate) fn stop_write(&self) {
        self.write.set(None);
        self.touch();
    }

    /// From now on the connection is a raw pipe that may be idle for `limit`.
    pub(crate) fn set_idle(&self, limit: Duration) {
        self.touch();
        self.idle.set(Some(limit));
    }

    /// Bytes moved.
    pub(crate) fn touch(&self) {
        self.active.set(Instant::now());
    }

    /// Which deadline closed the connection, if one did.
    pub(crate) fn fired(&self) -> Option<Fired> {
        self.fired.get()
    }

    /// Whether the watchdog closed the connection because a read of `kind` took too long.
    pub(crate) fn timed_out(&self, kind: ReadKind) -> bool {
        self.fired.get() == Some(Fired::Read(kind))
    }

    /// Ready once a deadline closed the connection (one waiter: the raw pipe's writer).
    pub(crate) fn poll_fired(&self, cx: &mut Context<'_>) -> Poll<Fired> {
        match self.fired.get() {
            Some(f) => Poll::Ready(f),
            None => {
                *self.fired_waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }

    /// The connection ended: the watchdog drops its socket handle at once (it must not keep
    /// the descriptor open after the connection is done).
    pub(crate) fn finish(&self) {
        self.done.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// The shortest deadline this watch may have to see, for the watchdog's tick.
    pub(crate) fn shortest(&self, others: &[Duration]) -> Duration {
        others
            .iter()
            .copied()
            .fold(self.write_timeout.min(HEAD_TIMEOUT), Duration::min)
    }

    /// Which deadline passed at `now`, if one did.
    fn due(&self, now: Instant) -> Option<Fired> {
        if let Some((d, kind)) = self.read.get()
            && now >= d
        {
            return Some(Fired::Read(kind));
        }
        if self.write.get().is_some_and(|d| now >= d) {
            return Some(Fired::Write);
        }
        match self.idle.get() {
            Some(limit) if now >= self.active.get() + limit && self.write.get().is_none() => {
                Some(Fired::Idle)
            }
            _ => None,
        }
    }

    async fn wait_done(&self) {
        poll_fn(|cx| {
            if self.done.get() {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Shuts a connection down when one of its deadlines passed (a head within [`HEAD_TIMEOUT`], a
/// piece of a body within its deadline, a write within `--client-write-timeout`, an idle pipe
/// within its idle timeout): that completes the operation in flight (never drop it, end it by
/// closing the socket). Counts the limit hit for `peer`.
pub(crate) async fn watchdog(
    watch: Rc<Watch>,
    sock: TcpStream,
    tick: Duration,
    peer: SocketAddr,
    metrics: Arc<Metrics>,
) {
    let tick = tick.max(Duration::from_millis(10));
    loop {
        // A timer raced with a notification: no IO future is dropped here.
        if compio::time::timeout(tick, watch.wait_done()).await.is_ok() {
            return;
        }
        if let Some(fired) = watch.due(Instant::now()) {
            tracing::debug!(?fired, %peer, "public client deadline passed; closing");
            if let Some(limit) = fired.limit() {
                metrics.limits.hit(limit, &peer);
            }
            watch.fired.set(Some(fired));
            let _ = socket2::SockRef::from(&sock).shutdown(std::net::Shutdown::Both);
            if let Some(w) = watch.fired_waker.borrow_mut().take() {
                w.wake();
            }
            return;
        }
    }
}

/// The deadline of the next piece of a request body: it may stall for `stall` at most, and
/// when `min_rate` (bytes per second) is set, the whole body must arrive at that average rate
/// after a grace of `stall` (so a body that trickles a byte now and then ends too).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyPace {
    start: Instant,
    bytes: u64,
    stall: Duration,
    min_rate: u64,
}

impl BodyPace {
    /// A body starting at `start`.
    pub(crate) fn new(start: Instant, stall: Duration, min_rate: u64) -> BodyPace {
        BodyPace {
            start,
            bytes: 0,
            stall,
            min_rate,
        }
    }

    /// `n` more bytes arrived.
    pub(crate) fn add(&mut self, n: usize) {
        self.bytes = self.bytes.saturating_add(n as u64);
    }

    /// When the read starting at `now` must end.
    pub(crate) fn deadline(&self, now: Instant) -> Instant {
        let stalled = now + self.stall;
        if self.min_rate == 0 {
            return stalled;
        }
        let earned = Duration::from_secs_f64(self.bytes as f64 / self.min_rate as f64);
        stalled.min(self.start + self.stall + earned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trickling_body_runs_out_of_time() {
        let t0 = Instant::now();
        let mut p = BodyPace::new(t0, Duration::from_secs(60), 1024);
        // One byte every 8 s never stalls for 60 s, but earns only a millisecond per byte.
        for i in 1..=10u64 {
            p.add(1);
            let now = t0 + Duration::from_secs(8 * i);
            assert!(p.deadline(now) < t0 + Duration::from_secs(61));
        }
        // At the rate, the deadline moves with the bytes.
        let mut fast = BodyPace::new(t0, Duration::from_secs(60), 1024);
        fast.add(1024 * 600);
        let now = t0 + Duration::from_secs(300);
        assert_eq!(fast.deadline(now), now + Duration::from_secs(60));
    }

    #[test]
    fn without_a_minimum_rate_only_stalls_count() {
        let t0 = Instant::now();
        let p = BodyPace::new(t0, Duration::from_secs(5), 0);
        let now = t0 + Duration::from_secs(3600);
        assert_eq!(p.deadline(now), now + Duration::from_secs(5));
    }

    #[test]
    fn the_first_passed_deadline_is_reported() {
        let w = Watch::new(Duration::from_secs(30));
        let now = Instant::now();
        assert_eq!(w.due(now), None);
        w.start(Duration::from_secs(1), ReadKind::Body);
        assert_eq!(
            w.due(now + Duration::from_secs(2)),
            Some(Fired::Read(ReadKind::Body))
        );
        w.stop();
        w.start_write();
        assert_eq!(w.due(now + Duration::from_secs(31)), Some(Fired::Write));
        w.stop_write();
        w.set_idle(Duration::from_secs(5));
        assert_eq!(w.due(Instant::now()), None);
        assert_eq!(
            w.due(Instant::now() + Duration::from_secs(6)),
            Some(Fired::Idle)
        );
        assert_eq!(Fired::Read(ReadKind::Head).limit(), None);
        assert_eq!(Fired::Write.limit(), Some(Limit::ClientWriteTimeout));
    }
}
