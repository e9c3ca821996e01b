//! Wire frames: decoding from a receive buffer and encoding for a vectored write
//! (protocol.md §2–§4).
//!
//! One type per file, as in h2's `frame/`. [`decode`] is pure: it looks at a `BytesMut`, returns
//! `Ok(None)` while a frame is incomplete, and hands payloads out as `Bytes` slices of the
//! buffer (`split_to(..).freeze()`, no copy). Limits are checked on the header alone, so an
//! oversized frame is rejected before its payload is buffered.
//!
//! [`Encoder`] writes headers into one small reusable buffer and keeps large payloads as the
//! `Bytes` they came in, so a batch becomes `[headers.., payload, header, payload, ..]` for a
//! single vectored write. Payloads of at most [`INLINE_MAX`] bytes are copied next to their
//! header instead: a tiny slice would otherwise pin a large receive buffer and cost an iovec.

mod data;
mod goaway;
mod head;
mod open;
mod ping;
mod reply;
mod reset;
mod settings;
mod window;

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub use data::Data;
pub use goaway::{GOAWAY_MIN_LEN, GoAway};
pub use head::{HEADER_LEN, Head, flags, kind};
pub use open::{Open, StreamKind};
pub use ping::{PING_LEN, Ping};
pub use reply::Reply;
pub use reset::{RESET_LEN, Reset};
pub use settings::{ENTRY_LEN, Settings, id as setting_id};
pub use window::{WINDOW_LEN, Window};

use super::{Error, ErrorCode};

/// Payloads up to this many bytes are copied next to their header by the [`Encoder`].
pub const INLINE_MAX: usize = 64;

/// A frame of a type this implementation does not know; its payload was skipped
/// (protocol.md §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unknown {
    /// The type byte.
    pub kind: u8,
    /// The stream ID field.
    pub stream_id: u64,
    /// The skipped payload length.
    pub len: u32,
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// DATA.
    Data(Data),
    /// OPEN.
    Open(Open),
    /// REPLY.
    Reply(Reply),
    /// WINDOW.
    Window(Window),
    /// RESET.
    Reset(Reset),
    /// SETTINGS.
    Settings(Settings),
    /// PING.
    Ping(Ping),
    /// GOAWAY.
    GoAway(GoAway),
    /// A frame of an unknown type, skipped.
    Unknown(Unknown),
}

/// The receiver's size limits, applied while decoding (protocol.md §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest payload of any frame except OPEN and REPLY.
    pub max_frame_size: u32,
    /// Largest payload of OPEN and REPLY.
    pub max_metadata_size: u32,
}

fn violation(code: ErrorCode, reason: &'static str) -> Error {
    Error::Protocol { code, reason }
}

/// Checks everything that can be checked from the header alone (protocol.md §3, §8).
fn check_head(h: &Head, limits: &Limits) -> Result<(), Error> {
    let len = h.len as usize;
    let max = match h.kind {
        kind::OPEN | kind::REPLY => limits.max_metadata_size,
        _ => limits.max_frame_size,
    };
    if h.len > max {
        return Err(violation(
            ErrorCode::FRAME_SIZE_ERROR,
            "frame larger than the limit",
        ));
    }
    let size_ok = match h.kind {
        kind::OPEN => len >= 1,
        kind::WINDOW => len == WINDOW_LEN,
        kind::RESET => len == RESET_LEN,
        kind::PING => len == PING_LEN,
        kind::GOAWAY => len >= GOAWAY_MIN_LEN,
        kind::SETTINGS if h.flags & flags::ACK != 0 => len == 0,
        kind::SETTINGS => len.is_multiple_of(ENTRY_LEN),
        _ => true,
    };
    if !size_ok {
        return Err(violation(
            ErrorCode::FRAME_SIZE_ERROR,
            "bad payload length for frame type",
        ));
    }
    // protocol.md §2: link-level frames on stream 0, stream frames never on it.
    let on_link = h.stream_id == 0;
    match h.kind {
        kind::SETTINGS | kind::PING | kind::GOAWAY if !on_link => Err(violation(
            ErrorCode::PROTOCOL_ERROR,
            "link frame on a stream",
        )),
        kind::DATA | kind::OPEN | kind::REPLY | kind::RESET if on_link => Err(violation(
            ErrorCode::PROTOCOL_ERROR,
            "stream frame on stream 0",
        )),
        _ => Ok(()),
    }
}

/// Decodes one frame from the front of `buf`.
///
/// Returns `Ok(None)` when `buf` does not hold a whole frame yet (nothing is consumed), and an
/// [`Error::Protocol`] for a malformed or oversized frame, detected from the header as soon as
/// it is complete. Payloads are `Bytes` slices of `buf`'s allocation, not copies.
pub fn decode(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Frame>, Error> {
    let Some(h) = Head::parse(buf) else {
        return Ok(None);
    };
    check_head(&h, limits)?;
    let len = h.len as usize;
    if buf.len() - HEADER_LEN < len {
        return Ok(None);
    }
    buf.advance(HEADER_LEN);
    let id = h.stream_id;
    let flag = h.flags & 1 != 0;
    let frame = match h.kind {
        kind::DATA => Frame::Data(Data {
            stream_id: id,
            payload: buf.split_to(len).freeze(),
            fin: flag,
        }),
        kind::OPEN => {
            let mut p = buf.split_to(len).freeze();
            let Some(kind) = StreamKind::from_u8(p.get_u8()) else {
                return Err(violation(ErrorCode::PROTOCOL_ERROR, "unknown stream kind"));
            };
            Frame::Open(Open {
                stream_id: id,
                kind,
                meta: p,
                fin: flag,
            })
        }
        kind::REPLY => Frame::Reply(Reply {
            stream_id: id,
            meta: buf.split_to(len).freeze(),
        }),
        kind::WINDOW => {
            let increment = buf.get_u32();
            if increment == 0 {
                return Err(violation(
                    ErrorCode::PROTOCOL_ERROR,
                    "zero window increment",
                ));
            }
            Frame::Window(Window {
                stream_id: id,
                increment,
            })
        }
        kind::RESET => {
            let code = ErrorCode(buf.get_u32());
            let final_size = buf.get_u64();
            Frame::Reset(Reset {
                stream_id: id,
                code,
                final_size,
            })
        }
        kind::SETTINGS => {
            let p = buf.split_to(len);
            Frame::Settings(Settings::decode_payload(flag, &p))
        }
        kind::PING => {
            let mut payload = [0u8; PING_LEN];
            buf.copy_to_slice(&mut payload);
            Frame::Ping(Ping { ack: flag, payload })
        }
        kind::GOAWAY => {
            let last_id = buf.get_u64();
            let code = ErrorCode(buf.get_u32());
            let reason = buf.split_to(len - GOAWAY_MIN_LEN).freeze();
            Frame::GoAway(GoAway {
                last_id,
                code,
                drain: flag,
                reason,
            })
        }
        other => {
            // protocol.md §3: unknown types are skipped by their length.
            buf.advance(len);
            Frame::Unknown(Unknown {
                kind: other,
                stream_id: id,
                len: h.len,
            })
        }
    };
    Ok(Some(frame))
}

impl Frame {
    /// Bytes this frame takes on the wire, header included.
    pub fn encoded_len(&self) -> usize {
        HEADER_LEN
            + match self {
                Frame::Data(d) => d.payload.len(),
                Frame::Open(o) => 1 + o.meta.len(),
                Frame::Reply(r) => r.meta.len(),
                Frame::Window(_) => WINDOW_LEN,
                Frame::Reset(_) => RESET_LEN,
                Frame::Settings(s) => s.payload_len(),
                Frame::Ping(_) => PING_LEN,
                Frame::GoAway(g) => GOAWAY_MIN_LEN + g.reason.len(),
                Frame::Unknown(u) => u.len as usize,
            }
    }
}

/// Encodes frames into header slots plus payload `Bytes`, ready for one vectored write.
///
/// Headers and inline payloads accumulate in one `BytesMut`; a large payload first flushes the
/// accumulated bytes as one `Bytes` into `out`, then is pushed itself. Call [`Encoder::flush`]
/// after the last frame of a batch. The buffer's allocation is reused once the writer has
/// dropped the previous batch's `Bytes`.
#[derive(Debug, Default)]
pub struct Encoder {
    buf: BytesMut,
}

impl Encoder {
    /// A new encoder.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    fn head(&mut self, len: usize, kind: u8, flags: u8, stream_id: u64) {
        if self.buf.capacity() - self.buf.len() < HEADER_LEN + INLINE_MAX {
            self.buf.reserve(4096);
        }
        // Lengths are bounded by the limits the session applies before encoding.
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        Head {
            len,
            kind,
            flags,
            stream_id,
        }
        .encode(&mut self.buf);
    }

    fn payload(&mut self, p: &Bytes, out: &mut Vec<Bytes>) {
        if p.len() <= INLINE_MAX {
            self.buf.extend_from_slice(p);
        } else {
            self.flush(out);
            out.push(p.clone());
        }
    }

    /// Moves the accumulated header bytes into `out`.
    pub fn flush(&mut self, out: &mut Vec<Bytes>) {
        if !self.buf.is_empty() {
            out.push(self.buf.split().freeze());
        }
    }

    /// Encodes a DATA frame.
    pub fn data(&mut self, stream_id: u64, payload: &Bytes, fin: bool, out: &mut Vec<Bytes>) {
        let f = if fin { flags::FIN } else { 0 };
        self.head(payload.len(), kind::DATA, f, stream_id);
        self.payload(payload, out);
    }

    /// Encodes any frame.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<Bytes>) {
        match frame {
            Frame::Data(d) => self.data(d.stream_id, &d.payload, d.fin, out),
            Frame::Open(o) => {
                let f = if o.fin { flags::FIN } else { 0 };
                self.head(1 + o.meta.len(), kind::OPEN, f, o.stream_id);
                self.buf.put_u8(o.kind as u8);
                self.payload(&o.meta, out);
            }
            Frame::Reply(r) => {
                self.head(r.meta.len(), kind::REPLY, 0, r.stream_id);
                self.payload(&r.meta, out);
            }
            Frame::Window(w) => {
                self.head(WINDOW_LEN, kind::WINDOW, 0, w.stream_id);
                self.buf.put_u32(w.increment);
            }
            Frame::Reset(r) => {
                self.head(RESET_LEN, kind::RESET, 0, r.stream_id);
                self.buf.put_u32(r.code.0);
                self.buf.put_u64(r.final_size);
            }
            Frame::Settings(s) => {
                let f = if s.ack { flags::ACK } else { 0 };
                self.head(s.payload_len(), kind::SETTINGS, f, 0);
                s.encode_payload(&mut self.buf);
            }
            Frame::Ping(p) => {
                let f = if p.ack { flags::ACK } else { 0 };
                self.head(PING_LEN, kind::PING, f, 0);
                self.buf.put_slice(&p.payload);
            }
            Frame::GoAway(g) => {
                let f = if g.drain { flags::DRAIN } else { 0 };
                self.head(GOAWAY_MIN_LEN + g.reason.len(), kind::GOAWAY, f, 0);
                self.buf.put_u64(g.last_id);
                self.buf.put_u32(g.code.0);
                self.payload(&g.reason, out);
            }
            Frame::Unknown(u) => {
                // Only useful to tests: an unknown frame with a zero-filled payload.
                self.head(u.len as usize, u.kind, 0, u.stream_id);
                self.buf.put_bytes(0, u.len as usize);
            }
        }
    }
}

#[cfg(test)]
mod tests;
