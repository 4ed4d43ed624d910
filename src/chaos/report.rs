//! One entry point for a whole run's history: every key checked (the primary's answers for
//! lost writes and linearizability, the replicas' reads for their own rules), and a report
//! that says what is wrong in words a person can follow, each violation with the operations
//! that show it.

use std::fmt;

use crate::chaos::checker::smallest_violation;
use crate::chaos::history::{Call, Node, Operation, Outcome};
use crate::chaos::lost::proven_lost;
use crate::chaos::read_your_writes::{session_violations, SessionViolation};
use crate::chaos::replica::{replica_violations, ReplicaViolation};
use crate::chaos::window::Window;

/// An acknowledged write a later read proves lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostWrite {
    /// The acknowledged write.
    pub write: Operation,
    /// The read that proves it lost (the earliest to complete).
    pub read: Operation,
    /// The key's operations from the write to the read.
    pub window: Window,
}

/// What the checks found in one key's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyReport {
    /// The key.
    pub key: String,
    /// Its operations the primary answered.
    pub primary_operations: usize,
    /// Its operations replicas answered.
    pub replica_operations: usize,
    /// Acknowledged writes a later read proves lost.
    pub lost_writes: Vec<LostWrite>,
    /// If the primary's answers are not linearizable: the smallest window that shows it.
    pub not_linearizable: Option<Window>,
    /// What the replicas' reads did wrong.
    pub replica_violations: Vec<ReplicaViolation>,
    /// What the reads of clients with a position token did wrong (read-your-writes,
    /// monotonic reads).
    pub session_violations: Vec<SessionViolation>,
}

impl KeyReport {
    /// Whether nothing is wrong with this key.
    pub fn is_valid(&self) -> bool {
        self.lost_writes.is_empty()
            && self.not_linearizable.is_none()
            && self.replica_violations.is_empty()
            && self.session_violations.is_empty()
    }
}

/// What the checks found in a whole history, key by key (in key order).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Report {
    /// One report a key.
    pub keys: Vec<KeyReport>,
}

/// One thing wrong, to print.
#[derive(Debug, Clone, Copy)]
pub enum Violation<'a> {
    /// An acknowledged write was lost.
    LostWrite(&'a LostWrite),
    /// A key's primary answers are not linearizable, as this window shows.
    NotLinearizable(&'a Window),
    /// A replica did something wrong.
    Replica(&'a ReplicaViolation),
    /// A client with a position token missed its own write, or its reads went back.
    Session(&'a SessionViolation),
}

/// Checks a whole history (every key, every node).
pub fn check(history: &[Operation]) -> Report {
    let mut sorted = history.to_vec();
    sorted.sort_by(|a, b| (&a.key, a.invoked, a.completed).cmp(&(&b.key, b.invoked, b.completed)));
    let keys = sorted
        .chunk_by(|a, b| a.key == b.key)
        .map(check_key)
        .collect();
    Report { keys }
}

/// Checks one key's operations (sorted by invocation).
fn check_key(ops: &[Operation]) -> KeyReport {
    let key = ops.first().map_or("", |op| op.key.as_str());
    let primary_operations = ops.iter().filter(|op| op.node == Node::Primary).count();
    let lost_writes = proven_lost(ops)
        .into_iter()
        .map(|lost| LostWrite {
            write: lost.write.clone(),
            read: lost.read.clone(),
            window: Window::primary(ops, key, lost.write.invoked, lost.read.completed),
        })
        .collect();
    KeyReport {
        key: key.to_string(),
        primary_operations,
        replica_operations: ops.len() - primary_operations,
        lost_writes,
        not_linearizable: smallest_violation(ops),
        replica_violations: replica_violations(ops),
        session_violations: session_violations(ops),
    }
}

impl Report {
    /// Whether nothing is wrong with any key.
    pub fn is_valid(&self) -> bool {
        self.keys.iter().all(KeyReport::is_valid)
    }

    /// How many operations were checked.
    pub fn operations(&self) -> usize {
        let each = |key: &KeyReport| key.primary_operations + key.replica_operations;
        self.keys.iter().map(each).sum()
    }

    /// How many acknowledged writes were lost.
    pub fn lost_writes(&self) -> usize {
        self.keys.iter().map(|key| key.lost_writes.len()).sum()
    }

    /// How many keys' primary answers are not linearizable.
    pub fn non_linearizable_keys(&self) -> usize {
        let wrong = |key: &&KeyReport| key.not_linearizable.is_some();
        self.keys.iter().filter(wrong).count()
    }

    /// How many replica reads did something wrong.
    pub fn replica_violations(&self) -> usize {
        self.keys
            .iter()
            .map(|key| key.replica_violations.len())
            .sum()
    }

    /// How many reads with a position token missed their client's own write.
    pub fn read_your_writes_violations(&self) -> usize {
        let missed = |v: &&SessionViolation| v.missed_own_write();
        let each = |key: &KeyReport| key.session_violations.iter().filter(missed).count();
        self.keys.iter().map(each).sum()
    }

    /// How many reads with a position token went back from an earlier read of their client.
    pub fn monotonic_read_violations(&self) -> usize {
        let all: usize = self.keys.iter().map(|k| k.session_violations.len()).sum();
        all - self.read_your_writes_violations()
    }

    /// Every violation, key by key.
    pub fn violations(&self) -> impl Iterator<Item = Violation<'_>> {
        self.keys.iter().flat_map(|key| {
            let lost = key.lost_writes.iter().map(Violation::LostWrite);
            let window = key.not_linearizable.iter().map(Violation::NotLinearizable);
            let replica = key.replica_violations.iter().map(Violation::Replica);
            let session = key.session_violations.iter().map(Violation::Session);
            lost.chain(window).chain(replica).chain(session)
        })
    }
}

/// What was lost in a sentence, then the operations from the write to the read, one a line.
impl fmt::Display for LostWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let written = match &self.write.call {
            Call::Put(value) => value.as_str(),
            Call::Get | Call::Del => "?",
        };
        let seen = match &self.read.outcome {
            Outcome::Read(Some(value)) => value.as_str(),
            _ => "nothing",
        };
        writeln!(
            f,
            "lost acknowledged write on key {}: {written} was written, then a read showed \
             {seen}, and nothing could have replaced it in between:",
            self.window.key
        )?;
        write!(f, "{}", self.window)
    }
}

/// What went wrong in a sentence, then the operations that show it, one a line.
impl fmt::Display for Violation<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::LostWrite(lost) => write!(f, "{lost}"),
            Violation::NotLinearizable(window) => {
                writeln!(
                    f,
                    "key {} is not linearizable: no order of these operations explains every \
                     answer, whatever the key held before them:",
                    window.key
                )?;
                write!(f, "{window}")
            }
            Violation::Replica(replica) => write!(f, "{replica}"),
            Violation::Session(session) => write!(f, "{session}"),
        }
    }
}

/// Every violation, then one line with the verdict and the counts.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for violation in self.violations() {
            write!(f, "{violation}")?;
        }
        write!(
            f,
            "{}: {} keys, {} operations, {} lost acknowledged writes, {} keys not \
             linearizable, {} replica violations, {} read-your-writes violations, {} \
             monotonic read violations",
            if self.is_valid() { "valid" } else { "INVALID" },
            self.keys.len(),
            self.operations(),
            self.lost_writes(),
            self.non_linearizable_keys(),
            self.replica_violations(),
            self.read_your_writes_violations(),
            self.monotonic_read_violations()
        )
    }
}

#[cfg(test)]
mod tests;
