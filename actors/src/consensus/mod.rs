//! The failover control plane: Raft (openraft 0.9) decides which node is primary for which
//! epoch. Data never flows through it; it flows over the store's own replication stream.
//!
//! The replicated state is the tiny [`ClusterState`]: the members, the current epoch, its
//! primary and where that primary's history starts. A node that becomes Raft leader names
//! itself primary with [`Consensus::name_self_primary`] and may act as primary only while
//! [`Consensus::lease_valid`] holds for that epoch: the lease is the fence, Raft's own idea of
//! who leads is not (a cut-off openraft 0.9 leader believes it leads forever).
//!
//! Files, one concept each:
//! - [`cluster_state`]: the replicated state, its commands and how a command applies;
//!   [`position`]: a node's data position, compared by the data-aware vote;
//!   [`type_config`]: the openraft type configuration; [`config`]: timing; [`error`].
//! - [`record`]: the on-disk record framing; [`log_store`]: the durable Raft log and vote;
//!   [`state_machine`]: the applied state and its snapshot.
//! - [`wire`]: the RPC connection's opening line and frames; [`handshake`]: both ends prove
//!   the cluster secret before the first RPC; [`network`]: the client side of
//!   Raft RPCs; [`server`]: the serving side, where the data-aware vote refuses candidates
//!   that are behind; [`stand_aside`]: a refused candidate leaves the election to the voter
//!   ahead for a while.
//! - [`lease`]: the primary's lease and its keeper; [`leadership`]: who leads, per metrics.
//! - [`node`]: [`Consensus`], which wires all of the above into one running node.
//!
//! The items the rest of the node uses are re-exported here; the files import each other by
//! their own paths, never through this one, so that no import cycle runs through `mod.rs`.
//! Design notes and measured timings: `docs/consensus.md`.

pub mod cluster_state;
pub mod config;
pub mod error;
pub mod handover;
pub mod handshake;
pub mod leadership;
pub mod lease;
pub mod log_store;
pub mod network;
pub mod node;
pub mod position;
pub mod record;
pub mod server;
pub mod stand_aside;
pub mod state_machine;
pub mod type_config;
pub mod wire;

#[cfg(test)]
mod tests;

pub use cluster_state::{ClusterState, Command, CommandResponse, Member, NodeId};
pub use config::ConsensusConfig;
pub use error::ConsensusError;
pub use leadership::Leadership;
pub use node::Consensus;
pub use position::DataPosition;
pub use wire::{opens, OPENING};
