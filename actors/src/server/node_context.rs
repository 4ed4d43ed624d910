//! What every session of a node shares about the node: its role, its replication wiring, its
//! counters. Built once by the node assembly (`src/node.rs`) and handed to each session in its
//! `SessionConfig`.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::watch;

use crate::replication::auth::ClusterSecret;
use crate::replication::follower::Follower;
use crate::replication::progress::ReplicaProgress;
use crate::replication::wait;
use crate::store::Seq;

/// Facts about the node that every session can report.
#[derive(Debug, Clone, Default)]
pub struct NodeContext {
    /// `primary` or `replica`.
    pub role: &'static str,
    /// A primary's replication id.
    pub replication_id: Arc<str>,
    /// A primary's replicas, one progress channel each.
    pub replicas: Vec<watch::Receiver<ReplicaProgress>>,
    /// A replica's follower, which accepts the primary's stream.
    pub follower: Option<Addr<Follower>>,
    /// Open client connections, kept by the Listener.
    pub clients: Arc<AtomicUsize>,
    /// The secret a primary must prove it knows in a replication handshake (and this node
    /// proves it knows), when set.
    pub cluster_secret: Option<ClusterSecret>,
    /// A replication link silent for this long is closed.
    pub replication_timeout: Duration,
    /// A primary that opened a replication stream must prove itself within this long.
    pub handshake_timeout: Duration,
    /// Turns true when the node starts shutting down, which ends every `WAIT`.
    pub stopping: Option<watch::Receiver<bool>>,
    /// Clients blocked in `WAIT` right now.
    pub blocked: Arc<AtomicUsize>,
    /// Held while a `DIGEST` runs: one at a time per node, however many clients ask, so they
    /// cannot start a hashing thread and a snapshot each.
    pub digest_turn: Arc<tokio::sync::Mutex<()>>,
}

impl NodeContext {
    /// How many connected replicas have acknowledged everything up to `seq`.
    pub fn replicas_at(&self, seq: Seq) -> usize {
        wait::acknowledged(&self.replicas, seq)
    }

    /// `WAIT`: until `wanted` replicas acknowledged `seq`, or `timeout` passes (none: forever),
    /// or the node shuts down; answers how many did.
    pub async fn wait_for_replicas(
        &self,
        seq: Seq,
        wanted: usize,
        timeout: Option<Duration>,
    ) -> usize {
        let stopping = self.stopping.clone();
        wait::wait_for(
            &self.replicas,
            seq,
            wanted,
            timeout,
            stopping,
            &self.blocked,
        )
        .await
    }
}
