//! The one error type of [`crate::rt`].

use std::{io, net::SocketAddr};

use crate::error::{Classify, Fault};

/// Everything that can go wrong in the runtime layer.
///
/// All of these are *local* faults (this process, its configuration or its host); none is caused
/// by a peer. [`Classify::is_retry_safe`] says whether trying the same thing again may succeed.
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

impl Classify for RtError {
    /// Always [`Fault::Local`].
    fn fault(&self) -> Fault {
        Fault::Local
    }

    /// Safe when the same operation may succeed without changing configuration: a full mailbox
    /// drains, and a bind can succeed once the port is released; configuration errors, missing
    /// kernel features and panics do not go away by retrying.
    fn is_retry_safe(&self) -> bool {
        matches!(
            self,
            Self::MailboxFull { .. }
                | Self::Bind { .. }
                | Self::PortInUse { .. }
                | Self::Spawn { .. }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variant: always local; a retry is safe for what drains or gets released.
    #[test]
    fn every_error_is_local_and_has_a_retry_answer() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let os = || io::Error::other("x");
        let table = [
            (RtError::InvalidConfig { reason: "x" }, false),
            (RtError::InvalidDriverEnv { value: "x".into() }, false),
            (RtError::IoUringUnavailable { source: os() }, false),
            (RtError::Driver { source: os() }, false),
            (
                RtError::Spawn {
                    worker: 0,
                    source: os(),
                },
                true,
            ),
            (
                RtError::WorkerPanicked {
                    worker: 0,
                    message: "x".into(),
                },
                false,
            ),
            (RtError::WorkerLost { worker: 0 }, false),
            (RtError::Aborted { worker: 0 }, false),
            (
                RtError::NoSuchWorker {
                    worker: 2,
                    workers: 1,
                },
                false,
            ),
            (
                RtError::MailboxFull {
                    worker: 0,
                    capacity: 1,
                },
                true,
            ),
            (RtError::MailboxClosed { worker: 0 }, false),
            (RtError::Bind { addr, source: os() }, true),
            (RtError::PortInUse { addr }, true),
            (RtError::ListenerTaken { worker: 0 }, false),
            (RtError::Register { source: os() }, false),
        ];
        for (e, retry) in table {
            assert_eq!(e.fault(), Fault::Local, "{e:?}");
            assert_eq!(e.is_retry_safe(), retry, "{e:?}");
        }
    }
}
