//! [`StopRequest`]: the edge process's request to stop (SIGINT/SIGTERM, or a test), which any
//! thread can trigger and a blocking thread waits for. The data plane's async "stop now" signal
//! is `ringtun_core::rt::Shutdown`.
use std::sync::{Arc, Condvar, Mutex};

/// Cloneable shutdown handle: `trigger` once (from a signal thread, a test), `wait` anywhere.
#[derive(Debug, Clone, Default)]
pub struct StopRequest {
    inner: Arc<(Mutex<bool>, Condvar)>,
}

impl StopRequest {
    /// A handle that has not been triggered.
    pub fn new() -> Self {
        StopRequest::default()
    }

    /// Requests shutdown; wakes every waiter.
    pub fn trigger(&self) {
        let (flag, cv) = &*self.inner;
        *flag.lock().unwrap_or_else(|p| p.into_inner()) = true;
        cv.notify_all();
    }

    /// Whether shutdown was requested.
    pub fn is_triggered(&self) -> bool {
        *self.inner.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Blocks until shutdown is requested.
    pub fn wait(&self) {
        let (flag, cv) = &*self.inner;
        let mut done = flag.lock().unwrap_or_else(|p| p.into_inner());
        while !*done {
            done = cv.wait(done).unwrap_or_else(|p| p.into_inner());
        }
    }
}
