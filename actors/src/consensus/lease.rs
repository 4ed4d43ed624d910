//! The primary's lease: the fence that keeps a cut-off primary from acknowledging writes once
//! another node may have been named.
//!
//! In openraft 0.9 a follower that accepted a heartbeat refuses every vote request for
//! `election_timeout_max` afterwards (its leader lease, `Engine::handle_vote_req`). So if a
//! quorum acknowledged a heartbeat the leader sent at `t0`, no other node can be elected
//! before `t0 + election_max`. The lease, counted from `t0` taken *before* the round trip, ends
//! at `t0 + election_max - heartbeat`: before any successor can exist. A keeper task confirms
//! it every heartbeat while this node believes it leads; any failure, role change or term
//! change revokes it at once. Do not fence on `ServerState::Leader`: a partitioned 0.9 leader
//! stays `Leader` forever.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use openraft::ServerState;
use slog::{info, Logger};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::consensus::error::ConsensusError;
use crate::consensus::type_config::Raft;

/// A confirmed lease: valid until `deadline`, for the Raft term `term`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// Local monotonic instant after which the lease is void.
    pub deadline: Instant,
    /// The term in which leadership was confirmed; a primary named in another term may not use
    /// it.
    pub term: u64,
}

/// This node's lease, confirmed by the keeper and by [`PrimaryLease::confirm`] callers, and
/// read on every check of the fence.
pub struct PrimaryLease {
    /// The Raft whose leadership is confirmed.
    raft: Raft,
    /// How long a confirmation lasts.
    duration: Duration,
    /// The lease in force, if any; `None` once revoked.
    granted: Mutex<Option<Lease>>,
    /// Counts [`PrimaryLease::fence`] calls: a confirmation that began before one is void.
    fences: AtomicU64,
}

impl PrimaryLease {
    /// A lease on `raft`'s leadership lasting `duration` per confirmation
    /// ([`crate::consensus::ConsensusConfig::lease`]).
    pub fn new(raft: Raft, duration: Duration) -> PrimaryLease {
        PrimaryLease {
            raft,
            duration,
            granted: Mutex::new(None),
            fences: AtomicU64::new(0),
        }
    }

    /// Confirms leadership by a heartbeat round to all voters (openraft's `get_read_log_id`,
    /// which fails after one heartbeat interval without a quorum) and extends the lease from the
    /// instant before the round trip. A failure, or a term that moved during the round, revokes
    /// the lease at once: waiting for it to run out would be safe too, but a primary that knows
    /// it lost its quorum has no reason to go on.
    pub async fn confirm(&self) -> Result<Lease, ConsensusError> {
        let fences = self.fences.load(Ordering::SeqCst);
        let t0 = Instant::now();
        let before = self.raft.metrics().borrow().current_term;
        let result = self.raft.get_read_log_id().await;
        let after = self.raft.metrics().borrow().current_term;
        let fenced = self.fences.load(Ordering::SeqCst) != fences;
        match result {
            Ok(_) if fenced => {
                self.revoke();
                Err(ConsensusError::TermChanged { before, after })
            }
            Ok(_) if before == after => {
                let lease = Lease {
                    deadline: t0 + self.duration,
                    term: before,
                };
                self.update(|granted| match granted {
                    // A slower, older confirmation is still true evidence, but never shortens
                    // a newer one.
                    Some(g) if g.term == lease.term && g.deadline > lease.deadline => {}
                    _ => *granted = Some(lease),
                });
                Ok(lease)
            }
            Ok(_) => {
                self.revoke();
                Err(ConsensusError::TermChanged { before, after })
            }
            Err(e) => {
                self.revoke();
                Err(ConsensusError::NotConfirmed(Box::new(e)))
            }
        }
    }

    /// Ends the lease now, and voids every confirmation under way: this node is about to let
    /// Raft answer a vote request, which it may grant. A follower within the lease refuses
    /// votes, but a leader does not (openraft 0.9 keeps no lease on its own vote), so a leader
    /// that grants one makes a new majority possible at once; its lease must end before.
    pub fn fence(&self) {
        self.fences.fetch_add(1, Ordering::SeqCst);
        self.revoke();
    }

    /// Ends the lease now.
    pub fn revoke(&self) {
        self.update(|granted| *granted = None);
    }

    /// The lease if it holds now. A poisoned lock reads as no lease: the fence fails closed.
    pub fn current(&self) -> Option<Lease> {
        let granted = *self.granted.lock().ok()?;
        granted.filter(|l| Instant::now() < l.deadline)
    }

    /// Changes the granted lease under the lock; a poisoned lock (a panic elsewhere while
    /// holding it) is recovered, since a lease is plain data and always consistent.
    fn update(&self, f: impl FnOnce(&mut Option<Lease>)) {
        let mut granted = self.granted.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut granted);
    }
}

/// Keeps `lease` confirmed while this node believes it leads: confirms every `heartbeat`, and
/// revokes at once when the metrics show another role or term. Runs until `stop` is cancelled.
pub fn spawn_keeper(
    lease: std::sync::Arc<PrimaryLease>,
    heartbeat: Duration,
    stop: CancellationToken,
    log: Logger,
) {
    tokio::spawn(async move {
        let mut metrics = lease.raft.metrics();
        let mut held = false;
        loop {
            let (leads, term) = {
                let m = metrics.borrow_and_update();
                (m.state == ServerState::Leader, m.current_term)
            };
            if !leads {
                lease.revoke();
                held = false;
                tokio::select! {
                    changed = metrics.changed() => if changed.is_err() { return },
                    () = stop.cancelled() => return,
                }
                continue;
            }
            match lease.confirm().await {
                Ok(l) if !held => {
                    held = true;
                    info!(log, "leader lease confirmed"; "term" => l.term);
                }
                Ok(_) => {}
                Err(e) if held => {
                    held = false;
                    info!(log, "leader lease lost"; "term" => term, "error" => %e);
                }
                Err(_) => {}
            }
            // One heartbeat until the next confirmation, but a role or term change revokes now.
            let next = Instant::now() + heartbeat;
            loop {
                tokio::select! {
                    () = tokio::time::sleep_until(next) => break,
                    changed = metrics.changed() => {
                        if changed.is_err() {
                            lease.revoke();
                            return;
                        }
                        let (state, now_term) = {
                            let m = metrics.borrow_and_update();
                            (m.state, m.current_term)
                        };
                        if state != ServerState::Leader || now_term != term {
                            lease.revoke();
                            if held {
                                held = false;
                                info!(log, "leader lease revoked: role or term changed";
                                    "term" => term, "new_term" => now_term);
                            }
                            break;
                        }
                    }
                    () = stop.cancelled() => {
                        lease.revoke();
                        return;
                    }
                }
            }
        }
    });
}
