//! Replica reads. A replica applies the primary's history late, so its answers need not be
//! linearizable; but it may only show what the primary was asked to write, and on one
//! connection it must never go back in time. Only what is provable is flagged: a read is
//! "older" than another only if the real-time order of the writes behind them says so, never
//! where concurrency could explain it. A write or delete of unknown outcome may take effect
//! until its bound (the process it was sent to was dead by then), if it has one.

use std::collections::HashMap;
use std::fmt;

use crate::chaos::history::{Call, Node, Operation, Outcome};
use crate::chaos::window::Window;

/// What a replica did wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaFault {
    /// It showed a value no PUT of this key (to the primary, not failed) had been sent by the
    /// time the read completed.
    Unwritten {
        /// The read.
        read: Operation,
    },
    /// On one connection, a read showed something provably older than an earlier read did:
    /// the value of a write that completed before the earlier read's value was written, or
    /// nothing although no DEL could have taken effect after that write.
    WentBack {
        /// The earlier read.
        earlier: Operation,
        /// The later read, which went back.
        later: Operation,
    },
}

/// A replica fault, with the operations that show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaViolation {
    /// What went wrong.
    pub fault: ReplicaFault,
    /// The reads, and the writes behind them.
    pub window: Window,
}

/// What went wrong in a sentence, then the operations that show it, one a line.
impl fmt::Display for ReplicaViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown = |op: &Operation| match &op.outcome {
            Outcome::Read(Some(value)) => value.clone(),
            _ => "nothing".to_string(),
        };
        match &self.fault {
            ReplicaFault::Unwritten { read } => writeln!(
                f,
                "{} showed {} for key {}, a value no PUT had been sent by then:",
                read.node,
                shown(read),
                read.key
            )?,
            ReplicaFault::WentBack { earlier, later } => {
                let why = if later.outcome == Outcome::Read(None) {
                    "though no DEL could have taken effect after that was written"
                } else {
                    "written before that was"
                };
                writeln!(
                    f,
                    "{} went back in time on connection {} for key {}: it showed {}, then {}, {why}:",
                    later.node,
                    later.connection,
                    later.key,
                    shown(earlier),
                    shown(later)
                )?
            }
        }
        write!(f, "{}", self.window)
    }
}

/// The PUTs (to the primary, not failed) of one value.
#[derive(Debug, Clone, Copy)]
struct Writes<'a> {
    /// The one invoked first: a read of the value took effect after it was invoked, at least.
    first: &'a Operation,
    /// The one that may take effect last: its completion (or, of unknown outcome, its bound:
    /// `u64::MAX` if none), and it.
    last: (u64, &'a Operation),
}

/// The writes of one key's history that reads are checked against, indexed for the question
/// every check here asks: is what a read showed provably older than some instant?
pub(crate) struct KeyWrites<'a> {
    /// The PUTs of each value.
    writes: HashMap<&'a str, Writes<'a>>,
    /// DELs by invocation, with the latest time any of those so far may take effect.
    dels: Vec<(u64, u64)>,
}

/// A read that went back: it showed something provably older than an earlier read did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Back<'a> {
    /// The earlier read.
    pub earlier: &'a Operation,
    /// The later read.
    pub later: &'a Operation,
    /// The first PUT of the value the earlier read showed.
    pub put: &'a Operation,
    /// The last PUT of the value the later read showed (`None`: it showed nothing).
    pub older: Option<&'a Operation>,
}

impl<'a> KeyWrites<'a> {
    /// The PUTs and DELs of one key's history sent to the primary (not failed).
    pub(crate) fn new(history: &'a [Operation]) -> KeyWrites<'a> {
        let primary = || {
            history
                .iter()
                .filter(|op| op.node == Node::Primary && op.outcome != Outcome::Failed)
        };
        let mut writes: HashMap<&str, Writes> = HashMap::new();
        for put in primary() {
            let Call::Put(value) = &put.call else {
                continue;
            };
            let until = until(put);
            let entry = writes.entry(value.as_str()).or_insert(Writes {
                first: put,
                last: (until, put),
            });
            if put.invoked < entry.first.invoked {
                entry.first = put;
            }
            if until > entry.last.0 {
                entry.last = (until, put);
            }
        }
        let mut dels: Vec<(u64, u64)> = primary()
            .filter(|op| op.call == Call::Del)
            .map(|del| (del.invoked, until(del)))
            .collect();
        dels.sort_unstable();
        let mut latest = 0;
        for del in &mut dels {
            latest = latest.max(del.1);
            del.1 = latest;
        }
        KeyWrites { writes, dels }
    }

    /// The PUTs of the value `read` showed, if it showed one that was written.
    fn of(&self, read: &Operation) -> Option<Writes<'a>> {
        match &read.outcome {
            Outcome::Read(Some(value)) => self.writes.get(value.as_str()).copied(),
            _ => None,
        }
    }

    /// Whether what `read` showed is provably older than the instant `since` (when a write
    /// that the read must show had been sent, at the latest): `Some(Some(put))` if it showed
    /// a value whose every PUT had taken effect before then (`put`, the last of them),
    /// `Some(None)` if it showed nothing though no DEL sent by the time it completed could
    /// take effect after then; `None` if the writes' real-time order cannot prove it. A
    /// write of unknown outcome may take effect until its bound, if it has one.
    pub(crate) fn older_than(&self, read: &Operation, since: u64) -> Option<Option<&'a Operation>> {
        match self.of(read) {
            Some(w) => (w.last.0 < since).then_some(Some(w.last.1)),
            None if read.outcome == Outcome::Read(None) => {
                let sent = self
                    .dels
                    .partition_point(|&(invoked, _)| invoked <= read.completed);
                let after = sent > 0 && self.dels[sent - 1].1 >= since;
                (!after).then_some(None)
            }
            None => None,
        }
    }

    /// The reads of `reads` (answered, of one promise: a connection, a client; in invocation
    /// order) that went back: each checked against the earlier read (completed before it was
    /// invoked) whose value's first PUT was invoked latest, as that one makes going back
    /// easiest to prove.
    pub(crate) fn went_back(&self, reads: &[&'a Operation]) -> Vec<Back<'a>> {
        let mut by_completion: Vec<&Operation> = reads.to_vec();
        by_completion.sort_by_key(|read| read.completed);
        let mut earlier = by_completion.iter().peekable();
        // The earlier read whose value's first PUT was invoked latest, and that PUT.
        let mut best: Option<(&Operation, &Operation)> = None;
        let mut back = Vec::new();
        for &later in reads {
            while let Some(read) = earlier.next_if(|read| read.completed <= later.invoked) {
                // (A value not written by then proves nothing more than that.)
                let written = self.of(read).filter(|w| w.first.invoked <= read.completed);
                if let Some(w) = written {
                    if best.is_none_or(|(_, put)| w.first.invoked > put.invoked) {
                        best = Some((read, w.first));
                    }
                }
            }
            let Some((before, put)) = best else {
                continue;
            };
            if let Some(older) = self.older_than(later, put.invoked) {
                back.push(Back {
                    earlier: before,
                    later,
                    put,
                    older,
                });
            }
        }
        back
    }
}

/// The faults of the replica reads in one key's history (the primary's operations of that key
/// are the writes they are checked against).
pub fn replica_violations(history: &[Operation]) -> Vec<ReplicaViolation> {
    let index = KeyWrites::new(history);
    let mut reads: Vec<&Operation> = history
        .iter()
        .filter(|op| op.node != Node::Primary && op.call == Call::Get)
        .filter(|op| matches!(op.outcome, Outcome::Read(_)))
        .collect();
    reads.sort_by_key(|read| (replica_number(read.node), read.connection, read.invoked));
    let mut violations = Vec::new();
    for read in &reads {
        if let Outcome::Read(Some(value)) = &read.outcome {
            let written = index.writes.get(value.as_str());
            if written.is_none_or(|w| w.first.invoked > read.completed) {
                let mut shown = vec![(*read).clone()];
                shown.extend(written.map(|w| w.first.clone()));
                violations.push(ReplicaViolation {
                    fault: ReplicaFault::Unwritten {
                        read: (*read).clone(),
                    },
                    window: Window::of(&read.key, shown),
                });
            }
        }
    }
    for connection in reads.chunk_by(|a, b| (a.node, a.connection) == (b.node, b.connection)) {
        for back in index.went_back(connection) {
            violations.push(ReplicaViolation {
                fault: ReplicaFault::WentBack {
                    earlier: back.earlier.clone(),
                    later: back.later.clone(),
                },
                window: back.window(),
            });
        }
    }
    violations
}

impl Back<'_> {
    /// The operations that show it: the PUT behind the earlier read, both reads, and the PUT
    /// behind the later one.
    pub(crate) fn window(&self) -> Window {
        let mut shown = vec![self.put.clone(), self.earlier.clone(), self.later.clone()];
        shown.extend(self.older.cloned());
        Window::of(&self.later.key, shown)
    }
}

/// A replica's number, to order reads by replica.
fn replica_number(node: Node) -> usize {
    match node {
        Node::Primary => 0,
        Node::Replica(n) => n,
    }
}

/// The time until which an operation may take effect: its completion, or for an unknown
/// outcome its bound (the process it was sent to was dead by then; `u64::MAX`: none). Both
/// are its `completed`.
fn until(op: &Operation) -> u64 {
    op.completed
}

#[cfg(test)]
mod tests;
