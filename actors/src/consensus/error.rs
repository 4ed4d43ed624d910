//! Why the control plane could not start, or could not do what was asked.

use openraft::error::{CheckIsLeaderError, ClientWriteError, Fatal, InitializeError, RaftError};
use openraft::ConfigError;

use crate::consensus::cluster_state::{Member, NodeId};
use crate::consensus::record::StoreError;

/// The errors of [`crate::consensus::Consensus`]. openraft's errors are large, so they are
/// boxed (clippy's `result_large_err`).
#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    /// The directory could not be opened or recovered (a corrupt vote file among others: a node
    /// that forgot its vote could vote twice in one term, so it refuses to start instead).
    #[error("consensus storage: {0}")]
    Store(#[from] StoreError),
    /// The timing is not one openraft accepts.
    #[error("consensus config: {0}")]
    Config(#[from] Box<ConfigError>),
    /// openraft stopped, or refused to start.
    #[error("raft stopped: {0}")]
    Fatal(#[from] Box<Fatal<NodeId>>),
    /// Forming the cluster from the configured members failed for a reason other than its
    /// having been formed already.
    #[error("initialize the cluster: {0}")]
    Initialize(#[from] Box<RaftError<NodeId, InitializeError<NodeId, Member>>>),
    /// This node is not the Raft leader; `leader` is the one it knows of, if any.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// Leadership could not be confirmed with a quorum (or a higher term was seen).
    #[error("leadership not confirmed: {0}")]
    NotConfirmed(#[from] Box<RaftError<NodeId, CheckIsLeaderError<NodeId, Member>>>),
    /// The term changed while leadership was being confirmed: a new election happened.
    #[error("term changed from {before} to {after} while confirming leadership")]
    TermChanged {
        /// Term when the confirmation began.
        before: u64,
        /// Term when it ended.
        after: u64,
    },
    /// Committing a command failed (lost leadership, no quorum, or Raft stopped).
    #[error("commit: {0}")]
    Write(#[from] Box<RaftError<NodeId, ClientWriteError<NodeId, Member>>>),
    /// A planned switchover could not ask the member to stand for election.
    #[error("hand over to {to}: {reason}")]
    Handover {
        /// The member asked.
        to: NodeId,
        /// What went wrong.
        reason: String,
    },
    /// The state machine refused the command (the epoch moved on meanwhile).
    #[error("refused at epoch {current_epoch}: {reason}")]
    Rejected {
        /// The epoch in force.
        current_epoch: u64,
        /// Why.
        reason: String,
    },
}
