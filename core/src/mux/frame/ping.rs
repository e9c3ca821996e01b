//! PING: liveness and round-trip time (protocol.md §3.7).

/// A PING frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ping {
    /// This is the acknowledgement of a PING with the same payload.
    pub ack: bool,
    /// Opaque payload, echoed by the ACK.
    pub payload: [u8; 8],
}

/// Payload length of a PING frame.
pub const PING_LEN: usize = 8;
