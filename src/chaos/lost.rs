//! Lost acknowledged writes: a write the store acknowledged whose value a later read does not
//! show, although nothing could have replaced it in between. A stronger statement than "not
//! linearizable", and the one a user cares about most, so it is counted on its own.
//!
//! A PUT or DEL of unknown outcome may take effect any time from when it was sent to its
//! bound (the process it was sent to was dead by then), so it can replace a write only if
//! its bound is not before the write was sent, just as a known one only if it did not
//! complete before. One with no bound replaces every later write, so none of those can be
//! proven lost this way; the linearizability check still holds such a key to one order of
//! everything (an unknown DEL explains at most one missing value).
//!
//! Operations touching at an instant overlap, as in the linearizability check: one that
//! completed (or was bounded) at the instant the write was sent may come after it, and one
//! sent at the instant the read completed may come before it. So a write proven lost proves
//! the history not linearizable, too.
//!
//! The definition compares every write with every read and every other mutation; computed
//! that way it takes 0.8 s for 4,000 operations of a valid key in release mode, growing
//! with the cube of the length (some 45 minutes for 60,000). This takes 5 ms for the 60,000
//! (`cargo test --release -p kvstore --lib lost_writes_of_sixty -- --nocapture`):
//! each write gets the earliest invocation of any other PUT or DEL that could take effect
//! after it (one that did not fail, and completed, or is bounded, not before the write was
//! invoked), and a read proves the write lost only if it was invoked after the write
//! completed and completed before then. Those reads are found by a binary search in the reads
//! sorted by invocation, and (ties apart) a read lies in the range of at most one write: of
//! two writes, the later one bounds the earlier one's range before its own begins. So the
//! whole costs O(n log n).

use crate::chaos::history::{Call, Node, Operation, Outcome};

/// An acknowledged write, and a read that proves it lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lost<'a> {
    /// The acknowledged write.
    pub write: &'a Operation,
    /// The earliest-completing read that proves it lost.
    pub read: &'a Operation,
}

/// The acknowledged writes of one key's history that a later read proves lost: for each, a
/// read invoked after the write completed that shows something else, with no other write or
/// delete (acknowledged, unknown but not bounded before the write, or pending) that could
/// have taken effect in between. Only the primary's answers count (replicas lag by design).
pub fn lost_writes(history: &[Operation]) -> Vec<&Operation> {
    proven_lost(history)
        .into_iter()
        .map(|lost| lost.write)
        .collect()
}

/// [`lost_writes`], each with the read that proves it lost, in the order of the history.
pub fn proven_lost(history: &[Operation]) -> Vec<Lost<'_>> {
    let primary: Vec<&Operation> = history
        .iter()
        .filter(|op| op.node == Node::Primary)
        .collect();
    let bounds = replaced_from(&primary);
    let mut reads: Vec<&Operation> = primary
        .iter()
        .copied()
        .filter(|op| matches!(op.outcome, Outcome::Read(_)))
        .collect();
    reads.sort_by_key(|read| read.invoked);
    let mut lost = Vec::new();
    for (&write, bound) in primary.iter().zip(bounds) {
        let (Outcome::Written, Call::Put(value)) = (&write.outcome, &write.call) else {
            continue;
        };
        let first = reads.partition_point(|read| read.invoked <= write.completed);
        let proof = reads[first..]
            .iter()
            .take_while(|read| read.invoked < bound)
            .filter(|read| read.completed < bound)
            .filter(|read| read.outcome != Outcome::Read(Some(value.clone())))
            .min_by_key(|read| read.completed);
        if let Some(&read) = proof {
            lost.push(Lost { write, read });
        }
    }
    lost
}

/// For each operation, the earliest invocation of any *other* PUT or DEL (not failed) that
/// could take effect after it: one completing (or, of unknown outcome, bounded) not before
/// it was invoked. `u64::MAX` if there is none. A read completing before then cannot have
/// seen it replaced.
fn replaced_from(ops: &[&Operation]) -> Vec<u64> {
    // Mutations by the time until which they may take effect (the completion, or the bound
    // of an unknown outcome: `completed` either way), latest first.
    let mut mutations: Vec<(u64, u64, usize)> = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| op.call != Call::Get && op.outcome != Outcome::Failed)
        .map(|(i, op)| (op.completed, op.invoked, i))
        .collect();
    mutations.sort_unstable_by(|a, b| b.cmp(a));
    let mut order: Vec<usize> = (0..ops.len()).collect();
    order.sort_unstable_by_key(|&i| std::cmp::Reverse(ops[i].invoked));
    let mut bounds = vec![u64::MAX; ops.len()];
    // The two earliest invocations among the mutations added so far, so that an operation's
    // own invocation can be left out.
    let mut earliest: [(u64, usize); 2] = [(u64::MAX, usize::MAX); 2];
    let mut added = mutations.iter().peekable();
    for i in order {
        while let Some(&(_, invoked, j)) = added.next_if(|&&(until, _, _)| until >= ops[i].invoked)
        {
            if (invoked, j) < earliest[0] {
                earliest = [(invoked, j), earliest[0]];
            } else if (invoked, j) < earliest[1] {
                earliest[1] = (invoked, j);
            }
        }
        bounds[i] = if earliest[0].1 == i {
            earliest[1].0
        } else {
            earliest[0].0
        };
    }
    bounds
}

#[cfg(test)]
mod tests;
