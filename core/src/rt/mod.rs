//! The thread-per-core runtime: workers pinned to cores, one io_uring each, driver detection with
//! the epoll fallback, per-worker `SO_REUSEPORT` listeners, and mailboxes between workers.
//!
//! # Shape
//! [`Runtime::start`] starts one thread per worker (default: one per allowed core), named
//! `ringtun-w{i}` and pinned to core *i*. Each builds its own compio runtime, so each has its
//! own ring and its own timers, and runs the per-worker future it is given, which may be
//! `!Send`: sockets and their state never leave the worker that owns them. Only control messages
//! cross cores, through bounded [`Mailbox`]es; a [`Shutdown`] signal reaches every worker.
//!
//! # Why compio
//! compio is a completion-based runtime with io_uring and an epoll fallback in the same build,
//! owned buffers handed to the kernel, and a per-thread runtime that fits thread-per-core.
//! monoio's last release lacks buffer rings, multishot and SEND_ZC; tokio-uring is unmaintained
//! and panics without io_uring. See `core/src/rt/net.rs` for the io_uring rules.
//!
//! # Drivers
//! [`DriverChoice::Auto`] tries io_uring and falls back to epoll when the kernel refuses it
//! (Docker's default seccomp profile, `kernel.io_uring_disabled`, old kernels), with a warning
//! that says why; it never fails. `RINGTUN_DRIVER=epoll` forces the fallback and
//! `RINGTUN_DRIVER=io_uring` forces io_uring (failing clearly when it is unavailable), see
//! [`DriverChoice::from_env`]. The driver in use is logged once at start, and each worker's
//! [`WorkerCtx::driver`] says which one it got.
//!
//! # io_uring rules
//! - One write in flight per socket; loop on short writes (they happen on TCP).
//! - Never drop an in-flight read or accept future inside `select!` or a timeout: data or an fd
//!   can be lost. Use a long-lived reader task and a writer task per connection and close the
//!   socket to end them. [`Shutdown::wait`] and [`Mailbox::recv`] are channel waits, not IO, so
//!   they are safe to race; an accept or read is not.
//!
//! # compio quirks worth knowing
//! - Dropping a `compio::runtime::JoinHandle` *cancels* the task (unlike tokio); call
//!   `.detach()` to let it run in the background.
//! - A panic in a spawned (detached) task is caught by compio and only visible through its
//!   `JoinHandle`; it does not reach [`Runtime::join`]. Only a panic of the worker's own future
//!   (the one given to [`Runtime::start`]) is reported there.
//! - `compio::net::*::from_std` must run on the thread of the runtime that will drive the
//!   socket (it panics outside a runtime); hence [`net::ListenerSet::take`] on the worker.
//!
//! # Locks
//! No `Mutex` or `RwLock` sits on a per-request path. Mailboxes and the shutdown signal are
//! `async-channel`s (fine for control messages). [`net::ListenerSet`] uses a `Mutex` only for the
//! one-time hand-over of each worker's listening socket at startup.
//!
//! # Not here
//! The link protocol is `crate::mux`'s business; this module knows nothing about frames.

mod config;
mod driver;
mod error;
mod mailbox;
pub mod net;
mod runtime;
mod shutdown;

pub use config::{DEFAULT_MAILBOX_CAPACITY, DRIVER_ENV, DriverChoice, DriverKind, RuntimeConfig};
pub use driver::detect_driver;
pub use error::RtError;
pub use mailbox::{Mailbox, MailboxSender, mailboxes};
pub use runtime::{Runtime, WorkerCtx};
pub use shutdown::Shutdown;
