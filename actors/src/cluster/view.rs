//! What every session of a failover-cluster node reads about the node's place in the cluster:
//! whether it is the primary now, for which epoch, who the primary is otherwise, its replicas,
//! and the last failover. Kept by the [`Coordinator`](super::coordinator::Coordinator), read
//! by sessions on every write batch (one uncontended read lock) and by `INFO`, `ROLE` and
//! `SENTINEL`.

use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, SystemTime};

use actix::prelude::*;

use tokio::sync::watch;

use super::switchover::Failover;
use crate::protocol::error::ErrorReply;
use crate::replication::data_epoch::DataEpoch;
use crate::replication::progress::ReplicaProgress;

/// Whether this node may still acknowledge as primary of an epoch: the consensus layer's
/// lease check (true only while a majority confirmed, within the lease, that this node leads
/// the term in which it was named primary for that epoch).
pub type LeaseCheck = Arc<dyn Fn(u64) -> bool + Send + Sync>;

/// A member of the cluster as `INFO`, `ROLE` and `SENTINEL` show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberInfo {
    /// Its position in `--peers` (1-based): its id in the consensus group.
    pub id: u64,
    /// The address clients and peers reach it by.
    pub addr: String,
    /// Whether it is the primary of the current epoch.
    pub primary: bool,
}

/// The last failover this node saw (as the node that took over, or as one that followed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailoverRecord {
    /// When the new primary was named.
    pub at: SystemTime,
    /// The epoch that began.
    pub epoch: u64,
    /// The address of the new primary.
    pub primary: String,
    /// Why: `election` (a primary was named after another), or `start` (the first primary
    /// this node saw).
    pub reason: &'static str,
    /// How long the election took as this node saw it: from the moment its view of the Raft
    /// leader changed to the new primary being named, in milliseconds. Writes were unavailable
    /// for longer: add the time it took to notice the old primary was gone, up to the
    /// failover timeout.
    pub election_ms: u64,
    /// On the member that took over: how long no primary's stream had reached it when it
    /// opened to writes (from the last part of the old primary's stream, or its heartbeat,
    /// which an idle primary sends every second): about how long writes were unavailable.
    pub unavailable_ms: Option<u64>,
    /// The offset at which the new primary's history begins.
    pub offset: u64,
}

/// This node's place in the cluster now.
#[derive(Debug, Clone, Default)]
pub struct RoleState {
    /// This node is the primary of `epoch` (and may acknowledge while its lease holds).
    pub primary: bool,
    /// The newest epoch this node knows of.
    pub epoch: u64,
    /// The primary's address, when one is named and it is not this node.
    pub primary_addr: Option<String>,
    /// This node's own address, as the cluster knows it.
    pub me: String,
    /// The members, from the consensus group's state.
    pub members: Vec<MemberInfo>,
    /// A primary's replication id (its history).
    pub replication_id: Arc<str>,
    /// A primary's replicas, one progress channel each.
    pub replicas: Vec<watch::Receiver<ReplicaProgress>>,
    /// The last failover this node saw.
    pub last_failover: Option<FailoverRecord>,
    /// A planned switchover is under way (`FAILOVER`): writes are refused until it ends.
    pub handing_over: bool,
    /// This member's control plane stopped (why): it no longer knows the cluster's state, so
    /// it serves nothing until restarted.
    pub control_down: Option<String>,
    /// Offsets of this node's own data it gave up when it rejoined as a replica (what it had
    /// written as a deposed primary that the new primary's history does not contain).
    pub discarded: u64,
}

/// The shared, changing role of a node in a failover cluster.
#[derive(Clone)]
pub struct ClusterView {
    /// Written by the Coordinator only.
    state: Arc<RwLock<RoleState>>,
    /// The consensus layer's lease check.
    lease: LeaseCheck,
    /// The Coordinator, which `FAILOVER` asks to hand over (set once it runs).
    coordinator: Arc<OnceLock<Recipient<Failover>>>,
    /// The epoch of this node's data, which a read on a replica must be of.
    data_epoch: DataEpoch,
}

impl std::fmt::Debug for ClusterView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterView")
            .field("state", &self.state())
            .finish()
    }
}

impl ClusterView {
    /// A view of a node that is not (yet) primary, reached at `me`, fenced by `lease`.
    pub fn new(me: String, lease: LeaseCheck, data_epoch: DataEpoch) -> ClusterView {
        let state = RoleState {
            me,
            ..RoleState::default()
        };
        ClusterView {
            state: Arc::new(RwLock::new(state)),
            lease,
            coordinator: Arc::default(),
            data_epoch,
        }
    }

    /// Tell the view where `FAILOVER` goes (the node assembly, once the Coordinator runs).
    pub fn set_coordinator(&self, coordinator: Recipient<Failover>) {
        let _ = self.coordinator.set(coordinator);
    }

    /// `FAILOVER [TO addr]`: ask the Coordinator to hand over within `timeout`; answers the
    /// new primary's address.
    pub async fn fail_over(&self, to: Option<String>, timeout: Duration) -> Result<String, String> {
        let coordinator = self
            .coordinator
            .get()
            .ok_or("this node's coordinator has not started")?;
        coordinator
            .send(Failover { to, timeout })
            .await
            .map_err(|_| "this node's coordinator stopped".to_string())?
    }

    /// A copy of the state now.
    pub fn state(&self) -> RoleState {
        self.state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Change the state (the Coordinator's privilege).
    pub fn update(&self, change: impl FnOnce(&mut RoleState)) {
        let mut state = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        change(&mut state);
    }

    /// Whether this node is the primary now (lease aside): a replication stream is refused.
    pub fn is_primary(&self) -> bool {
        self.read(|s| s.primary)
    }

    /// Why a write must be refused before it is applied, if it must: this node is not the
    /// primary (the error names the primary, so a client can go there), or it is but cannot
    /// confirm its lease (a new primary may be being elected).
    pub fn write_refusal(&self) -> Option<ErrorReply> {
        let (primary, epoch, addr, handing_over, down) = self.read(|s| {
            let down = s.control_down.clone();
            (
                s.primary,
                s.epoch,
                s.primary_addr.clone(),
                s.handing_over,
                down,
            )
        });
        if let Some(why) = down {
            return Some(ErrorReply::ControlPlaneDown(why.into()));
        }
        match (primary, addr) {
            (true, _) if (self.lease)(epoch) && !handing_over => None,
            (true, _) => Some(ErrorReply::NoPrimary),
            (false, Some(addr)) => Some(ErrorReply::ReadOnlyPrimaryAt(addr.into())),
            (false, None) => Some(ErrorReply::NoPrimary),
        }
    }

    /// The epoch this node is primary of now, if it is.
    pub fn serving_epoch(&self) -> Option<u64> {
        self.read(|s| s.primary.then_some(s.epoch))
    }

    /// Whether a batch accepted as primary of `epoch` may be answered: this node is still the
    /// primary of that epoch and its lease holds. Checked after a write is applied (and
    /// durable, and on the replicas asked for) and again as the reply leaves, so a primary cut
    /// off from the majority stops acknowledging before a successor can exist.
    pub fn lease_holds_for(&self, epoch: u64) -> bool {
        let (primary, current) = self.read(|s| (s.primary, s.epoch));
        primary && current == epoch && (self.lease)(epoch)
    }

    /// Why a read must be refused on this node now, if it must: it is not the primary, and its
    /// data has not joined the current epoch's history yet (a deposed primary, or a replica the
    /// new primary has not streamed to): it may hold writes that epoch discards, which a client
    /// must not see.
    pub fn read_refusal(&self) -> Option<ErrorReply> {
        let (primary, epoch, down) = self.read(|s| (s.primary, s.epoch, s.control_down.clone()));
        if let Some(why) = down {
            return Some(ErrorReply::ControlPlaneDown(why.into()));
        }
        let behind = self.data_epoch.get() < epoch || self.data_epoch.disposable();
        (!primary && behind).then_some(ErrorReply::Loading(epoch))
    }

    /// A primary's replicas now (none on a replica).
    pub fn replicas(&self) -> Vec<watch::Receiver<ReplicaProgress>> {
        self.read(|s| s.replicas.clone())
    }

    fn read<T>(&self, look: impl FnOnce(&RoleState) -> T) -> T {
        look(
            &self
                .state
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};

    fn view(lease: Arc<AtomicBool>) -> ClusterView {
        ClusterView::new(
            "127.0.0.1:1".into(),
            Arc::new(move |_| lease.load(Ordering::SeqCst)),
            DataEpoch::default(),
        )
    }

    #[test]
    fn a_replica_names_the_primary_and_refuses_writes() {
        let view = view(Arc::new(AtomicBool::new(true)));
        assert_eq!(view.write_refusal(), Some(ErrorReply::NoPrimary));
        view.update(|s| s.primary_addr = Some("127.0.0.1:2".into()));
        assert_eq!(
            view.write_refusal(),
            Some(ErrorReply::ReadOnlyPrimaryAt("127.0.0.1:2".into()))
        );
        assert!(!view.lease_holds_for(3));
    }

    #[test]
    fn a_primary_writes_only_while_its_lease_holds() {
        let lease = Arc::new(AtomicBool::new(true));
        let view = view(lease.clone());
        view.update(|s| {
            s.primary = true;
            s.epoch = 3;
        });
        assert_eq!(view.write_refusal(), None);
        assert!(view.lease_holds_for(3));
        lease.store(false, Ordering::SeqCst);
        assert_eq!(view.write_refusal(), Some(ErrorReply::NoPrimary));
        assert!(!view.lease_holds_for(3));
    }
}
