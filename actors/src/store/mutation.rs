//! The history types: a [`Mutation`] is one numbered [`Change`] to one key (or, for a
//! `Clear`, to all of them).
//!
//! They are what the Store publishes, what the log and snapshots record, and what a primary
//! streams to its replicas, so they live apart from the Store actor: storage and replication
//! depend on these few types, not on the actor.

use bytes::Bytes;

use super::pair::Pair;

/// A sequence number: the position of a mutation in the node's history.
///
/// The first mutation a fresh node applies is 1; 0 means "nothing applied yet". Persistence and
/// replication use it as their offset.
pub type Seq = u64;

/// One applied change, as the Store publishes it to subscribers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mutation {
    /// The sequence number the Store gave this change.
    pub seq: Seq,
    /// What changed.
    pub change: Change,
    /// Another mutation of the same atomic group follows (the mutations of one command, such
    /// as a `RENAME` or an `MSET`, or of one transaction): a log that ends, or a stream that
    /// breaks, before the group's last mutation holds none of it. See docs/storage.md.
    pub more: bool,
}

impl Mutation {
    /// A mutation that is the last (or only) one of its group.
    pub fn new(seq: Seq, change: Change) -> Mutation {
        Mutation {
            seq,
            change,
            more: false,
        }
    }
}

/// The kinds of change: one key's (`Put`, `Del`), or the whole keyspace's (`Clear`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The pair's key now holds the pair's value. It is the very pair the Store keeps, shared.
    Put(Pair),
    /// `key` no longer exists.
    Del {
        /// The key removed, in a buffer of its own exactly its size (never a slice of a
        /// request's buffer, which a subscriber holding it would pin).
        key: Bytes,
    },
    /// Every key is gone (`FLUSHDB`/`FLUSHALL`): one mutation, however many keys there were,
    /// so the log, the replication stream and a replica's work stay O(1) for it.
    Clear,
}

impl Change {
    /// A `Put` of copies of `key` and `value`.
    pub fn put(key: &[u8], value: &[u8]) -> Change {
        Change::Put(Pair::new(key, value))
    }

    /// The one key this change touches; `None` for a `Clear`, which touches every key.
    pub fn key(&self) -> Option<&[u8]> {
        match self {
            Change::Put(pair) => Some(pair.key()),
            Change::Del { key } => Some(key),
            Change::Clear => None,
        }
    }
}
