//! Thin async helpers over compio's owned-buffer IO: read a head, read body pieces, write a
//! batch of buffers with vectored writes.
//!
//! Each helper keeps its connection's receive buffer in a caller-owned `BytesMut` that it lends
//! to the kernel for one read at a time and gets back with the result. io_uring rule
//! (`core/src/rt/net.rs`): never drop one of these futures while its read is in flight (no
//! `select!` or `timeout` around them): the kernel may already have consumed data, and the buffer is gone
//! with the future. Time out by closing the socket from elsewhere instead.

use bytes::{Bytes, BytesMut};
use compio::BufResult;
use compio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::decoder::{BodyDecoder, DecodeStep};
use super::error::{Fault, HttpError};
use super::head::{HeadLimits, RequestHead, ResponseHead, parse_request, parse_response};

/// The smallest spare capacity offered to one read.
pub const READ_CHUNK: usize = 16 * 1024;
/// The most buffers one vectored write system call gets (below Linux's `IOV_MAX` of 1024).
pub const MAX_IOVECS: usize = 512;
/// The interim response to `Expect: 100-continue`.
pub const CONTINUE_RESPONSE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Reads from `io` into the spare capacity of `buf` once; returns the byte count (0 at EOF).
pub async fn read_more<R: AsyncRead>(io: &mut R, buf: &mut BytesMut) -> Result<usize, HttpError> {
    if buf.capacity() - buf.len() < READ_CHUNK {
        buf.reserve(READ_CHUNK);
    }
    let BufResult(res, b) = io.append(std::mem::take(buf)).await;
    *buf = b;
    Ok(res?)
}

/// How much buffer a connection holds while it waits for its next request head with nothing
/// buffered. Most request heads fit; a bigger one grows the buffer as [`read_more`] does. An
/// idle keep-alive connection then keeps 1 KiB instead of [`READ_CHUNK`] (`perf/results/2026-11-26/` measured
/// ~6.8 KiB per idle proxied connection at the edge, mostly this buffer).
pub const IDLE_CHUNK: usize = 1024;

/// Reads once into `buf`, which is empty: into a fresh [`IDLE_CHUNK`] buffer unless it already
/// has about that much, so a large buffer from an earlier request is not held while idle.
async fn read_idle<R: AsyncRead>(io: &mut R, buf: &mut BytesMut) -> Result<usize, HttpError> {
    if buf.capacity() < IDLE_CHUNK / 2 || buf.capacity() > 2 * IDLE_CHUNK {
        *buf = BytesMut::with_capacity(IDLE_CHUNK);
    }
    let BufResult(res, b) = io.append(std::mem::take(buf)).await;
    *buf = b;
    Ok(res?)
}

/// Reads until a request head is complete and parses it ([`parse_request`]). Bytes after the
/// head (the body's start, pipelined requests) stay in `buf`.
///
/// `Ok(None)` when the client closed the connection cleanly between requests (EOF with an
/// empty buffer); [`HttpError::IncompleteHead`] when it closed in the middle of a head.
pub async fn read_request_head<R: AsyncRead>(
    io: &mut R,
    buf: &mut BytesMut,
    limits: &HeadLimits,
) -> Result<Option<RequestHead>, HttpError> {
    loop {
        if !buf.is_empty()
            && let Some(head) = parse_request(buf, limits)?
        {
            return Ok(Some(head));
        }
        let n = if buf.is_empty() {
            read_idle(io, buf).await?
        } else {
            read_more(io, buf).await?
        };
        if n == 0 {
            return if buf.is_empty() {
                Ok(None)
            } else {
                Err(HttpError::IncompleteHead {
                    from: Fault::Client,
                    received: buf.len(),
                })
            };
        }
    }
}

/// Reads until a response head is complete and parses it ([`parse_response`]). Bytes after the
/// head stay in `buf`. EOF before a complete head is [`HttpError::IncompleteHead`] from the
/// origin; with `received: 0` on a reused keep-alive connection it usually means the origin had
/// closed it while idle.
pub async fn read_response_head<R: AsyncRead>(
    io: &mut R,
    buf: &mut BytesMut,
    limits: &HeadLimits,
) -> Result<ResponseHead, HttpError> {
    loop {
        if !buf.is_empty()
            && let Some(head) = parse_response(buf, limits)?
        {
            return Ok(head);
        }
        if read_more(io, buf).await? == 0 {
            return Err(HttpError::IncompleteHead {
                from: Fault::Origin,
                received: buf.len(),
            });
        }
    }
}

/// The next piece of a body: decodes what `buf` holds and reads from `io` when it needs more.
/// `Ok(None)` when the body ended (leftover bytes in `buf` belong to the next message).
pub async fn read_body_chunk<R: AsyncRead>(
    io: &mut R,
    buf: &mut BytesMut,
    decoder: &mut BodyDecoder,
) -> Result<Option<Bytes>, HttpError> {
    loop {
        match decoder.decode(buf)? {
            DecodeStep::Data(b) => return Ok(Some(b)),
            DecodeStep::End => return Ok(None),
            DecodeStep::NeedMore => {
                if read_more(io, buf).await? == 0 {
                    decoder.eof()?;
                    return Ok(None);
                }
            }
        }
    }
}

/// Writes every buffer of `bufs` (for example a head's bytes followed by a
/// [`crate::http::BodyEncoder`]'s output) with vectored writes, at most [`MAX_IOVECS`] per
/// system call, looping on short writes. Returns `bufs` emptied, to reuse its allocation.
pub async fn write_bufs<W: AsyncWrite>(
    io: &mut W,
    bufs: Vec<Bytes>,
) -> Result<Vec<Bytes>, HttpError> {
    let mut all = bufs;
    let mut rest = Vec::new();
    loop {
        if all.len() > MAX_IOVECS {
            rest = all.split_off(MAX_IOVECS);
        }
        let BufResult(res, mut done) = io.write_vectored_all(all).await;
        res?;
        done.clear();
        if rest.is_empty() {
            return Ok(done);
        }
        all = std::mem::take(&mut rest);
    }
}
