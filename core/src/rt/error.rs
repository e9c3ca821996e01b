//! The one error type of [`crate::rt`].

use std::{io, net::SocketAddr};

/// Everything that can go wrong in the runtime layer.
///
/// All of these are *local* faults (this process, its configuration or its host); none is caused
/// by a peer. [`RtError::is_retryable`] says whether trying the same thing again may succeed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RtError {
    /// The runtime configuration is invalid (for example zero workers).
    #[error("invalid runtime config: {reason}")]
    InvalidConfig {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// `RINGTUN_DRIVER` holds a value that is not `auto`, `io_uring` or `epoll`.
    #[error("invalid RINGTUN_DRIVER value {value:?}: expected \"auto\", \"io_uring\" or \"epoll\"")]
    InvalidDriverEnv {
        /// The value found in the environment.
        value: String,
    },
    /// io_uring was explicitly requested but cannot be set up on this host.
    #[error(
        "io_uring was requested but is unavailable: {source} (unset RINGTUN_DRIVER or set it to \
         \"epoll\"; check seccomp and the kernel.io_uring_disabled sysctl)"
    )]
    IoUringUnavailable {
        /// Why `io_uring_setup` failed.
        #[source]
        source: io::Error,
    },
    /// The epoll (polling) driver could not be created either.
    #[error("cannot create the epoll driver: {source}")]
    Driver {
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },
    /// A worker thread could not be spawned.
    #[error("cannot spawn worker thread {worker}: {source}")]
    Spawn {
        /// Index of the worker.
        worker: usize,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },
    /// A worker thread panicked; the panic was caught and turned into this error.
    #[error("worker {worker} panicked: {message}")]
    WorkerPanicked {
        /// Index of the worker.
        worker: usize,
        /// The panic payload, if it was a string.
        message: String,
    },
    /// A worker thread ended before it reported that its runtime was ready.
    #[error("worker {worker} exited during startup")]
    WorkerLost {
        /// Index of the worker.
        worker: usize,
    },
    /// The runtime was not started because another worker failed to start.
    #[error("worker {worker} was not started because another worker failed")]
    Aborted {
        /// Index of the worker.
        worker: usize,
    },
    /// A message was addressed to a worker index that does not exist.
    #[error("no such worker {worker} (there are {workers})")]
    NoSuchWorker {
        /// The index that was asked for.
        worker: usize,
        /// How many workers there are.
        workers: usize,
    },
    /// The target worker's mailbox is full; the message was dropped.
    #[error("mailbox of worker {worker} is full ({capacity} messages)")]
    MailboxFull {
        /// The target worker.
        worker: usize,
        /// The mailbox capacity.
        capacity: usize,
    },
    /// The target worker's mailbox is closed (the worker has exited); the message was dropped.
    #[error("mailbox of worker {worker} is closed")]
    MailboxClosed {
        /// The target worker.
        worker: usize,
    },
    /// A listening socket could not be created, bound or put into listening state.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },
    /// Another socket already listens on the address: another process, or another listener of
    /// this one. Only the workers of one [`crate::rt::net::ListenerSet`] share a port.
    #[error(
        "cannot listen on {addr}: the address is in use by another listener (another process, or another listener of this one)"
    )]
    PortInUse {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// A worker's listener was already taken from the [`crate::rt::net::ListenerSet`], or the
    /// index is out of range.
    #[error("no listener left for worker {worker}")]
    ListenerTaken {
        /// Index of the worker.
        worker: usize,
    },
    /// Registering a socket with the worker's driver failed.
    #[error("cannot register socket with the driver: {source}")]
    Register {
        /// The underlying OS error.
        #[source]
        source: io::Error,
    },
}

impl RtError {
    /// Whether retrying the same operation may succeed without changing configuration.
    ///
    /// A full mailbox drains, and a bind can succeed once the port is released; configuration
    /// errors, missing kernel features and panics do not go away by retrying.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Self::MailboxFull { .. }
                | Self::Bind { .. }
                | Self::PortInUse { .. }
                | Self::Spawn { .. }
        )
    }
}
