//! One control-plane connection and its single request: reading the head and the body under
//! their deadlines and caps, answering, and closing (see [`super::server`] for the rules).
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Instant;

use bytes::BytesMut;
use ringtun_core::http::{
    BodyDecoder, BodyFraming, BodyLimits, DecodeStep, Fault, HeadLimits, HttpError, RequestHead,
    expects_continue, parse_request, reason_phrase, request_framing, status_of,
};

use super::handler::Reply;
use super::server::{Head, MAX_HEADERS, READ_CHUNK, Rejection, Service, Shared};

/// Answers 503 on the acceptor thread without reading or waiting: the socket is fresh, so the
/// short answer fits its send buffer; if not, the client just sees the close.
pub(super) fn refuse(stream: TcpStream, max: usize) {
    if stream.set_nonblocking(true).is_err() {
        return;
    }
    let reply = Reply::error(
        503,
        format!("too many connections (at most {max} at once); retry later"),
    );
    let mut stream = stream;
    let _ = stream.write(&response_bytes(&reply, false, "Retry-After: 1\r\n"));
    close(stream);
}

/// Closes after the answer: shuts the sending side, then discards what already arrived (without
/// waiting), so the close does not turn into a reset that could destroy the answer in flight.
fn close(mut stream: TcpStream) {
    let _ = stream.shutdown(Shutdown::Write);
    if stream.set_nonblocking(true).is_ok() {
        let mut sink = [0u8; READ_CHUNK];
        for _ in 0..16 {
            match stream.read(&mut sink) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
}

/// The serialized response: `Connection: close` always, `WWW-Authenticate` with a 401
/// (RFC 9110 §11.6.1), then `extra` (whole header lines); no body for HEAD.
pub(super) fn response_bytes(reply: &Reply, head_only: bool, extra: &str) -> Vec<u8> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        reply.status,
        reason_phrase(reply.status),
        reply.content_type,
        reply.body.len()
    );
    if reply.status == 401 {
        out.push_str("WWW-Authenticate: Bearer\r\n");
    }
    out.push_str(extra);
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    if !head_only {
        out.extend_from_slice(reply.body.as_bytes());
    }
    out
}

/// How reading a head or a body ended early.
enum ReadError {
    /// The deadline passed.
    Timeout,
    /// The client closed or the socket failed.
    Closed,
    /// The bytes are not a valid head or body, or are over a limit.
    Invalid(HttpError),
}

/// One accepted connection and its single request.
pub(super) struct Connection<'a> {
    stream: TcpStream,
    peer: SocketAddr,
    shared: &'a Shared,
    /// When the whole request must be in.
    deadline: Instant,
    buf: BytesMut,
}

impl<'a> Connection<'a> {
    pub(super) fn new(stream: TcpStream, peer: SocketAddr, shared: &'a Shared) -> Connection<'a> {
        Connection {
            stream,
            peer,
            shared,
            deadline: Instant::now() + shared.limits.timeout,
            buf: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    pub(super) fn serve<S: Service>(mut self, service: &S) {
        let _ = self.stream.set_nodelay(true);
        let request = match self.read_head() {
            Ok(request) => request,
            Err(ReadError::Closed) => return,
            Err(ReadError::Timeout) => {
                self.shared.reject(Rejection::HeadTimeout, self.peer);
                // A connection that never sent a byte is just closed.
                if !self.buf.is_empty() {
                    self.finish(&timeout_reply("request head"), false);
                }
                return;
            }
            Err(ReadError::Invalid(e)) => {
                let reason = match status_of(&e) {
                    431 => Rejection::HeadTooLarge,
                    _ => Rejection::BadRequest,
                };
                self.shared.reject(reason, self.peer);
                self.finish(&Reply::error(status_of(&e), e.to_string()), false);
                return;
            }
        };
        let head = Head {
            method: String::from_utf8_lossy(&request.method).into_owned(),
            target: String::from_utf8_lossy(&request.target).into_owned(),
            authorization: request
                .headers
                .get("authorization")
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::to_owned),
        };
        let reply = match service.before_body(&head) {
            Some(reply) => reply,
            None => match self.read_body(&request) {
                Ok(body) => service.serve(&head, &body),
                Err(Some(reply)) => reply,
                // The client left: nobody to answer.
                Err(None) => return,
            },
        };
        service.answered(&head, reply.status);
        self.finish(&reply, request.is_head());
    }

    /// Reads until a head is complete.
    fn read_head(&mut self) -> std::result::Result<RequestHead, ReadError> {
        let limits = HeadLimits {
            max_head_bytes: self.shared.limits.max_head_bytes,
            max_headers: MAX_HEADERS,
        };
        loop {
            if let Some(head) = parse_request(&mut self.buf, &limits).map_err(ReadError::Invalid)? {
                return Ok(head);
            }
            self.read_more()?;
        }
    }

    /// Reads the body as its framing says, up to [`Limits::max_body_bytes`]. An error is the
    /// answer to send instead (its rejection counted), or `None` when the client left.
    fn read_body(&mut self, head: &RequestHead) -> std::result::Result<Vec<u8>, Option<Reply>> {
        let max = self.shared.limits.max_body_bytes;
        let too_large = || Reply::error(413, format!("request body over {}", size(max)));
        let framing = request_framing(head).map_err(|e| self.invalid(e))?;
        if let BodyFraming::Length(n) = framing
            && n > max as u64
        {
            self.shared.reject(Rejection::BodyTooLarge, self.peer);
            return Err(Some(too_large()));
        }
        if !framing.is_empty() && expects_continue(head) {
            self.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                .map_err(|_| None)?;
        }
        let mut decoder = BodyDecoder::new(framing, BodyLimits::default(), Fault::Client);
        let mut body = Vec::new();
        loop {
            match decoder.decode(&mut self.buf).map_err(|e| self.invalid(e))? {
                DecodeStep::Data(data) => {
                    if body.len() + data.len() > max {
                        self.shared.reject(Rejection::BodyTooLarge, self.peer);
                        return Err(Some(too_large()));
                    }
                    body.extend_from_slice(&data);
                }
                DecodeStep::End => return Ok(body),
                DecodeStep::NeedMore => match self.read_more() {
                    Ok(()) => {}
                    Err(ReadError::Timeout) => {
                        self.shared.reject(Rejection::BodyTimeout, self.peer);
                        return Err(Some(timeout_reply("request body")));
                    }
                    Err(ReadError::Invalid(e)) => return Err(self.invalid(e)),
                    Err(ReadError::Closed) => return Err(None),
                },
            }
        }
    }

    /// The 400 answer to an invalid body or framing, counted.
    fn invalid(&self, e: HttpError) -> Option<Reply> {
        self.shared.reject(Rejection::BadRequest, self.peer);
        Some(Reply::error(400, e.to_string()))
    }

    /// One read into the buffer, within what is left of the deadline.
    fn read_more(&mut self) -> std::result::Result<(), ReadError> {
        let mut chunk = [0u8; READ_CHUNK];
        loop {
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ReadError::Timeout);
            }
            if self.stream.set_read_timeout(Some(left)).is_err() {
                return Err(ReadError::Closed);
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(ReadError::Closed),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // The loop re-checks the deadline (a timed-out read says WouldBlock on Linux).
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return Err(ReadError::Closed),
            }
        }
    }

    /// Writes all of `bytes` within [`Limits::timeout`] in total: the timeout is re-armed with
    /// what is left before each write, so a client that reads a byte now and then cannot
    /// stretch it.
    fn write_all(&mut self, mut bytes: &[u8]) -> std::io::Result<()> {
        let deadline = Instant::now() + self.shared.limits.timeout;
        while !bytes.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(ErrorKind::TimedOut.into());
            }
            self.stream.set_write_timeout(Some(left))?;
            match self.stream.write(bytes) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Sends the answer and closes.
    fn finish(mut self, reply: &Reply, head_only: bool) {
        match self.write_all(&response_bytes(reply, head_only, "")) {
            Ok(()) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                self.shared.reject(Rejection::WriteTimeout, self.peer);
            }
            Err(e) => {
                tracing::debug!(server = self.shared.server, peer = %self.peer, error = %e, "control server: cannot send the response");
            }
        }
        close(self.stream);
    }
}

fn timeout_reply(what: &str) -> Reply {
    Reply::error(408, format!("{what} not received in time"))
}

/// `64 KiB` or `1000 bytes`.
pub(super) fn size(bytes: usize) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KiB", bytes / 1024)
    } else {
        format!("{bytes} bytes")
    }
}
