//! What a primary knows of each replica: published by its Replicator on a watch channel, read
//! by `INFO` and `WAIT` without a message to the Replicator.

use crate::store::Seq;

/// Where a link is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// No link: connecting, or waiting to retry.
    Connecting,
    /// Sending the replica a full copy of the data.
    FullSync,
    /// Streaming mutations as they happen.
    Streaming,
    /// Not streaming: the replica holds data the primary's history does not continue, which
    /// the primary will not overwrite without an operator's word.
    Refused,
}

impl LinkState {
    /// The state as `INFO` shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            LinkState::Connecting => "connecting",
            LinkState::FullSync => "full_sync",
            LinkState::Streaming => "streaming",
            LinkState::Refused => "refused",
        }
    }
}

/// What the primary knows of one replica, published for `INFO` and `WAIT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaProgress {
    /// The replica's address, as configured (`--replica`).
    pub addr: String,
    /// Where the link is.
    pub state: LinkState,
    /// The replica applied every mutation up to this one...
    pub acked: Seq,
    /// ...and made every one up to this one durable.
    pub durable: Seq,
    /// How far behind the primary it is, in mutations...
    pub lag_offsets: u64,
    /// ...and in milliseconds since the oldest mutation it has not acknowledged was applied.
    pub lag_ms: u64,
    /// Why the primary refuses to stream to it (`replica_is_ahead`,
    /// `replica_has_another_history`), while it does.
    pub refused: Option<&'static str>,
    /// Offsets of the replica's own data that full resyncs replaced because this primary's
    /// history did not contain them (a deposed primary rejoining, in a failover cluster).
    pub discarded: u64,
    /// Bytes of mutations the replicator keeps for this replica (its backlog; replicators
    /// share the batches, so the node holds the largest of these, not their sum).
    pub backlog_bytes: usize,
}

impl ReplicaProgress {
    /// A replica not connected yet, of a primary whose last mutation is `last_seq`.
    pub fn connecting(addr: String, last_seq: Seq) -> Self {
        ReplicaProgress {
            addr,
            state: LinkState::Connecting,
            acked: 0,
            durable: 0,
            lag_offsets: last_seq,
            lag_ms: 0,
            refused: None,
            discarded: 0,
            backlog_bytes: 0,
        }
    }
}
