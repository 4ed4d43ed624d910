//! What every session of a node shares: its limits, the persistence writer's progress, and
//! the node's context. Built once by the node assembly and handed to each session.

use std::time::Duration;

use super::node_context::NodeContext;
use crate::storage::durability::Durability;

/// Settings every session of a node shares.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Refuse every write (`PUT`, `DEL`, `SET`, `MSET`, ...): the node is a replica.
    pub read_only: bool,
    /// The longest request line accepted, in bytes.
    pub max_line_bytes: usize,
    /// The most requests handled as one batch.
    pub max_batch: usize,
    /// The largest value a RESP client may send.
    pub max_value_bytes: usize,
    /// The most reply bytes one batch may produce before the client is disconnected
    /// (a client output buffer hard limit, as Redis has).
    pub output_limit: usize,
    /// The persistence writer's progress: writes wait on it under `--fsync always`, and are
    /// refused while it reports a failure.
    pub durability: Durability,
    /// What the node reports about itself (INFO, DIGEST, WAIT) and its replication wiring.
    pub node: NodeContext,
    /// A client that sends nothing for this long is disconnected (`--timeout`; `None`: never).
    /// A client waiting for its replies (a `WAIT`, a slow disk) is not idle.
    pub idle_timeout: Option<Duration>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            read_only: false,
            max_line_bytes: 1024 * 1024,
            max_batch: 1024,
            max_value_bytes: 512 * 1024 * 1024,
            output_limit: 1024 * 1024 * 1024,
            durability: Durability::none(),
            node: NodeContext {
                role: "primary",
                replication_timeout: Duration::from_secs(10),
                handshake_timeout: Duration::from_secs(5),
                ..NodeContext::default()
            },
            idle_timeout: None,
        }
    }
}
