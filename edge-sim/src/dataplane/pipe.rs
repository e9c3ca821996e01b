//! The raw byte pipe between a public client socket and a stream: after a `101` (upgrade) on
//! public HTTP, and for every connection of a public TCP route.

use std::rc::Rc;
use std::sync::Arc;

use bytes::BytesMut;
use compio::BufResult;
use compio::io::AsyncReadExt;
use compio::net::TcpStream;
use ringtun_core::http::io::write_bufs;
use ringtun_core::link::Stream;

use crate::metrics::Metrics;

/// The most a [`pipe`] socket read asks for.
const PIPE_READ: usize = 64 * 1024;
/// About the most one [`pipe`] socket write carries.
const PIPE_WRITE_BATCH: usize = 256 * 1024;

/// Raw bytes both ways between a client socket and a stream (after `101`, and for TCP
/// routes), with half-close: client EOF → FIN; stream FIN → shutdown(write). A reader task
/// owns the client's read side; it is ended by the client's EOF or by shutting the socket.
pub(crate) async fn pipe(sock: TcpStream, buf: BytesMut, s: Rc<Stream>, metrics: Arc<Metrics>) {
    let up = {
        let mut rd = sock.clone();
        let s = Rc::clone(&s);
        let metrics = Arc::clone(&metrics);
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
                    Ok(0) | Err(_) => {
                        let _ = s.finish();
                        return;
                    }
                    Ok(_) => {}
                }
            }
        })
    };
    let mut wr = sock.clone();
    let how = loop {
        // Everything already received goes out in one vectored write.
        match s.read_batch(PIPE_WRITE_BATCH).await {
            Ok(Some(chunks)) => {
                metrics
                    .bytes_out
                    .inc_by(chunks.iter().map(|c| c.len() as u64).sum());
                if write_bufs(&mut wr, chunks).await.is_err() {
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
