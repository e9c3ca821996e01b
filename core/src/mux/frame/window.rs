//! WINDOW: returns flow-control credit (protocol.md §3.4, §5).

/// A WINDOW frame. Stream 0 is the link-level window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// The stream, or 0 for the link.
    pub stream_id: u64,
    /// Bytes of credit returned; never 0.
    pub increment: u32,
}

/// Payload length of a WINDOW frame.
pub const WINDOW_LEN: usize = 4;
