//! The raw byte pipe between a public client socket and a stream: after a `101` (upgrade) on
//! public HTTP, and for every connection of a public TCP route. The byte moving is the shared
//! pipe of `ringtun_core::link::pipe` (small reads while the connection is quiet); this file
//! adds the edge's counters and watchdog.
//!
//! The connection's [`Watch`] bounds it: every socket write has the client write timeout, and
//! bytes either way keep it from the idle timeout that the caller set. When the watchdog ends
//! the connection (by shutting the socket down), the stream is reset, not finished, and the
//! writer stops waiting for stream data at once.

use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::BytesMut;
use compio::net::TcpStream;
use ringtun_core::link::Stream;
use ringtun_core::link::pipe::{self, PipeHooks, ReadEnd, WriteEnd};
use ringtun_core::mux::ErrorCode;

use super::client_io::ClientIo;
use super::watchdog::Watch;
use crate::metrics::Metrics;

/// The edge's view of a pipe: byte counters and the connection's watchdog.
struct Hooks {
    metrics: Arc<Metrics>,
    watch: Rc<Watch>,
}

impl PipeHooks for Hooks {
    fn received(&self, n: usize) {
        self.metrics.bytes_in.inc_by(n as u64);
        self.watch.touch();
    }

    fn sending(&self, n: usize) {
        self.metrics.bytes_out.inc_by(n as u64);
    }

    fn write_started(&self) {
        self.watch.start_write();
    }

    fn write_ended(&self) {
        self.watch.stop_write();
    }

    fn poll_abort(&self, cx: &mut Context<'_>) -> Poll<()> {
        self.watch.poll_fired(cx).map(|_| ())
    }
}

/// Raw bytes both ways between a client connection and a stream (after `101`, and for TCP
/// routes), with half-close: client EOF → FIN; stream FIN → the client's sending side closed
/// (over TLS with `close_notify`). A reader task owns the client's read half; it is ended by
/// the client's EOF or by shutting the socket `sock` down.
pub(crate) async fn pipe<S: ClientIo>(
    rd: S::Rd,
    mut wr: S::Wr,
    sock: TcpStream,
    buf: BytesMut,
    s: Rc<Stream>,
    metrics: Arc<Metrics>,
    watch: Rc<Watch>,
) {
    let hooks = Rc::new(Hooks { metrics, watch });
    let up = {
        let mut rd = rd;
        let s = Rc::clone(&s);
        let hooks = Rc::clone(&hooks);
        compio::runtime::spawn(async move {
            match pipe::socket_to_stream(&mut rd, &s, buf.freeze(), &*hooks).await {
                ReadEnd::Eof | ReadEnd::Socket(_) if hooks.watch.fired().is_some() => {
                    s.reset(ErrorCode::CANCEL);
                }
                ReadEnd::Eof | ReadEnd::Socket(_) => {
                    let _ = s.finish();
                }
                ReadEnd::Stream(_) => {}
            }
        })
    };
    let fin = match pipe::stream_to_socket(&s, &mut wr, &*hooks).await {
        WriteEnd::Fin => true,
        WriteEnd::Stream(_) => false,
        WriteEnd::Aborted => {
            s.reset(ErrorCode::CANCEL);
            false
        }
        WriteEnd::Socket(_) => {
            if hooks.watch.fired().is_some() {
                s.reset(ErrorCode::CANCEL);
            }
            false
        }
    };
    if fin {
        S::close_write(&mut wr, &sock).await;
    } else {
        let _ = socket2::SockRef::from(&sock).shutdown(std::net::Shutdown::Both);
    }
    let _ = up.await;
}
