//! The replicated [`ClusterState`] as an openraft `RaftStateMachine`.
//!
//! The state lives in memory; durability comes from the Raft log plus the last snapshot,
//! which is written to `snapshot` in the node's directory (atomically) before openraft is
//! told it exists, because openraft may purge the log entries the snapshot covers. Every change
//! of the applied state is published on a tokio watch channel, which the rest of the node
//! follows.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    EntryPayload, ErrorSubject, ErrorVerb, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta,
    StorageError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::consensus::cluster_state::{ClusterState, CommandResponse, Member, NodeId};
use crate::consensus::log_store::to_storage_error;
use crate::consensus::record::{read_atomic, write_atomic_retrying, StoreError};

/// How long a snapshot write the OS refused waits before it is tried again.
const SNAPSHOT_RETRY: std::time::Duration = std::time::Duration::from_millis(100);
use crate::consensus::type_config::TypeConfig;

/// The snapshot file's name in the node's directory.
pub const SNAPSHOT_FILE: &str = "snapshot";

/// A snapshot as kept on disk and handed to openraft: metadata plus the serialized state.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredSnapshot {
    /// What the snapshot covers: last log id and membership.
    meta: SnapshotMeta<NodeId, Member>,
    /// `serde_json` of [`ClusterState`].
    data: Vec<u8>,
}

/// The state behind the lock.
struct SmInner {
    /// Where the snapshot file lives.
    dir: PathBuf,
    /// The last entry applied, which openraft asks for at start.
    last_applied: Option<LogId<NodeId>>,
    /// The last membership applied, which openraft asks for at start.
    last_membership: StoredMembership<NodeId, Member>,
    /// The applied state.
    state: ClusterState,
    /// Where every change of `state` is published.
    published: watch::Sender<ClusterState>,
    /// The last snapshot, as on disk.
    snapshot: Option<StoredSnapshot>,
    /// Makes snapshot ids unique within this process's lifetime.
    snapshot_seq: u64,
}

/// The cluster-state machine of one node. Clones share state; one clone is the snapshot
/// builder, another is kept by the application to read the state.
#[derive(Clone)]
pub struct StateMachineStore {
    inner: Arc<Mutex<SmInner>>,
}

impl StateMachineStore {
    /// Opens the state machine in `dir`, restoring the last persisted snapshot if any.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        std::fs::create_dir_all(&dir)
            .map_err(|e| StoreError::io(format!("create {}", dir.display()), e))?;
        let snapshot: Option<StoredSnapshot> = read_atomic(&dir, SNAPSHOT_FILE)?;
        let mut inner = SmInner {
            dir,
            last_applied: None,
            last_membership: StoredMembership::default(),
            state: ClusterState::default(),
            published: watch::Sender::new(ClusterState::default()),
            snapshot: None,
            snapshot_seq: 0,
        };
        if let Some(snap) = snapshot {
            inner.restore(&snap)?;
            inner.snapshot = Some(snap);
        }
        Ok(StateMachineStore {
            inner: Arc::new(Mutex::new(inner)),
        })
    }

    /// The applied cluster state, as it changes (what this node has applied, not necessarily
    /// what the leader has committed: use `Raft::ensure_linearizable` first for a fresh read).
    pub fn subscribe(&self) -> Result<watch::Receiver<ClusterState>, StoreError> {
        Ok(self.lock()?.published.subscribe())
    }

    /// Locks the state; a poisoned lock is an error for openraft, not a panic here.
    fn lock(&self) -> Result<std::sync::MutexGuard<'_, SmInner>, StoreError> {
        self.inner.lock().map_err(|_| StoreError::Poisoned)
    }
}

impl SmInner {
    /// Replaces the whole state with a snapshot's content; leaves `self` untouched on error.
    fn restore(&mut self, snap: &StoredSnapshot) -> Result<(), StoreError> {
        self.state = serde_json::from_slice(&snap.data).map_err(|source| StoreError::Json {
            what: "snapshot data".into(),
            source,
        })?;
        self.last_applied = snap.meta.last_log_id;
        self.last_membership = snap.meta.last_membership.clone();
        self.publish();
        Ok(())
    }

    /// Tells the watchers about the state, if it changed.
    fn publish(&self) {
        self.published.send_if_modified(|seen| {
            let changed = *seen != self.state;
            if changed {
                seen.clone_from(&self.state);
            }
            changed
        });
    }
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachineStore {
    /// Serializes the state and persists it before returning, so the covered log prefix may
    /// be purged safely.
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let err = |e| to_storage_error(e, ErrorSubject::Snapshot(None), ErrorVerb::Write);
        let inner = self.inner.clone();
        let snap = tokio::task::spawn_blocking(move || -> Result<StoredSnapshot, StoreError> {
            let mut s = inner.lock().map_err(|_| StoreError::Poisoned)?;
            let data = serde_json::to_vec(&s.state).map_err(|source| StoreError::Json {
                what: "snapshot data".into(),
                source,
            })?;
            s.snapshot_seq += 1;
            let last = s.last_applied.map_or("none".to_string(), |l| {
                format!("{}-{}", l.leader_id, l.index)
            });
            let meta = SnapshotMeta {
                last_log_id: s.last_applied,
                last_membership: s.last_membership.clone(),
                snapshot_id: format!("{last}-{}", s.snapshot_seq),
            };
            let snap = StoredSnapshot { meta, data };
            write_atomic_retrying(&s.dir, SNAPSHOT_FILE, &snap, SNAPSHOT_RETRY)?;
            s.snapshot = Some(snap.clone());
            Ok(snap)
        })
        .await
        .map_err(|e| err(StoreError::Join(e.to_string())))?
        .map_err(err)?;
        Ok(Snapshot {
            meta: snap.meta,
            snapshot: Box::new(Cursor::new(snap.data)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    /// A clone shares the state, so the snapshot is of what was applied.
    type SnapshotBuilder = StateMachineStore;

    /// What was applied, restored from the snapshot at open, for openraft's start-up.
    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, Member>), StorageError<NodeId>>
    {
        let s = self
            .lock()
            .map_err(|e| to_storage_error(e, ErrorSubject::StateMachine, ErrorVerb::Read))?;
        Ok((s.last_applied, s.last_membership.clone()))
    }

    /// Applies committed entries in order, then publishes the new state to the watchers.
    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResponse>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = openraft::Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut s = self
            .lock()
            .map_err(|e| to_storage_error(e, ErrorSubject::StateMachine, ErrorVerb::Write))?;
        let mut out = Vec::new();
        for entry in entries {
            s.last_applied = Some(entry.log_id);
            let resp = match &entry.payload {
                EntryPayload::Blank => CommandResponse::None,
                EntryPayload::Normal(cmd) => s.state.apply(cmd, entry.log_id.leader_id.term),
                EntryPayload::Membership(m) => {
                    s.state.members = m.nodes().map(|(id, n)| (*id, n.clone())).collect();
                    s.last_membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    CommandResponse::None
                }
            };
            out.push(resp);
        }
        s.publish();
        Ok(out)
    }

    /// A clone of this store (shared state).
    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    /// An empty buffer: snapshots are small and arrive whole in memory.
    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    /// Persists the received snapshot first, then switches the in-memory state to it.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, Member>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let sig = Some(meta.signature());
        let snap = StoredSnapshot {
            meta: meta.clone(),
            data: snapshot.into_inner(),
        };
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || -> Result<(), StoreError> {
            let mut s = inner.lock().map_err(|_| StoreError::Poisoned)?;
            // Decode before writing, so a bad snapshot never replaces a good one on disk.
            serde_json::from_slice::<ClusterState>(&snap.data).map_err(|source| {
                StoreError::Json {
                    what: "received snapshot".into(),
                    source,
                }
            })?;
            write_atomic_retrying(&s.dir, SNAPSHOT_FILE, &snap, SNAPSHOT_RETRY)?;
            s.restore(&snap)?;
            s.snapshot = Some(snap);
            Ok(())
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))
        .and_then(|r| r)
        .map_err(|e| to_storage_error(e, ErrorSubject::Snapshot(sig), ErrorVerb::Write))
    }

    /// The last snapshot built or installed, for a follower too far behind for the log.
    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let s = self
            .lock()
            .map_err(|e| to_storage_error(e, ErrorSubject::Snapshot(None), ErrorVerb::Read))?;
        Ok(s.snapshot.as_ref().map(|snap| Snapshot {
            meta: snap.meta.clone(),
            snapshot: Box::new(Cursor::new(snap.data.clone())),
        }))
    }
}
