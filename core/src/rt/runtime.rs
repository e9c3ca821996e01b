//! [`Runtime`]: start N pinned workers, each with its own compio runtime, and join them.

use std::{
    any::Any,
    future::Future,
    io,
    panic::{AssertUnwindSafe, catch_unwind},
    sync::{Arc, mpsc},
    thread::{self, JoinHandle},
};

use tracing::{debug, info, warn};

use super::{
    DriverKind, Mailbox, MailboxSender, RtError, RuntimeConfig, Shutdown,
    driver::{build_runtime, fallback_hint},
    mailbox::mailboxes,
};

/// What a worker's future gets: who it is, what it runs on, and how to talk to the others.
///
/// `M` is the type of the control messages workers exchange through their mailboxes.
#[derive(Debug)]
pub struct WorkerCtx<M = ()> {
    index: usize,
    workers: usize,
    driver: DriverKind,
    core: Option<usize>,
    shutdown: Shutdown,
    mailbox: Mailbox<M>,
    senders: MailboxSender<M>,
}

impl<M> WorkerCtx<M> {
    /// This worker's index, `0..workers()`. Its thread is named `ringtun-w{index}`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// How many workers the runtime has.
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// The IO driver this worker's compio runtime really uses.
    pub fn driver(&self) -> DriverKind {
        self.driver
    }

    /// The core this worker is pinned to, or `None` when pinning was off or failed.
    pub fn core(&self) -> Option<usize> {
        self.core
    }

    /// The runtime-wide shutdown signal. Await [`Shutdown::wait`] to learn when to stop.
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// This worker's own inbox.
    pub fn mailbox(&self) -> &Mailbox<M> {
        &self.mailbox
    }

    /// A sender that reaches every worker's inbox (including this one's).
    pub fn senders(&self) -> &MailboxSender<M> {
        &self.senders
    }

    /// Splits the context into its owned parts: `(mailbox, senders, shutdown)`.
    pub fn into_parts(self) -> (Mailbox<M>, MailboxSender<M>, Shutdown) {
        (self.mailbox, self.senders, self.shutdown)
    }
}

/// What a worker reports once its runtime is built (or could not be).
type Ready = (
    usize,
    Result<(DriverKind, Option<io::Error>, Option<usize>), RtError>,
);

/// A running set of workers. Created by [`Runtime::start`]; `R` is what each worker's future
/// returns.
///
/// Dropping it without [`Runtime::join`] triggers shutdown and waits for the workers.
#[derive(Debug)]
pub struct Runtime<R> {
    threads: Vec<JoinHandle<Result<R, RtError>>>,
    drivers: Vec<DriverKind>,
    shutdown: Shutdown,
}

impl<R: Send + 'static> Runtime<R> {
    /// Starts `config.workers` threads named `ringtun-w{i}`. Each pins itself to core *i* (when
    /// `config.pin`; a failure to pin is a warning), builds its own compio runtime (its own ring)
    /// with the configured driver, and then runs `f(ctx)` to completion on that thread. The
    /// future may be `!Send`: it never leaves its worker.
    ///
    /// Returns only once every worker has its runtime built, so a forced io_uring that is not
    /// available fails here with [`RtError::IoUringUnavailable`] and no `f` runs at all.
    /// With [`super::DriverChoice::Auto`] an unavailable io_uring is logged once as a warning
    /// and the workers use epoll. The driver in use is logged once at info level.
    ///
    /// If a worker's future panics, the panic is caught, reported by [`Runtime::join`] as
    /// [`RtError::WorkerPanicked`], and shutdown is triggered for all the others: a server that
    /// silently lost a core would keep accepting on the dead worker's listeners.
    pub fn start<M, F, Fut>(config: RuntimeConfig, f: F) -> Result<Self, RtError>
    where
        M: Send + 'static,
        F: Fn(WorkerCtx<M>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = R> + 'static,
    {
        let n = config.resolved_workers()?;
        let cores = if config.pin {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        if config.pin && cores.is_empty() {
            warn!("cannot read the allowed cores; workers run unpinned");
        }
        let shutdown = Shutdown::new();
        let (senders, inboxes) = mailboxes::<M>(n, config.mailbox_capacity);
        let f = Arc::new(f);
        let (ready_tx, ready_rx) = mpsc::channel::<Ready>();
        let mut go_txs = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);

        for (index, mailbox) in inboxes.into_iter().enumerate() {
            let (go_tx, go_rx) = mpsc::channel::<bool>();
            let core = (!cores.is_empty()).then(|| cores[index % cores.len()]);
            let ready_tx = ready_tx.clone();
            let f = Arc::clone(&f);
            let shutdown = shutdown.clone();
            let senders = senders.clone();
            let choice = config.driver;
            let spawned = thread::Builder::new()
                .name(format!("ringtun-w{index}"))
                .spawn(move || {
                    let core = core.and_then(|c| {
                        if core_affinity::set_for_current(c) {
                            Some(c.id)
                        } else {
                            warn!(
                                worker = index,
                                core = c.id,
                                "cannot pin worker to core; running unpinned"
                            );
                            None
                        }
                    });
                    let built = match build_runtime(choice) {
                        Ok(b) => b,
                        Err(e) => {
                            let _ignored = ready_tx.send((index, Err(e)));
                            return Err(RtError::Aborted { worker: index });
                        }
                    };
                    let driver = built.kind;
                    let _ignored = ready_tx.send((index, Ok((driver, built.fallback, core))));
                    drop(ready_tx);
                    if go_rx.recv() != Ok(true) {
                        return Err(RtError::Aborted { worker: index });
                    }
                    let ctx = WorkerCtx {
                        index,
                        workers: n,
                        driver,
                        core,
                        shutdown: shutdown.clone(),
                        mailbox,
                        senders,
                    };
                    debug!(worker = index, ?core, %driver, "worker started");
                    let runtime = built.runtime;
                    let out = catch_unwind(AssertUnwindSafe(|| runtime.block_on(f(ctx))));
                    match out {
                        Ok(r) => {
                            debug!(worker = index, "worker finished");
                            Ok(r)
                        }
                        Err(payload) => {
                            shutdown.trigger();
                            Err(RtError::WorkerPanicked {
                                worker: index,
                                message: panic_message(payload.as_ref()),
                            })
                        }
                    }
                });
            match spawned {
                Ok(t) => {
                    threads.push(t);
                    go_txs.push(go_tx);
                }
                Err(source) => {
                    abort(go_txs, threads);
                    return Err(RtError::Spawn {
                        worker: index,
                        source,
                    });
                }
            }
        }
        drop(ready_tx);

        let mut drivers = vec![DriverKind::Epoll; n];
        let mut pinned = 0usize;
        let mut failure: Option<RtError> = None;
        let mut fallback: Option<io::Error> = None;
        for _ in 0..n {
            match ready_rx.recv() {
                Ok((i, Ok((kind, fb, core)))) => {
                    drivers[i] = kind;
                    pinned += usize::from(core.is_some());
                    fallback = fallback.or(fb);
                }
                Ok((_, Err(e))) => {
                    failure.get_or_insert(e);
                }
                Err(_) => {
                    // A worker died before reporting; find which one after aborting.
                    failure.get_or_insert(RtError::WorkerLost {
                        worker: threads.iter().position(|t| t.is_finished()).unwrap_or(0),
                    });
                    break;
                }
            }
        }
        if let Some(e) = failure {
            abort(go_txs, threads);
            return Err(e);
        }
        if let Some(e) = &fallback {
            warn!(
                error = %e,
                hint = fallback_hint(e),
                "io_uring unavailable, falling back to epoll; set RINGTUN_DRIVER=epoll to silence this"
            );
        }
        for kind in [DriverKind::IoUring, DriverKind::Epoll] {
            let count = drivers.iter().filter(|d| **d == kind).count();
            if count > 0 {
                info!(driver = %kind, workers = count, pinned, "runtime started");
            }
        }
        for go in &go_txs {
            let _ignored = go.send(true);
        }
        Ok(Self {
            threads,
            drivers,
            shutdown,
        })
    }
}

impl<R> Runtime<R> {
    /// Number of workers.
    pub fn workers(&self) -> usize {
        self.drivers.len()
    }

    /// The driver each worker runs on, by worker index.
    pub fn drivers(&self) -> &[DriverKind] {
        &self.drivers
    }

    /// Triggers shutdown: every worker's [`Shutdown::wait`] completes. Does not wait; see
    /// [`Runtime::join`]. Workers that ignore the signal keep running.
    pub fn shutdown(&self) {
        self.shutdown.trigger();
    }

    /// A clone of the runtime-wide shutdown signal (for signal handlers, admin endpoints...).
    pub fn shutdown_signal(&self) -> Shutdown {
        self.shutdown.clone()
    }

    /// Waits for every worker to finish and returns each one's result, by worker index. A
    /// worker that panicked is an `Err(RtError::WorkerPanicked)`; the caller does not panic.
    pub fn join(mut self) -> Vec<Result<R, RtError>> {
        join_all(std::mem::take(&mut self.threads))
    }
}

impl<R> Drop for Runtime<R> {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.shutdown.trigger();
            drop(join_all(std::mem::take(&mut self.threads)));
        }
    }
}

fn join_all<R>(threads: Vec<JoinHandle<Result<R, RtError>>>) -> Vec<Result<R, RtError>> {
    threads
        .into_iter()
        .enumerate()
        .map(|(worker, t)| {
            t.join().unwrap_or_else(|payload| {
                Err(RtError::WorkerPanicked {
                    worker,
                    message: panic_message(payload.as_ref()),
                })
            })
        })
        .collect()
}

fn abort<R>(go_txs: Vec<mpsc::Sender<bool>>, threads: Vec<JoinHandle<Result<R, RtError>>>) {
    for go in &go_txs {
        let _ignored = go.send(false);
    }
    drop(go_txs);
    drop(join_all(threads));
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
