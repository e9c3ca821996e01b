//! The public HTTP/2 side: h2c with prior knowledge on the public HTTP listener (the
//! connection preface is recognised on the first bytes, see [`sniff`]), and HTTP/2 over TLS
//! with ALPN `h2` on the public HTTPS listener (`--public-https`, see `tls.rs`).
//!
//! The protocol engine is the `h2` crate; `io.rs` bridges compio's sockets to it. Each request
//! stream becomes one tunnel stream exactly like an HTTP/1.1 request (`request.rs`): the same
//! routing (host from `:authority`), the same OPEN metadata, replica choice, retries and error
//! pages (`dataplane/open.rs`, `dataplane/retry.rs`, `ringtun_core::http`). Bodies stream both
//! ways under HTTP/2 flow control: request DATA is released to the client's window only once
//! the tunnel stream took it, and a response piece is sent only into the window the client
//! granted, with at most `--h2-stream-window` bytes queued per stream.
//!
//! # What an HTTP/2 connection may hold (`docs/limits.md`)
//! - `--h2-max-concurrent-streams` streams at once (more are refused by `h2` with
//!   RST_STREAM REFUSED_STREAM), `--h2-max-header-list-size` of headers (larger: 431),
//!   `--h2-stream-window` and `--h2-connection-window` of request body in flight;
//! - client resets: more than `--h2-max-client-resets` within 10 s (rapid reset) end the
//!   connection with GOAWAY ENHANCE_YOUR_CALM (`ringtun_edge_limit_hits_total{reason=
//!   "h2_client_resets"}`); so do `h2`'s own bounds: streams it must refuse or reset past
//!   `--h2-max-refused-streams`, more than 20 streams reset before they were accepted, floods
//!   of tiny DATA frames (`reason="h2_protocol_abuse"`);
//! - the deadlines of `dataplane/watchdog.rs`: a connection without a stream for
//!   [`HEAD_TIMEOUT`](super::watchdog::HEAD_TIMEOUT) (the keep-alive idle time of HTTP/1.1)
//!   closes, a write to the client that makes no progress for `--client-write-timeout`
//!   closes it, a request body that stalls for `--request-body-timeout` resets its stream,
//!   and so does a response that waits that long for the client's window.
//!
//! An HTTP/2 connection is multiplexed, so it is never handed to another worker: a stream
//! whose tunnel has links only on another worker is opened and carried by that worker
//! (`dataplane/bridge`), the rest of this code unchanged (it sees a
//! [`TunnelStream`](super::bridge::TunnelStream)).
//!
//! # Not here
//! - HTTP/1.1 `Upgrade: h2c` is not offered (prior knowledge and ALPN only); extended CONNECT
//!   (WebSocket over HTTP/2) neither.
//!
//! # Layout
//! - this file: the connection: settings, accepting streams, the reset count, GOAWAY.
//! - `io`: the compio → `tokio::io` bridge.
//! - `request`: one request stream: its head, routing, the replica and the stream.
//! - `body`: the bodies both ways, under flow control.
//! - `head`: the response head HTTP/2 may carry.
//! - `tls`: the public HTTPS listener (HTTP/2 here, HTTP/1.1 in `dataplane/http` as ALPN
//!   chooses).
//! - `trailers`: trailer fields between HTTP/2 frames and the tunnel's chunked bodies.

mod body;
mod head;
mod io;
mod request;
pub(crate) mod tls;
pub(crate) mod trailers;

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use h2::Reason;
use ringtun_core::link::Transport;

use super::limits::ClientSlot;
use super::watchdog::{HEAD_TIMEOUT, ReadKind, Watch};
use super::worker::Worker;
use crate::limit::Limit;
use crate::settings::H2_RESET_WINDOW;

/// The client connection preface of HTTP/2 (RFC 9113 §3.4).
pub(crate) const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// What the first bytes of a plaintext connection say.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sniff {
    /// The HTTP/2 preface: h2c with prior knowledge.
    H2,
    /// Anything else: HTTP/1.1.
    Http1,
    /// A prefix of the preface so far.
    NeedMore,
}

/// Whether `buf` (the first bytes of a connection) starts with the HTTP/2 preface. An
/// HTTP/1.1 request differs at its first or second byte, so it never waits for more.
pub(crate) fn sniff(buf: &[u8]) -> Sniff {
    let n = buf.len().min(PREFACE.len());
    if buf[..n] != PREFACE[..n] {
        Sniff::Http1
    } else if n == PREFACE.len() {
        Sniff::H2
    } else {
        Sniff::NeedMore
    }
}

/// What the stream tasks of one connection share with its driver.
pub(crate) struct ConnState {
    watch: Rc<Watch>,
    peer: SocketAddr,
    /// Streams being served.
    active: Cell<usize>,
    /// Client resets in the current window: (window start, count).
    resets: Cell<(Instant, usize)>,
    max_resets: usize,
    /// Set when the client reset too many streams: the driver sends GOAWAY.
    calm: Cell<bool>,
    driver: RefCell<Option<Waker>>,
    /// `https` or `http`, for `X-Forwarded-Proto`.
    proto: &'static str,
}

impl ConnState {
    /// A stream starts: the idle deadline is off.
    fn stream_started(&self) {
        self.active.set(self.active.get() + 1);
        self.watch.stop();
    }

    /// A stream ended: with none left, the idle deadline runs again.
    fn stream_ended(&self) {
        let n = self.active.get().saturating_sub(1);
        self.active.set(n);
        if n == 0 {
            self.watch.start(HEAD_TIMEOUT, ReadKind::Head);
        }
    }

    /// The client reset one of its streams; past `--h2-max-client-resets` within the window the
    /// connection goes away (the driver sends GOAWAY ENHANCE_YOUR_CALM).
    pub(crate) fn client_reset(&self, now: Instant) {
        let (start, n) = self.resets.get();
        let (start, n) = if now.duration_since(start) >= H2_RESET_WINDOW {
            (now, 1)
        } else {
            (start, n + 1)
        };
        self.resets.set((start, n));
        if n > self.max_resets
            && !self.calm.replace(true)
            && let Some(w) = self.driver.borrow_mut().take()
        {
            w.wake();
        }
    }
}

/// Serves one HTTP/2 connection until it ends. `prefix`: bytes read from it already (the
/// preface, when sniffed on the plaintext listener); `watch`: its deadlines, watched by the
/// connection's watchdog; `slot`: its place in its client IP's count.
pub(crate) async fn serve<T>(
    w: Rc<Worker>,
    io: T,
    peer: SocketAddr,
    prefix: BytesMut,
    watch: Rc<Watch>,
    slot: Option<ClientSlot>,
    proto: &'static str,
) where
    T: Transport,
    T::Reader: Unpin,
    T::Writer: Unpin,
{
    let _slot = slot;
    let metrics = Arc::clone(w.plane.registry.metrics());
    metrics.public_h2_connections.inc();
    let cfg = &w.plane.h2;
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(cfg.max_concurrent_streams)
        .max_header_list_size(cfg.max_header_list_size)
        .initial_window_size(cfg.stream_window)
        .initial_connection_window_size(cfg.connection_window)
        .max_send_buffer_size(cfg.stream_window as usize)
        .max_local_error_reset_streams(Some(cfg.max_refused_streams));
    // The preface and SETTINGS must come within the head deadline.
    watch.start(HEAD_TIMEOUT, ReadKind::Head);
    let bridge = io::Bridge::new(io, prefix.freeze(), Rc::clone(&watch));
    let mut conn = match builder.handshake::<_, Bytes>(bridge).await {
        Ok(c) => c,
        Err(e) => {
            tracing::debug!(%peer, error = %e, "HTTP/2 handshake failed");
            watch.finish();
            return;
        }
    };
    let state = Rc::new(ConnState {
        watch: Rc::clone(&watch),
        peer,
        active: Cell::new(0),
        resets: Cell::new((Instant::now(), 0)),
        max_resets: cfg.max_client_resets,
        calm: Cell::new(false),
        driver: RefCell::new(None),
        proto,
    });
    let mut drain = std::pin::pin!(w.plane.draining.wait());
    let mut draining = false;
    let mut calmed = false;
    loop {
        let next = poll_fn(|cx| {
            if !draining && drain.as_mut().poll(cx).is_ready() {
                draining = true;
                conn.graceful_shutdown();
            }
            if state.calm.get() && !calmed {
                calmed = true;
                metrics.limits.hit(Limit::H2ClientResets, &peer);
                conn.abrupt_shutdown(Reason::ENHANCE_YOUR_CALM);
            }
            *state.driver.borrow_mut() = Some(cx.waker().clone());
            match conn.poll_accept(cx) {
                Poll::Pending => Poll::Pending,
                other => Poll::Ready(other),
            }
        })
        .await;
        match next {
            Poll::Ready(Some(Ok((req, respond)))) => {
                metrics.public_requests.inc();
                metrics.public_h2_requests.inc();
                state.stream_started();
                let w = Rc::clone(&w);
                let state = Rc::clone(&state);
                compio::runtime::spawn(async move {
                    request::handle(&w, &state, req, respond).await;
                    state.stream_ended();
                })
                .detach();
            }
            Poll::Ready(Some(Err(e))) => {
                report(&w, &e, peer, calmed);
                break;
            }
            Poll::Ready(None) | Poll::Pending => break,
        }
    }
    // After GOAWAY the connection still flushes what is queued; bounded by the write deadline
    // (the watchdog) and this grace.
    let _ = compio::time::timeout(Duration::from_secs(5), poll_fn(|cx| conn.poll_closed(cx))).await;
    watch.finish();
}

/// Counts a connection that `h2` ended for abuse (its GOAWAY ENHANCE_YOUR_CALM), and logs the
/// others at debug.
fn report(w: &Worker, e: &h2::Error, peer: SocketAddr, calmed: bool) {
    if e.reason() == Some(Reason::ENHANCE_YOUR_CALM) && e.is_library() && !calmed {
        w.plane
            .registry
            .metrics()
            .limits
            .hit(Limit::H2ProtocolAbuse, &peer);
        return;
    }
    tracing::debug!(%peer, error = %e, "HTTP/2 connection ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_preface_is_told_from_http1_at_the_first_differing_byte() {
        assert_eq!(sniff(b""), Sniff::NeedMore);
        assert_eq!(sniff(b"PRI * HT"), Sniff::NeedMore);
        assert_eq!(sniff(PREFACE), Sniff::H2);
        let mut more = PREFACE.to_vec();
        more.extend_from_slice(b"\x00\x00\x12\x04");
        assert_eq!(sniff(&more), Sniff::H2);
        assert_eq!(sniff(b"GET / HTTP/1.1\r\n"), Sniff::Http1);
        assert_eq!(sniff(b"P"), Sniff::NeedMore);
        assert_eq!(sniff(b"POST / HTTP/1.1\r\n"), Sniff::Http1);
        assert_eq!(sniff(b"PRI * HTTP/1.1\r\n"), Sniff::Http1);
    }

    #[test]
    fn resets_past_the_limit_within_the_window_call_for_goaway() {
        let s = ConnState {
            watch: Rc::new(Watch::new(Duration::from_secs(30))),
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            active: Cell::new(0),
            resets: Cell::new((Instant::now(), 0)),
            max_resets: 3,
            calm: Cell::new(false),
            driver: RefCell::new(None),
            proto: "http",
        };
        let t0 = Instant::now();
        for _ in 0..3 {
            s.client_reset(t0);
        }
        assert!(!s.calm.get(), "at the limit is allowed");
        // A new window starts the count again.
        s.client_reset(t0 + H2_RESET_WINDOW);
        assert!(!s.calm.get());
        for _ in 0..3 {
            s.client_reset(t0 + H2_RESET_WINDOW);
        }
        assert!(s.calm.get(), "the fourth in one window is one too many");
    }
}
