//! Per-stream state: lifecycle, buffers and credit (protocol.md §5, §6).
//!
//! A stream is small on purpose (an idle open stream costs about 300 bytes with its map entry):
//! the buffers are [`ByteQueue`]s that allocate only once data flows, and every counter is
//! inline. Received data stays as the `Bytes` slices the decoder produced and data to send as
//! the `Bytes` the application wrote, except small pieces, which are copied together so that
//! memory follows the byte count (see [`ByteQueue`]).

use super::queue::ByteQueue;

/// The lifecycle of a stream, as seen by one side (protocol.md §5.1).
///
/// ```text
///                          OPEN sent / OPEN received
///          +------+  ------------------------------------>  +------+
///          | idle |                                          | open |
///          +------+                                          +------+
///                                                  finish()  /      \  FIN received
///                                                           v        v
///                                  +-------------------+        +--------------------+
///                                  | half-closed local |        | half-closed remote |
///                                  +-------------------+        +--------------------+
///                                          FIN received \        / finish()
///                                                        v      v
///                                                       +--------+
///             RESET sent or received, from any state -> | closed |
///                                                       +--------+
/// ```
///
/// `Closed` is reached by RESET in either direction, or once both FINs were exchanged and the
/// application has read to the end. Closed streams are removed from the session at once, so
/// a closed ID just reports `Closed`. IDs above the highest opened one are `Idle`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamState {
    /// Not opened yet.
    Idle,
    /// Both directions carry data.
    Open,
    /// We finished sending; the peer may still send.
    HalfClosedLocal,
    /// The peer finished sending; we may still send (and unread data may remain).
    HalfClosedRemote,
    /// Both directions are done, or the stream was reset.
    Closed,
}

/// One stream's state inside a session.
#[derive(Debug)]
pub(crate) struct Stream {
    /// Opened by this side.
    pub(crate) local: bool,
    /// REPLY was sent (peer-opened stream) or received (local stream).
    pub(crate) replied: bool,

    // Receive side.
    pub(crate) recv: ByteQueue,
    /// DATA payload bytes received so far; checked against a RESET's final size.
    pub(crate) recv_total: u64,
    /// Credit the peer still has on this stream.
    pub(crate) recv_credit: u64,
    /// Bytes consumed by the application but not yet returned in a WINDOW.
    pub(crate) recv_pending_credit: u64,
    /// This stream's current receive window; it starts at the configured window and grows
    /// for a stream whose reader keeps up (protocol.md §5.5).
    pub(crate) recv_window: u32,
    /// The peer used at least three quarters of the window since the last WINDOW we sent:
    /// the window, not the peer, limits this stream.
    pub(crate) recv_starved: bool,
    pub(crate) fin_recv: bool,
    pub(crate) end_read: bool,

    // Send side.
    pub(crate) send: ByteQueue,
    /// DATA payload bytes sent so far; the final size of a RESET we send.
    pub(crate) send_total: u64,
    /// Credit the peer gave us on this stream.
    pub(crate) send_credit: u64,
    pub(crate) fin_queued: bool,
    pub(crate) fin_sent: bool,

    // Scheduling and event deduplication flags.
    pub(crate) in_sendable: bool,
    pub(crate) in_window_queue: bool,
    pub(crate) readable_armed: bool,
    pub(crate) want_writable: bool,
}

impl Stream {
    pub(crate) fn new(local: bool, recv_window: u32, send_window: u32) -> Self {
        Stream {
            local,
            replied: false,
            recv: ByteQueue::default(),
            recv_total: 0,
            recv_credit: u64::from(recv_window),
            recv_pending_credit: 0,
            recv_window,
            recv_starved: false,
            fin_recv: false,
            end_read: false,
            send: ByteQueue::default(),
            send_total: 0,
            send_credit: u64::from(send_window),
            fin_queued: false,
            fin_sent: false,
            in_sendable: false,
            in_window_queue: false,
            readable_armed: true,
            want_writable: false,
        }
    }

    pub(crate) fn state(&self) -> StreamState {
        match (self.fin_queued, self.fin_recv) {
            (false, false) => StreamState::Open,
            (true, false) => StreamState::HalfClosedLocal,
            (false, true) => StreamState::HalfClosedRemote,
            (true, true) => StreamState::Closed,
        }
    }

    /// Both directions are finished on the wire and for the application: remove it.
    pub(crate) fn is_done(&self) -> bool {
        self.fin_sent && self.send.is_empty() && self.fin_recv && self.end_read
    }

    /// The stream has something the DATA scheduler can send now.
    pub(crate) fn wants_send(&self) -> bool {
        (!self.send.is_empty() && self.send_credit > 0)
            || (self.send.is_empty() && self.fin_queued && !self.fin_sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_stream_is_small() {
        // The per-stream budget is 1 KiB including the map entry (see Session::memory_estimate).
        assert!(
            std::mem::size_of::<Stream>() <= 320,
            "{}",
            std::mem::size_of::<Stream>()
        );
    }
}
