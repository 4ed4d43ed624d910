//! Read-your-writes and monotonic reads, per client: what a position token promises.
//!
//! A read-your-writes client (`kvchaos --read-your-writes`) keeps the token `LASTPOS` gave it
//! after its last operation, and sends every replica read as `GET key AFTER token`: the
//! replica answers only once its data reaches that position. So, across all the client's
//! connections and whichever node answers:
//!
//! - **read-your-writes**: a read of key `k` shows the client's own latest acknowledged write
//!   of `k` (its value, or nothing after a DEL), or something another write may have put
//!   there after it;
//! - **monotonic reads**: a read never shows something provably older than an earlier read
//!   of the same client showed.
//!
//! The reads held to this are those that carry a token in the history (`Operation::token`):
//! the client records one only while it covers everything the client did and saw before.
//!
//! Only what is provable is flagged, with the real-time reasoning of the replica checks
//! (`KeyWrites`): what a read showed is older than a write only if every PUT of that value
//! had taken effect (completed, or for an unknown outcome was bounded) before the write was
//! sent; nothing is older only if no DEL sent by the time the read completed could take
//! effect after it. A write of unknown outcome, the client's own included, binds nothing
//! (it may never take effect) but may explain a value (until its bound, if it has one).

use std::fmt;

use crate::chaos::history::{Call, Operation, Outcome};
use crate::chaos::replica::KeyWrites;
use crate::chaos::window::Window;

/// What a client's reads did wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionFault {
    /// A read with the client's token showed something provably older than the client's own
    /// latest acknowledged write of the key.
    MissedOwnWrite {
        /// The client's write (a PUT or a DEL), acknowledged before the read was sent.
        write: Operation,
        /// The read that did not show it.
        read: Operation,
    },
    /// A read with the client's token showed something provably older than an earlier read
    /// of the same client did (on any connection, any node).
    WentBack {
        /// The earlier read.
        earlier: Operation,
        /// The later read, which went back.
        later: Operation,
    },
}

/// A session fault, with the operations that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionViolation {
    /// What went wrong.
    pub fault: SessionFault,
    /// The client's write or earlier read, the read, and the writes behind them.
    pub window: Window,
}

impl SessionViolation {
    /// Whether it is a read-your-writes violation (rather than reads going back).
    pub fn missed_own_write(&self) -> bool {
        matches!(self.fault, SessionFault::MissedOwnWrite { .. })
    }
}

/// What a read showed, in words.
fn shown(read: &Operation) -> String {
    match &read.outcome {
        Outcome::Read(Some(value)) => value.clone(),
        _ => "nothing".to_string(),
    }
}

/// Why what the later read showed is older, in words.
fn why(later: &Operation) -> &'static str {
    match later.outcome {
        Outcome::Read(None) => "though no DEL could have taken effect after that",
        _ => "written before that was",
    }
}

/// What went wrong in a sentence, then the operations that show it, one a line.
impl fmt::Display for SessionViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.fault {
            SessionFault::MissedOwnWrite { write, read } => {
                let wrote = match &write.call {
                    Call::Put(value) => format!("wrote {value}"),
                    Call::Get | Call::Del => "deleted it".to_string(),
                };
                writeln!(
                    f,
                    "client {} did not read its own write of key {} (read-your-writes): it {wrote}, \
                     then {} showed {}, {}:",
                    read.client,
                    read.key,
                    read.node,
                    shown(read),
                    why(read)
                )?
            }
            SessionFault::WentBack { earlier, later } => writeln!(
                f,
                "client {}'s reads of key {} went back in time (monotonic reads): {} showed {}, \
                 then {} showed {}, {}:",
                later.client,
                later.key,
                earlier.node,
                shown(earlier),
                later.node,
                shown(later),
                why(later)
            )?,
        }
        write!(f, "{}", self.window)
    }
}

/// The session faults of one key's history: every client's reads that carry a token, held
/// to that client's acknowledged writes and earlier reads of the key.
pub fn session_violations(history: &[Operation]) -> Vec<SessionViolation> {
    let index = KeyWrites::new(history);
    let mut ops: Vec<&Operation> = history.iter().collect();
    ops.sort_by_key(|op| (op.client, op.invoked, op.completed));
    let mut violations = Vec::new();
    for client in ops.chunk_by(|a, b| a.client == b.client) {
        let reads: Vec<&Operation> = client
            .iter()
            .copied()
            .filter(|op| op.call == Call::Get && matches!(op.outcome, Outcome::Read(_)))
            .collect();
        missed_own_writes(client, &reads, &index, &mut violations);
        for back in index.went_back(&reads) {
            if back.later.token.is_some() {
                violations.push(SessionViolation {
                    fault: SessionFault::WentBack {
                        earlier: back.earlier.clone(),
                        later: back.later.clone(),
                    },
                    window: back.window(),
                });
            }
        }
    }
    violations
}

/// Each of one client's `reads` (in invocation order) with a token, against the client's
/// latest acknowledged PUT or DEL of the key answered before the read was sent.
fn missed_own_writes(
    client: &[&Operation],
    reads: &[&Operation],
    index: &KeyWrites,
    violations: &mut Vec<SessionViolation>,
) {
    let mut acknowledged: Vec<&Operation> = client
        .iter()
        .copied()
        .filter(|op| op.call != Call::Get)
        .filter(|op| matches!(op.outcome, Outcome::Written | Outcome::Deleted(_)))
        .collect();
    acknowledged.sort_by_key(|write| write.completed);
    let mut answered = acknowledged.iter().peekable();
    // The acknowledged write answered so far that was sent last.
    let mut latest: Option<&Operation> = None;
    for &read in reads {
        while let Some(&write) = answered.next_if(|write| write.completed <= read.invoked) {
            if latest.is_none_or(|l| write.invoked > l.invoked) {
                latest = Some(write);
            }
        }
        let (Some(write), Some(_)) = (latest, &read.token) else {
            continue;
        };
        if let Some(older) = index.older_than(read, write.invoked) {
            let mut shown = vec![write.clone(), read.clone()];
            shown.extend(older.cloned());
            violations.push(SessionViolation {
                fault: SessionFault::MissedOwnWrite {
                    write: write.clone(),
                    read: read.clone(),
                },
                window: Window::of(&read.key, shown),
            });
        }
    }
}

#[cfg(test)]
mod tests;
