//! [`Link`]: spawns the reader and writer tasks of one link and hands out streams.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use compio::BufResult;
use compio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use futures_util::future::{Either, select};

use super::error::LinkError;
use super::shared::{Shared, Slot};
use super::stream::{Incoming, Stream};
use super::transport::{Shutdown, Transport};
use crate::error::Fault;
use crate::mux::{Config, ErrorCode, Role, Session, StreamKind};

/// How much the reader asks the kernel for per read.
const READ_CHUNK: usize = 256 * 1024;
/// Most bytes one vectored write carries.
const MAX_BATCH_BYTES: usize = 512 * 1024;
/// How long a closing link waits for the peer's FIN before it shuts the socket down.
const CLOSE_LINGER: Duration = Duration::from_secs(5);
/// Most buffers one vectored write carries; Linux takes at most `IOV_MAX` (1024).
const MAX_IOVECS: usize = 512;

/// Counters of one link.
#[derive(Debug, Clone, Copy, Default)]
pub struct LinkStats {
    /// Bytes read from the socket.
    pub bytes_in: u64,
    /// Bytes written to the socket.
    pub bytes_out: u64,
    /// Streams open on the link now.
    pub open_streams: usize,
    /// Bytes the session holds in buffers.
    pub buffered_bytes: usize,
    /// The last PING round trip.
    pub rtt: Option<Duration>,
}

/// One link: a mux session over a socket, driven by a reader and a writer task on the current
/// worker. Cloning gives another handle to the same link.
#[derive(Debug, Clone)]
pub struct Link {
    pub(crate) shared: Rc<RefCell<Shared>>,
}

impl Link {
    /// Starts a link over `transport` as `role`, spawning its two tasks on the current compio
    /// runtime. The link runs until it is closed or drained, or the socket ends, whether or
    /// not handles remain.
    pub fn spawn<T: Transport>(transport: T, role: Role, config: Config) -> Link {
        let session = Session::new(role, config, Instant::now());
        let shared = Rc::new(RefCell::new(Shared::new(session)));
        let (reader, writer, shutdown) = transport.split();
        let shutdown = Rc::new(shutdown);
        compio::runtime::spawn(reader_task(reader, shared.clone(), shutdown.clone())).detach();
        compio::runtime::spawn(writer_task(writer, shared.clone(), shutdown)).detach();
        Link { shared }
    }

    /// Opens a stream carrying `kind` with OPEN metadata `meta`. Fails at once (without
    /// waiting) when the link is closed, going away, or at the peer's stream limit; those
    /// errors say whether another link may take the stream.
    pub fn open(&self, kind: StreamKind, meta: Bytes) -> Result<Stream, LinkError> {
        let mut s = self.shared.borrow_mut();
        if let Some(e) = s.closed_error() {
            return Err(e);
        }
        let id = s.session.open(kind, meta)?;
        s.slots.insert(id, Slot::default());
        s.after_op();
        Ok(Stream::new(id, self.shared.clone()))
    }

    /// Waits for the next stream the peer opens. `None` once the link is closed or the peer
    /// will open no more.
    pub async fn accept(&self) -> Option<Incoming> {
        poll_fn(|cx| {
            let mut s = self.shared.borrow_mut();
            if let Some((_, p)) = s.incoming.pop_first() {
                return Poll::Ready(Some(Incoming::new(p, self.shared.clone())));
            }
            if s.closed.is_some() {
                return Poll::Ready(None);
            }
            s.accept_waker = Some(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Starts the two-phase graceful drain (protocol.md): the peer opens nothing new, streams
    /// it already opened finish, and the link closes once all are done.
    pub fn drain(&self) {
        let mut s = self.shared.borrow_mut();
        s.local_goaway = true;
        s.session.drain(Instant::now());
        s.after_op();
    }

    /// Sends a drain notice (protocol.md §7): the peer learns that this side wants the link
    /// gone, while this side keeps opening streams on it until the peer drains it (or this
    /// side calls [`Link::drain`]). It does not count as this side going away for
    /// [`Link::peer_draining`].
    pub fn drain_notice(&self) {
        let mut s = self.shared.borrow_mut();
        s.session.drain_notice();
        s.after_op();
    }

    /// Closes the link at once with `code`: open streams are reset, GOAWAY is sent, and the
    /// socket is shut down once it is flushed.
    pub fn close(&self, code: ErrorCode) {
        let mut s = self.shared.borrow_mut();
        s.local_goaway = true;
        s.session.close(code);
        s.after_op();
    }

    /// Waits until both tasks have ended and the socket is shut down; returns why the link
    /// closed.
    pub async fn closed(&self) -> LinkError {
        poll_fn(|cx| {
            let mut s = self.shared.borrow_mut();
            if s.tasks_left == 0 {
                let err = s.closed.clone().unwrap_or(LinkError::Closed {
                    fault: Fault::Local,
                    reason: "link ended".into(),
                });
                return Poll::Ready(err);
            }
            s.close_wakers.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Resolves once the peer announces that it is going away: `true` when its drain GOAWAY
    /// (the DRAIN flag, protocol §7) arrived before this side drained or closed the link
    /// itself, `false` when the link closed without one (socket failure, a GOAWAY that closes
    /// just this link, local close).
    /// A GOAWAY answering this side's own drain or close is not the peer's decision and does
    /// not count. It costs nothing per frame: the session's GOAWAY event sets a flag.
    pub async fn peer_draining(&self) -> bool {
        poll_fn(|cx| {
            let mut s = self.shared.borrow_mut();
            if s.peer_goaway {
                return Poll::Ready(true);
            }
            if s.closed.is_some() {
                return Poll::Ready(false);
            }
            s.goaway_wakers.push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    /// Whether the peer sent a GOAWAY first (see [`Link::peer_draining`]).
    pub fn is_peer_draining(&self) -> bool {
        self.shared.borrow().peer_goaway
    }

    /// Whether the link is closed (or closing).
    pub fn is_closed(&self) -> bool {
        self.shared.borrow().closed.is_some()
    }

    /// Whether new streams may be opened here (not closed, not going away, under the limit).
    pub fn can_open(&self) -> bool {
        let s = self.shared.borrow();
        s.closed.is_none() && s.session.can_open()
    }

    /// Whether a drain completed: every stream finished after the GOAWAY exchange.
    pub fn is_drained(&self) -> bool {
        self.shared.borrow().drained
    }

    /// Counters of this link.
    pub fn stats(&self) -> LinkStats {
        let s = self.shared.borrow();
        LinkStats {
            bytes_in: s.bytes_in,
            bytes_out: s.bytes_out,
            open_streams: s.session.stream_count(),
            buffered_bytes: s.session.buffered_bytes(),
            rtt: s.rtt,
        }
    }

    /// Bytes of protocol state the session holds (streams and buffers), for memory accounting.
    pub fn memory_estimate(&self) -> usize {
        self.shared.borrow().session.memory_estimate()
    }
}

fn task_done(shared: &Rc<RefCell<Shared>>) {
    let mut s = shared.borrow_mut();
    s.tasks_left = s.tasks_left.saturating_sub(1);
    // Wake on every task end: `closed()` waits for both, the closing writer for the reader.
    for w in s.close_wakers.drain(..) {
        w.wake();
    }
}

/// Reads from the socket into one receive buffer and feeds the session. Payloads leave the
/// buffer as `Bytes` slices (the session splits them off), so nothing is copied.
async fn reader_task<R, S>(mut reader: R, shared: Rc<RefCell<Shared>>, shutdown: Rc<S>)
where
    R: compio::io::AsyncRead,
    S: Shutdown,
{
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let BufResult(res, b) = reader.append(buf).await;
        buf = b;
        let mut s = shared.borrow_mut();
        match res {
            Ok(0) => {
                if !s.session.is_closed() {
                    s.on_transport_end(Fault::Network, "peer closed the connection".into());
                }
                break;
            }
            Ok(n) => {
                s.bytes_in += n as u64;
                // After the session closed, input is discarded but still read: closing a socket
                // with unread input makes the kernel send RST, which can destroy the peer's
                // last frames before it reads them. The writer sends FIN; the reader waits for
                // the peer's FIN (or the linger deadline, see `writer_task`).
                s.session.handle_input(&mut buf, Instant::now());
                if s.session.is_closed() {
                    buf.clear();
                }
                s.after_op();
            }
            Err(e) => {
                s.on_transport_end(Fault::Network, format!("read failed: {e}"));
                break;
            }
        }
    }
    // The writer flushes what is left (a GOAWAY), sends FIN and ends.
    shared.borrow_mut().notify_writer();
    if shared.borrow().tasks_left == 1 {
        let _ = shutdown.shutdown();
    }
    task_done(&shared);
}

/// Keeps one vectored write in flight; between writes, sleeps until notified or until the
/// session's next timer.
async fn writer_task<W, S>(mut writer: W, shared: Rc<RefCell<Shared>>, shutdown: Rc<S>)
where
    W: AsyncWrite,
    S: Shutdown,
{
    let mut bufs: Vec<Bytes> = Vec::with_capacity(MAX_IOVECS);
    let mut timer = None;
    loop {
        let (n, deadline, closed) = {
            let mut s = shared.borrow_mut();
            let now = Instant::now();
            if s.session.poll_timeout().is_some_and(|t| t <= now) {
                s.session.handle_timeout(now);
            }
            s.writer_notified = false;
            let n = s.session.poll_transmit(now, &mut bufs, MAX_BATCH_BYTES);
            s.after_op();
            // `after_op` set the flag for other callers; this pass already took the frames.
            s.writer_notified = false;
            (
                n,
                s.session.poll_timeout(),
                s.session.is_closed() || s.closed.is_some(),
            )
        };
        if n > 0 {
            if let Err(e) = write_batch(&mut writer, &mut bufs).await {
                let mut s = shared.borrow_mut();
                s.on_transport_end(Fault::Network, format!("write failed: {e}"));
                break;
            }
            shared.borrow_mut().bytes_out += n as u64;
            continue;
        }
        if closed {
            break;
        }
        wait_for_work(&shared, deadline, &mut timer).await;
    }
    // Graceful close: FIN after the last frame, then let the reader drain the peer's last
    // bytes until its FIN, so closing the socket never resets frames the peer has not read
    // yet. A peer that never closes is cut off after the linger deadline.
    let _ = writer.shutdown().await;
    let reader_done = poll_fn(|cx| {
        let mut s = shared.borrow_mut();
        if s.tasks_left <= 1 {
            return Poll::Ready(());
        }
        s.close_wakers.push(cx.waker().clone());
        Poll::Pending
    });
    let linger = pin!(compio::time::sleep(CLOSE_LINGER));
    let _ = select(pin!(reader_done), linger).await;
    let _ = shutdown.shutdown();
    task_done(&shared);
}

/// Writes `bufs` fully, at most [`MAX_IOVECS`] buffers per system call.
pub(super) async fn write_batch<W: AsyncWrite>(
    writer: &mut W,
    bufs: &mut Vec<Bytes>,
) -> std::io::Result<()> {
    let mut all = std::mem::take(bufs);
    while !all.is_empty() {
        let rest = if all.len() > MAX_IOVECS {
            all.split_off(MAX_IOVECS)
        } else {
            Vec::new()
        };
        let BufResult(res, mut done) = writer.write_vectored_all(all).await;
        res?;
        done.clear();
        if rest.is_empty() {
            *bufs = done;
            return Ok(());
        }
        all = rest;
    }
    Ok(())
}

/// The writer's timer: the deadline it was set for, and the sleep.
type Timer = (Instant, Pin<Box<dyn Future<Output = ()>>>);

/// Returns when the writer was notified or `deadline` passed.
///
/// The timer outlives the call: it is set again only when the session's deadline moved earlier
/// than it, or after it fired. The session's deadline mostly moves later (input pushes the
/// idle timeout back), so a busy link does not create a timer each time its writer goes idle;
/// a timer that fires before the (later) deadline costs one pass that finds nothing due.
async fn wait_for_work(
    shared: &Rc<RefCell<Shared>>,
    deadline: Option<Instant>,
    timer: &mut Option<Timer>,
) {
    let notified = poll_fn(|cx| {
        let mut s = shared.borrow_mut();
        if s.writer_notified {
            s.writer_notified = false;
            return Poll::Ready(());
        }
        s.writer_waker = Some(cx.waker().clone());
        Poll::Pending
    });
    let Some(at) = deadline else {
        *timer = None;
        shared.borrow_mut().writer_deadline = None;
        notified.await;
        return;
    };
    if timer.as_ref().is_none_or(|(armed, _)| *armed > at) {
        *timer = Some((at, Box::pin(compio::time::sleep_until(at))));
    }
    let Some((armed, sleep)) = timer.as_mut() else {
        return;
    };
    shared.borrow_mut().writer_deadline = Some(*armed);
    if let Either::Right(_) = select(pin!(notified), sleep.as_mut()).await {
        *timer = None;
    }
}
