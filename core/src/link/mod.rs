//! Links: a [`mux`](crate::mux) session driven over a real socket on one worker.
//!
//! A [`Link`] owns one connected byte stream (plain TCP, or TLS from [`crate::tls`], both
//! behind the [`Transport`] seam) and the [`Session`](crate::mux::Session) that speaks the link protocol
//! over it. It gives the rest of the code an async stream API: [`Link::open`],
//! [`Link::accept`], and on each [`Stream`] `read` (yields [`Bytes`](bytes::Bytes) slices of the
//! receive buffer), `write` (takes `Bytes`, no copy), `finish` and `reset`; plus link-level
//! [`Link::drain`] and [`Link::close`]. [`pipe`] moves raw bytes between a socket and a
//! stream (TCP routes, upgraded HTTP connections), for the edge and the connector alike.
//!
//! # Why two tasks per link
//!
//! io_uring owns a read's buffer while the read is in flight, so a read future must never be
//! dropped half-way (data would be lost). The link therefore runs one long-lived **reader
//! task**, which only ever reads, feeds the session and wakes whoever waits, and one **writer
//! task**, which keeps exactly one vectored write in flight and sleeps on a notification or the
//! session's next timer. The writer is notified only when the session has frames to send (or a
//! deadline earlier than its timer's), and its timer lives across idle periods, so a stream
//! operation that sends nothing costs no wake-up and going idle creates no timer. Dropping a
//! sleep or a notification is harmless; no IO future is ever raced in a `select!`. To stop the
//! reader, the socket is shut down, which completes the pending read with end of file.
//!
//! # Threading
//!
//! A link lives on the worker that created it; its state sits in an `Rc<RefCell<_>>` shared
//! by the two tasks and the stream handles. No lock and no atomic is touched per frame. The
//! borrow is never held across an `.await`.

mod driver;
mod error;
pub mod pipe;
mod shared;
mod stream;
mod transport;

pub use driver::{Link, LinkStats};
pub use error::LinkError;
pub use stream::{Incoming, Stream};
pub use transport::{Shutdown, Transport};

#[cfg(test)]
mod tests;
