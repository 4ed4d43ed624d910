//! What a `SCAN` asks for, and what its cursor means.
//!
//! The cursor names a shard of the keyspace ([`super::keyspace::SHARDS`] of them): a `SCAN`
//! reads whole shards, from the one its cursor names, each within one turn of the Store, and
//! goes on to the next until it has looked at `COUNT` keys; it answers the shard to go on
//! from, or 0 when it read the last. A key present for the whole iteration is in some shard
//! the iteration reads whole, so it is returned, as Redis guarantees; a key added or removed
//! meanwhile may or may not be. `COUNT` is a hint, as in Redis: a call returns whole shards,
//! so with many keys one shard (about keys / 256 of them) comes back in one reply, however
//! small `COUNT` is. A key keeps its shard for the life of the node's keyspace (a `FLUSHALL`
//! included, but not a replica's full resync or a restart, which build a new one), as a Redis
//! cursor holds only within one process.

use bytes::Bytes;

/// The arguments of `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanArgs {
    /// Where to go on from: 0 to start; a cursor past the last shard answers nothing and 0.
    pub cursor: u64,
    /// Only keys that match this glob are returned (all are looked at).
    pub pattern: Option<Bytes>,
    /// Read shards until at least this many keys were looked at (at least 1).
    pub count: usize,
    /// `TYPE` named another type than `string`: no key can match, so the scan answers 0 and
    /// nothing at once.
    pub other_type: bool,
}

/// How many keys a `SCAN` without `COUNT` looks at, as in Redis.
pub const DEFAULT_COUNT: usize = 10;
