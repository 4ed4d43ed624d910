//! The openraft type configuration of the control plane.

use std::io::Cursor;

use crate::consensus::cluster_state::{Command, CommandResponse, Member, NodeId};

openraft::declare_raft_types!(
    /// The types openraft is instantiated with: our command, answer, node id and member, the
    /// standard entry, snapshots as in-memory bytes (the state is tiny) and the tokio runtime.
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        NodeId = NodeId,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle specialised to the control plane.
pub type Raft = openraft::Raft<TypeConfig>;
