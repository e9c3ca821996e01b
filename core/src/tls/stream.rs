//! [`TlsStream`] and its split halves; see the [module doc](super) for the design.

use std::cell::RefCell;
use std::future::poll_fn;
use std::io::{self, BufRead, Write};
use std::os::fd::AsFd;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Poll, Waker};

use compio::BufResult;
use compio::buf::{IoBuf, IoBufMut, IoVectoredBuf};
use compio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use compio::net::{TcpStream, UnixStream};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use super::error::TlsError;
use crate::link::{Shutdown, Transport};

/// Ciphertext read from the socket per system call.
const READ_CHUNK: usize = 128 * 1024;

/// A connected stream socket TLS runs over: TCP (links, `https://` origins) or Unix
/// (`unix+tls:` origins). Cloning gives a second handle on the same socket, which is how the
/// read and write halves are made (compio's `into_split` does the same).
pub trait TlsSocket: AsyncRead + AsyncWrite + AsFd + Clone + 'static {}

impl TlsSocket for TcpStream {}
impl TlsSocket for UnixStream {}

/// The socket's write half and its ciphertext buffer. Whoever holds it is the only writer.
struct WritePort<S> {
    tcp: S,
    buf: Vec<u8>,
}

/// What the halves share.
struct State<S> {
    conn: Connection,
    /// The write port while no write is in flight.
    port: Option<WritePort<S>>,
    /// Tasks waiting for the port.
    port_waiters: Vec<Waker>,
    /// The reader made rustls want to send (key update answer, alert) and no write may come.
    flush_wanted: bool,
    flusher: Option<Waker>,
    /// A half ended: the flusher stops once nothing is wanted.
    done: bool,
    /// This side shut the stream down, so a TCP end is expected rather than a truncation.
    local_shutdown: bool,
    /// A write failed; later writes fail the same way.
    write_failed: Option<(io::ErrorKind, String)>,
}

impl<S> State<S> {
    fn want_flush(&mut self) {
        self.flush_wanted = true;
        if let Some(w) = self.flusher.take() {
            w.wake();
        }
    }

    fn finish(&mut self) {
        self.done = true;
        if let Some(w) = self.flusher.take() {
            w.wake();
        }
    }
}

fn tls_io_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, TlsError::from_rustls(e))
}

/// A TLS connection over a stream socket (TCP unless said otherwise) whose handshake is
/// complete. Read and write it directly (for the registration handshake), then hand it to
/// [`Link::spawn`](crate::link::Link::spawn), which splits it.
pub struct TlsStream<S: TlsSocket = TcpStream> {
    reader: TlsReader<S>,
    writer: TlsWriter<S>,
    shutdown: TlsShutdown<S>,
}

impl<S: TlsSocket> std::fmt::Debug for TlsStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream").finish_non_exhaustive()
    }
}

impl<S: TlsSocket> TlsStream<S> {
    /// Runs the client side of the TLS handshake over `tcp`, verifying the server's
    /// certificate for `server_name` (a DNS name or an IP address).
    pub async fn connect(
        tcp: S,
        config: Arc<ClientConfig>,
        server_name: &str,
    ) -> Result<TlsStream<S>, TlsError> {
        let name = ServerName::try_from(server_name.to_owned())
            .map_err(|e| TlsError::Config(format!("bad server name {server_name:?}: {e}")))?;
        let conn = ClientConnection::new(config, name).map_err(TlsError::Protocol)?;
        Self::handshake(tcp, conn.into()).await
    }

    /// Runs the server side of the TLS handshake over `tcp`.
    pub async fn accept(tcp: S, config: Arc<ServerConfig>) -> Result<TlsStream<S>, TlsError> {
        let conn = ServerConnection::new(config).map_err(TlsError::Protocol)?;
        Self::handshake(tcp, conn.into()).await
    }

    async fn handshake(tcp: S, mut conn: Connection) -> Result<TlsStream<S>, TlsError> {
        // Each write drains what it encrypted, so rustls needs no limit of its own.
        conn.set_buffer_limit(None);
        let (mut rd, mut wr) = (tcp.clone(), tcp);
        let mut out = Vec::with_capacity(16 * 1024);
        let mut cipher = Vec::with_capacity(READ_CHUNK);
        let mut pos = 0;
        loop {
            while conn.wants_write() {
                conn.write_tls(&mut out)?;
            }
            if !out.is_empty() {
                let BufResult(res, b) = wr.write_all(out).await;
                out = b;
                out.clear();
                res?;
            }
            if !conn.is_handshaking() {
                break;
            }
            if pos == cipher.len() {
                cipher.clear();
                pos = 0;
                let BufResult(res, b) = compio::io::AsyncRead::read(&mut rd, cipher).await;
                cipher = b;
                if res? == 0 {
                    return Err(TlsError::ClosedDuringHandshake);
                }
            }
            // Feed one piece at a time and stop at the end of the handshake: what follows is
            // application data and stays buffered for the reader.
            let mut src = &cipher[pos..];
            let n = conn.read_tls(&mut src)?;
            pos += n;
            if let Err(e) = conn.process_new_packets() {
                // Best effort: tell the peer why with the alert rustls queued.
                while conn.wants_write() {
                    if conn.write_tls(&mut out).is_err() {
                        break;
                    }
                }
                if !out.is_empty() {
                    let _ = wr.write_all(out).await;
                }
                return Err(TlsError::from_rustls(e));
            }
        }
        let state = Rc::new(RefCell::new(State {
            conn,
            port: Some(WritePort {
                tcp: wr.clone(),
                buf: out,
            }),
            port_waiters: Vec::new(),
            flush_wanted: false,
            flusher: None,
            done: false,
            local_shutdown: false,
            write_failed: None,
        }));
        Ok(TlsStream {
            reader: TlsReader {
                tcp: rd,
                state: state.clone(),
                cipher,
                pos,
                eof: false,
                plain: Vec::with_capacity(READ_CHUNK),
                flush_inline: false,
            },
            writer: TlsWriter {
                state: state.clone(),
            },
            shutdown: TlsShutdown { tcp: wr, state },
        })
    }

    /// The ALPN protocol the peers agreed on.
    pub fn alpn_protocol(&self) -> Option<Vec<u8>> {
        self.reader
            .state
            .borrow()
            .conn
            .alpn_protocol()
            .map(<[u8]>::to_vec)
    }

    /// The socket the stream runs over (a handle on it: shutting it down ends the operations in
    /// flight on both halves).
    pub fn socket(&self) -> &S {
        &self.reader.tcp
    }

    /// Splits the stream into halves that [`TlsStream::from_halves`] can put together again,
    /// for a caller that reads on one task and writes on another without a long-lived
    /// transport (the edge's public HTTP/1.1 over TLS). Unlike [`Transport::split`] no
    /// flusher task is spawned: what reading makes rustls want to send (a key update answer,
    /// an alert) is sent by the reader itself at the end of that read.
    pub fn into_halves(mut self) -> (TlsReader<S>, TlsWriter<S>) {
        self.reader.flush_inline = true;
        let TlsStream { reader, writer, .. } = self;
        (reader, writer)
    }

    /// Puts halves from [`TlsStream::into_halves`] together again; they must be of one stream.
    pub fn from_halves(mut reader: TlsReader<S>, writer: TlsWriter<S>) -> io::Result<TlsStream<S>> {
        if !Rc::ptr_eq(&reader.state, &writer.state) {
            return Err(io::Error::other("the tls halves are of different streams"));
        }
        reader.flush_inline = false;
        let shutdown = TlsShutdown {
            tcp: reader.tcp.clone(),
            state: Rc::clone(&reader.state),
        };
        Ok(TlsStream {
            reader,
            writer,
            shutdown,
        })
    }

    /// Asks for fresh traffic keys: sends a TLS 1.3 `KeyUpdate` that also asks the peer to
    /// update its own. Rustls does this by itself before a key wears out; this is for tests
    /// and operators. The message leaves with the next write.
    pub fn refresh_traffic_keys(&mut self) -> Result<(), TlsError> {
        self.reader
            .state
            .borrow_mut()
            .conn
            .refresh_traffic_keys()
            .map_err(TlsError::Protocol)
    }
}

impl TlsStream<TcpStream> {
    /// Takes the stream apart so that another thread can go on with it
    /// ([`TlsStream::from_parts`]): a duplicate of the socket, the rustls connection (with any
    /// plaintext it holds) and the ciphertext read but not yet given to rustls. Only between
    /// operations: it fails while a write is in flight. The original socket handles close
    /// here; the duplicate keeps the connection.
    pub fn into_parts(self) -> io::Result<TlsParts> {
        let socket = socket2::SockRef::from(&self.reader.tcp).try_clone()?;
        let cipher = self.reader.cipher[self.reader.pos..].to_vec();
        let eof = self.reader.eof;
        let state = Rc::clone(&self.reader.state);
        drop(self);
        let state = Rc::try_unwrap(state)
            .map_err(|_| io::Error::other("the tls stream is still in use"))?
            .into_inner();
        let Some(port) = state.port else {
            return Err(io::Error::other("a tls write is in flight"));
        };
        Ok(TlsParts {
            socket: socket.into(),
            conn: state.conn,
            cipher,
            eof,
            out: port.buf,
        })
    }

    /// Puts a stream taken apart by [`TlsStream::into_parts`] together again, on the calling
    /// thread's runtime.
    pub fn from_parts(parts: TlsParts) -> io::Result<TlsStream> {
        let tcp = TcpStream::from_std(parts.socket)?;
        let (rd, wr) = tcp.into_split();
        let flush_wanted = parts.conn.wants_write() || !parts.out.is_empty();
        let state = Rc::new(RefCell::new(State {
            conn: parts.conn,
            port: Some(WritePort {
                tcp: wr.clone(),
                buf: parts.out,
            }),
            port_waiters: Vec::new(),
            flush_wanted,
            flusher: None,
            done: false,
            local_shutdown: false,
            write_failed: None,
        }));
        let mut cipher = parts.cipher;
        cipher.reserve(READ_CHUNK.saturating_sub(cipher.len()));
        Ok(TlsStream {
            reader: TlsReader {
                tcp: rd,
                state: state.clone(),
                cipher,
                pos: 0,
                eof: parts.eof,
                plain: Vec::with_capacity(READ_CHUNK),
                flush_inline: false,
            },
            writer: TlsWriter {
                state: state.clone(),
            },
            shutdown: TlsShutdown { tcp: wr, state },
        })
    }
}

impl<S: TlsSocket> AsyncRead for TlsStream<S> {
    async fn read<B: IoBufMut>(&mut self, buf: B) -> BufResult<usize, B> {
        let res = self.reader.read(buf).await;
        // Not split yet, so no flusher: send what reading made rustls want to send here.
        let wanted = std::mem::take(&mut self.reader.state.borrow_mut().flush_wanted);
        if wanted {
            let _ = flush_port(&self.writer.state).await;
        }
        res
    }
}

impl<S: TlsSocket> AsyncWrite for TlsStream<S> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.writer.write(buf).await
    }

    async fn write_vectored<T: IoVectoredBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        self.writer.write_vectored(buf).await
    }

    async fn flush(&mut self) -> io::Result<()> {
        self.writer.flush().await
    }

    async fn shutdown(&mut self) -> io::Result<()> {
        self.writer.shutdown().await
    }
}

impl<S: TlsSocket> Transport for TlsStream<S> {
    type Reader = TlsReader<S>;
    type Writer = TlsWriter<S>;
    type Shutdown = TlsShutdown<S>;

    /// Splits the stream and spawns its flusher task on the current runtime; the flusher ends
    /// when either half ends.
    fn split(self) -> (TlsReader<S>, TlsWriter<S>, TlsShutdown<S>) {
        compio::runtime::spawn(flusher(self.writer.state.clone())).detach();
        (self.reader, self.writer, self.shutdown)
    }
}

/// Sends TLS output that reading produced, while the application may have nothing to write.
async fn flusher<S: TlsSocket>(state: Rc<RefCell<State<S>>>) {
    loop {
        let go = poll_fn(|cx| {
            let mut s = state.borrow_mut();
            if s.flush_wanted {
                s.flush_wanted = false;
                return Poll::Ready(true);
            }
            if s.done {
                return Poll::Ready(false);
            }
            s.flusher = Some(cx.waker().clone());
            Poll::Pending
        })
        .await;
        if !go || flush_port(&state).await.is_err() {
            break;
        }
    }
}

/// Takes the write port, writes all pending TLS output (one write in flight), gives it back.
/// The future must run to completion (like any io_uring write), or the port is lost.
async fn flush_port<S: TlsSocket>(state: &Rc<RefCell<State<S>>>) -> io::Result<()> {
    let mut port = poll_fn(|cx| {
        let mut s = state.borrow_mut();
        match s.port.take() {
            Some(p) => Poll::Ready(p),
            None => {
                s.port_waiters.push(cx.waker().clone());
                Poll::Pending
            }
        }
    })
    .await;
    let res = drain(state, &mut port).await;
    let mut s = state.borrow_mut();
    s.port = Some(port);
    for w in s.port_waiters.drain(..) {
        w.wake();
    }
    if let Err(e) = &res {
        s.write_failed = Some((e.kind(), e.to_string()));
    }
    res
}

async fn drain<S: TlsSocket>(
    state: &Rc<RefCell<State<S>>>,
    port: &mut WritePort<S>,
) -> io::Result<()> {
    loop {
        {
            let mut s = state.borrow_mut();
            if let Some((kind, msg)) = &s.write_failed {
                return Err(io::Error::new(*kind, msg.clone()));
            }
            while s.conn.wants_write() {
                s.conn.write_tls(&mut port.buf)?;
            }
        }
        if port.buf.is_empty() {
            return Ok(());
        }
        let BufResult(res, mut b) = port.tcp.write_all(std::mem::take(&mut port.buf)).await;
        b.clear();
        port.buf = b;
        res?;
    }
}

/// A [`TlsStream`] between two threads (`Send`): see [`TlsStream::into_parts`].
pub struct TlsParts {
    socket: std::net::TcpStream,
    conn: Connection,
    /// Ciphertext read from the socket and not yet given to rustls.
    cipher: Vec<u8>,
    eof: bool,
    /// TLS output not yet written (empty between operations).
    out: Vec<u8>,
}

impl std::fmt::Debug for TlsParts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsParts").finish_non_exhaustive()
    }
}

/// The reading half: owns the socket's read half; yields plaintext.
pub struct TlsReader<S: TlsSocket = TcpStream> {
    tcp: S,
    state: Rc<RefCell<State<S>>>,
    /// Ciphertext read and not yet given to rustls: `cipher[pos..]`.
    cipher: Vec<u8>,
    pos: usize,
    eof: bool,
    /// Plaintext of the current read, before it is put into the caller's buffer.
    plain: Vec<u8>,
    /// No flusher task runs ([`TlsStream::into_halves`]): a read sends what it made rustls
    /// want to send before it returns.
    flush_inline: bool,
}

impl<S: TlsSocket> std::fmt::Debug for TlsReader<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsReader").finish_non_exhaustive()
    }
}

impl<S: TlsSocket> TlsReader<S> {
    /// Fills `buf` from its start, as compio reads do, with as much plaintext as is at hand,
    /// reading the socket only when nothing is.
    ///
    /// The plaintext is gathered in `self.plain` and put into `buf` with one call: compio's
    /// `Uninit` view (what `append` passes) only takes one `extend_from_slice` correctly.
    async fn read_into<B: IoBufMut>(&mut self, buf: &mut B) -> io::Result<usize> {
        let room = B::buf_capacity(buf);
        self.plain.clear();
        let res = self.gather(room).await;
        if !self.plain.is_empty() {
            put_at(buf, 0, &self.plain)?;
            return Ok(self.plain.len());
        }
        res
    }

    /// Collects up to `room` bytes of plaintext in `self.plain`.
    async fn gather(&mut self, room: usize) -> io::Result<usize> {
        loop {
            let produced = self.plain.len();
            if produced == room {
                return Ok(produced);
            }
            {
                let mut s = self.state.borrow_mut();
                let mut rd = s.conn.reader();
                match rd.fill_buf() {
                    Ok([]) => return Ok(produced),
                    Ok(data) => {
                        let n = data.len().min(room - produced);
                        self.plain.extend_from_slice(&data[..n]);
                        rd.consume(n);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                        if produced > 0 || s.local_shutdown {
                            return Ok(produced);
                        }
                        return Err(io::Error::new(
                            io::ErrorKind::UnexpectedEof,
                            "peer closed the connection without tls close_notify",
                        ));
                    }
                    Err(e) => return Err(e),
                }
                if self.pos < self.cipher.len() {
                    let mut src = &self.cipher[self.pos..];
                    self.pos += s.conn.read_tls(&mut src)?;
                    let processed = s.conn.process_new_packets();
                    if s.conn.wants_write() {
                        // A key update answer or an alert: the flusher sends it.
                        s.want_flush();
                    }
                    if let Err(e) = processed {
                        return Err(tls_io_error(e));
                    }
                    continue;
                }
                if produced > 0 {
                    return Ok(produced);
                }
                if self.eof {
                    return Ok(0);
                }
            }
            self.cipher.clear();
            self.pos = 0;
            let BufResult(res, b) = self.tcp.read(std::mem::take(&mut self.cipher)).await;
            self.cipher = b;
            if res? == 0 {
                self.eof = true;
                // Tells rustls the transport ended; the next `fill_buf` says whether that
                // was clean (close_notify seen) or a truncation.
                self.state.borrow_mut().conn.read_tls(&mut &[][..])?;
            }
        }
    }
}

/// Writes `data` at `offset` of `buf` (which holds at least `offset` bytes), as a compio read
/// would: over initialized bytes first, then extending the length.
fn put_at<B: IoBufMut>(buf: &mut B, offset: usize, data: &[u8]) -> io::Result<()> {
    let init = B::buf_len(buf);
    let over = init.saturating_sub(offset).min(data.len());
    B::as_mut_slice(buf)[offset..offset + over].copy_from_slice(&data[..over]);
    if over == data.len() {
        return Ok(());
    }
    B::extend_from_slice(buf, &data[over..]).map_err(io::Error::other)
}

impl<S: TlsSocket> AsyncRead for TlsReader<S> {
    async fn read<B: IoBufMut>(&mut self, mut buf: B) -> BufResult<usize, B> {
        let res = self.read_into(&mut buf).await;
        if self.flush_inline {
            let wanted = std::mem::take(&mut self.state.borrow_mut().flush_wanted);
            if wanted {
                let _ = flush_port(&self.state).await;
            }
        }
        BufResult(res, buf)
    }
}

impl<S: TlsSocket> Drop for TlsReader<S> {
    fn drop(&mut self) {
        self.state.borrow_mut().finish();
    }
}

/// The writing half: encrypts the caller's buffers and writes the records, one write in
/// flight.
pub struct TlsWriter<S: TlsSocket = TcpStream> {
    state: Rc<RefCell<State<S>>>,
}

impl<S: TlsSocket> std::fmt::Debug for TlsWriter<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsWriter").finish_non_exhaustive()
    }
}

impl<S: TlsSocket> TlsWriter<S> {
    /// Encrypts every slice, then writes all the records at once.
    async fn send<'a>(&mut self, slices: impl Iterator<Item = &'a [u8]>) -> io::Result<usize> {
        let mut n = 0;
        {
            let mut s = self.state.borrow_mut();
            if let Some((kind, msg)) = &s.write_failed {
                return Err(io::Error::new(*kind, msg.clone()));
            }
            let mut w = s.conn.writer();
            for slice in slices {
                w.write_all(slice)?;
                n += slice.len();
            }
        }
        flush_port(&self.state).await?;
        Ok(n)
    }
}

impl<S: TlsSocket> AsyncWrite for TlsWriter<S> {
    async fn write<T: IoBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        // The slice borrows `buf` only while encrypting, before any await.
        let res = {
            let slice: &[u8] = buf.as_init();
            let mut n = 0;
            let mut s = self.state.borrow_mut();
            match &s.write_failed {
                Some((kind, msg)) => Err(io::Error::new(*kind, msg.clone())),
                None => match s.conn.writer().write_all(slice) {
                    Ok(()) => {
                        n += slice.len();
                        Ok(n)
                    }
                    Err(e) => Err(e),
                },
            }
        };
        let res = match res {
            Ok(n) => flush_port(&self.state).await.map(|()| n),
            Err(e) => Err(e),
        };
        BufResult(res, buf)
    }

    async fn write_vectored<T: IoVectoredBuf>(&mut self, buf: T) -> BufResult<usize, T> {
        let res = self.send(buf.iter_slice()).await;
        BufResult(res, buf)
    }

    async fn flush(&mut self) -> io::Result<()> {
        flush_port(&self.state).await
    }

    /// Sends `close_notify` and shuts the TCP write direction down.
    async fn shutdown(&mut self) -> io::Result<()> {
        {
            let mut s = self.state.borrow_mut();
            s.local_shutdown = true;
            s.conn.send_close_notify();
        }
        let res = flush_port(&self.state).await;
        let mut s = self.state.borrow_mut();
        s.finish();
        if let Some(p) = &s.port {
            let _ = socket2::SockRef::from(&p.tcp).shutdown(std::net::Shutdown::Write);
        }
        res
    }
}

impl<S: TlsSocket> Drop for TlsWriter<S> {
    fn drop(&mut self) {
        self.state.borrow_mut().finish();
    }
}

/// Ends both halves from outside: shuts the socket down, which completes a read in flight.
pub struct TlsShutdown<S: TlsSocket = TcpStream> {
    tcp: S,
    state: Rc<RefCell<State<S>>>,
}

impl<S: TlsSocket> std::fmt::Debug for TlsShutdown<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsShutdown").finish_non_exhaustive()
    }
}

impl<S: TlsSocket> Shutdown for TlsShutdown<S> {
    fn shutdown(&self) -> io::Result<()> {
        {
            let mut s = self.state.borrow_mut();
            s.local_shutdown = true;
            s.finish();
        }
        match socket2::SockRef::from(&self.tcp).shutdown(std::net::Shutdown::Both) {
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            other => other,
        }
    }
}
