//! The public HTTP/1.1 ingress: parse, route by `Host`, choose a replica, one stream per
//! request, stream the bodies both ways, keep the client connection alive.
//!
//! # Tasks per connection
//! One task serves the connection. While a request body is forwarded, a second task owns the
//! read half (and the receive buffer) and gives them back when the body ends, so the response
//! can flow while the body still uploads without ever dropping an in-flight read. After a `101`
//! (upgrade) the same split carries raw bytes both ways until either side ends.
//!
//! # Slow clients
//! Every connection is its own task, so a stalled client blocks nobody else. A watchdog task
//! per connection closes it when a request head (or the next one, on keep-alive) has not
//! arrived within [`HEAD_TIMEOUT`].
//!
//! # Not yet
//! No timeout on a stalled request body; a request body that the origin stops reading after
//! answering keeps the connection until the stream ends.

use std::cell::{Cell, RefCell};
use std::future::poll_fn;
use std::net::SocketAddr;
use std::rc::Rc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use compio::net::{TcpListener, TcpStream};
use ringtun_core::http::io::{
    CONTINUE_RESPONSE, read_body_chunk, read_more, read_request_head, write_bufs,
};
use ringtun_core::http::{
    BodyDecoder, BodyEncoder, BodyFraming, BodyLimits, Fault, HeadLimits, HttpError,
    NO_CONNECTOR_DETAIL, RequestExtra, RequestHead, ResponseMeta, Version, append_forwarded_for,
    decode_response_meta, encode_request_meta, error_response, expects_continue,
    is_upgrade_request, is_websocket_upgrade, no_route_detail, remove_hop_by_hop, request_framing,
    request_keep_alive, set_forwarded_proto, set_framing_headers,
};
use ringtun_core::link::Stream;
use ringtun_core::mux::{ErrorCode, StreamKind};

use super::lb::StreamGuard;
use super::worker::{HandoffKind, Pick, Worker};

/// How many replicas a request refused before processing is tried on.
const MAX_ATTEMPTS: usize = 3;

/// Accepts public HTTP connections on this worker's socket.
pub(crate) async fn accept_loop(w: Rc<Worker>, listener: TcpListener) {
    loop {
        match listener.accept().await {
            Ok((s, peer)) => {
                let _ = s.set_nodelay(true);
                compio::runtime::spawn(serve(Rc::clone(&w), s, peer, BytesMut::new(), false))
                    .detach();
            }
            Err(e) => {
                tracing::warn!(error = %e, "public HTTP accept failed");
                compio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

enum Next {
    KeepAlive,
    Close,
    HandedOff,
}

struct Conn {
    stream: TcpStream,
    rd: TcpStream,
    wr: TcpStream,
    buf: BytesMut,
    peer: SocketAddr,
    handed_off: bool,
}

/// Serves one public connection (fresh, or handed off by another worker with `buf` holding
/// what was read already).
pub(crate) async fn serve(
    w: Rc<Worker>,
    stream: TcpStream,
    peer: SocketAddr,
    buf: BytesMut,
    handed_off: bool,
) {
    let mut c = Conn {
        rd: stream.clone(),
        wr: stream.clone(),
        stream,
        buf,
        peer,
        handed_off,
    };
    let limits = HeadLimits::default();
    let watch = Rc::new(HeadWatch::default());
    compio::runtime::spawn(watchdog(Rc::clone(&watch), c.stream.clone())).detach();
    loop {
        watch.waiting_since.set(Some(Instant::now()));
        let head = read_request_head(&mut c.rd, &mut c.buf, &limits).await;
        watch.waiting_since.set(None);
        let head = match head {
            Ok(Some(h)) => h,
            Ok(None) => break,
            Err(e) => {
                if !matches!(e, HttpError::Io(_) | HttpError::IncompleteHead { .. }) {
                    w.plane.registry.metrics().public_error("bad_request");
                    let (h, b) = e.to_response();
                    let _ = write_bufs(&mut c.wr, vec![h.to_bytes(), b]).await;
                }
                break;
            }
        };
        w.plane.registry.metrics().public_requests.inc();
        match handle(&w, &mut c, head).await {
            Next::KeepAlive => continue,
            Next::Close => break,
            Next::HandedOff => {
                watch.finish();
                return;
            }
        }
    }
    watch.finish();
    linger_close(c).await;
}

/// How long a client may take to send a request head, idle time between keep-alive requests
/// included. A stalled client only holds its own task; this frees its socket too.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Default)]
struct HeadWatch {
    waiting_since: Cell<Option<Instant>>,
    done: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl HeadWatch {
    /// The connection ended: the watchdog drops its socket handle at once (it must not keep
    /// the descriptor open after the connection is done).
    fn finish(&self) {
        self.done.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    async fn wait_done(&self) {
        poll_fn(|cx| {
            if self.done.get() {
                Poll::Ready(())
            } else {
                *self.waker.borrow_mut() = Some(cx.waker().clone());
                Poll::Pending
            }
        })
        .await
    }
}

/// Shuts a connection down when a head read has been pending for [`HEAD_TIMEOUT`]: that
/// completes the read in flight (io_uring rule: never drop it, end it by closing the socket).
async fn watchdog(watch: Rc<HeadWatch>, sock: TcpStream) {
    loop {
        // A timer raced with a notification: no IO future is dropped here.
        if compio::time::timeout(HEAD_TIMEOUT / 4, watch.wait_done())
            .await
            .is_ok()
        {
            return;
        }
        if watch
            .waiting_since
            .get()
            .is_some_and(|t| t.elapsed() >= HEAD_TIMEOUT)
        {
            tracing::debug!("public client sent no request head in time; closing");
            let _ = socket2::SockRef::from(&sock).shutdown(std::net::Shutdown::Both);
            return;
        }
    }
}

/// Closes after a final response without resetting it away: stop sending, then read (and
/// discard) what the client still sends, briefly. The read may be dropped by the timeout: the
/// connection is being discarded anyway.
async fn linger_close(mut c: Conn) {
    let _ = socket2::SockRef::from(&c.stream).shutdown(std::net::Shutdown::Write);
    let _ = compio::time::timeout(Duration::from_secs(1), async {
        let mut total = 0usize;
        while total < 1 << 20 {
            c.buf.clear();
            match read_more(&mut c.rd, &mut c.buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    })
    .await;
}

async fn reply_error(
    w: &Worker,
    c: &mut Conn,
    cause: &str,
    status: u16,
    detail: &str,
    close: bool,
) -> Next {
    w.plane.registry.metrics().public_error(cause);
    let (h, b) = error_response(status, detail, close);
    match write_bufs(&mut c.wr, vec![h.to_bytes(), b]).await {
        Ok(_) if !close => Next::KeepAlive,
        _ => Next::Close,
    }
}

async fn handle(w: &Rc<Worker>, c: &mut Conn, head: RequestHead) -> Next {
    let framing = match request_framing(&head) {
        Ok(f) => f,
        Err(e) => {
            w.plane.registry.metrics().public_error("bad_request");
            let (h, b) = e.to_response();
            let _ = write_bufs(&mut c.wr, vec![h.to_bytes(), b]).await;
            return Next::Close;
        }
    };
    let has_body = !framing.is_empty();
    // An error answered before the body was read leaves the connection out of sync.
    let close_on_error = has_body || !request_keep_alive(&head);
    let Some(host) = head.host().map(|h| String::from_utf8_lossy(h).into_owned()) else {
        return reply_error(
            w,
            c,
            "bad_request",
            400,
            "missing Host header",
            close_on_error,
        )
        .await;
    };
    let Some(tunnel) = w.routes().tunnel_for_host(&host) else {
        return reply_error(
            w,
            c,
            "no_route",
            404,
            &no_route_detail(&host),
            close_on_error,
        )
        .await;
    };
    let upgrade = is_upgrade_request(&head);
    let kind = if is_websocket_upgrade(&head) {
        StreamKind::WebSocket
    } else {
        StreamKind::Http
    };
    let mut fwd = head.clone();
    remove_hop_by_hop(&mut fwd.headers, upgrade);
    fwd.headers.remove("expect");
    append_forwarded_for(&mut fwd.headers, c.peer.ip());
    set_forwarded_proto(&mut fwd.headers, "http");
    let body = match framing {
        BodyFraming::Length(n) if n > 0 => BodyFraming::Length(n),
        BodyFraming::Empty | BodyFraming::Length(_) => BodyFraming::Empty,
        _ => BodyFraming::Chunked,
    };
    let meta = encode_request_meta(
        &fwd,
        &RequestExtra {
            client_ip: Some(c.peer.ip()),
            body,
        },
    );

    // Choose a replica and open the stream; without a body, wait for the REPLY here so a
    // refusal before processing can move to another replica.
    let mut exclude = Vec::new();
    let (stream, guard, early_reply) = loop {
        let (link, load) = match w.pick_or_wait(tunnel, &exclude).await {
            Pick::Local { link, load } => (link, load),
            // Nothing of the request is consumed yet (a retry only happens without a body).
            Pick::Elsewhere(to) if !c.handed_off => {
                let mut buf = BytesMut::from(&head.to_bytes()[..]);
                buf.extend_from_slice(&c.buf);
                if w.hand_off(to, &c.stream, c.peer, buf, HandoffKind::Http) {
                    return Next::HandedOff;
                }
                return reply_error(
                    w,
                    c,
                    "no_connector",
                    503,
                    NO_CONNECTOR_DETAIL,
                    close_on_error,
                )
                .await;
            }
            Pick::Elsewhere(_) | Pick::NoConnector => {
                return reply_error(
                    w,
                    c,
                    "no_connector",
                    503,
                    NO_CONNECTOR_DETAIL,
                    close_on_error,
                )
                .await;
            }
        };
        let s = match link.open(kind, meta.clone()) {
            Ok(s) => s,
            Err(e) if e.is_retry_safe() && exclude.len() + 1 < MAX_ATTEMPTS => {
                exclude.push(load.id);
                continue;
            }
            Err(e) => {
                let detail = format!("cannot open a stream to the connector: {e}");
                return reply_error(w, c, "connector", 502, &detail, close_on_error).await;
            }
        };
        let guard = load.start_stream();
        if has_body {
            break (s, guard, None);
        }
        // An upgrade keeps the request direction open: after a 101 it carries raw bytes.
        if !upgrade {
            let _ = s.finish();
        }
        match s.reply_meta().await {
            Ok(m) => break (s, guard, Some(m)),
            Err(e) if e.is_retry_safe() && exclude.len() + 1 < MAX_ATTEMPTS => {
                tracing::debug!(connector = %load.id, error = %e, "request refused; retrying on another replica");
                exclude.push(load.id);
                continue;
            }
            Err(e) => {
                let detail = format!("the connector failed the request: {e}");
                return reply_error(w, c, "connector", 502, &detail, close_on_error).await;
            }
        }
    };
    let stream = Rc::new(stream);

    // The request body flows on its own task, which owns the read half until the body ends.
    let pump = if has_body {
        if expects_continue(&head)
            && write_bufs(&mut c.wr, vec![Bytes::from_static(CONTINUE_RESPONSE)])
                .await
                .is_err()
        {
            return Next::Close;
        }
        let rd = c.rd.clone();
        let buf = std::mem::take(&mut c.buf);
        let s = Rc::clone(&stream);
        let dec = BodyDecoder::new(framing, BodyLimits::default(), Fault::Client);
        Some(compio::runtime::spawn(pump_body(rd, buf, dec, s)))
    } else {
        None
    };
    let meta = match early_reply {
        Some(m) => Ok(m),
        None => stream.reply_meta().await,
    };
    let next = respond(w, c, &head, &stream, guard, meta, upgrade && !has_body).await;
    if let Some(p) = pump {
        match p.await {
            Ok((buf, ok)) => {
                c.buf = buf;
                if !ok {
                    return Next::Close;
                }
            }
            Err(_) => return Next::Close,
        }
    }
    next
}

/// Moves a request body from the client to the stream; FIN at its end. Returns the receive
/// buffer (bytes after the body belong to the next request) and whether the body ended well.
async fn pump_body(
    mut rd: TcpStream,
    mut buf: BytesMut,
    mut dec: BodyDecoder,
    s: Rc<Stream>,
) -> (BytesMut, bool) {
    loop {
        match read_body_chunk(&mut rd, &mut buf, &mut dec).await {
            Ok(Some(b)) => {
                if s.write(b).await.is_err() {
                    return (buf, false);
                }
            }
            Ok(None) => return (buf, s.finish().is_ok()),
            Err(e) => {
                tracing::debug!(error = %e, "public request body failed");
                s.reset(ErrorCode::CANCEL);
                return (buf, false);
            }
        }
    }
}

async fn respond(
    w: &Worker,
    c: &mut Conn,
    req: &RequestHead,
    stream: &Rc<Stream>,
    guard: StreamGuard,
    meta: Result<Bytes, ringtun_core::link::LinkError>,
    request_open: bool,
) -> Next {
    let keep_client = request_keep_alive(req);
    let meta = match meta {
        Ok(m) => m,
        Err(e) => {
            let detail = format!("the connector failed the request: {e}");
            return reply_error(w, c, "connector", 502, &detail, true).await;
        }
    };
    let (mut rh, rbody) = match decode_response_meta(meta) {
        Ok(ResponseMeta::Head { head, body }) => (head, body),
        Ok(ResponseMeta::Error(re)) => {
            w.plane.registry.metrics().public_error("origin");
            let close = !keep_client;
            let (h, b) = re.to_response(close);
            return match write_bufs(&mut c.wr, vec![h.to_bytes(), b]).await {
                Ok(_) if !close => Next::KeepAlive,
                _ => Next::Close,
            };
        }
        Err(e) => {
            let detail = format!("the connector sent an invalid reply: {e}");
            return reply_error(w, c, "connector", 502, &detail, true).await;
        }
    };
    if rh.status == 101 {
        remove_hop_by_hop(&mut rh.headers, true);
        if write_bufs(&mut c.wr, vec![rh.to_bytes()]).await.is_err() {
            return Next::Close;
        }
        let buf = std::mem::take(&mut c.buf);
        pipe(c.stream.clone(), buf, Rc::clone(stream)).await;
        drop(guard);
        return Next::Close;
    }
    if request_open {
        // The upgrade was declined: the request had no body, end its direction.
        let _ = stream.finish();
    }
    let no_body = req.is_head() || rh.is_informational() || rh.status == 204 || rh.status == 304;
    let out = if no_body {
        BodyFraming::Empty
    } else {
        match rbody {
            BodyFraming::Length(n) => BodyFraming::Length(n),
            BodyFraming::Empty => BodyFraming::Length(0),
            _ if req.version == Version::Http11 => BodyFraming::Chunked,
            _ => BodyFraming::CloseDelimited,
        }
    };
    let keep = keep_client && out != BodyFraming::CloseDelimited;
    remove_hop_by_hop(&mut rh.headers, false);
    if !no_body {
        set_framing_headers(&mut rh.headers, out);
    }
    if !keep {
        rh.headers.append(
            Bytes::from_static(b"Connection"),
            Bytes::from_static(b"close"),
        );
    }
    rh.version = Version::Http11;
    let mut enc = BodyEncoder::new(out);
    let mut bufs = vec![rh.to_bytes()];
    loop {
        match stream.read().await {
            Ok(Some(chunk)) if !no_body => {
                if enc.encode(chunk, &mut bufs).is_err() {
                    w.plane.registry.metrics().public_error("connector");
                    return Next::Close;
                }
            }
            Ok(Some(_)) => {}
            Ok(None) => break,
            Err(e) => {
                tracing::debug!(error = %e, "response body from the connector failed");
                w.plane.registry.metrics().public_error("connector");
                let _ = write_bufs(&mut c.wr, bufs).await;
                return Next::Close;
            }
        }
        match write_bufs(&mut c.wr, bufs).await {
            Ok(b) => bufs = b,
            Err(_) => return Next::Close,
        }
    }
    if enc.finish(&mut bufs).is_err() {
        let _ = write_bufs(&mut c.wr, bufs).await;
        return Next::Close;
    }
    if write_bufs(&mut c.wr, bufs).await.is_err() {
        return Next::Close;
    }
    drop(guard);
    if keep { Next::KeepAlive } else { Next::Close }
}

/// Raw bytes both ways between a client socket and a stream (after `101`, and for TCP
/// routes), with half-close: client EOF → FIN; stream FIN → shutdown(write). A reader task
/// owns the client's read side; it is ended by the client's EOF or by shutting the socket.
pub(crate) async fn pipe(sock: TcpStream, buf: BytesMut, s: Rc<Stream>) {
    let up = {
        let mut rd = sock.clone();
        let s = Rc::clone(&s);
        compio::runtime::spawn(async move {
            let mut buf = buf;
            loop {
                if !buf.is_empty() {
                    let data = buf.split().freeze();
                    if s.write(data).await.is_err() {
                        return;
                    }
                }
                match read_more(&mut rd, &mut buf).await {
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
        match s.read().await {
            Ok(Some(b)) => {
                if write_bufs(&mut wr, vec![b]).await.is_err() {
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
