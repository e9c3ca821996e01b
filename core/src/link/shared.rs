//! The state a link's tasks and stream handles share on one worker.
//!
//! Everything that touches the session goes through [`Shared::after_op`] afterwards: it drains
//! the session's events into per-stream wake-ups and tells the writer task there may be frames
//! to send. That keeps the rule of the session's call order (protocol work first, then events,
//! then transmit) in one place.
//!
//! Per-stream entries (a [`Slot`], a [`Pending`] stream nobody accepted yet) live exactly as
//! long as the stream can still matter to someone: a stream the peer ends before the
//! application accepted it is forgotten at once, and all of them go when the link closes. A
//! pending stream stays open in the session until then, so it counts against the stream
//! limit: whatever the peer opens and resets, this state stays within that limit.

use std::collections::BTreeMap;
use std::task::Waker;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::error::LinkError;
use crate::error::{Classify, Fault};
use crate::mux::{Error as MuxError, ErrorCode, Event, Session, StreamId, StreamKind, StreamMap};

/// What the handles of one stream wait on.
#[derive(Debug, Default)]
pub(crate) struct Slot {
    pub(crate) read: Option<Waker>,
    pub(crate) write: Option<Waker>,
    pub(crate) reply_waker: Option<Waker>,
    /// REPLY metadata that arrived and was not taken yet.
    pub(crate) reply: Option<Bytes>,
    /// The peer reset the stream with this code.
    pub(crate) reset: Option<ErrorCode>,
    /// The peer refused the stream (safe to retry).
    pub(crate) refused: bool,
}

impl Slot {
    fn wake_all(&mut self) {
        for w in [self.read.take(), self.write.take(), self.reply_waker.take()]
            .into_iter()
            .flatten()
        {
            w.wake();
        }
    }

    /// The error a stream operation reports once the peer ended the stream abnormally.
    pub(crate) fn error(&self) -> Option<LinkError> {
        if self.refused {
            Some(LinkError::Refused)
        } else {
            self.reset.map(LinkError::Reset)
        }
    }
}

/// A stream the peer opened and nobody accepted yet.
#[derive(Debug)]
pub(crate) struct Pending {
    pub(crate) id: StreamId,
    pub(crate) kind: StreamKind,
    pub(crate) meta: Bytes,
}

/// The shared state of one link.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) session: Session,
    pub(crate) slots: StreamMap<Slot>,
    /// Streams the peer opened and the application has not accepted yet, by ID: the peer's
    /// IDs increase (protocol.md §2), so the first entry is the oldest.
    pub(crate) incoming: BTreeMap<StreamId, Pending>,
    pub(crate) accept_waker: Option<Waker>,
    pub(crate) writer_waker: Option<Waker>,
    pub(crate) writer_notified: bool,
    /// The deadline the sleeping writer's timer is set for (`None`: no timer). A session
    /// deadline earlier than this wakes the writer to set it earlier.
    pub(crate) writer_deadline: Option<Instant>,
    /// Set once the session closed or the socket failed.
    pub(crate) closed: Option<LinkError>,
    /// Wakers of [`Link::closed`](super::Link::closed) callers.
    pub(crate) close_wakers: Vec<Waker>,
    /// Both tasks have ended (the socket is done with).
    pub(crate) tasks_left: u8,
    pub(crate) drained: bool,
    /// This side sent (or queued) a GOAWAY: it drains or closes the link itself.
    pub(crate) local_goaway: bool,
    /// The peer sent a GOAWAY before this side did: the peer is going away.
    pub(crate) peer_goaway: bool,
    /// Wakers of [`Link::peer_draining`](super::Link::peer_draining) callers.
    pub(crate) goaway_wakers: Vec<Waker>,
    pub(crate) rtt: Option<Duration>,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

impl Shared {
    pub(crate) fn new(session: Session) -> Shared {
        Shared {
            session,
            slots: StreamMap::default(),
            incoming: BTreeMap::new(),
            accept_waker: None,
            writer_waker: None,
            writer_notified: false,
            writer_deadline: None,
            closed: None,
            close_wakers: Vec::new(),
            tasks_left: 2,
            drained: false,
            local_goaway: false,
            peer_goaway: false,
            goaway_wakers: Vec::new(),
            rtt: None,
            bytes_in: 0,
            bytes_out: 0,
        }
    }

    /// Call after every session operation: dispatches events, and wakes the writer when the
    /// session has frames to send or a deadline earlier than the writer's timer. An operation
    /// that leaves nothing to send (most reads, a write while the stream has no credit) costs
    /// no wake-up.
    pub(crate) fn after_op(&mut self) {
        while let Some(ev) = self.session.poll_event() {
            self.on_event(ev);
        }
        let earlier = match (self.session.poll_timeout(), self.writer_deadline) {
            (Some(t), Some(armed)) => t < armed,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if self.session.wants_transmit() || earlier {
            self.notify_writer();
        }
    }

    pub(crate) fn notify_writer(&mut self) {
        self.writer_notified = true;
        if let Some(w) = self.writer_waker.take() {
            w.wake();
        }
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::StreamOpened { id, kind, meta } => {
                self.slots.insert(id, Slot::default());
                self.incoming.insert(id, Pending { id, kind, meta });
                if let Some(w) = self.accept_waker.take() {
                    w.wake();
                }
            }
            Event::StreamReplied { id, meta } => {
                if let Some(s) = self.slots.get_mut(&id) {
                    s.reply = Some(meta);
                    if let Some(w) = s.reply_waker.take() {
                        w.wake();
                    }
                }
            }
            Event::StreamReadable(id) | Event::StreamFinished(id) => {
                if let Some(w) = self.slots.get_mut(&id).and_then(|s| s.read.take()) {
                    w.wake();
                }
            }
            Event::StreamWritable(id) => {
                if let Some(w) = self.slots.get_mut(&id).and_then(|s| s.write.take()) {
                    w.wake();
                }
            }
            Event::StreamReset { id, code } => {
                if self.forget_pending(id) {
                    return;
                }
                if let Some(s) = self.slots.get_mut(&id) {
                    s.reset = Some(code);
                    s.wake_all();
                }
            }
            Event::StreamRefused { id } => {
                if self.forget_pending(id) {
                    return;
                }
                if let Some(s) = self.slots.get_mut(&id) {
                    s.refused = true;
                    s.wake_all();
                }
            }
            Event::GoAway {
                last_id,
                code,
                drain,
            } => {
                tracing::debug!(last_id, %code, drain, "link: peer sent GOAWAY");
                // Only a drain announces that the peer is going away; a GOAWAY without DRAIN
                // closes this one link (a connector moving a link back to its home data
                // center does that) and says nothing about the peer's other links.
                if drain && !self.local_goaway && !self.peer_goaway {
                    self.peer_goaway = true;
                    for w in self.goaway_wakers.drain(..) {
                        w.wake();
                    }
                }
            }
            Event::Rtt(rtt) => self.rtt = Some(rtt),
            Event::Drained => self.drained = true,
            Event::Closed { code, error } => {
                tracing::debug!(%code, %error, "link: session closed");
                // The streams nobody accepted are gone with the session.
                for id in std::mem::take(&mut self.incoming).into_keys() {
                    self.slots.remove(&id);
                }
                self.set_closed(LinkError::Closed {
                    fault: error.fault(),
                    reason: error.to_string(),
                });
            }
        }
    }

    /// Drops a stream the peer ended before the application accepted it, with its slot;
    /// returns whether it was one.
    fn forget_pending(&mut self, id: StreamId) -> bool {
        if self.incoming.remove(&id).is_none() {
            return false;
        }
        self.slots.remove(&id);
        true
    }

    /// Marks the link closed (first reason wins) and wakes every waiter.
    pub(crate) fn set_closed(&mut self, err: LinkError) {
        if self.closed.is_none() {
            self.closed = Some(err);
        }
        for s in self.slots.values_mut() {
            s.wake_all();
        }
        if let Some(w) = self.accept_waker.take() {
            w.wake();
        }
        for w in self.close_wakers.drain(..) {
            w.wake();
        }
        for w in self.goaway_wakers.drain(..) {
            w.wake();
        }
        self.notify_writer();
    }

    /// The socket failed or reached end of file before the session closed.
    ///
    /// The session is left as it is, so data that already arrived stays readable: after a
    /// graceful final GOAWAY the peer may close its socket while this side's application has
    /// not read the last bytes of finished streams yet. Every operation that would need the
    /// socket fails with the close reason from now on (see `closed_error`).
    pub(crate) fn on_transport_end(&mut self, fault: Fault, reason: String) {
        self.set_closed(LinkError::Closed { fault, reason });
    }

    /// The error for an operation on a link that is closed, if it is.
    pub(crate) fn closed_error(&self) -> Option<LinkError> {
        self.closed.clone()
    }

    /// Maps a session error on stream `id` to what the caller should see: a recorded reset or
    /// refusal wins over the session's generic "unknown stream".
    pub(crate) fn stream_error(&self, id: StreamId, e: MuxError) -> LinkError {
        if let Some(err) = self.slots.get(&id).and_then(Slot::error) {
            return err;
        }
        if let Some(err) = self.closed_error() {
            return err;
        }
        match e {
            MuxError::UnknownStream(_) => LinkError::StreamGone,
            other => LinkError::Mux(other),
        }
    }
}
