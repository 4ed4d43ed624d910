//! Who leads the Raft group, as this node's openraft metrics say: for deciding when to try to
//! become primary, never as a fence (a cut-off openraft 0.9 leader believes it leads forever;
//! the fence is the lease).

use openraft::{RaftMetrics, ServerState};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::consensus::cluster_state::{Member, NodeId};
use crate::consensus::type_config::Raft;

/// What this node believes about Raft leadership.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Leadership {
    /// The leader this node knows of, if any.
    pub leader: Option<NodeId>,
    /// This node's current Raft term.
    pub term: u64,
    /// Whether this node is the leader (openraft's server state).
    pub is_self: bool,
}

impl Leadership {
    /// What a node's openraft metrics say.
    pub fn of(metrics: &RaftMetrics<NodeId, Member>) -> Leadership {
        Leadership {
            leader: metrics.current_leader,
            term: metrics.current_term,
            is_self: metrics.state == ServerState::Leader,
        }
    }
}

/// Publishes `raft`'s leadership whenever its metrics change it, until `stop` is cancelled or
/// Raft stops; a task of its own, so readers never touch openraft's metrics channel.
pub fn follow(raft: &Raft, stop: CancellationToken) -> watch::Receiver<Leadership> {
    let mut metrics = raft.metrics();
    let (tx, rx) = watch::channel(Leadership::of(&metrics.borrow_and_update()));
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = metrics.changed() => if changed.is_err() { return },
                () = stop.cancelled() => return,
            }
            let now = Leadership::of(&metrics.borrow_and_update());
            tx.send_if_modified(|seen| {
                let changed = *seen != now;
                *seen = now;
                changed
            });
        }
    });
    rx
}
