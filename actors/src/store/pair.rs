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
//!
//! A key with a time to live keeps its deadline in the same block, between the header and the
//! key, flagged by the header's top bit: a key without one pays nothing for expiry existing.

use std::fmt;
use std::mem::MaybeUninit;

use bytes::Bytes;
use triomphe::{Arc, UniqueArc};

/// Bytes before the key (or its deadline): its length, little-endian, with [`HAS_DEADLINE`].
const HEADER: usize = 4;
/// Set in the header when a deadline follows it. Keys are bounded far below 2 GiB, so the
/// length never reaches this bit.
const HAS_DEADLINE: u32 = 1 << 31;
/// Bytes of a deadline: milliseconds since the Unix epoch, little-endian.
const DEADLINE: usize = 8;

/// One key and its value. Cloning it costs a reference-count increment.
#[derive(Clone)]
pub struct Pair(Arc<[u8]>);

impl Pair {
    /// A pair holding copies of `key` and `value`.
    ///
    /// Keys are bounded by the request line and record limits (far below 4 GiB); a longer one
    /// is a bug in the caller, not something a client can cause.
    pub fn new(key: &[u8], value: &[u8]) -> Pair {
        Pair::with_deadline(key, value, None)
    }

    /// A pair holding copies of `key` and `value` that expires at `deadline` (milliseconds
    /// since the Unix epoch), or never for `None`.
    pub fn with_deadline(key: &[u8], value: &[u8], deadline: Option<u64>) -> Pair {
        let key_len = u32::try_from(key.len())
            .ok()
            .filter(|len| len & HAS_DEADLINE == 0)
            .expect("keys are bounded far below 2 GiB");
        let header = match deadline {
            Some(_) => key_len | HAS_DEADLINE,
            None => key_len,
        };
        let deadline_bytes = deadline.map(u64::to_le_bytes);
        let deadline_bytes: &[u8] = deadline_bytes.as_ref().map_or(&[], |b| &b[..]);
        let parts = [&header.to_le_bytes()[..], deadline_bytes, key, value];
        let mut block = UniqueArc::<[MaybeUninit<u8>]>::new_uninit_slice(
            parts.iter().map(|part| part.len()).sum(),
        );
        let mut rest = &mut block[..];
        for part in parts {
            let (slots, after) = rest.split_at_mut(part.len());
            for (slot, byte) in slots.iter_mut().zip(part) {
                slot.write(*byte);
            }
            rest = after;
        }
        // SAFETY: the loops above wrote every byte of the block: its length is the sum of the
        // parts' lengths, and each part filled the next `part.len()` slots.
        Pair(unsafe { UniqueArc::assume_init_slice(block) }.shareable())
    }

    /// The same key and value with another deadline (`None`: never expires): a new block,
    /// since a pair is shared and never changes.
    pub fn expiring_at(&self, deadline: Option<u64>) -> Pair {
        Pair::with_deadline(self.key(), self.value(), deadline)
    }

    fn header(&self) -> u32 {
        let mut header = [0; HEADER];
        header.copy_from_slice(&self.0[..HEADER]);
        u32::from_le_bytes(header)
    }

    fn key_len(&self) -> usize {
        (self.header() & !HAS_DEADLINE) as usize
    }

    /// Where the key starts: after the header and the deadline, if there is one.
    fn key_start(&self) -> usize {
        match self.header() & HAS_DEADLINE {
            0 => HEADER,
            _ => HEADER + DEADLINE,
        }
    }

    /// When the key expires, in milliseconds since the Unix epoch; `None`: never.
    pub fn deadline(&self) -> Option<u64> {
        (self.header() & HAS_DEADLINE != 0).then(|| {
            let mut deadline = [0; DEADLINE];
            deadline.copy_from_slice(&self.0[HEADER..HEADER + DEADLINE]);
            u64::from_le_bytes(deadline)
        })
    }

    /// Whether the key's deadline has passed at `now` (milliseconds since the Unix epoch). As
    /// in Redis, a key is gone from its deadline on: at `now == deadline` it has expired.
    pub fn expired_at(&self, now: u64) -> bool {
        self.deadline().is_some_and(|deadline| deadline <= now)
    }

    /// The key.
    pub fn key(&self) -> &[u8] {
        let start = self.key_start();
        &self.0[start..start + self.key_len()]
    }

    /// The value.
    pub fn value(&self) -> &[u8] {
        &self.0[self.key_start() + self.key_len()..]
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
            .field("deadline", &self.deadline())
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
    fn a_deadline_travels_with_the_pair_and_costs_nothing_without() {
        let plain = Pair::new(b"key", b"value");
        assert_eq!(plain.deadline(), None);
        assert!(!plain.expired_at(u64::MAX));
        let expiring = plain.expiring_at(Some(1_000));
        assert_eq!(expiring.key(), b"key");
        assert_eq!(expiring.value(), b"value");
        assert_eq!(expiring.deadline(), Some(1_000));
        assert!(!expiring.expired_at(999));
        assert!(expiring.expired_at(1_000));
        assert_ne!(expiring, plain);
        assert_eq!(expiring.expiring_at(None), plain);
        assert_eq!(Pair::with_deadline(b"", b"", Some(0)).key(), b"");
    }

    #[test]
    fn value_bytes_outlive_the_pair() {
        let value = Pair::new(b"k", &[7; 100_000]).value_bytes();
        assert_eq!(value.len(), 100_000);
        assert!(value.iter().all(|&b| b == 7));
    }
}
