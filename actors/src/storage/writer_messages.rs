//! What the persistence writer is told and asked: its configuration, and the messages other
//! actors send it (the Store's `Applied` is the Store's own). The actor is in `writer.rs`.

use actix::prelude::*;

use crate::storage::durability::FsyncPolicy;
use crate::store::keyspace::Snapshot;
use crate::store::Seq;

/// How the writer persists.
#[derive(Debug, Clone, Copy)]
pub struct WriterConfig {
    /// When the log is forced to disk (`--fsync`), and so when a write counts as durable.
    pub fsync: FsyncPolicy,
    /// Compact once the logs hold at least this many bytes...
    pub compact_min_bytes: u64,
    /// ...and at least this many times the size of the last snapshot.
    pub compact_ratio: u64,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            fsync: FsyncPolicy::EverySec,
            compact_min_bytes: 64 * 1024 * 1024,
            compact_ratio: 2,
        }
    }
}

/// Write everything received so far and fsync it; answers the last durable sequence number.
/// Used at shutdown and by tests.
#[derive(Debug, Message)]
#[rtype(result = "Result<Seq, String>")]
pub struct SyncNow;

/// Answers the writer's file sizes, for tests, benchmarks and `INFO`.
#[derive(Debug, Message)]
#[rtype(result = "WriterStats")]
pub struct GetWriterStats;

/// The sizes of the files the writer manages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub struct WriterStats {
    /// Bytes in the logs since the last snapshot.
    pub log_bytes: u64,
    /// Bytes of the last snapshot.
    pub snapshot_bytes: u64,
    /// How many compactions have finished since start-up.
    pub compactions: u64,
}

/// Replace everything on disk with `data` as of `seq`, history `replication_id`: a replica's
/// full resync. Until it succeeds, the directory says `resyncing`, so a crash part way leads
/// to another full resync, never to a partial one on mixed data.
#[derive(Message)]
#[rtype(result = "Result<(), String>")]
pub struct Reset {
    /// The data the primary sent, written as the directory's one snapshot.
    pub data: Snapshot,
    /// The last mutation `data` includes: the new log starts at `seq + 1`.
    pub seq: Seq,
    /// The primary's history, recorded as the one followed once the data is on disk.
    pub replication_id: String,
}

/// Record which history the data belongs to (the `REPLICATION` file), in order with the
/// writer's other work on it (a full resync's `Reset` writes it too): a replica's stream now
/// continues under a new id (its primary crashed, or another was elected), or a member of a
/// failover cluster was elected and starts a history of its own. A failure is also reported
/// as the writer's failure: the directory would name a history its data is not.
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct Follow(pub crate::replication::replication_id::ReplicationState);
