//! SETTINGS: each side's limits, sent once as its first frame (protocol.md §3.6, §4).
//!
//! Settings are sent exactly once, and a side sends nothing stream-related before it has the
//! peer's, so there is never a period where the two sides disagree about a limit. That costs
//! nothing on a long-lived link and removes the "settings changed mid-stream" cases of h2.

use bytes::{Buf, BufMut};

/// SETTINGS identifiers (protocol.md §4).
pub mod id {
    /// Initial credit of every stream, in bytes.
    pub const INITIAL_STREAM_WINDOW: u16 = 0x1;
    /// Initial credit of the link, in bytes.
    pub const LINK_WINDOW: u16 = 0x2;
    /// Largest frame payload the sender accepts (except OPEN and REPLY).
    pub const MAX_FRAME_SIZE: u16 = 0x3;
    /// Largest OPEN or REPLY payload the sender accepts.
    pub const MAX_METADATA_SIZE: u16 = 0x4;
    /// How many streams opened by the receiver may be open at once.
    pub const MAX_CONCURRENT_STREAMS: u16 = 0x5;
}

/// Length of one setting entry.
pub const ENTRY_LEN: usize = 6;

/// A SETTINGS frame. Absent values mean the protocol default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Settings {
    /// This is the acknowledgement (empty payload).
    pub ack: bool,
    /// See [`id::INITIAL_STREAM_WINDOW`].
    pub initial_stream_window: Option<u32>,
    /// See [`id::LINK_WINDOW`].
    pub link_window: Option<u32>,
    /// See [`id::MAX_FRAME_SIZE`].
    pub max_frame_size: Option<u32>,
    /// See [`id::MAX_METADATA_SIZE`].
    pub max_metadata_size: Option<u32>,
    /// See [`id::MAX_CONCURRENT_STREAMS`].
    pub max_concurrent_streams: Option<u32>,
}

impl Settings {
    fn entries(&self) -> [(u16, Option<u32>); 5] {
        [
            (id::INITIAL_STREAM_WINDOW, self.initial_stream_window),
            (id::LINK_WINDOW, self.link_window),
            (id::MAX_FRAME_SIZE, self.max_frame_size),
            (id::MAX_METADATA_SIZE, self.max_metadata_size),
            (id::MAX_CONCURRENT_STREAMS, self.max_concurrent_streams),
        ]
    }

    /// Payload length when encoded.
    pub fn payload_len(&self) -> usize {
        self.entries().iter().filter(|e| e.1.is_some()).count() * ENTRY_LEN
    }

    /// Appends the payload.
    pub fn encode_payload(&self, dst: &mut impl BufMut) {
        for (i, v) in self.entries() {
            if let Some(v) = v {
                dst.put_u16(i);
                dst.put_u32(v);
            }
        }
    }

    /// Parses a payload whose length is a multiple of [`ENTRY_LEN`]; unknown IDs are ignored
    /// (protocol.md §4), a repeated ID keeps the last value.
    pub fn decode_payload(ack: bool, mut src: &[u8]) -> Settings {
        let mut s = Settings {
            ack,
            ..Settings::default()
        };
        while src.len() >= ENTRY_LEN {
            let i = src.get_u16();
            let v = src.get_u32();
            match i {
                id::INITIAL_STREAM_WINDOW => s.initial_stream_window = Some(v),
                id::LINK_WINDOW => s.link_window = Some(v),
                id::MAX_FRAME_SIZE => s.max_frame_size = Some(v),
                id::MAX_METADATA_SIZE => s.max_metadata_size = Some(v),
                id::MAX_CONCURRENT_STREAMS => s.max_concurrent_streams = Some(v),
                _ => {}
            }
        }
        s
    }
}
