//! The reference search: Wing and Gong's, with Lowe's memoisation as Porcupine does it, over
//! a whole key's history at once. It is simple and long trusted here, so the tests use it as
//! the reference for the sweep, and the sweep falls back to it for a history with more than
//! 128 operations in flight at once (which the sweep's bit masks cannot hold).
//!
//! Walk the invocation and completion events in time order; at an invocation, try to make
//! that operation take effect now (if the register's answer matches), remembering the (set of
//! operations done, register state) pairs already explored; at a completion of an operation
//! not yet done, undo the last choice and try the next. An operation with an unknown outcome
//! accepts any answer and need never take effect, so its completion event (at its bound) is
//! passed over; but it may take effect only before every operation invoked after its bound,
//! so it is a candidate only while no operation done so far was invoked after it. (That
//! depends on the done-set alone, so the memo stays sound.) Failed operations did not happen
//! and are left out.
//!
//! Its cost grows with the history: the done-set is cloned into the memo at every step, and
//! operations with an unknown outcome and no bound stay candidates forever.

use std::collections::HashSet;

use crate::chaos::history::{Call, Operation, Outcome};

/// The register's state: the key's value, or absent.
pub type State = Option<String>;

/// One operation as the search sees it.
#[derive(Debug, Clone)]
struct Op {
    /// What was asked.
    call: Call,
    /// What was heard; `None`: anything (the outcome is unknown).
    outcome: Option<Outcome>,
    /// Invocation and completion times (for an unknown outcome, the completion is its bound:
    /// `u64::MAX` if none).
    invoked: u64,
    /// See `invoked`.
    completed: u64,
}

/// The register's answer to `call` in `state`, and its state after.
pub fn step(state: &State, call: &Call) -> (Outcome, State) {
    match call {
        Call::Put(value) => (Outcome::Written, Some(value.clone())),
        Call::Get => (Outcome::Read(state.clone()), state.clone()),
        Call::Del => (Outcome::Deleted(state.is_some()), None),
    }
}

/// The operations of one key's history the search considers: every one but the failed.
fn prepare(history: &[&Operation]) -> Vec<Op> {
    history
        .iter()
        .filter(|op| op.outcome != Outcome::Failed)
        .map(|op| Op {
            call: op.call.clone(),
            outcome: (op.outcome != Outcome::Unknown).then(|| op.outcome.clone()),
            invoked: op.invoked,
            completed: if op.outcome == Outcome::Unknown {
                op.completed.max(op.invoked)
            } else {
                op.completed
            },
        })
        .collect()
}

/// Whether `op` may take effect now, after operations done of which the latest invoked was
/// invoked at `latest`: an operation of unknown outcome only if that was not after its bound.
/// (A known one would have ended the walk at its completion event before.)
fn in_time(op: &Op, latest: u64) -> bool {
    op.outcome.is_some() || latest <= op.completed
}

/// Whether one key's history (starting from an absent key) is linearizable; every operation
/// given counts, whichever node answered it.
pub fn linearizable(history: &[&Operation]) -> bool {
    let ops = prepare(history);
    if ops.len() <= 128 {
        search(&ops)
    } else {
        search_large(&ops)
    }
}

/// Invocation and completion events in time order: `(time, is_completion, op)`. At equal
/// times invocations come first: an operation invoked as another completes may take effect
/// before it.
fn events(ops: &[Op]) -> Vec<(u64, bool, usize)> {
    let mut events: Vec<(u64, bool, usize)> = Vec::with_capacity(ops.len() * 2);
    for (i, op) in ops.iter().enumerate() {
        events.push((op.invoked, false, i));
        events.push((op.completed, true, i));
    }
    events.sort();
    events
}

/// The Wing-Gong-Lowe search over at most 128 operations, the done-set as a bitmask.
fn search(ops: &[Op]) -> bool {
    let events = events(ops);
    let mut done: u128 = 0;
    let mut state: State = None;
    let mut seen: HashSet<(u128, State)> = HashSet::new();
    // The latest invocation of an op done.
    let mut latest = 0;
    // The choices made: the op that took effect, the state before it, where its invocation
    // event was (to resume the walk after undoing it), and `latest` before it.
    let mut stack: Vec<(usize, State, usize, u64)> = Vec::new();
    let mut at = 0;
    // Every op with a known outcome must take effect; unknown ones may never.
    let required: u128 = ops
        .iter()
        .enumerate()
        .filter(|(_, op)| op.outcome.is_some())
        .fold(0, |mask, (i, _)| mask | (1 << i));
    loop {
        if done & required == required {
            return true;
        }
        let Some(&(_, is_completion, i)) = events.get(at) else {
            return false;
        };
        let bit = 1u128 << i;
        if done & bit != 0 || (is_completion && ops[i].outcome.is_none()) {
            at += 1;
            continue;
        }
        if !is_completion {
            let (answer, next) = step(&state, &ops[i].call);
            let matches = ops[i].outcome.as_ref().is_none_or(|heard| *heard == answer);
            if matches && in_time(&ops[i], latest) && seen.insert((done | bit, next.clone())) {
                stack.push((i, std::mem::replace(&mut state, next), at, latest));
                done |= bit;
                latest = latest.max(ops[i].invoked);
                at = 0;
                continue;
            }
            at += 1;
            continue;
        }
        // The completion of an operation that has not taken effect: a dead end. Undo the last
        // choice and try the next candidate after it.
        let Some((last, before, position, previous)) = stack.pop() else {
            return false;
        };
        done &= !(1u128 << last);
        state = before;
        latest = previous;
        at = position + 1;
    }
}

/// The same search for histories too long for a 128-bit done-set, with a growable one.
fn search_large(ops: &[Op]) -> bool {
    let events = events(ops);
    // A bitset, one bit an operation: cloned into the memo at each step, so kept small.
    let mut done = vec![0u64; ops.len().div_ceil(64)];
    let is_done = |done: &[u64], i: usize| done[i / 64] & (1 << (i % 64)) != 0;
    let mut state: State = None;
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    let mut latest = 0;
    let mut stack: Vec<(usize, State, usize, u64)> = Vec::new();
    let mut at = 0;
    let mut remaining = ops.iter().filter(|op| op.outcome.is_some()).count();
    loop {
        if remaining == 0 {
            return true;
        }
        let Some(&(_, is_completion, i)) = events.get(at) else {
            return false;
        };
        if is_done(&done, i) || (is_completion && ops[i].outcome.is_none()) {
            at += 1;
            continue;
        }
        if !is_completion {
            let (answer, next) = step(&state, &ops[i].call);
            let matches = ops[i].outcome.as_ref().is_none_or(|heard| *heard == answer);
            if matches && in_time(&ops[i], latest) {
                done[i / 64] |= 1 << (i % 64);
                if seen.insert((done.clone(), next.clone())) {
                    stack.push((i, std::mem::replace(&mut state, next), at, latest));
                    latest = latest.max(ops[i].invoked);
                    if ops[i].outcome.is_some() {
                        remaining -= 1;
                    }
                    at = 0;
                    continue;
                }
                done[i / 64] &= !(1 << (i % 64));
            }
            at += 1;
            continue;
        }
        let Some((last, before, position, previous)) = stack.pop() else {
            return false;
        };
        done[last / 64] &= !(1 << (last % 64));
        if ops[last].outcome.is_some() {
            remaining += 1;
        }
        state = before;
        latest = previous;
        at = position + 1;
    }
}
