//! Cross-worker mailboxes for control messages.
//!
//! Every worker owns one bounded inbox ([`Mailbox`]); a [`MailboxSender`] can address any
//! worker by index. They are built on `async-channel`, which is lock-free in its bounded form's
//! fast path and wakes a receiver on another thread through that worker's compio waker.
//!
//! These are for *control* messages (hand a stream to another worker, broadcast a config change,
//! drain), not for the data path: data stays on the worker that owns the socket. Capacity is
//! explicit so nothing grows without bound; [`MailboxSender::try_send`] fails with
//! [`RtError::MailboxFull`] instead of queueing more.

use std::sync::Arc;

use super::RtError;

/// The receiving end of one worker's inbox. Owned by that worker.
#[derive(Debug)]
pub struct Mailbox<T> {
    worker: usize,
    rx: async_channel::Receiver<T>,
}

/// A handle that can send to every worker's inbox. Cheap to clone; `Send` when `T` is.
#[derive(Debug)]
pub struct MailboxSender<T> {
    txs: Arc<[async_channel::Sender<T>]>,
    capacity: usize,
}

impl<T> Clone for MailboxSender<T> {
    fn clone(&self) -> Self {
        Self {
            txs: Arc::clone(&self.txs),
            capacity: self.capacity,
        }
    }
}

/// Creates `workers` inboxes of `capacity` messages each, and a sender that reaches all of them.
/// Inbox *i* is at index *i* of the returned vector. A `capacity` of 0 is raised to 1.
///
/// [`crate::rt::Runtime::start`] calls this for you; it is public for tests and for code that
/// wires workers by hand.
pub fn mailboxes<T>(workers: usize, capacity: usize) -> (MailboxSender<T>, Vec<Mailbox<T>>) {
    let capacity = capacity.max(1);
    let (txs, rxs): (Vec<_>, Vec<_>) = (0..workers)
        .map(|_| async_channel::bounded(capacity))
        .unzip();
    let inboxes = rxs
        .into_iter()
        .enumerate()
        .map(|(worker, rx)| Mailbox { worker, rx })
        .collect();
    (
        MailboxSender {
            txs: txs.into(),
            capacity,
        },
        inboxes,
    )
}

impl<T> Mailbox<T> {
    /// Index of the worker this inbox belongs to.
    pub fn worker(&self) -> usize {
        self.worker
    }

    /// Waits for the next message. `None` once every [`MailboxSender`] is gone and the inbox is
    /// empty. Cancel-safe: dropping the future loses no message.
    pub async fn recv(&self) -> Option<T> {
        self.rx.recv().await.ok()
    }

    /// Takes a message if one is waiting.
    pub fn try_recv(&self) -> Option<T> {
        self.rx.try_recv().ok()
    }

    /// Number of messages waiting.
    pub fn len(&self) -> usize {
        self.rx.len()
    }

    /// Whether no message is waiting.
    pub fn is_empty(&self) -> bool {
        self.rx.is_empty()
    }
}

impl<T> Drop for Mailbox<T> {
    fn drop(&mut self) {
        // Senders learn at once that this worker is gone instead of filling a dead inbox.
        self.rx.close();
    }
}

impl<T> MailboxSender<T> {
    /// Number of workers (inboxes) this sender reaches.
    pub fn workers(&self) -> usize {
        self.txs.len()
    }

    /// Capacity of each inbox.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    fn target(&self, worker: usize) -> Result<&async_channel::Sender<T>, RtError> {
        self.txs.get(worker).ok_or(RtError::NoSuchWorker {
            worker,
            workers: self.txs.len(),
        })
    }

    /// Sends without waiting. Fails (dropping `msg`) with [`RtError::MailboxFull`] when the
    /// inbox is full, [`RtError::MailboxClosed`] when the worker has exited, and
    /// [`RtError::NoSuchWorker`] for a bad index.
    pub fn try_send(&self, worker: usize, msg: T) -> Result<(), RtError> {
        self.target(worker)?.try_send(msg).map_err(|e| match e {
            async_channel::TrySendError::Full(_) => RtError::MailboxFull {
                worker,
                capacity: self.capacity,
            },
            async_channel::TrySendError::Closed(_) => RtError::MailboxClosed { worker },
        })
    }

    /// Sends, waiting while the inbox is full (back-pressure). Fails with
    /// [`RtError::MailboxClosed`] or [`RtError::NoSuchWorker`].
    pub async fn send(&self, worker: usize, msg: T) -> Result<(), RtError> {
        self.target(worker)?
            .send(msg)
            .await
            .map_err(|_| RtError::MailboxClosed { worker })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_bad_index_are_errors() {
        let (tx, boxes) = mailboxes::<u32>(2, 2);
        assert!(tx.try_send(1, 1).is_ok());
        assert!(tx.try_send(1, 2).is_ok());
        assert!(matches!(
            tx.try_send(1, 3),
            Err(RtError::MailboxFull {
                worker: 1,
                capacity: 2
            })
        ));
        assert!(matches!(
            tx.try_send(2, 3),
            Err(RtError::NoSuchWorker {
                worker: 2,
                workers: 2
            })
        ));
        assert_eq!(boxes[1].try_recv(), Some(1));
        assert_eq!(boxes[1].len(), 1);
        assert!(boxes[0].is_empty());
    }

    #[test]
    fn dropped_inbox_is_closed() {
        let (tx, mut boxes) = mailboxes::<u32>(2, 4);
        drop(boxes.remove(0));
        assert!(matches!(
            tx.try_send(0, 1),
            Err(RtError::MailboxClosed { worker: 0 })
        ));
    }
}
