//! A candidate refused by a voter whose data is ahead stops standing for election for a while,
//! so that the voter can win.
//!
//! Without this the data-aware vote can livelock: the candidate behind keeps starting
//! elections in ever higher terms, and the node ahead, which never sees those requests (they
//! are refused before its Raft), stands in terms already used, so its requests are refused
//! in turn (measured: 60 terms in 15 s without a leader). openraft does the same for a
//! candidate that sees a greater Raft log (`smaller_log_timeout`); this is its data twin.

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use slog::{info, Logger};
use tokio::time::Instant;

use crate::consensus::position::DataPosition;
use crate::consensus::type_config::Raft;

/// This node's standing aside: until when it leaves elections to others.
pub struct StandAside {
    /// The local Raft, set once it exists (the network is built before it).
    raft: OnceLock<Raft>,
    /// How long one refusal keeps this node from standing: long enough for the voter ahead to
    /// time out as a follower and win a round (two of its election rounds).
    period: Duration,
    /// When elections may resume; `None` while this node is not standing aside.
    until: Mutex<Option<Instant>>,
    /// Where standing aside is logged.
    log: Logger,
}

impl StandAside {
    /// A node not standing aside, which will stand aside for `period` after each refusal.
    pub fn new(period: Duration, log: Logger) -> StandAside {
        StandAside {
            raft: OnceLock::new(),
            period,
            until: Mutex::new(None),
            log,
        }
    }

    /// Hands over the local Raft once it has started.
    pub fn set_raft(&self, raft: Raft) {
        // Set once by the node that owns this; a second call changes nothing.
        let _ = self.raft.set(raft);
    }

    /// A voter at `voter` refused this node's candidacy at `own`: stop standing for election
    /// until `period` from now, then stand again (the voter ahead may have been unable to win).
    pub fn refused(self: &std::sync::Arc<Self>, voter: DataPosition, own: DataPosition) {
        let Some(raft) = self.raft.get() else {
            return;
        };
        let until = Instant::now() + self.period;
        {
            let mut slot = self.until.lock().unwrap_or_else(|e| e.into_inner());
            if slot.is_none() {
                info!(self.log, "standing aside: a voter's data is ahead of this node's";
                    "voter_epoch" => voter.epoch, "voter_offset" => voter.offset,
                    "own_epoch" => own.epoch, "own_offset" => own.offset,
                    "for_ms" => self.period.as_millis());
            }
            *slot = Some(until);
        }
        raft.runtime_config().elect(false);
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(until).await;
            let mut slot = this.until.lock().unwrap_or_else(|e| e.into_inner());
            // Only the timer of the latest refusal resumes elections.
            if *slot == Some(until) {
                *slot = None;
                if let Some(raft) = this.raft.get() {
                    raft.runtime_config().elect(true);
                }
                info!(this.log, "standing for election again");
            }
        });
    }
}
