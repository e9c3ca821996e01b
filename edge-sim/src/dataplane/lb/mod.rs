//! Replica choice: which connector of a tunnel takes a stream, and on which worker.
//!
//! - [`load`]: [`ConnectorLoad`], one connector's counters shared by every worker (`Arc` of
//!   atomics: outstanding streams, choices served, draining, live links per worker).
//! - `table`: the `LoadTable` of every live connector, versioned so a worker refreshes its
//!   snapshot only when connectors came or went.
//! - [`policy`]: the policies (p2c, round-robin, random, same-dc-first) over the
//!   [`Replica`] trait, with an injected random source.
//! - `choice`: candidate filtering (draining, tried, standby), same-data-center narrowing,
//!   the connector a handed-over connection was chosen for, and whether this worker opens the
//!   stream or hands the connection to another (`choose_replica`).
//!
//! Nothing here does IO or holds a link: the worker answers "do I hold a usable link of this
//! connector" and turns the `Route` into a link or a hand-off (`worker::Worker::pick`), so
//! every policy, weight and standby rule is unit-tested here.

pub(crate) mod choice;
pub mod load;
pub mod policy;
pub(crate) mod table;

pub(crate) use choice::{Ask, Route, choose_replica};
pub use load::{ConnectorLoad, StreamGuard};
pub use policy::Replica;
pub(crate) use table::{ByTunnel, LoadTable};
