//! The messages the Follower takes and answers (`follower.rs`): from the session that
//! serves a primary's stream, from `INFO` and `RESYNC`, and from the failover coordinator.

use actix::prelude::*;

use super::wire::SyncStart;
use crate::storage::record::Entry;
use crate::store::Seq;

/// A session became a primary's stream; answers where this replica stands, or the newest
/// epoch this replica has seen when the primary's is older (a deposed primary).
#[derive(Message)]
#[rtype(result = "Result<Position, u64>")]
pub struct Attach {
    /// The primary's epoch, from its opening (0 outside a failover cluster).
    pub epoch: u64,
    /// Told to close when a newer stream supersedes this one.
    pub session: Recipient<Superseded>,
    /// The primary's backlog holds every mutation after this one: the window of recent
    /// fingerprints offered in the answer starts no earlier.
    pub from: Seq,
}

/// Tells the session of a stream to close: a newer stream from the primary took over (a
/// primary reconnecting after a network cut must not wait for the old connection to time out).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Superseded;

/// Where a replica stands: the history it holds and how far.
#[derive(Debug, Clone, MessageResponse)]
pub struct Position {
    /// Identifies the attached stream in later messages.
    pub link: u64,
    /// The primary history this replica's data belongs to, if any.
    pub replication_id: Option<String>,
    /// The last mutation of that history this replica holds.
    pub offset: Seq,
    /// A hash of this replica's fingerprints of its mutations after `.0` up to `offset`, for
    /// the primary to check against its own (see `fingerprint.rs`).
    pub window: Option<(Seq, u64)>,
}

/// Part of a primary's stream, in order.
#[derive(Message)]
#[rtype(result = "Result<Ack, String>")]
pub struct Stream {
    /// The stream it belongs to; a superseded stream's parts are refused.
    pub link: u64,
    /// How the stream starts, in its first part only.
    pub start: Option<SyncStart>,
    /// The records that followed, in order.
    pub records: Vec<Entry>,
}

/// Answers what to acknowledge now on stream `link` (nothing, for a stream that has not
/// started or was superseded).
#[derive(Message)]
#[rtype(result = "Ack")]
pub struct CurrentAck {
    /// The stream asking.
    pub link: u64,
}

/// `RESYNC` on a replica: give up its data and take a full copy from the next primary
/// stream, even one whose history is behind this replica's (the operator's answer to a
/// primary that refuses to overwrite it). Ends the current stream.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Resync;

/// A new epoch began (the cluster named a primary for it): streams from older epochs are
/// refused from now on, and the one applied now, if older, ends. Answers the history this
/// node's data belongs to and how far, once any part of a stream in progress is applied.
#[derive(Debug, Message)]
#[rtype(result = "Fenced")]
pub struct Fence {
    /// The oldest epoch a stream may still come from.
    pub epoch: u64,
}

/// Where a fenced follower's data stands: the history it belongs to, the mutations it applied
/// last, and when it last heard from a primary.
#[derive(Debug, Clone, MessageResponse)]
pub struct Fenced {
    /// The primary history this node's data belongs to, if any.
    pub replication_id: Option<String>,
    /// When the last part of a primary's stream arrived (mutations, or the heartbeat an idle
    /// primary sends every second): roughly when this node last heard from a primary.
    pub last_frame: Option<std::time::Instant>,
    /// The latest mutations applied, if this follower keeps them (a failover-cluster member)
    /// and they reach exactly to `applied`: the sequence number before them, and the batches.
    pub history: Option<(Seq, Vec<std::sync::Arc<[crate::store::Mutation]>>)>,
}

/// This node stops being a primary: its data is its own history `id` up to `applied`, which is
/// what it offers the next primary (who continues it, or replaces it when it went further than
/// the new primary's history).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Rebase {
    /// The history this node wrote as a primary.
    pub id: String,
    /// The last mutation it applied.
    pub applied: Seq,
}

/// Answers the replica's replication state, for `INFO`.
#[derive(Message)]
#[rtype(result = "FollowerInfo")]
pub struct Peek;

/// A replica's replication state.
#[derive(Debug, Clone, MessageResponse)]
pub struct FollowerInfo {
    /// The primary history this replica's data belongs to.
    pub replication_id: Option<String>,
    /// Whether a primary's stream is attached.
    pub linked: bool,
}

/// A session's stream ended.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detach {
    /// The stream that ended.
    pub link: u64,
}

/// What a replica acknowledges: applied and durable offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub struct Ack {
    /// Every mutation up to this one is applied...
    pub applied: Seq,
    /// ...and every one up to this one is durable.
    pub durable: Seq,
}
