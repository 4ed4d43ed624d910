//! The Store's map of keys to values, split into copy-on-write shards.
//!
//! A snapshot of the whole data set (for compaction and for a replica's full resync) must be
//! taken without pausing clients and without a second copy of the data. The keyspace is split
//! into [`SHARDS`] hash maps, each behind an `Arc`: a [`Snapshot`] clones the `Arc`s only, which
//! costs microseconds however large the data set. Afterwards, the first write to a shard the
//! snapshot still shares copies that one shard (its table, not the keys and values, which are
//! reference-counted [`Pair`]s), so the cost of a snapshot is spread over the writes that follow
//! it and bounded by one copy of the tables.
//!
//! A shard is a set of pairs looked up by key: a table slot is one 16-byte pointer to the
//! pair's single allocation, which keeps the memory per key close to its payload.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use foldhash::fast::RandomState;

use crate::store::expiry::{Expiries, Millis};
use crate::store::pair::Pair;

/// How many shards the keyspace is split into. A power of two, so a shard is picked with a
/// shift; large enough that copying one shard stays cheap at millions of keys, small enough
/// that an empty keyspace costs a few kilobytes.
pub const SHARDS: usize = 256;
/// From this many keys on, [`Keyspace::drop_in_background`] frees them on another thread.
const BACKGROUND_DROP_KEYS: usize = 100_000;

/// Where in a key's hash the shard number is taken from: clear of the bits a shard's table
/// uses (the low bits for tables up to 2^32 buckets, and the top 7).
const SHARD_SHIFT: u32 = 32;

type Shard = HashSet<Slot, RandomState>;

/// A pair as a shard holds it: hashed, compared and borrowed as its key alone, so the set is a
/// map from keys to pairs that a plain `&[u8]` looks up.
#[derive(Clone)]
struct Slot(Pair);

impl Hash for Slot {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Exactly as the borrowed `[u8]` key hashes.
        self.0.key().hash(state);
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Slot) -> bool {
        self.0.key() == other.0.key()
    }
}

impl Eq for Slot {}

impl Borrow<[u8]> for Slot {
    fn borrow(&self) -> &[u8] {
        self.0.key()
    }
}

/// The live key-value data of a node.
#[derive(Clone)]
pub struct Keyspace {
    /// The [`SHARDS`] tables. One that a [`Snapshot`] still shares is copied by the first write
    /// to it (`Arc::make_mut`), so the snapshot never sees the change.
    shards: Vec<Arc<Shard>>,
    /// Hashes a key to pick its shard; each shard's table hashes with a clone of it.
    hasher: RandomState,
    /// How many keys the shards hold together, kept so that asking costs nothing.
    len: usize,
    /// The keys that have a deadline, soonest first: kept in step by every insert and removal.
    expiries: Expiries,
}

/// A frozen, consistent view of a [`Keyspace`], cheap to take and to send to another thread.
#[derive(Clone)]
pub struct Snapshot {
    /// The keyspace's shards as they were when the snapshot was taken, shared with it until it
    /// writes to them.
    shards: Vec<Arc<Shard>>,
    /// How many keys they hold.
    len: usize,
}

impl Keyspace {
    /// An empty keyspace.
    pub fn new() -> Self {
        Self::hashed_with(RandomState::default())
    }

    /// An empty keyspace whose keys hash with `hasher`.
    fn hashed_with(hasher: RandomState) -> Self {
        Keyspace {
            shards: (0..SHARDS)
                .map(|_| Arc::new(Shard::with_hasher(hasher.clone())))
                .collect(),
            hasher,
            len: 0,
            expiries: Expiries::default(),
        }
    }

    fn shard_of(&self, key: &[u8]) -> usize {
        // Middle bits pick the shard. The table inside a shard hashes the key again with the
        // same hasher and uses the low bits to place it and the top 7 bits as its tag; were
        // the shard picked by either, every key of a shard would share them, and each lookup
        // would compare keys along a whole probe sequence (it did: half of all start-up time).
        ((self.hasher.hash_one(key) >> SHARD_SHIFT) as usize) & (SHARDS - 1)
    }

    /// The pair stored under `key`, if it exists.
    pub fn get(&self, key: &[u8]) -> Option<&Pair> {
        self.shards[self.shard_of(key)].get(key).map(|slot| &slot.0)
    }

    /// Store `pair`, replacing any pair with the same key; answers the one replaced.
    pub fn insert(&mut self, pair: Pair) -> Option<Pair> {
        let shard = self.shard_of(pair.key());
        let tracked = pair.deadline().is_some().then(|| pair.clone());
        let previous = Arc::make_mut(&mut self.shards[shard]).replace(Slot(pair));
        // The previous pair leaves the index before the new one enters it: with the same key
        // and deadline (an INCR of an expiring key) they are equal there.
        match &previous {
            Some(slot) => self.expiries.untrack(&slot.0),
            None => self.len += 1,
        }
        if let Some(pair) = tracked {
            self.expiries.track(&pair);
        }
        previous.map(|slot| slot.0)
    }

    /// Remove `key`; answers the pair it held.
    pub fn remove(&mut self, key: &[u8]) -> Option<Pair> {
        let shard = self.shard_of(key);
        if !self.shards[shard].contains(key) {
            // Do not copy a shared shard just to find nothing in it.
            return None;
        }
        let removed = Arc::make_mut(&mut self.shards[shard]).take(key)?;
        self.len -= 1;
        self.expiries.untrack(&removed.0);
        Some(removed.0)
    }

    /// The key whose deadline comes first, if it has passed at `now`: what active expiry
    /// deletes next.
    pub fn first_due(&self, now: Millis) -> Option<&Pair> {
        self.expiries.first_due(now)
    }

    /// How many keys have a deadline.
    pub fn expiring(&self) -> usize {
        self.expiries.len()
    }

    /// How many keys there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no keys at all.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empty the keyspace and answer what it held (`FLUSHALL`), in O(shards): the caller
    /// decides where the old keys are freed ([`Keyspace::drop_in_background`]). The hasher
    /// stays, so every key keeps its shard, and a `SCAN` cursor its meaning, across the flush.
    pub fn take(&mut self) -> Keyspace {
        let empty = Keyspace::hashed_with(self.hasher.clone());
        std::mem::replace(self, empty)
    }

    /// Every pair of shard `shard` (below [`SHARDS`]; past it, none), in no particular order:
    /// `SCAN` reads the keyspace a whole shard at a time.
    pub fn shard(&self, shard: usize) -> impl Iterator<Item = &Pair> {
        self.shards
            .get(shard)
            .into_iter()
            .flat_map(|shard| shard.iter().map(|slot| &slot.0))
    }

    /// How many pairs shard `shard` holds (0 past the last).
    pub fn shard_len(&self, shard: usize) -> usize {
        self.shards.get(shard).map_or(0, |shard| shard.len())
    }

    /// Every pair, shard by shard, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Pair> {
        (0..SHARDS).flat_map(|shard| self.shard(shard))
    }

    /// Drop this keyspace on a thread of its own when it is large: freeing millions of pairs
    /// takes long enough to stall every client of the thread that would otherwise do it (the
    /// Store's, which replaces its data on a full resync).
    pub fn drop_in_background(self) {
        if self.len < BACKGROUND_DROP_KEYS {
            return;
        }
        let spawned = std::thread::Builder::new()
            .name("kv-drop".into())
            .spawn(move || drop(self));
        // If no thread can be started, the keyspace was moved into the failed closure and is
        // dropped here, in place.
        drop(spawned);
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

impl FromIterator<Pair> for Keyspace {
    fn from_iter<I: IntoIterator<Item = Pair>>(pairs: I) -> Self {
        let mut keyspace = Keyspace::new();
        for pair in pairs {
            keyspace.insert(pair);
        }
        keyspace
    }
}

impl Snapshot {
    /// How many keys the snapshot holds.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the snapshot holds no keys.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every pair, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Pair> {
        self.shards
            .iter()
            .flat_map(|shard| shard.iter().map(|slot| &slot.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(key: &str, value: &str) -> Pair {
        Pair::new(key.as_bytes(), value.as_bytes())
    }

    #[test]
    fn behaves_as_a_map() {
        let mut keys = Keyspace::new();
        assert_eq!(keys.insert(p("a", "1")), None);
        assert_eq!(keys.insert(p("a", "2")), Some(p("a", "1")));
        assert_eq!(keys.get(b"a"), Some(&p("a", "2")));
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.remove(b"a"), Some(p("a", "2")));
        assert_eq!(keys.remove(b"a"), None);
        assert!(keys.is_empty());
    }

    #[test]
    fn deadlines_are_indexed_in_step_with_the_keys() {
        let mut keys = Keyspace::new();
        keys.insert(Pair::with_deadline(b"a", b"1", Some(10)));
        keys.insert(Pair::with_deadline(b"b", b"1", Some(20)));
        assert_eq!(keys.expiring(), 2);
        assert_eq!(keys.first_due(10).map(Pair::key), Some(&b"a"[..]));
        // Replacing a pair replaces its deadline; removing it forgets it.
        keys.insert(Pair::new(b"a", b"2"));
        assert_eq!(keys.first_due(15), None);
        assert_eq!(keys.first_due(20).map(Pair::key), Some(&b"b"[..]));
        keys.remove(b"b");
        assert_eq!((keys.expiring(), keys.first_due(u64::MAX)), (0, None));
        // A new value with the same deadline (an INCR, an APPEND) stays indexed.
        keys.insert(Pair::with_deadline(b"c", b"1", Some(30)));
        keys.insert(Pair::with_deadline(b"c", b"2", Some(30)));
        assert_eq!(keys.expiring(), 1);
        assert_eq!(keys.first_due(30).map(Pair::value), Some(&b"2"[..]));
    }

    #[test]
    fn a_snapshot_does_not_see_later_writes() {
        let mut keys: Keyspace = (0..1000).map(|i| p(&format!("k{i}"), "old")).collect();
        let snapshot = keys.snapshot();
        for i in 0..1000 {
            if i % 2 == 0 {
                keys.insert(p(&format!("k{i}"), "new"));
            } else {
                keys.remove(format!("k{i}").as_bytes());
            }
        }
        keys.insert(p("extra", "x"));
        assert_eq!(snapshot.len(), 1000);
        assert_eq!(snapshot.iter().count(), 1000);
        assert!(snapshot.iter().all(|pair| pair.value() == b"old"));
        assert_eq!(keys.len(), 501);
        assert_eq!(keys.get(b"k0"), Some(&p("k0", "new")));
    }
}
