//! A window: a short stretch of one key's history that shows a violation by itself, so a
//! person can read why the history is wrong, and a run can list the faults active during it.

use std::fmt;
use std::ops::Range;

use crate::chaos::history::{Call, Node, Operation, Outcome};

/// The operations of one key over a span of time that, by themselves, show a violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// The key.
    pub key: String,
    /// The start of the span (ns from the start of the run).
    pub from: u64,
    /// The end of the span (ns).
    pub to: u64,
    /// The key's operations that overlap the span, in invocation order: all of them but the
    /// failed ones (they did not happen) and unanswered GETs (they changed nothing); one with
    /// an unknown outcome is listed if it was invoked in the span.
    pub operations: Vec<Operation>,
    /// PUTs and DELs of the key with an unknown outcome invoked before the span and not
    /// bounded before it: not listed, but they may have taken effect in it, and the checks
    /// allowed for that. (Those bounded before it can only have left the state it starts in.)
    pub unknown_before: usize,
}

impl Window {
    /// The window of `key`'s operations answered by the primary over `from..=to` in
    /// `history` (which may hold other keys and replica reads: they are left out).
    pub fn primary(history: &[Operation], key: &str, from: u64, to: u64) -> Window {
        let relevant = |op: &&Operation| {
            op.key == key
                && op.node == Node::Primary
                && op.outcome != Outcome::Failed
                && !(op.outcome == Outcome::Unknown && op.call == Call::Get)
        };
        let mut operations: Vec<Operation> = history
            .iter()
            .filter(relevant)
            .filter(|op| {
                op.invoked <= to
                    && if op.outcome == Outcome::Unknown {
                        op.invoked >= from
                    } else {
                        op.completed >= from
                    }
            })
            .cloned()
            .collect();
        operations.sort_by_key(|op| (op.invoked, op.completed));
        let unknown_before = history
            .iter()
            .filter(relevant)
            .filter(|op| op.outcome == Outcome::Unknown && op.invoked < from)
            .filter(|op| op.completed >= from)
            .count();
        Window {
            key: key.to_string(),
            from,
            to,
            operations,
            unknown_before,
        }
    }

    /// The window made of exactly `operations` (of `key`), over the time they cover.
    pub fn of(key: &str, mut operations: Vec<Operation>) -> Window {
        operations.sort_by_key(|op| (op.invoked, op.completed));
        let end = |op: &Operation| {
            if op.outcome == Outcome::Unknown {
                op.invoked
            } else {
                op.completed
            }
        };
        Window {
            key: key.to_string(),
            from: operations.iter().map(|op| op.invoked).min().unwrap_or(0),
            to: operations.iter().map(end).max().unwrap_or(0),
            operations,
            unknown_before: 0,
        }
    }

    /// The span, to match against the times of faults.
    pub fn span(&self) -> Range<u64> {
        self.from..self.to.saturating_add(1)
    }
}

/// The operations one per line, indented, and the pending ones from before as a last line.
impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for op in &self.operations {
            writeln!(f, "    {op}")?;
        }
        if self.unknown_before > 0 {
            writeln!(
                f,
                "    (and {} PUT/DEL of unknown outcome from before, which may have taken effect here)",
                self.unknown_before
            )?;
        }
        Ok(())
    }
}
