//! [`Stream`]: the handle of one stream on a link, and [`Incoming`], a stream the peer opened.

use std::cell::RefCell;
use std::future::poll_fn;
use std::rc::Rc;
use std::task::Poll;

use bytes::Bytes;

use super::error::LinkError;
use super::shared::{Pending, Shared};
use crate::mux::{Error as MuxError, ErrorCode, StreamId, StreamKind, StreamState};

/// A stream the peer opened: its kind and OPEN metadata, and the stream to answer on.
#[derive(Debug)]
pub struct Incoming {
    /// What the stream carries.
    pub kind: StreamKind,
    /// The OPEN metadata (for HTTP, the request head).
    pub meta: Bytes,
    /// The stream itself.
    pub stream: Stream,
}

impl Incoming {
    pub(crate) fn new(p: Pending, shared: Rc<RefCell<Shared>>) -> Incoming {
        Incoming {
            kind: p.kind,
            meta: p.meta,
            stream: Stream::new(p.id, shared),
        }
    }
}

/// One stream of a link. Reads yield `Bytes` as they came off the socket; writes take `Bytes`
/// and never copy them.
///
/// Dropping a stream that is still open in either direction resets it with `CANCEL`, so an
/// abandoned stream never holds credit or memory.
#[derive(Debug)]
pub struct Stream {
    id: StreamId,
    shared: Rc<RefCell<Shared>>,
}

impl Stream {
    pub(crate) fn new(id: StreamId, shared: Rc<RefCell<Shared>>) -> Stream {
        Stream { id, shared }
    }

    /// The stream's ID on its link.
    pub fn id(&self) -> StreamId {
        self.id
    }

    /// The next chunk of data, `Ok(None)` at the end of the stream (the peer finished), or an
    /// error when the peer reset or refused it or the link closed.
    pub async fn read(&self) -> Result<Option<Bytes>, LinkError> {
        poll_fn(|cx| {
            let mut s = self.shared.borrow_mut();
            match s.session.read(self.id, usize::MAX) {
                Ok(chunk) => {
                    s.after_op();
                    Poll::Ready(Ok(chunk))
                }
                Err(MuxError::Blocked) => {
                    if let Some(err) = s.closed_error() {
                        return Poll::Ready(Err(err));
                    }
                    if let Some(slot) = s.slots.get_mut(&self.id) {
                        slot.read = Some(cx.waker().clone());
                    }
                    Poll::Pending
                }
                Err(e) => Poll::Ready(Err(s.stream_error(self.id, e))),
            }
        })
        .await
    }

    /// Like [`Stream::read`], but also takes whatever else is already received, up to about
    /// `max` bytes, so a caller can write it with one vectored write: `Ok(None)` at the end of
    /// the stream. The end is never taken together with data (the next call reports it).
    pub async fn read_batch(&self, max: usize) -> Result<Option<Vec<Bytes>>, LinkError> {
        let Some(first) = self.read().await? else {
            return Ok(None);
        };
        let mut total = first.len();
        let mut chunks = vec![first];
        let mut s = self.shared.borrow_mut();
        while total < max && s.session.readable_bytes(self.id) > 0 {
            match s.session.read(self.id, max - total) {
                Ok(Some(chunk)) => {
                    total += chunk.len();
                    chunks.push(chunk);
                }
                _ => break,
            }
        }
        s.after_op();
        Ok(Some(chunks))
    }

    /// Writes all of `data`, waiting for send buffer space as the peer grants credit.
    pub async fn write(&self, mut data: Bytes) -> Result<(), LinkError> {
        if let Some(err) = self.shared.borrow().closed_error() {
            return Err(err);
        }
        while !data.is_empty() {
            let rest = &mut data;
            poll_fn(|cx| {
                let mut s = self.shared.borrow_mut();
                match s.session.write(self.id, rest.clone()) {
                    Ok(0) => {
                        if let Some(err) = s.closed_error() {
                            return Poll::Ready(Err(err));
                        }
                        if let Some(slot) = s.slots.get_mut(&self.id) {
                            slot.write = Some(cx.waker().clone());
                        }
                        Poll::Pending
                    }
                    Ok(n) => {
                        let _ = rest.split_to(n);
                        s.after_op();
                        Poll::Ready(Ok(()))
                    }
                    Err(e) => Poll::Ready(Err(s.stream_error(self.id, e))),
                }
            })
            .await?;
        }
        Ok(())
    }

    /// Ends our direction: FIN follows the data written so far.
    pub fn finish(&self) -> Result<(), LinkError> {
        let mut s = self.shared.borrow_mut();
        if let Some(err) = s.closed_error() {
            return Err(err);
        }
        let r = s.session.finish(self.id);
        s.after_op();
        r.map_err(|e| s.stream_error(self.id, e))
    }

    /// Aborts both directions with `code`.
    pub fn reset(&self, code: ErrorCode) {
        let mut s = self.shared.borrow_mut();
        if s.session.reset(self.id, code).is_ok() {
            s.after_op();
        }
    }

    /// Sends REPLY metadata on a stream the peer opened.
    pub fn reply(&self, meta: Bytes) -> Result<(), LinkError> {
        let mut s = self.shared.borrow_mut();
        let r = s.session.reply(self.id, meta);
        s.after_op();
        r.map_err(|e| s.stream_error(self.id, e))
    }

    /// Waits for the peer's REPLY metadata on a stream we opened.
    pub async fn reply_meta(&self) -> Result<Bytes, LinkError> {
        poll_fn(|cx| {
            let mut s = self.shared.borrow_mut();
            let closed = s.closed_error();
            let Some(slot) = s.slots.get_mut(&self.id) else {
                return Poll::Ready(Err(closed.unwrap_or(LinkError::StreamGone)));
            };
            if let Some(meta) = slot.reply.take() {
                return Poll::Ready(Ok(meta));
            }
            if let Some(err) = slot.error() {
                return Poll::Ready(Err(err));
            }
            if let Some(err) = closed {
                return Poll::Ready(Err(err));
            }
            slot.reply_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// The stream's state in the session.
    pub fn state(&self) -> StreamState {
        self.shared.borrow().session.stream_state(self.id)
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let Ok(mut s) = self.shared.try_borrow_mut() else {
            return;
        };
        if !matches!(
            s.session.stream_state(self.id),
            StreamState::Closed | StreamState::Idle
        ) && !s.session.is_closed()
            && s.session.reset(self.id, ErrorCode::CANCEL).is_ok()
        {
            s.after_op();
        }
        s.slots.remove(&self.id);
    }
}
