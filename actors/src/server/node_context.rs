//! What every session of a node shares about the node: its role, its replication wiring, its
//! counters. Built once by the node assembly (`src/node.rs`) and handed to each session in its
//! `SessionConfig`.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::watch;

use super::client_registry::ClientRegistry;
use crate::auth::accounts::Accounts;
use crate::cluster::view::ClusterView;
use crate::protocol::error::ErrorReply;
use crate::replication::auth::ClusterSecret;
use crate::replication::follower::Follower;
use crate::replication::node_position::NodePosition;
use crate::replication::progress::ReplicaProgress;
use crate::replication::wait;
use crate::store::Seq;
use crate::tls::TlsContext;

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
    /// In a failover cluster, the node's changing role (primary or replica, its epoch, its
    /// replicas); `None` for a node whose role is fixed at start.
    pub cluster: Option<ClusterView>,
    /// `--min-replicas-to-write`: a write is acknowledged (and a read that could show it
    /// answered) only once this many replicas have made it durable.
    pub min_replicas_to_write: usize,
    /// How long a reply waits for those replicas before it answers `NOREPLICAS`.
    pub min_replicas_timeout: Duration,
    /// The name `SENTINEL` commands answer to (`--sentinel-name`).
    pub sentinel_name: Arc<str>,
    /// What `CONFIG GET` answers: the node's settings under the names Redis gives them.
    pub settings: Arc<Vec<(&'static str, String)>>,
    /// The node's client connections, for `CLIENT LIST` and `CLIENT KILL`.
    pub client_registry: Arc<ClientRegistry>,
    /// The history the node's data belongs to and how far it is safe: what `LASTPOS` names and
    /// `WAITPOS` waits for.
    pub position: NodePosition,
    /// The node's users (`--requirepass`, `--users-file`), which sessions check logins and
    /// rights against; without passwords, every connection may do everything.
    pub accounts: Arc<Accounts>,
    /// The node's TLS (`--tls-cert` ...), which `TLS RELOAD` reloads and `INFO` reports;
    /// `None` for a node without TLS.
    pub tls: Option<TlsContext>,
    /// The port clients reach over TLS (`--tls-port`, or the client port when it speaks TLS
    /// only), for `INFO`.
    pub tls_port: Option<u16>,
}

impl NodeContext {
    /// How many connected replicas have acknowledged everything up to `seq`.
    pub fn replicas_at(&self, seq: Seq) -> usize {
        wait::acknowledged(&self.current_replicas(), seq)
    }

    /// The node's replicas now: fixed at start, or in a cluster, whoever this node streams
    /// to while it is the primary.
    pub fn current_replicas(&self) -> Vec<watch::Receiver<ReplicaProgress>> {
        match &self.cluster {
            Some(cluster) => cluster.replicas(),
            None => self.replicas.clone(),
        }
    }

    /// `primary` or `replica`, now.
    pub fn role_now(&self) -> &'static str {
        match &self.cluster {
            Some(cluster) if cluster.is_primary() => "primary",
            Some(_) => "replica",
            None => self.role,
        }
    }

    /// The role clients are told (`INFO`, `ROLE`, `SENTINEL`): in a failover cluster, a node
    /// is shown as the primary only while it can act as one (its lease holds), so that a
    /// deposed primary that has not heard of its successor (cut off, or its control plane
    /// stopped) never shows as a second primary.
    pub fn shown_role(&self) -> &'static str {
        match &self.cluster {
            Some(cluster)
                if cluster
                    .serving_epoch()
                    .is_some_and(|e| cluster.lease_holds_for(e)) =>
            {
                "primary"
            }
            Some(_) => "replica",
            None => self.role,
        }
    }

    /// Why a write must be refused before it is applied, if it must: on a replica, or in a
    /// cluster while this node may not act as primary.
    pub fn write_refusal(&self, read_only: bool) -> Option<ErrorReply> {
        match &self.cluster {
            Some(cluster) => cluster.write_refusal(),
            None => read_only.then_some(ErrorReply::ReadOnly),
        }
    }

    /// Whether replies to a batch that saw the Store need more than durability before they
    /// leave: replicas (`--min-replicas-to-write`) or, in a failover cluster, the lease.
    pub fn confirms(&self) -> bool {
        self.min_replicas_to_write > 0 || self.cluster.is_some()
    }

    /// In a failover cluster, the epoch this node is primary of now (what a batch accepted
    /// now runs under); `None` on a replica or outside a cluster.
    pub fn serving_epoch(&self) -> Option<u64> {
        self.cluster.as_ref().and_then(ClusterView::serving_epoch)
    }

    /// Why a read must be refused, if it must: in a failover cluster, a replica whose data
    /// has not yet joined the current epoch's history may hold writes that epoch discards.
    pub fn read_refusal(&self) -> Option<ErrorReply> {
        self.cluster.as_ref().and_then(ClusterView::read_refusal)
    }

    /// Before a reply that could show mutation `seen` leaves: wait until
    /// `--min-replicas-to-write` replicas hold it durably, then (in a failover cluster) check
    /// that this node still is the primary of `serving`, the epoch the batch was accepted
    /// under, with its lease. An error is the reply instead: the outcome of the batch's
    /// writes is then unknown to the client.
    pub async fn confirm(&self, seen: Seq, serving: Option<u64>) -> Result<(), ErrorReply> {
        let wanted = self.min_replicas_to_write;
        let primary = match &self.cluster {
            Some(_) => serving.is_some(),
            None => self.follower.is_none(),
        };
        if wanted > 0 && primary {
            let replicas = self.current_replicas();
            let have = if wait::durable(&replicas, seen) >= wanted {
                wanted
            } else {
                let timeout = Some(self.min_replicas_timeout);
                let stopping = self.stopping.clone();
                let counted = wait::wait_for(
                    wait::durable,
                    &replicas,
                    seen,
                    wanted,
                    timeout,
                    stopping,
                    &self.blocked,
                );
                counted.await
            };
            if have < wanted {
                return Err(ErrorReply::NotAcknowledged(
                    format!(
                        "{have} of the {wanted} replicas required (--min-replicas-to-write) \
                         made it durable in time"
                    )
                    .into(),
                ));
            }
        }
        self.still_serving(serving)
    }

    /// In a failover cluster, whether a batch accepted as primary of `serving` may still be
    /// answered: this node is still the primary of that epoch, and its lease holds.
    pub fn still_serving(&self, serving: Option<u64>) -> Result<(), ErrorReply> {
        match (&self.cluster, serving) {
            (Some(cluster), Some(epoch)) if !cluster.lease_holds_for(epoch) => {
                Err(ErrorReply::NotAcknowledged(
                    "this node could not confirm it is still the primary (its lease lapsed)".into(),
                ))
            }
            _ => Ok(()),
        }
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
        let replicas = self.current_replicas();
        wait::wait_for(
            wait::acknowledged,
            &replicas,
            seq,
            wanted,
            timeout,
            stopping,
            &self.blocked,
        )
        .await
    }
}
