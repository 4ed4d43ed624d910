//! [`Consensus`]: one running control-plane node, wiring storage, state machine, RPC client
//! and server, leadership, lease and Raft together, with the operations the rest of the node
//! uses.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use openraft::error::{InitializeError, RaftError};
use slog::{info, warn, Logger};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::consensus::cluster_state::{ClusterState, Command, CommandResponse, Member, NodeId};
use crate::consensus::config::ConsensusConfig;
use crate::consensus::error::ConsensusError;
use crate::consensus::leadership::{follow, Leadership};
use crate::consensus::lease::{spawn_keeper, PrimaryLease};
use crate::consensus::log_store::FileLogStore;
use crate::consensus::network::{NetControl, TcpNetworkFactory};
use crate::consensus::position::PositionFn;
use crate::consensus::server::RpcServer;
use crate::consensus::stand_aside::StandAside;
use crate::consensus::state_machine::StateMachineStore;
use crate::consensus::type_config::Raft;

/// A running control-plane node. Cheap to clone: clones share one node.
#[derive(Clone)]
pub struct Consensus {
    /// The node's parts, shared by the clones.
    inner: Arc<Inner>,
}

/// What the clones of a [`Consensus`] share.
struct Inner {
    /// This node's id.
    id: NodeId,
    /// The openraft handle.
    raft: Raft,
    /// The applied cluster state.
    state: watch::Receiver<ClusterState>,
    /// Leadership per metrics.
    leadership: watch::Receiver<Leadership>,
    /// The fence.
    lease: Arc<PrimaryLease>,
    /// Answers incoming RPCs.
    server: RpcServer,
    /// The partition switch for tests.
    control: Arc<NetControl>,
    /// Cancelled at shutdown: stops the tasks and closes served connections.
    stop: CancellationToken,
    /// The node's logger.
    log: Logger,
    /// The longest a peer may take to answer a switchover's request (the election timeout).
    timeout: std::time::Duration,
}

impl Consensus {
    /// Opens `dir` (creating it), starts Raft as node `id` of `members` (ids are 1-based
    /// positions in the `--peers` list, identical on every node). If the directory holds no
    /// membership yet, every node initializes the cluster with the same `members` (safe in
    /// openraft; "already initialized" is tolerated). If it holds a vote, the node waits
    /// `election_max` before starting Raft: it may have acknowledged a leader's heartbeat just
    /// before it went down, and its promise not to vote within that leader's lease lived in
    /// memory only. `position` is called whenever this node must compare data positions (every
    /// vote request it sends or answers).
    ///
    /// Must be called inside a tokio runtime; a current-thread one (an actix System) will do,
    /// since openraft's tasks are spawned with `tokio::spawn`.
    pub async fn start(
        id: NodeId,
        dir: &Path,
        config: ConsensusConfig,
        members: BTreeMap<NodeId, Member>,
        position: PositionFn,
        log: &slog::Logger,
    ) -> Result<Consensus, ConsensusError> {
        let log = log.new(slog::o!("raft_id" => id));
        let raft_config = config.raft_config()?;
        let (log_store, report) = FileLogStore::open(dir, &log)?;
        let sm = StateMachineStore::open(dir)?;
        let state = sm.subscribe()?;
        info!(log, "consensus storage opened"; "dir" => %dir.display(),
            "entries" => report.entries, "truncated_bytes" => report.truncated_bytes,
            "epoch" => state.borrow().epoch);
        // Always, not only when a vote is on disk: a member whose directory was wiped (a
        // replaced disk) may also have granted a lease it no longer remembers.
        info!(log, "waiting out any leader lease this node may have granted before it stopped";
            "wait_ms" => config.election_max.as_millis(), "vote_on_disk" => report.has_vote);
        tokio::time::sleep(config.election_max).await;
        let control = Arc::new(NetControl::default());
        let stand_aside = Arc::new(StandAside::new(2 * config.election_max, log.clone()));
        let network = TcpNetworkFactory::new(
            control.clone(),
            position.clone(),
            stand_aside.clone(),
            state.clone(),
            (config.secret.clone(), config.tls.clone()),
            log.clone(),
        );
        let raft = Raft::new(id, raft_config, network, log_store, sm)
            .await
            .map_err(Box::new)?;
        stand_aside.set_raft(raft.clone());
        let stop = CancellationToken::new();
        let lease = Arc::new(PrimaryLease::new(raft.clone(), config.lease()));
        spawn_keeper(lease.clone(), config.heartbeat, stop.clone(), log.clone());
        let consensus = Consensus {
            inner: Arc::new(Inner {
                id,
                leadership: follow(&raft, stop.clone()),
                server: RpcServer {
                    raft: raft.clone(),
                    control: control.clone(),
                    position,
                    stop: stop.clone(),
                    log: log.clone(),
                    lease: lease.clone(),
                    on_vote_granted: Arc::default(),
                    secret: config.secret.clone(),
                    tls: config.tls.clone(),
                    started: std::time::Instant::now(),
                    refusal_logged: Arc::default(),
                },
                raft,
                state,
                lease,
                control,
                stop,
                log,
                timeout: config.election_max,
            }),
        };
        if let Err(e) = consensus.initialize(members).await {
            // Stop what was started, so a failed start leaves no Raft running behind it.
            consensus.shutdown().await;
            return Err(e);
        }
        Ok(consensus)
    }

    /// Forms the cluster from `members` unless this node's storage already holds a membership.
    async fn initialize(&self, members: BTreeMap<NodeId, Member>) -> Result<(), ConsensusError> {
        let raft = &self.inner.raft;
        if raft.is_initialized().await.map_err(Box::new)? {
            return Ok(());
        }
        match raft.initialize(members).await {
            Ok(()) => {
                info!(self.inner.log, "cluster initialized");
                Ok(())
            }
            // Another node's leader reached this one first: the cluster is formed already.
            Err(RaftError::APIError(InitializeError::NotAllowed(e))) => {
                info!(self.inner.log, "cluster already initialized"; "detail" => %e);
                Ok(())
            }
            Err(e) => Err(Box::new(e).into()),
        }
    }

    /// Serves one accepted TCP connection whose first bytes are [`crate::consensus::OPENING`]
    /// (not yet consumed: they are read and checked, and the connection closed on a mismatch),
    /// in a tokio task of its own. Must be called inside a tokio runtime.
    pub fn serve(&self, stream: TcpStream) {
        self.inner.server.serve(stream);
    }

    /// Accepts connections on `listener` and serves each, until shutdown: a Raft RPC server of
    /// its own, for tests and tools that run no key-value node.
    pub fn spawn_listener(&self, listener: TcpListener) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => this.serve(stream),
                        Err(e) => {
                            warn!(this.inner.log, "accept failed"; "error" => %e);
                            // An accept error (out of descriptors) repeats at once; pace retries.
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        }
                    },
                    () = this.inner.stop.cancelled() => return,
                }
            }
        });
    }

    /// This node's id.
    pub fn id(&self) -> NodeId {
        self.inner.id
    }

    /// The applied cluster state, updated on every apply.
    pub fn state(&self) -> watch::Receiver<ClusterState> {
        self.inner.state.clone()
    }

    /// Whether this node is Raft leader per metrics, and the current term: for deciding when to
    /// try [`Consensus::name_self_primary`]. NOT a fence.
    pub fn leadership(&self) -> watch::Receiver<Leadership> {
        self.inner.leadership.clone()
    }

    /// As leader: confirms leadership with a quorum (the state is then current), picks
    /// `epoch = max(term, state.epoch + 1)` and commits `SetPrimary { epoch, self, offset }`;
    /// returns the epoch. The epoch is not just the term, because openraft 0.9 restores a node
    /// whose saved vote is a committed vote for itself as leader in the *same* term. Errors if
    /// this node is not leader, has no quorum, or the command is refused.
    pub async fn name_self_primary(&self, offset: u64) -> Result<u64, ConsensusError> {
        let inner = &self.inner;
        let now = Leadership::of(&inner.raft.metrics().borrow());
        if !now.is_self {
            return Err(ConsensusError::NotLeader { leader: now.leader });
        }
        inner.raft.ensure_linearizable().await.map_err(Box::new)?;
        let term = inner.raft.metrics().borrow().current_term;
        let epoch = term.max(inner.state.borrow().epoch + 1);
        let command = Command::SetPrimary {
            epoch,
            node: inner.id,
            offset,
        };
        let written = inner.raft.client_write(command).await.map_err(Box::new)?;
        match written.data {
            CommandResponse::Applied { epoch, .. } => {
                info!(inner.log, "named self primary"; "epoch" => epoch, "term" => term,
                    "offset" => offset);
                // The lease for the new epoch's term, now rather than at the keeper's next round.
                if let Err(e) = inner.lease.confirm().await {
                    info!(inner.log, "no lease right after naming"; "epoch" => epoch, "error" => %e);
                }
                Ok(epoch)
            }
            CommandResponse::Rejected {
                current_epoch,
                reason,
            } => Err(ConsensusError::Rejected {
                current_epoch,
                reason,
            }),
            CommandResponse::None => Err(ConsensusError::Rejected {
                current_epoch: inner.state.borrow().epoch,
                reason: "the state machine gave no answer".into(),
            }),
        }
    }

    /// Tell the data plane when this node grants a vote (once; later calls are ignored): a
    /// candidate may be elected with it, so the current epoch's stream must stop being
    /// applied before the new primary is even named.
    pub fn on_vote_granted(&self, granted: crate::consensus::server::VoteGranted) {
        let _ = self.inner.server.on_vote_granted.set(granted);
    }

    /// Why Raft stopped, if it did (its storage failed, say): this node then takes no part in
    /// the cluster until it is restarted.
    pub fn failure(&self) -> Option<String> {
        let metrics = self.inner.raft.metrics();
        let failure = metrics
            .borrow()
            .running_state
            .as_ref()
            .err()
            .map(|e| e.to_string());
        failure
    }

    /// The election timeout (`--failover-timeout-ms`): also how long after its election a
    /// leader refuses to vote for anyone (openraft 0.9's lease on its own vote).
    pub fn election_timeout(&self) -> std::time::Duration {
        self.inner.timeout
    }

    /// As leader: confirm leadership with a quorum and apply everything committed, so the
    /// state returned is current (no `SetPrimary` this node has not applied yet is committed).
    pub async fn catch_up(&self) -> Result<ClusterState, ConsensusError> {
        self.inner
            .raft
            .ensure_linearizable()
            .await
            .map_err(Box::new)?;
        Ok(self.inner.state.borrow().clone())
    }

    /// The fence: whether this node may act as primary for `epoch` now. True while the applied
    /// state names this node primary for `epoch`, this node holds a confirmed lease (now before
    /// its deadline), and the lease's term is the term in which `epoch` was named (and still
    /// this node's current term).
    pub fn lease_valid(&self, epoch: u64) -> bool {
        let Some(lease) = self.inner.lease.current() else {
            return false;
        };
        let named_in_term = {
            let state = self.inner.state.borrow();
            if state.epoch != epoch || state.primary != Some(self.inner.id) {
                return false;
            }
            state.named_in_term
        };
        lease.term == named_in_term && self.inner.raft.metrics().borrow().current_term == lease.term
    }

    /// The instant until which the lease holds (`None` if none holds now), for sessions that
    /// check just before replying.
    pub fn lease_deadline(&self) -> Option<Instant> {
        self.inner.lease.current().map(|l| l.deadline)
    }

    /// A planned switchover: ask member `to` to stand for election now (see `handover.rs`).
    /// The caller, the primary, has stopped taking writes and made sure `to` has them all.
    pub async fn hand_over(&self, to: NodeId) -> Result<(), ConsensusError> {
        let member = self.inner.state.borrow().members.get(&to).cloned();
        let handover = |reason: String| ConsensusError::Handover { to, reason };
        let member = member.ok_or_else(|| handover("not a member".into()))?;
        let addr = match member.control.is_empty() {
            true => member.addr,
            false => member.control,
        };
        // The member must hold every Raft entry too, or this leader refuses it its vote (and
        // the followers refuse theirs within the lease): wait until it matches the leader's log.
        let mut metrics = self.inner.raft.metrics();
        let caught_up = metrics.wait_for(|m| {
            let matched = m
                .replication
                .as_ref()
                .and_then(|r| r.get(&to).cloned().flatten())
                .map(|log_id| log_id.index);
            matched.is_some() && matched >= m.last_log_index
        });
        tokio::time::timeout(self.inner.timeout, caught_up)
            .await
            .map_err(|_| handover("its Raft log did not catch up in time".into()))?
            .map_err(|_| handover("Raft stopped".into()))?;
        info!(self.inner.log, "handing over: asking a member to stand for election";
            "to" => to, "addr" => &addr);
        // This node's lease ends before the member stands: it may be elected without this
        // node's vote (with the third member's), and a primary must not answer meanwhile.
        self.inner.lease.fence();
        let term = self.inner.raft.metrics().borrow().current_term;
        let server = &self.inner.server;
        crate::consensus::handover::ask_to_elect(
            &addr,
            (server.secret.as_ref(), server.tls.as_ref()),
            self.inner.id,
            term,
            self.inner.timeout,
        )
        .await
        .map_err(|e| handover(e.to_string()))
    }

    /// Cuts this node off (tests): outgoing RPCs fail, incoming requests are dropped with their
    /// connections.
    pub fn set_isolated(&self, isolated: bool) {
        info!(self.inner.log, "network isolation"; "isolated" => isolated);
        self.inner.control.set_isolated(isolated);
    }

    /// Stops Raft, the lease keeper and every served connection; the lease ends. Idempotent.
    pub async fn shutdown(&self) {
        let inner = &self.inner;
        inner.stop.cancel();
        inner.lease.revoke();
        if let Err(e) = inner.raft.shutdown().await {
            warn!(inner.log, "raft did not shut down cleanly"; "error" => %e);
        }
    }
}
