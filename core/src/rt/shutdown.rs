//! [`Shutdown`]: a cloneable, cross-thread "stop now" signal.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

/// A shutdown signal shared by all workers (and whoever else holds a clone).
///
/// Triggering is one-way and idempotent. It closes an `async-channel` that nobody ever sends on,
/// which wakes every task blocked in [`Shutdown::wait`], on any worker thread: the channel's
/// wakers go through each compio runtime's cross-thread waker. No lock is taken.
#[derive(Debug, Clone)]
pub struct Shutdown {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    triggered: AtomicBool,
    tx: async_channel::Sender<()>,
    rx: async_channel::Receiver<()>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    /// A new, untriggered signal.
    pub fn new() -> Self {
        let (tx, rx) = async_channel::bounded(1);
        Self {
            inner: Arc::new(Inner {
                triggered: AtomicBool::new(false),
                tx,
                rx,
            }),
        }
    }

    /// Triggers the signal and wakes every waiter. Calling it again does nothing.
    pub fn trigger(&self) {
        self.inner.triggered.store(true, Ordering::Release);
        self.inner.tx.close();
    }

    /// Whether [`Shutdown::trigger`] has been called.
    pub fn is_triggered(&self) -> bool {
        self.inner.triggered.load(Ordering::Acquire)
    }

    /// Completes once the signal is triggered (at once if it already was).
    ///
    /// Cancel-safe: dropping this future (for example in `select!`) loses nothing.
    pub async fn wait(&self) {
        if self.is_triggered() {
            return;
        }
        // Nothing is ever sent, so this only returns when the channel is closed by `trigger`.
        let _closed = self.inner.rx.recv().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trigger_is_seen_by_clones() {
        let a = Shutdown::new();
        let b = a.clone();
        assert!(!b.is_triggered());
        a.trigger();
        a.trigger();
        assert!(b.is_triggered());
        compio::runtime::Runtime::new()
            .map(|rt| rt.block_on(b.wait()))
            .ok();
    }

    #[test]
    fn wakes_a_waiter_on_another_thread() {
        let s = Shutdown::new();
        let waiter = s.clone();
        let t = std::thread::spawn(move || {
            let rt = compio::runtime::Runtime::new().map_err(|e| e.to_string())?;
            rt.block_on(waiter.wait());
            Ok::<bool, String>(waiter.is_triggered())
        });
        s.trigger();
        assert_eq!(t.join().ok().and_then(|r| r.ok()), Some(true));
    }
}
