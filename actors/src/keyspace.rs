//! The Store's map of keys to values, split into copy-on-write shards.
//!
//! A snapshot of the whole data set (for compaction and for a replica's full resync) must be
//! taken without pausing clients and without a second copy of the data. The keyspace is split
//! into [`SHARDS`] hash maps, each behind an `Arc`: a [`Snapshot`] clones the `Arc`s only, which
//! costs microseconds however large the data set. Afterwards, the first write to a shard the
//! snapshot still shares copies that one shard (its table, not the keys and values, which are
//! reference-counted `Bytes`), so the cost of a snapshot is spread over the writes that follow it
//! and bounded by one copy of the tables.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::Bytes;
use foldhash::fast::RandomState;

/// How many shards the keyspace is split into. A power of two, so a shard is picked with a
/// shift; large enough that copying one shard stays cheap at millions of keys, small enough
/// that an empty keyspace costs a few kilobytes.
pub const SHARDS: usize = 256;
const SHARD_BITS: u32 = SHARDS.trailing_zeros();

type Shard = HashMap<Bytes, Bytes, RandomState>;

/// The live key-value data of a node.
#[derive(Clone)]
pub struct Keyspace {
    shards: Vec<Arc<Shard>>,
    hasher: RandomState,
    len: usize,
}

/// A frozen, consistent view of a [`Keyspace`], cheap to take and to send to another thread.
#[derive(Clone)]
pub struct Snapshot {
    shards: Vec<Arc<Shard>>,
    len: usize,
}

impl Keyspace {
    /// An empty keyspace.
    pub fn new() -> Self {
        let hasher = RandomState::default();
        Keyspace {
            shards: (0..SHARDS)
                .map(|_| Arc::new(Shard::with_hasher(hasher.clone())))
                .collect(),
            hasher,
            len: 0,
        }
    }

    fn shard_of(&self, key: &[u8]) -> usize {
        // The top bits pick the shard; the map inside uses the whole hash.
        (self.hasher.hash_one(key) >> (u64::BITS - SHARD_BITS)) as usize
    }

    /// The value of `key`, if it exists.
    pub fn get(&self, key: &[u8]) -> Option<&Bytes> {
        self.shards[self.shard_of(key)].get(key)
    }

    /// Set `key` to `value`; answers the previous value.
    pub fn insert(&mut self, key: Bytes, value: Bytes) -> Option<Bytes> {
        let shard = self.shard_of(&key);
        let previous = Arc::make_mut(&mut self.shards[shard]).insert(key, value);
        if previous.is_none() {
            self.len += 1;
        }
        previous
    }

    /// Remove `key`; answers the key and value it held.
    pub fn remove(&mut self, key: &[u8]) -> Option<(Bytes, Bytes)> {
        let shard = self.shard_of(key);
        if !self.shards[shard].contains_key(key) {
            // Do not copy a shared shard just to find nothing in it.
            return None;
        }
        let removed = Arc::make_mut(&mut self.shards[shard]).remove_entry(key);
        self.len -= usize::from(removed.is_some());
        removed
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A consistent view of the data as it is now, taken in O(shards).
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            shards: self.shards.clone(),
            len: self.len,
        }
    }
}

impl Default for Keyspace {
    fn default() -> Self {
        Self::new()
    }
}

impl FromIterator<(Bytes, Bytes)> for Keyspace {
    fn from_iter<I: IntoIterator<Item = (Bytes, Bytes)>>(pairs: I) -> Self {
        let mut keyspace = Keyspace::new();
        for (key, value) in pairs {
            keyspace.insert(key, value);
        }
        keyspace
    }
}

impl Snapshot {
    /// How many keys the snapshot holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every key and value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Bytes, &Bytes)> {
        self.shards.iter().flat_map(|shard| shard.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn behaves_as_a_map() {
        let mut keys = Keyspace::new();
        assert_eq!(keys.insert(b("a"), b("1")), None);
        assert_eq!(keys.insert(b("a"), b("2")), Some(b("1")));
        assert_eq!(keys.get(b"a"), Some(&b("2")));
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.remove(b"a"), Some((b("a"), b("2"))));
        assert_eq!(keys.remove(b"a"), None);
        assert!(keys.is_empty());
    }

    #[test]
    fn a_snapshot_does_not_see_later_writes() {
        let mut keys: Keyspace = (0..1000).map(|i| (b(&format!("k{i}")), b("old"))).collect();
        let snapshot = keys.snapshot();
        for i in 0..1000 {
            if i % 2 == 0 {
                keys.insert(b(&format!("k{i}")), b("new"));
            } else {
                keys.remove(format!("k{i}").as_bytes());
            }
        }
        keys.insert(b("extra"), b("x"));
        assert_eq!(snapshot.len(), 1000);
        assert_eq!(snapshot.iter().count(), 1000);
        assert!(snapshot.iter().all(|(_, v)| v == "old"));
        assert_eq!(keys.len(), 501);
        assert_eq!(keys.get(b"k0"), Some(&b("new")));
    }
}
