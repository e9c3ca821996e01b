//! [`ByteQueue`]: a stream's buffered bytes, whose memory follows the byte count.
//!
//! A stream buffers what the application wrote and has not been sent yet, and what the peer
//! sent and the application has not read yet. Large pieces are kept as the `Bytes` they came
//! as (no copy: a socket read, a decoded DATA payload). Small pieces are copied into one
//! growing buffer instead: kept one by one, each would cost a queue entry, and a received
//! one would pin the whole receive buffer it was sliced from, so 65,536 one-byte pieces would
//! hold megabytes for 64 KiB of data. With the copy, a queue holds its bytes plus at most one
//! entry per [`COPY_BELOW`] bytes.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

/// Pieces shorter than this are copied together rather than queued as they are.
pub(crate) const COPY_BELOW: usize = 4096;
/// Copied pieces are gathered up to this many bytes before they become one queue entry.
const TAIL_MAX: usize = 16 * 1024;
/// First allocation of the copy buffer, so a run of tiny pieces does not reallocate often.
const TAIL_MIN_ALLOC: usize = 1024;

/// A FIFO of bytes: whole pieces, then small pieces copied together.
#[derive(Debug, Default)]
pub(crate) struct ByteQueue {
    /// Pieces in order; every one of them comes before `tail`.
    chunks: VecDeque<Bytes>,
    /// Small pieces copied together, after `chunks`.
    tail: BytesMut,
    len: usize,
}

impl ByteQueue {
    /// Appends `data` (nothing for an empty piece).
    pub(crate) fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.len += data.len();
        if data.len() < COPY_BELOW {
            if self.tail.len() + data.len() > TAIL_MAX {
                self.seal_tail();
            }
            if self.tail.capacity() == 0 {
                self.tail.reserve(data.len().max(TAIL_MIN_ALLOC));
            }
            self.tail.extend_from_slice(&data);
            return;
        }
        self.seal_tail();
        self.chunks.push_back(data);
    }

    /// Moves the copied bytes into the queue as one piece, so a larger piece can follow them.
    fn seal_tail(&mut self) {
        if !self.tail.is_empty() {
            self.chunks
                .push_back(std::mem::take(&mut self.tail).freeze());
        }
    }

    /// Takes up to `max` bytes (at least 1) from the front; `None` when empty.
    pub(crate) fn take(&mut self, max: usize) -> Option<Bytes> {
        let max = max.max(1);
        let chunk = if let Some(front) = self.chunks.front_mut() {
            if front.len() <= max {
                self.chunks.pop_front()?
            } else {
                front.split_to(max)
            }
        } else if self.tail.is_empty() {
            return None;
        } else if self.tail.len() <= max {
            // The whole buffer leaves, allocation included: an idle stream keeps none.
            std::mem::take(&mut self.tail).freeze()
        } else {
            self.tail.split_to(max).freeze()
        };
        self.len -= chunk.len();
        Some(chunk)
    }

    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Heap bytes held beyond the queued bytes themselves: queue slots and spare capacity.
    pub(crate) fn overhead(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Bytes>()
            + (self.tail.capacity() - self.tail.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_come_out_in_order_whatever_the_piece_sizes() {
        let mut q = ByteQueue::default();
        let mut expect = Vec::new();
        for (i, len) in [1usize, 10, 5000, 3, 4095, 20_000, 1, 1, 70_000, 2]
            .into_iter()
            .enumerate()
        {
            let piece: Vec<u8> = (0..len).map(|j| (i * 7 + j) as u8).collect();
            expect.extend_from_slice(&piece);
            q.push(Bytes::from(piece));
        }
        assert_eq!(q.len(), expect.len());
        let mut got = Vec::new();
        while let Some(b) = q.take(3000) {
            assert!(!b.is_empty() && b.len() <= 3000);
            got.extend_from_slice(&b);
        }
        assert_eq!(got, expect);
        assert!(q.is_empty());
        assert_eq!(q.tail.capacity(), 0, "an empty queue keeps no copy buffer");
    }

    #[test]
    fn many_tiny_pieces_cost_their_bytes_not_an_entry_each() {
        let mut q = ByteQueue::default();
        let big = Bytes::from(vec![7u8; 256 * 1024]);
        for i in 0..65_536 {
            // Slices of a large buffer, as a receive buffer or a socket read hands them out.
            q.push(big.slice(i % 1000..i % 1000 + 1));
        }
        assert_eq!(q.len(), 65_536);
        assert!(
            q.chunks.len() <= 65_536 / TAIL_MAX + 1,
            "{}",
            q.chunks.len()
        );
        assert!(q.overhead() < 16 * 1024, "{}", q.overhead());
        assert!(
            big.is_unique(),
            "the queue pins no slice of the large buffer"
        );
        let mut n = 0;
        while let Some(b) = q.take(usize::MAX) {
            assert!(b.len() <= TAIL_MAX);
            n += b.len();
        }
        assert_eq!(n, 65_536);
    }
}
