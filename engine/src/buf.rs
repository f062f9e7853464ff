//! Aligned buffers: byte buffers whose first byte sits on an [`ALIGN`]-byte
//! boundary, as direct I/O (`O_DIRECT`) wants, made without unsafe code by
//! over-allocating a vector and starting at its first aligned byte.
//!
//! Invariant: the vector is allocated once and never resized, so the
//! aligned start never moves. Where the platform cannot report an aligned
//! offset the buffer starts at 0 and is merely unaligned; writers check
//! alignment and fall back to ordinary I/O.

/// Alignment of [`AlignedBuf`]: the largest logical block size in use.
pub const ALIGN: usize = 4096;

/// A fixed-capacity byte buffer with an aligned start and a length.
#[derive(Debug)]
pub struct AlignedBuf {
    raw: Vec<u8>,
    start: usize,
    cap: usize,
    len: usize,
}

impl AlignedBuf {
    /// An empty buffer that can hold `cap` bytes.
    pub fn new(cap: usize) -> Self {
        let raw = vec![0u8; cap + ALIGN];
        let start = match raw.as_ptr().align_offset(ALIGN) {
            s if s < ALIGN => s,
            _ => 0,
        };
        AlignedBuf {
            raw,
            start,
            cap,
            len: 0,
        }
    }

    /// Bytes it can hold.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The whole capacity, to be filled by the caller, who then calls
    /// [`AlignedBuf::set_len`].
    pub fn space(&mut self) -> &mut [u8] {
        &mut self.raw[self.start..self.start + self.cap]
    }

    /// Sets how many bytes from the start are valid.
    pub fn set_len(&mut self, len: usize) {
        assert!(len <= self.cap, "AlignedBuf length beyond capacity");
        self.len = len;
    }

    /// The valid bytes.
    pub fn as_slice(&self) -> &[u8] {
        &self.raw[self.start..self.start + self.len]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_is_aligned_and_stable() {
        for cap in [1usize, 4096, 65536, 1 << 20] {
            let mut b = AlignedBuf::new(cap);
            assert_eq!(b.capacity(), cap);
            assert_eq!(b.space().as_ptr() as usize % ALIGN, 0);
            let p = b.space().as_ptr();
            b.space()[cap - 1] = 7;
            b.set_len(cap);
            assert_eq!(b.as_slice().as_ptr(), p);
            assert_eq!(b.as_slice()[cap - 1], 7);
            b.set_len(0);
            assert!(b.as_slice().is_empty());
        }
    }

    #[test]
    #[should_panic(expected = "beyond capacity")]
    fn length_beyond_capacity_panics() {
        AlignedBuf::new(16).set_len(17);
    }
}
