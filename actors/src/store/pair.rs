//! A key and its value, stored together in one reference-counted allocation.
//!
//! This is the unit the Store keeps, publishes and replicates. One allocation per key (not one
//! for the key, one for the value and a table slot holding two 32-byte `Bytes` handles) makes
//! the in-memory footprint of a small key close to its payload: a 16-byte pointer in the
//! table and one block of `8 + 4 + key + value` bytes (`triomphe`'s `Arc` has no weak count,
//! which `std`'s spends 8 bytes per key on; nothing here needs weak references). It is also
//! what makes the write path cheap: the Store copies a request's key and value once, out of the
//! session's read buffer (so a stored value never pins a whole network buffer), and from then
//! on the persistence writer, every replicator's backlog and a snapshot share that block by
//! reference count.

use std::fmt;
use std::mem::MaybeUninit;

use bytes::Bytes;
use triomphe::{Arc, UniqueArc};

/// Bytes before the key: its length, little-endian.
const HEADER: usize = 4;

/// One key and its value. Cloning it costs a reference-count increment.
#[derive(Clone)]
pub struct Pair(Arc<[u8]>);

impl Pair {
    /// A pair holding copies of `key` and `value`.
    ///
    /// Keys are bounded by the request line and record limits (far below 4 GiB); a longer one
    /// is a bug in the caller, not something a client can cause.
    pub fn new(key: &[u8], value: &[u8]) -> Pair {
        let key_len = u32::try_from(key.len()).expect("keys are bounded far below 4 GiB");
        let mut block =
            UniqueArc::<[MaybeUninit<u8>]>::new_uninit_slice(HEADER + key.len() + value.len());
        let (header, rest) = block.split_at_mut(HEADER);
        let (key_slots, value_slots) = rest.split_at_mut(key.len());
        for (slot, byte) in header.iter_mut().zip(key_len.to_le_bytes()) {
            slot.write(byte);
        }
        for (slot, byte) in key_slots.iter_mut().zip(key) {
            slot.write(*byte);
        }
        for (slot, byte) in value_slots.iter_mut().zip(value) {
            slot.write(*byte);
        }
        // SAFETY: the three loops above wrote every byte of the block: the header, `key.len()`
        // key bytes and `value.len()` value bytes, which is exactly its length.
        Pair(unsafe { UniqueArc::assume_init_slice(block) }.shareable())
    }

    fn key_len(&self) -> usize {
        let mut len = [0; HEADER];
        len.copy_from_slice(&self.0[..HEADER]);
        u32::from_le_bytes(len) as usize
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        &self.0[HEADER..HEADER + self.key_len()]
    }

    /// The value.
    pub fn value(&self) -> &[u8] {
        &self.0[HEADER + self.key_len()..]
    }

    /// The value as `Bytes` that share this pair's allocation: a reply to a `GET` of a large
    /// value costs no copy.
    pub fn value_bytes(&self) -> Bytes {
        Bytes::from_owner(ValueOf(self.clone()))
    }

    /// The key as `Bytes` of their own, exactly its size.
    pub fn key_bytes(&self) -> Bytes {
        Bytes::copy_from_slice(self.key())
    }
}

/// Keeps a pair alive for as long as `Bytes` made from its value exist.
struct ValueOf(Pair);

impl AsRef<[u8]> for ValueOf {
    fn as_ref(&self) -> &[u8] {
        self.0.value()
    }
}

impl PartialEq for Pair {
    fn eq(&self, other: &Pair) -> bool {
        self.0 == other.0
    }
}

impl Eq for Pair {}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pair")
            .field("key", &Bytes::copy_from_slice(self.key()))
            .field("value", &Bytes::copy_from_slice(self.value()))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_a_key_and_a_value() {
        let pair = Pair::new(b"key", b"value");
        assert_eq!(pair.key(), b"key");
        assert_eq!(pair.value(), b"value");
        assert_eq!(pair.value_bytes(), "value");
        let empty = Pair::new(b"", b"");
        assert_eq!((empty.key(), empty.value()), (&b""[..], &b""[..]));
    }

    #[test]
    fn value_bytes_outlive_the_pair() {
        let value = Pair::new(b"k", &[7; 100_000]).value_bytes();
        assert_eq!(value.len(), 100_000);
        assert!(value.iter().all(|&b| b == 7));
    }
}
