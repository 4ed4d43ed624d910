//! Fingerprints of the recent history, so that a replica's data is continued only where it is
//! really the primary's.
//!
//! A replica and its primary agreeing on a replication id and an offset does not prove that
//! they hold the same mutations: someone who knows the cluster secret could have streamed
//! forged records under the real id. So the replica keeps a fingerprint (XXH3) of each of its
//! last [`WINDOW`] mutations, and, when a primary asks where it stands, sends one hash over
//! those that the primary's backlog also holds. The primary computes the same over its own
//! mutations at those offsets: a difference means another history, which is refused, never
//! continued.

use std::collections::VecDeque;

use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::store::{Change, Mutation, Seq};

/// How many recent mutations a replica keeps fingerprints of.
pub const WINDOW: usize = 4096;

/// The fingerprint of one mutation: its offset, kind (its record op: a `Clear` is 4), key,
/// value and deadline.
pub fn of(mutation: &Mutation) -> u64 {
    let (kind, key, value, deadline): (u64, &[u8], &[u8], u64) = match &mutation.change {
        Change::Put(pair) => match pair.deadline() {
            None => (1, pair.key(), pair.value(), 0),
            Some(deadline) => (3, pair.key(), pair.value(), deadline),
        },
        Change::Del { key } => (2, key, &[], 0),
        Change::Clear => (4, &[], &[], 0),
    };
    let seed = mutation.seq ^ (kind << 56) ^ ((key.len() as u64) << 24) ^ deadline.rotate_left(7);
    let key_hash = xxh3_64_with_seed(key, seed);
    xxh3_64_with_seed(value, key_hash)
}

/// One hash over consecutive mutations' fingerprints, in order.
pub fn over(fingerprints: impl IntoIterator<Item = u64>) -> u64 {
    fingerprints
        .into_iter()
        .fold(0, |hash, next| xxh3_64_with_seed(&next.to_le_bytes(), hash))
}

/// A replica's fingerprints of its last [`WINDOW`] mutations, consecutive, ending at the
/// last one it applied.
#[derive(Debug, Default)]
pub struct Recent {
    /// Each mutation's offset and fingerprint, oldest first, without gaps.
    entries: VecDeque<(Seq, u64)>,
}

impl Recent {
    /// Note a mutation applied; one that does not follow the last noted starts over.
    pub fn push(&mut self, mutation: &Mutation) {
        if self
            .entries
            .back()
            .is_some_and(|(seq, _)| seq + 1 != mutation.seq)
        {
            self.entries.clear();
        }
        self.entries.push_back((mutation.seq, of(mutation)));
        if self.entries.len() > WINDOW {
            self.entries.pop_front();
        }
    }

    /// Forget everything (the data was replaced, or may not match what was noted).
    pub fn clear(&mut self) {
        self.entries.clear();
    }

    /// The window to offer a primary whose backlog holds what comes after `from`, for data
    /// up to `applied`: `(start, hash)` over the mutations after `start` up to `applied`, or
    /// `None` when nothing in common can be checked.
    pub fn window(&self, from: Seq, applied: Seq) -> Option<(Seq, u64)> {
        if self.entries.back().map(|(seq, _)| *seq) != Some(applied) {
            return None;
        }
        let first = self.entries.front().map(|(seq, _)| *seq)?;
        let start = from.max(first - 1);
        if start >= applied {
            return None;
        }
        let hash = over(
            self.entries
                .iter()
                .filter(|(seq, _)| *seq > start)
                .map(|(_, fingerprint)| *fingerprint),
        );
        Some((start, hash))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(seq: Seq, value: &str) -> Mutation {
        Mutation {
            more: false,
            seq,
            change: Change::put(b"k", value.as_bytes()),
        }
    }

    #[test]
    fn a_window_covers_what_both_sides_hold_and_tells_histories_apart() {
        let mut recent = Recent::default();
        for seq in 1..=10 {
            recent.push(&put(seq, "v"));
        }
        let (start, hash) = recent.window(6, 10).unwrap();
        assert_eq!(start, 6);
        let primary: Vec<u64> = (7..=10).map(|seq| of(&put(seq, "v"))).collect();
        assert_eq!(hash, over(primary));
        let forged: Vec<u64> = (7..=10)
            .map(|seq| of(&put(seq, if seq == 8 { "x" } else { "v" })))
            .collect();
        assert_ne!(hash, over(forged));
        assert_eq!(recent.window(10, 10), None, "nothing in common");
        assert_eq!(recent.window(0, 11), None, "not up to what it applied");
        assert_eq!(recent.window(0, 10).unwrap().0, 0, "from its first");
        recent.push(&put(20, "v"));
        assert_eq!(recent.window(0, 20), Some((19, over([of(&put(20, "v"))]))));
    }
}
