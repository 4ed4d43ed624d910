//! The position waits of one batch (`WAITPOS`, `GET ... AFTER`): run before the batch goes to
//! the Store, so that every read of the batch sees at least the positions it waited for.
//!
//! Waiting for a position delays the batch's other commands too (never their order nor their
//! outcome), which keeps a pipelined `WAITPOS` followed by reads one round trip.

use std::sync::atomic::AtomicUsize;
use std::sync::Arc;
use std::time::Duration;

use crate::protocol::position_commands::PositionWait;
use crate::protocol::reply::ErrorReply;
use crate::replication::node_position::NodePosition;

/// The waits a batch asked for, in request order.
pub struct PositionWaits {
    /// The node's position, which each wait watches.
    position: NodePosition,
    /// The node's count of blocked clients, which a waiting client joins.
    blocked: Arc<AtomicUsize>,
    /// The waits.
    waits: Vec<PositionWait>,
}

impl PositionWaits {
    /// No waits yet, on a node at `position`.
    pub fn new(position: NodePosition, blocked: Arc<AtomicUsize>) -> PositionWaits {
        PositionWaits {
            position,
            blocked,
            waits: Vec::new(),
        }
    }

    /// Add a wait; answers its index among the batch's results.
    pub fn push(&mut self, wait: PositionWait) -> usize {
        self.waits.push(wait);
        self.waits.len() - 1
    }

    /// Wait for every position at once; answers each wait's outcome, in order.
    pub async fn run(self) -> Vec<Result<(), ErrorReply>> {
        let position = &self.position;
        let blocked = &self.blocked;
        let waits = self.waits.iter().map(|wait| async move {
            let timeout = (wait.timeout_ms > 0).then(|| Duration::from_millis(wait.timeout_ms));
            position
                .wait(&wait.token, timeout, blocked)
                .await
                .map_err(ErrorReply::Position)
        });
        futures::future::join_all(waits).await
    }
}
