//! The raw byte pipe between a public client socket and a stream: after a `101` (upgrade) on
//! public HTTP, and for every connection of a public TCP route.
//!
//! The connection's [`Watch`] bounds it: every socket write has the client write timeout, and
//! bytes either way keep it from the idle timeout that the caller set. When the watchdog ends
//! the connection (by shutting the socket down), the stream is reset, not finished, and the
//! writer stops waiting for stream data at once.

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::Poll;

use bytes::BytesMut;
use compio::BufResult;
use compio::io::AsyncReadExt;
use compio::net::TcpStream;
use ringtun_core::http::io::write_bufs;
use ringtun_core::link::Stream;
use ringtun_core::mux::ErrorCode;

use super::watchdog::Watch;
use crate::metrics::Metrics;

/// The most a [`pipe`] socket read asks for.
const PIPE_READ: usize = 64 * 1024;
/// About the most one [`pipe`] socket write carries.
const PIPE_WRITE_BATCH: usize = 256 * 1024;

/// Raw bytes both ways between a client socket and a stream (after `101`, and for TCP
/// routes), with half-close: client EOF → FIN; stream FIN → shutdown(write). A reader task
/// owns the client's read side; it is ended by the client's EOF or by shutting the socket.
pub(crate) async fn pipe(
    sock: TcpStream,
    buf: BytesMut,
    s: Rc<Stream>,
    metrics: Arc<Metrics>,
    watch: Rc<Watch>,
) {
    let up = {
        let mut rd = sock.clone();
        let s = Rc::clone(&s);
        let metrics = Arc::clone(&metrics);
        let watch = Rc::clone(&watch);
        compio::runtime::spawn(async move {
            let mut buf = buf;
            loop {
                if !buf.is_empty() {
                    let data = buf.split().freeze();
                    metrics.bytes_in.inc_by(data.len() as u64);
                    if s.write(data).await.is_err() {
                        return;
                    }
                }
                // Large reads: a bulk upload costs a syscall and a DATA frame per 64 KiB,
                // not per 16 KiB (`read_more`'s size, made for request heads and bodies).
                if buf.capacity() - buf.len() < PIPE_READ / 4 {
                    buf.reserve(PIPE_READ);
                }
                let BufResult(res, b) = rd.append(std::mem::take(&mut buf)).await;
                buf = b;
                match res {
                    Ok(0) | Err(_) if watch.fired().is_some() => {
                        s.reset(ErrorCode::CANCEL);
                        return;
                    }
                    Ok(0) | Err(_) => {
                        let _ = s.finish();
                        return;
                    }
                    Ok(_) => watch.touch(),
                }
            }
        })
    };
    let mut wr = sock.clone();
    let how = loop {
        // Everything already received goes out in one vectored write. Waiting for the stream
        // ends when the watchdog closed the connection (dropping a pending stream read loses
        // nothing: it takes data only when it completes).
        let next = {
            let mut read = pin!(s.read_batch(PIPE_WRITE_BATCH));
            poll_fn(|cx| match read.as_mut().poll(cx) {
                Poll::Ready(r) => Poll::Ready(Some(r)),
                Poll::Pending => watch.poll_fired(cx).map(|_| None),
            })
            .await
        };
        let Some(next) = next else {
            s.reset(ErrorCode::CANCEL);
            break std::net::Shutdown::Both;
        };
        match next {
            Ok(Some(chunks)) => {
                metrics
                    .bytes_out
                    .inc_by(chunks.iter().map(|c| c.len() as u64).sum());
                watch.start_write();
                let r = write_bufs(&mut wr, chunks).await;
                watch.stop_write();
                if r.is_err() {
                    if watch.fired().is_some() {
                        s.reset(ErrorCode::CANCEL);
                    }
                    break std::net::Shutdown::Both;
                }
            }
            Ok(None) => break std::net::Shutdown::Write,
            Err(_) => break std::net::Shutdown::Both,
        }
    };
    let _ = socket2::SockRef::from(&sock).shutdown(how);
    let _ = up.await;
}
