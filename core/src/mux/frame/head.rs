//! The fixed 16-byte frame header (protocol.md §2).
//!
//! A fixed header keeps decoding branch-free: the length is known after 16 bytes, so an
//! oversized frame is rejected before a single payload byte is buffered, and a frame of an
//! unknown type can be skipped.

use bytes::{Buf, BufMut};

/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 16;

/// Frame type codes (protocol.md §3).
pub mod kind {
    /// DATA.
    pub const DATA: u8 = 0x0;
    /// OPEN.
    pub const OPEN: u8 = 0x1;
    /// REPLY.
    pub const REPLY: u8 = 0x2;
    /// WINDOW.
    pub const WINDOW: u8 = 0x3;
    /// RESET.
    pub const RESET: u8 = 0x4;
    /// SETTINGS.
    pub const SETTINGS: u8 = 0x5;
    /// PING.
    pub const PING: u8 = 0x6;
    /// GOAWAY.
    pub const GOAWAY: u8 = 0x7;
}

/// Flag bits (protocol.md §3). One bit, three meanings, by frame type.
pub mod flags {
    /// DATA, OPEN: the sender's half of the stream ends with this frame.
    pub const FIN: u8 = 0x1;
    /// SETTINGS, PING: this is the acknowledgement.
    pub const ACK: u8 = 0x1;
    /// GOAWAY: phase 1 of a graceful drain.
    pub const DRAIN: u8 = 0x1;
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// Payload bytes that follow the header.
    pub len: u32,
    /// Frame type, see [`kind`].
    pub kind: u8,
    /// Flags, see [`flags`].
    pub flags: u8,
    /// Stream ID; 0 is the link itself.
    pub stream_id: u64,
}

impl Head {
    /// Parses a header from the first [`HEADER_LEN`] bytes of `src`; `None` if there are fewer.
    pub fn parse(mut src: &[u8]) -> Option<Head> {
        if src.len() < HEADER_LEN {
            return None;
        }
        let len = src.get_u32();
        let kind = src.get_u8();
        let flags = src.get_u8();
        // protocol.md §2: reserved is sent as 0 and ignored on receipt.
        let _reserved = src.get_u16();
        let stream_id = src.get_u64();
        Some(Head {
            len,
            kind,
            flags,
            stream_id,
        })
    }

    /// Appends the 16 header bytes to `dst`.
    pub fn encode(&self, dst: &mut impl BufMut) {
        dst.put_u32(self.len);
        dst.put_u8(self.kind);
        dst.put_u8(self.flags);
        dst.put_u16(0);
        dst.put_u64(self.stream_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_big_endian_and_16_bytes() {
        let h = Head {
            len: 0x0102_0304,
            kind: 5,
            flags: 1,
            stream_id: 0x1122_3344_5566_7788,
        };
        let mut v = Vec::new();
        h.encode(&mut v);
        assert_eq!(
            v,
            [
                1, 2, 3, 4, 5, 1, 0, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88
            ]
        );
        assert_eq!(Head::parse(&v), Some(h));
        assert_eq!(Head::parse(&v[..15]), None);
    }
}
