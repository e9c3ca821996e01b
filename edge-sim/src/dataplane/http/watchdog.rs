//! The slow-client watchdog: one small task per public connection that closes the socket when a
//! client read has been pending past its deadline.
//!
//! A read future in flight must never be dropped (`compio` on io_uring would lose its data), so
//! a deadline cannot be a `timeout` around the read. Instead the reader records its deadline in
//! a [`ReadWatch`] and the watchdog, on a timer, shuts the socket down when the deadline passed:
//! that completes the read in flight with an error, and the reader sees [`ReadWatch::timed_out`].

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use compio::net::TcpStream;

/// How long a client may take to send a request head, idle time between keep-alive requests
/// included. A stalled client only holds its own task; this frees its socket too.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(60);

/// The deadline of the client read in flight (a request head, or a piece of a request body),
/// watched by [`watchdog`].
#[derive(Default)]
pub(crate) struct ReadWatch {
    deadline: Cell<Option<Instant>>,
    fired: Cell<bool>,
    done: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl ReadWatch {
    /// A read starts; it may take `limit`.
    pub(crate) fn start(&self, limit: Duration) {
        self.deadline.set(Some(Instant::now() + limit));
    }

    /// The read ended.
    pub(crate) fn stop(&self) {
        self.deadline.set(None);
    }

    /// Whether the watchdog closed the connection because a read took too long.
    pub(crate) fn timed_out(&self) -> bool {
        self.fired.get()
    }

    /// The connection ended: the watchdog drops its socket handle at once (it must not keep
    /// the descriptor open after the connection is done).
    pub(crate) fn finish(&self) {
        self.done.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
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

/// Shuts a connection down when a client read has been pending past its deadline (a head
/// within [`HEAD_TIMEOUT`], a piece of a body within `--request-body-timeout`): that completes
/// the read in flight (never drop it, end it by closing the socket).
pub(crate) async fn watchdog(watch: Rc<ReadWatch>, sock: TcpStream, tick: Duration) {
    loop {
        // A timer raced with a notification: no IO future is dropped here.
        if compio::time::timeout(tick, watch.wait_done()).await.is_ok() {
            return;
        }
        if watch.deadline.get().is_some_and(|d| Instant::now() >= d) {
            tracing::debug!("public client stalled (request head or body); closing");
            watch.fired.set(true);
            let _ = socket2::SockRef::from(&sock).shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}
