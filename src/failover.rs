//! Assembly of a failover-cluster member (`kvnode --peers ...`): the follower that takes the
//! primary's stream, the consensus control plane (Raft on the client port + 10000, as Redis
//! Cluster's bus), the view every session reads, and the Coordinator that moves the primary
//! role. The data plane (Store, writer, sessions) is the same as any node's (`node.rs`).

use std::sync::Arc;

use actix::prelude::*;
use actix_rt::Arbiter;
use kv_actors::cluster::coordinator::{
    members_by_id, Coordinator, CoordinatorParts, ReplicationSettings,
};
use kv_actors::cluster::view::ClusterView;
use kv_actors::consensus::{Consensus, ConsensusConfig, DataPosition, Member};
use kv_actors::replication::auth::ClusterSecret;
use kv_actors::replication::data_epoch::DataEpoch;
use kv_actors::replication::follower::{Fence, Follower};
use kv_actors::replication::replication_id::{self, ReplicationState};
use kv_actors::server::node_context::NodeContext;
use kv_actors::storage::data_dir::DataDir;
use kv_actors::storage::durability::Durability;
use kv_actors::storage::writer::Writer;
use kv_actors::store::{Mutation, Seq, SetWrites, Store};
use slog::{info, Logger};

use crate::config::NodeConfig;

/// Why a member's control plane could not start.
#[derive(Debug, thiserror::Error)]
pub enum FailoverError {
    #[error(transparent)]
    Storage(#[from] kv_actors::storage::data_dir::StorageError),
    #[error("cannot start the failover control plane: {0}")]
    Consensus(String),
}

/// The control plane's port is the client port plus this, on the same host.
pub const CONTROL_PORT_OFFSET: u16 = 10_000;

/// The address the control plane of the member at client address `addr` listens on.
pub fn control_addr(addr: &str) -> Option<String> {
    let (host, port) = addr.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?.checked_add(CONTROL_PORT_OFFSET)?;
    Some(format!("{host}:{port}"))
}

/// What a member is assembled from: the node's data plane, already running.
pub struct MemberParts<'a> {
    pub config: &'a NodeConfig,
    pub dir: &'a Arc<DataDir>,
    pub store: &'a Addr<Store>,
    pub writer: &'a Addr<Writer>,
    pub durability: &'a Durability,
    /// The last mutations recovery replayed (the follower offers their fingerprints).
    pub tail: &'a [Mutation],
    pub last_seq: Seq,
    /// The Store's arbiter: the follower and the Coordinator (and its replicators) run there.
    pub arbiter: &'a Arbiter,
}

/// A running member's control plane.
pub struct ControlPlane {
    consensus: Consensus,
}

impl ControlPlane {
    /// Leave the elections: a stopping node must not be elected, and its lease lapses.
    pub async fn shutdown(&self) {
        self.consensus.shutdown().await;
    }
}

/// Start the member's follower, control plane and Coordinator, and point the node's context
/// at them. The node does not take writes until the cluster names it primary.
pub async fn start_member(
    parts: MemberParts<'_>,
    context: &mut NodeContext,
    log: &Logger,
) -> Result<ControlPlane, FailoverError> {
    let config = parts.config;
    let data_epoch = DataEpoch::load(parts.dir.clone())?;
    // The history this node's data belongs to: the primary it followed, or its own as a
    // primary (a member that was primary before it stopped offers its own history).
    let state = replication_id::load(parts.dir)?;
    let discard = state == ReplicationState::Resyncing;
    let history = match state {
        ReplicationState::Following { id }
        | ReplicationState::Dirty { id, .. }
        | ReplicationState::Clean { id, .. } => Some(id),
        ReplicationState::None | ReplicationState::Resyncing => None,
    };
    let id = config
        .peers
        .iter()
        .position(|p| *p == config.advertise)
        .map(|i| i as u64 + 1)
        .ok_or_else(|| FailoverError::Consensus("this node is not in --peers".into()))?;
    info!(log, "failover cluster member"; "id" => id, "advertise" => &config.advertise,
        "epoch" => data_epoch.get(), "replication_id" => history.as_deref().unwrap_or("-"),
        "offset" => parts.last_seq, "disposable" => discard);
    let follower = Follower::new(
        parts.store.clone(),
        parts.writer.clone(),
        parts.durability.clone(),
        history,
        parts.last_seq,
        discard,
        parts.tail,
        data_epoch.clone(),
        log,
    )
    .keep_history(config.repl_backlog_bytes)
    .publish_position(context.position.clone());
    let follower = Follower::start_in_arbiter(&parts.arbiter.handle(), move |_| follower);
    // Closed to client writes until the cluster names this member primary.
    parts
        .store
        .send(SetWrites { open: false })
        .await
        .map_err(|_| FailoverError::Consensus("the store stopped during start-up".into()))?;

    // What this node holds, for the vote check: its data's epoch and durable offset (none
    // while its data is disposable: a full resync under way).
    let position = {
        let data_epoch = data_epoch.clone();
        let durability = parts.durability.clone();
        // Disposable data votes as nothing at all, not as the new epoch's offset 0: it is
        // of no history until its full resync is installed and durable.
        Arc::new(move || match data_epoch.disposable() {
            true => DataPosition::default(),
            false => DataPosition {
                epoch: data_epoch.get(),
                offset: durability.current().synced,
            },
        })
    };
    let members = members_by_id(&config.peers)
        .into_iter()
        .map(|(id, addr)| {
            let control = control_addr(&addr).unwrap_or_default();
            (id, Member { addr, control })
        })
        .collect();
    let control = control_addr(&config.advertise).ok_or_else(|| {
        FailoverError::Consensus(
            "the client port leaves no room for the control port (+10000)".into(),
        )
    })?;
    let listen_control = control_addr(&config.listen.to_string()).ok_or_else(|| {
        FailoverError::Consensus(
            "the client port leaves no room for the control port (+10000)".into(),
        )
    })?;
    let listener = tokio::net::TcpListener::bind(&listen_control)
        .await
        .map_err(|e| FailoverError::Consensus(format!("cannot listen on {listen_control}: {e}")))?;
    let consensus_config = ConsensusConfig::from_failover_timeout(config.failover_timeout)
        .with_secret(config.cluster_secret.as_deref().map(ClusterSecret::new))
        .with_tls(context.tls.clone());
    let consensus = Consensus::start(
        id,
        &parts.dir.path().join("raft"),
        consensus_config,
        members,
        position,
        log,
    )
    .await
    .map_err(|e| FailoverError::Consensus(e.to_string()))?;
    consensus.spawn_listener(listener);
    {
        // Granting a vote ends the current epoch here: its stream is refused from now on.
        let follower = follower.clone();
        let state = consensus.state();
        consensus.on_vote_granted(Box::new(move || {
            let epoch = state.borrow().epoch + 1;
            follower.do_send(Fence { epoch });
        }));
    }
    info!(log, "control plane listening"; "addr" => &control, "failover_timeout_ms" => config.failover_timeout.as_millis() as u64);

    let lease = {
        let consensus = consensus.clone();
        Arc::new(move |epoch| consensus.lease_valid(epoch))
    };
    let view = ClusterView::new(config.advertise.clone(), lease, data_epoch.clone());
    context.cluster = Some(view.clone());
    let coordinator_view = view.clone();
    context.follower = Some(follower.clone());
    let coordinator_parts = CoordinatorParts {
        consensus: consensus.clone(),
        view: coordinator_view,
        store: parts.store.clone(),
        follower,
        durability: parts.durability.clone(),
        writer: parts.writer.clone(),
        data_epoch,
        replication: ReplicationSettings {
            secret: config.cluster_secret.as_deref().map(ClusterSecret::new),
            backlog_bytes: config.repl_backlog_bytes,
            backlog_min_bytes: config.repl_backlog_min_bytes,
            full_sync_buffer_bytes: config.repl_full_sync_buffer_bytes,
            timeout: config.repl_timeout,
            tls: context.tls.clone(),
        },
        position: context.position.clone(),
    };
    let coordinator_log = log.clone();
    let coordinator = Coordinator::start_in_arbiter(&parts.arbiter.handle(), move |_| {
        Coordinator::new(coordinator_parts, &coordinator_log)
    });
    view.set_coordinator(coordinator.recipient());
    Ok(ControlPlane { consensus })
}
