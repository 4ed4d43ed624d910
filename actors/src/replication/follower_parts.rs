//! The Follower's working state: where a replica stood when a primary attached, a full resync
//! being received, and the steps a part of the stream turns into.

use super::replication_id::Previous;
use crate::store::keyspace::Keyspace;
use crate::store::{Mutation, Seq};

/// Where a replica stood when a primary attached: what the primary's choice of resync rests on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Basis {
    /// The history the replica's data belonged to.
    pub(super) replication_id: Option<String>,
    /// How far.
    pub(super) applied: Seq,
    /// Whether its data was disposable (then any full resync is welcome).
    pub(super) discard: bool,
}

/// A full resync being received.
pub(super) struct Loading {
    /// The primary's replication id: the history the snapshot belongs to.
    pub(super) id: String,
    /// The offset the snapshot reflects.
    pub(super) seq: Seq,
    /// The keys received so far, installed whole once the end marker arrives.
    pub(super) keyspace: Keyspace,
    /// How many keys arrived, checked against the end marker's count.
    pub(super) count: u64,
    /// The history the primary's continues, and up to where.
    pub(super) previous: Option<Previous>,
}

/// One step the Store and writer must take, in order.
pub(super) enum Step {
    /// Apply these mutations through the Store (which the writer persists).
    Apply(Vec<Mutation>),
    /// Replace all the data with a received snapshot: the writer first, then the Store.
    Install {
        /// The snapshot's keys, as received.
        keyspace: Keyspace,
        /// The last mutation the snapshot includes.
        seq: Seq,
        /// The primary's replication id: the history the replica holds once it is installed.
        id: String,
        /// The history that one continues, and up to where.
        previous: Option<Previous>,
    },
}
