//! What a [`Replicator`](super::replicator::Replicator) is configured with, and how it is
//! stopped: one per replica of a primary.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::auth::ClusterSecret;
use super::replication_id::Previous;
use super::wire::SyncStart;
use crate::store::Seq;
use crate::tls::TlsContext;

/// How a replicator reaches its replica.
#[derive(Debug, Clone)]
pub struct ReplicatorConfig {
    /// `host:port`; the host name is resolved at every connection attempt.
    pub replica: String,
    /// The cluster secret: the replica must prove it knows it before it is sent anything, and
    /// the primary proves it in turn. Without one, the link is not authenticated.
    pub secret: Option<ClusterSecret>,
    /// The primary's replication id.
    pub replication_id: Arc<str>,
    /// The history the primary's continues, if any: a replica of it at or before its offset
    /// holds a prefix of the primary's data.
    pub previous: Option<Previous>,
    /// The most bytes of recent mutations kept for partial resyncs and slow replicas.
    pub backlog_bytes: usize,
    /// The most bytes of mutations the replica has acknowledged as durable that are kept
    /// all the same (`--repl-backlog-min-bytes`): the rest of the backlog is what it lacks.
    pub backlog_min_bytes: usize,
    /// The most bytes of mutations kept for a replica while its full resync is sent and
    /// until it catches up (at least `backlog_bytes`).
    pub full_sync_buffer_bytes: usize,
    /// A link with no acknowledgement for this long is dropped and reconnected.
    pub timeout: Duration,
    /// The primary's epoch in a failover cluster (0 for a static primary), sent in every
    /// handshake: a replica that has seen a newer epoch refuses the stream.
    pub epoch: u64,
    /// In a failover cluster the elected primary's history is the cluster's: a replica whose
    /// data it does not continue (a deposed primary's unreplicated tail) is replaced by a
    /// full resync, and the offsets it loses are counted, instead of being refused until an
    /// operator decides.
    pub authoritative: bool,
    /// The node's TLS: with it, the link is TLS (this node's certificate shown as a client
    /// certificate, the replica's checked against `--tls-ca`), the handshake above on top.
    pub tls: Option<TlsContext>,
}

impl ReplicatorConfig {
    /// The line that resumes a replica's stream after `offset` (a partial resync), naming the
    /// history this primary's continues.
    pub fn continue_at(&self, offset: Seq) -> SyncStart {
        SyncStart::Continue {
            id: self.replication_id.to_string(),
            offset,
            previous: self.previous.clone(),
        }
    }
}

/// What every replicator a failover-cluster member starts as a primary is configured with.
#[derive(Debug, Clone)]
pub struct ReplicationSettings {
    /// The cluster secret the links prove.
    pub secret: Option<ClusterSecret>,
    /// `--repl-backlog-bytes`.
    pub backlog_bytes: usize,
    /// `--repl-backlog-min-bytes`.
    pub backlog_min_bytes: usize,
    /// `--repl-full-sync-buffer-bytes`.
    pub full_sync_buffer_bytes: usize,
    /// `--repl-timeout`.
    pub timeout: Duration,
    /// The node's TLS, for every link (see [`ReplicatorConfig::tls`]).
    pub tls: Option<TlsContext>,
}

/// Stop replicating (this node is no longer the primary): the link closes with the actor.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct StopReplicating;

/// Bytes of mutations written to the socket at a time.
pub const CHUNK_BYTES: usize = 256 * 1024;
/// The backoff between connection attempts starts here and doubles up to the cap.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// The longest backoff between connection attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(5);
/// Heartbeats and timeout checks.
pub const TICK: Duration = Duration::from_secs(1);
