//! The bridge from compio's completion-based sockets to the `tokio::io` traits the `h2` crate
//! drives its connection with.
//!
//! compio's `io-compat` streams ([`AsyncReadStream`], [`AsyncWriteStream`]) keep each read or
//! write future alive across polls inside themselves (never dropped while in flight, as the
//! io_uring rules of `core/src/rt/net.rs` require) and expose `futures-io`'s poll traits; this
//! file adapts those to `tokio::io` (a few lines, so no `tokio-util` compat layer) and adds two
//! things of ours:
//! - bytes read before the protocol was known (the sniffed HTTP/2 preface) are served first;
//! - a write that cannot complete arms the connection's write deadline in its [`Watch`], so a
//!   client that stops reading is cut off by the watchdog after `--client-write-timeout`, as on
//!   HTTP/1.1.
//!
//! The two halves come from [`Transport::split`], so plaintext TCP and TLS share the bridge.

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use compio::io::compat::{AsyncReadStream, AsyncWriteStream};
use ringtun_core::link::Transport;
use tokio::io::ReadBuf;

use crate::dataplane::watchdog::Watch;

/// One HTTP/2 connection's socket as `tokio::io::AsyncRead + AsyncWrite`.
pub(crate) struct Bridge<T: Transport> {
    prefix: Bytes,
    rd: Pin<Box<AsyncReadStream<T::Reader>>>,
    wr: Pin<Box<AsyncWriteStream<T::Writer>>>,
    watch: Rc<Watch>,
    writing: bool,
}

impl<T: Transport> Bridge<T>
where
    T::Reader: Unpin,
    T::Writer: Unpin,
{
    /// Wraps `io`; `prefix` was read from it already and is read again first.
    pub(crate) fn new(io: T, prefix: Bytes, watch: Rc<Watch>) -> Bridge<T> {
        // The shutdown handle is not needed: the watchdog shuts the TCP socket down itself.
        let (rd, wr, _shutdown) = io.split();
        Bridge {
            prefix,
            rd: Box::pin(AsyncReadStream::new(rd)),
            wr: Box::pin(AsyncWriteStream::new(wr)),
            watch,
            writing: false,
        }
    }

    /// Arms the write deadline while a write waits, disarms it once it completes.
    fn track<R>(&mut self, p: Poll<R>) -> Poll<R> {
        match (&p, self.writing) {
            (Poll::Pending, false) => {
                self.watch.start_write();
                self.writing = true;
            }
            (Poll::Ready(_), true) => {
                self.watch.stop_write();
                self.writing = false;
            }
            _ => {}
        }
        p
    }
}

impl<T: Transport> tokio::io::AsyncRead for Bridge<T>
where
    T::Reader: Unpin,
    T::Writer: Unpin,
{
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        let dst = buf.initialize_unfilled();
        let n = ready!(futures_util::AsyncRead::poll_read(
            this.rd.as_mut(),
            cx,
            dst
        ))?;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl<T: Transport> tokio::io::AsyncWrite for Bridge<T>
where
    T::Reader: Unpin,
    T::Writer: Unpin,
{
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let p = futures_util::AsyncWrite::poll_write(this.wr.as_mut(), cx, data);
        this.track(p)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = futures_util::AsyncWrite::poll_flush(this.wr.as_mut(), cx);
        this.track(p)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let p = futures_util::AsyncWrite::poll_close(this.wr.as_mut(), cx);
        this.track(p)
    }
}
