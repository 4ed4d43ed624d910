//! The replicated cluster state, the commands that change it and how they apply.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's identity in the Raft group: its 1-based position in the `--peers` list, the same
/// on every node. `u64` because openraft's `NodeId` must be `Copy + Ord + Display`.
pub type NodeId = u64;

/// A member as published in the Raft membership (openraft's `Node` type): the one address the
/// node is reached by, for clients, replication and Raft RPCs alike (its advertised client
/// address). It travels inside membership entries, so every node can reach every peer from the
/// replicated membership alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// `host:port` the node accepts connections on.
    pub addr: String,
    /// `host:port` its control plane (Raft RPCs) listens on, when not `addr`: a key-value
    /// node serves Raft on its client port + 10000 (`src/failover.rs`).
    #[serde(default)]
    pub control: String,
}

impl fmt::Display for Member {
    /// Just the address: what an operator looks for in a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr)
    }
}

/// A command in the Raft log: besides membership, the only way [`ClusterState`] changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Name `node` primary for `epoch`, its history starting at `offset` (its data offset when
    /// named, so replicas of an older epoch know where to cut a divergent tail). Refused unless
    /// `epoch` exceeds the current one, so a stale or repeated proposal never moves the epoch
    /// backwards or names two primaries for one epoch.
    SetPrimary {
        /// The new epoch; must exceed the current one.
        epoch: u64,
        /// The node named primary.
        node: NodeId,
        /// Where the new primary's history starts.
        offset: u64,
    },
}

/// The state machine's answer to a [`Command`], returned to the proposer by `client_write`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandResponse {
    /// The command took effect: `primary` is primary for `epoch`.
    Applied {
        /// The epoch now in force.
        epoch: u64,
        /// Its primary.
        primary: NodeId,
    },
    /// The command was refused, with the epoch in force so a proposer can tell why.
    Rejected {
        /// The epoch in force, unchanged.
        current_epoch: u64,
        /// Why, for the proposer's log.
        reason: String,
    },
    /// The answer for entries without a command (blank and membership entries).
    None,
}

/// The replicated cluster state: who the members are, the current epoch and its primary.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The members from the last applied membership entry, with their addresses.
    pub members: BTreeMap<NodeId, Member>,
    /// Only ever grows; the data plane stamps its messages with it, for fencing.
    pub epoch: u64,
    /// The node named primary for `epoch`, if any yet.
    pub primary: Option<NodeId>,
    /// Where the primary's history for `epoch` starts (its data offset when named).
    pub primary_since_offset: u64,
    /// The Raft term of the entry that named the primary: its lease must be of this term.
    pub named_in_term: u64,
}

impl ClusterState {
    /// Applies `command`, logged in Raft term `term`. The epoch check makes applying
    /// idempotent and fences stale proposers: a repeated or reordered `SetPrimary` with an epoch
    /// not above the current one changes nothing.
    pub fn apply(&mut self, command: &Command, term: u64) -> CommandResponse {
        match *command {
            Command::SetPrimary {
                epoch,
                node,
                offset,
            } => {
                let reason = if epoch <= self.epoch {
                    format!("epoch {epoch} is not above the current {}", self.epoch)
                } else if !self.members.contains_key(&node) {
                    format!("node {node} is not a member")
                } else {
                    self.epoch = epoch;
                    self.primary = Some(node);
                    self.primary_since_offset = offset;
                    self.named_in_term = term;
                    return CommandResponse::Applied {
                        epoch,
                        primary: node,
                    };
                };
                CommandResponse::Rejected {
                    current_epoch: self.epoch,
                    reason,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_only_grow_and_only_members_are_named() {
        let mut state = ClusterState::default();
        state.members.insert(
            1,
            Member {
                addr: "a:1".into(),
                control: String::new(),
            },
        );
        let named = |epoch, node| Command::SetPrimary {
            epoch,
            node,
            offset: 7,
        };
        assert_eq!(
            state.apply(&named(3, 1), 2),
            CommandResponse::Applied {
                epoch: 3,
                primary: 1
            }
        );
        assert_eq!(
            (state.epoch, state.primary_since_offset, state.named_in_term),
            (3, 7, 2)
        );
        for refused in [named(3, 1), named(2, 1), named(4, 9)] {
            assert!(matches!(
                state.apply(&refused, 5),
                CommandResponse::Rejected {
                    current_epoch: 3,
                    ..
                }
            ));
        }
        assert_eq!((state.epoch, state.named_in_term), (3, 2));
    }
}
