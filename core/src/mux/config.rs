//! Session configuration and the protocol defaults (protocol.md §4).
//!
//! Everything a peer can make us buffer is bounded by a value here. The defaults are sized for
//! a tunnel link: a 256 KiB stream window fills a 20 ms, 100 Mbit/s path per stream, and the
//! 16 MiB link window lets 64 such streams run at full speed before the link itself limits.

use std::time::Duration;

/// Which end of the link this session is (protocol.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The dialer (the connector). Opens odd stream IDs.
    Client,
    /// The acceptor (the edge). Opens even stream IDs.
    Server,
}

impl Role {
    /// The first stream ID this role opens.
    pub fn first_stream_id(self) -> u64 {
        match self {
            Role::Client => 1,
            Role::Server => 2,
        }
    }

    /// Whether `id` is opened by this role.
    pub fn opens(self, id: u64) -> bool {
        id != 0 && (id % 2 == 1) == (self == Role::Client)
    }
}

/// Protocol default of INITIAL_STREAM_WINDOW: 256 KiB.
pub const DEFAULT_STREAM_WINDOW: u32 = 256 * 1024;
/// Default ceiling of a stream's auto-tuned receive window: 4 MiB (protocol.md §5.5).
pub const DEFAULT_MAX_STREAM_WINDOW: u32 = 4 * 1024 * 1024;
/// Protocol default of LINK_WINDOW: 16 MiB.
pub const DEFAULT_LINK_WINDOW: u32 = 16 * 1024 * 1024;
/// Protocol default of MAX_FRAME_SIZE: 64 KiB.
pub const DEFAULT_MAX_FRAME_SIZE: u32 = 64 * 1024;
/// Smallest allowed MAX_FRAME_SIZE: 16 KiB.
pub const MIN_MAX_FRAME_SIZE: u32 = 16 * 1024;
/// Largest allowed MAX_FRAME_SIZE: 16 MiB.
pub const MAX_MAX_FRAME_SIZE: u32 = 16 * 1024 * 1024;
/// Protocol default of MAX_METADATA_SIZE: 64 KiB.
pub const DEFAULT_MAX_METADATA_SIZE: u32 = 64 * 1024;
/// Protocol default of MAX_CONCURRENT_STREAMS: 1024.
pub const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 1024;

/// Configuration of one [`Session`](super::Session).
///
/// The windows, sizes and stream limit are advertised to the peer in SETTINGS and bound what
/// it may send us; protocol.md §8.1 derives the memory a link can hold from them.
#[derive(Debug, Clone)]
pub struct Config {
    /// Credit we give every stream the peer sends on (our receive window per stream).
    pub stream_window: u32,
    /// Largest receive window a stream grows to when its reader keeps up with a sender that
    /// the window limits (protocol.md §5.5); at most the link window is useful.
    pub max_stream_window: u32,
    /// Credit we give the whole link (our receive window for all streams together).
    pub link_window: u32,
    /// Largest frame payload we accept; clamped to 16 KiB..=16 MiB.
    pub max_frame_size: u32,
    /// Largest OPEN or REPLY payload we accept.
    pub max_metadata_size: u32,
    /// Streams the peer may have open towards us at once, counted until this side removed
    /// them (a stream the application has not accepted yet counts too).
    pub max_concurrent_streams: u32,
    /// Whether the peer may open streams at all. When `false`, SETTINGS advertises
    /// MAX_CONCURRENT_STREAMS 0 and any OPEN from the peer is a PROTOCOL_ERROR that closes
    /// the link (protocol.md §2.1). The edge's tunnel links set it: only the edge opens
    /// streams there.
    pub peer_opens_streams: bool,
    /// Bytes [`Session::write`](super::Session::write) buffers per stream before it pushes back.
    pub stream_send_buffer: usize,
    /// Send a keepalive PING after this long without one; `None` disables keepalives.
    pub ping_interval: Option<Duration>,
    /// Close the link when nothing was received for this long.
    pub idle_timeout: Duration,
    /// How long phase 1 of a drain waits for the PING ACK before sending the final GOAWAY.
    pub drain_ping_timeout: Duration,
    /// Control frames caused by the peer (PING ACKs, refusals) that may wait for
    /// transmission before the peer is told to calm down.
    pub max_pending_control: usize,
    /// Empty DATA frames without FIN in a row that are tolerated.
    pub max_empty_data: u32,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            stream_window: DEFAULT_STREAM_WINDOW,
            max_stream_window: DEFAULT_MAX_STREAM_WINDOW,
            link_window: DEFAULT_LINK_WINDOW,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            max_metadata_size: DEFAULT_MAX_METADATA_SIZE,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            peer_opens_streams: true,
            stream_send_buffer: 256 * 1024,
            ping_interval: Some(Duration::from_secs(15)),
            idle_timeout: Duration::from_secs(60),
            drain_ping_timeout: Duration::from_secs(5),
            max_pending_control: 1024,
            max_empty_data: 256,
        }
    }
}
