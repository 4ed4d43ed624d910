//! The position waits of one batch (`WAITPOS`, `GET ... AFTER`): run before the batch goes to
//! the Store, so that every read of the batch sees at least the positions it waited for.
//!
//! Waiting for a position delays the batch's other commands too (never their order nor their
//! outcome), which keeps a pipelined `WAITPOS` followed by reads one round trip.

use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use crate::protocol::position_commands::PositionWait;
use crate::protocol::reply::ErrorReply;
use crate::replication::node_position::NodePosition;

use super::node_context::NodeContext;

/// The waits a batch asked for, in request order.
pub struct PositionWaits {
    /// The node (its position, which each wait watches; its count of blocked clients,
    /// which a waiting client joins; whether it may still serve reads once they are over).
    node: NodeContext,
    /// The waits.
    waits: Vec<PositionWait>,
}

/// How a batch's waits ended.
pub struct Waited {
    /// Each wait's outcome, in request order.
    pub outcomes: Vec<Result<(), ErrorReply>>,
    /// Why the batch's reads must be refused after all: the node became unable to serve
    /// them while they waited (a failover-cluster replica whose data fell out of the current
    /// epoch's history). Checked when the batch was planned, and again here.
    pub refusal: Option<ErrorReply>,
}

impl PositionWaits {
    /// No waits yet, on `node`.
    pub fn new(node: NodeContext) -> PositionWaits {
        PositionWaits {
            node,
            waits: Vec::new(),
        }
    }

    /// Add a wait to `waits` (made for `node` if there are none yet); answers its index among
    /// the batch's results.
    pub fn add(waits: &mut Option<PositionWaits>, node: &NodeContext, wait: PositionWait) -> usize {
        waits
            .get_or_insert_with(|| PositionWaits::new(node.clone()))
            .push(wait)
    }

    /// Add a wait; answers its index among the batch's results.
    pub fn push(&mut self, wait: PositionWait) -> usize {
        self.waits.push(wait);
        self.waits.len() - 1
    }

    /// Wait for every position at once; answers each wait's outcome, in order, and whether
    /// the node may still serve the batch's reads.
    pub async fn run(self) -> Waited {
        let position: &NodePosition = &self.node.position;
        let blocked: &AtomicUsize = &self.node.blocked;
        let waits = self.waits.iter().map(|wait| async move {
            let timeout = (wait.timeout_ms > 0).then(|| Duration::from_millis(wait.timeout_ms));
            position
                .wait(&wait.token, timeout, blocked)
                .await
                .map_err(ErrorReply::Position)
        });
        let outcomes = futures::future::join_all(waits).await;
        Waited {
            outcomes,
            refusal: self.node.read_refusal(),
        }
    }
}
