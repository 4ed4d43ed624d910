//! Linearizability of one key's history: is there one order of its operations, each taking
//! effect at an instant between its invocation and its completion, in which every answer is
//! what a single register would have given? And if not, which short stretch of the history
//! shows it by itself?
//!
//! Only the primary's answers are checked here (replica reads lag by design and have checks
//! of their own); failed operations did not happen; an operation with an unknown outcome may
//! take effect at any instant from its invocation to its bound (its `completed` field: the
//! process it was sent to was dead by then; `u64::MAX`, no bound), or never, with any answer.
//! So it must come before every operation invoked after its bound, and a GET of unknown
//! outcome changes nothing. Operations touching at an instant overlap: one invoked at the
//! instant another completes, or at another's bound, may take effect before it.
//!
//! # The sweep
//!
//! A search over the whole history at once (Wing and Gong's, with Lowe's memoisation; kept
//! as `reference`) slows down as a history grows: its memo holds a set of the operations
//! done, which grows with the history, and operations of unknown outcome stay candidates
//! until their bound, or forever. A 10-minute `kvchaos` run gives some 60,000 operations a
//! key, a few hundred of them unknown. So the check is one sweep over time instead,
//! carrying every way the history so far could have gone (Lowe's "just-in-time
//! linearization"), with each way reduced to what matters for the future:
//!
//! - which known operations *still in flight* have taken effect (one bit each, so at most
//!   128 in flight at once, or 128 clients on one key: beyond, `linearizable` falls back to
//!   the reference search);
//! - the register's state;
//! - how many operations that may still take effect (unknown outcome) would leave each state,
//!   by bound: the latest instant each may take effect (*pending* operations, `spare`).
//!
//! At a *quiescent* instant, with no known operation in flight, a way is exactly a
//! configuration (state, unknown operations not yet applied) carried across a cut; between
//! cuts the sweep also tracks the operations in flight. An unknown operation becomes pending
//! at its invocation and is withdrawn after its bound. When a known operation completes,
//! the ways in which it has not yet taken effect are extended by making it take effect now,
//! possibly after others still in flight and after one pending unknown operation; the others
//! are dropped. At a bound, before the operations bounded there are withdrawn, the ways are
//! extended by making one of them take effect now, last, possibly after known operations in
//! flight (each maybe right after one pending operation), and the ways as they were are kept
//! too. Nothing else ever has to happen early: any linearization can be rearranged, keeping
//! its order, so that each operation takes effect as late as its deadline (completion, or
//! bound) and the next one's instant allow. Then every operation takes effect at a deadline,
//! and those at one instant form a run of the order that ends with an operation whose
//! deadline it is: a known one completing then (its completion is handled first), or an
//! unknown one bounded then.
//!
//! Three facts keep the set of ways small, and each keeps the check exact:
//!
//! - Unknown operations that would leave the same state are interchangeable once invoked
//!   (DELs all leave the key absent; PUTs of a value no later read shows are alike to every
//!   later answer), but for their bounds: so only their number by bound matters, not which
//!   of them took effect. And of those, the one to take effect is always the one bounded
//!   earliest: a way that used another instead, keeping that one pending, can swap the two
//!   (both were offered when the other was used, and the one kept lasts at least as long).
//!   The exchange is what makes counting exact: it need not be the latest-bounded that are
//!   left pending (one invoked after another was used may be bounded before it), so a way
//!   keeps its pending operations' bounds, not only how many are left.
//! - One unknown operation right before a known one is enough: each overwrites the register,
//!   so of several in a row only the last matters, and before a PUT none does.
//! - Leaving an unknown operation pending keeps every option of having applied it (it may
//!   still take effect later, or never): of two ways with the same state and operations in
//!   flight done, one with at least as many pending of every kind, bounded at or after any
//!   instant, makes the other redundant, and only ways no other makes redundant are kept.
//!
//! Two more keep the search itself small. A GET in flight takes effect as soon as the
//! register holds what it found (a way in which it has can do all one in which it has not,
//! and needs nothing to get there). And a way in which the register no longer holds a value
//! that a read still to come needs, with no operation left that could write it, is dropped
//! at once instead of when that read completes.
//!
//! The check is exact, never an approximation: the tests hold it to the reference search
//! and to a brute-force one. Its cost is linear in the length of the history, and grows with
//! the number of PUTs and DELs in flight at once (exponentially in the worst case, as for
//! any exact check). Measured in release mode on a 2-core machine
//! (`cargo test --release -p kvstore --lib sixty_thousand -- --nocapture`): a
//! 60,000-operation key of 5 clients with 272 unknown outcomes (about half of them bounded
//! by a kill, as `kvchaos` records them) takes 16 ms to accept, and the same with one stale
//! read 11 ms to reject and 45 ms more to find its smallest window (the checker before
//! bounds, on the same machine and a like history with 266 unknown and none bounded: 16, 11
//! and 40 ms). The reference search takes 3 s on that key (its cost grows with the square
//! of the length), and more than 4 minutes on 5,000 operations whose unknown outcomes may
//! take effect any time later (1 in 50), where the sweep takes 2 ms (39 ms for 60,000).
//! With more clients on one key the sweep slows: 0.5 s for 60,000 operations with 20
//! clients (up to 11 in flight at once), 50 s with 50 (up to 20 in flight).
//!
//! # The smallest window
//!
//! A window `from..=to` is checked without its past: the operations with a known outcome
//! inside it must take effect inside it with their answers; it may start in any state its
//! past could have left (absent, or the value of any PUT invoked before `from`: acknowledged
//! or bounded before it, or taking effect at its start); and PUTs and DELs of unknown
//! outcome not bounded before it, or straddling either end, may take effect inside it, each
//! until its bound or completion (answers unchecked).
//! Cutting any linearization of the whole history to the window gives one of the window's,
//! so a window that is not linearizable *proves* that the whole history is not, whatever
//! happened before it.
//!
//! Ending a window earlier only loses constraints, so the earliest end of a failing window
//! is found by a search (galloping from where the sweep found the violation, then
//! bisecting). Starting it later loses constraints too, as long as it starts at a quiescent
//! instant (no operation with a known outcome in flight): elsewhere an operation straddling
//! the start may take effect in the window after its own completion, a constraint a later
//! start would keep. So the start is bisected among quiescent instants (the first invocation
//! is one). Each step is a sweep of one window: some 30 sweeps for a 60,000-operation key.

mod reference;
mod spare;
mod sweep;

use crate::chaos::history::{Node, Operation, Outcome};
use crate::chaos::window::Window;
use sweep::{prepare, run, Span, Verdict};

/// The operations of a history the primary answered.
fn primary(history: &[Operation]) -> Vec<&Operation> {
    history
        .iter()
        .filter(|op| op.node == Node::Primary)
        .collect()
}

/// Whether one key's history (starting from an absent key) is linearizable, counting only
/// the operations the primary answered.
pub fn linearizable(history: &[Operation]) -> bool {
    let ops = primary(history);
    match run(&prepare(&ops, Span::ALL)) {
        Verdict::Linearizable => true,
        Verdict::Violated { .. } => false,
        Verdict::TooConcurrent => reference::linearizable(&ops),
    }
}

/// For one key's history that is not linearizable (counting only the primary's answers), a
/// short window of it that by itself is not: no window ends earlier, and none ending at the
/// same time starts later at a quiescent instant. `None` if the history is linearizable.
pub fn smallest_violation(history: &[Operation]) -> Option<Window> {
    let ops = primary(history);
    let key = ops.first().map_or("", |op| op.key.as_str());
    let known: Vec<&Operation> = ops
        .iter()
        .copied()
        .filter(|op| !matches!(op.outcome, Outcome::Failed | Outcome::Unknown))
        .collect();
    let last = known.iter().map(|op| op.completed.max(op.invoked)).max()?;
    let found = match run(&prepare(&ops, Span::ALL)) {
        Verdict::Linearizable => return None,
        Verdict::Violated { at } => at,
        Verdict::TooConcurrent => {
            let whole = Window::primary(history, key, 0, last);
            return (!reference::linearizable(&ops)).then_some(whole);
        }
    };
    let fails = |from: u64, to: u64| {
        matches!(
            run(&prepare(&ops, Span { from, to })),
            Verdict::Violated { .. }
        )
    };
    // The end: the earliest completion at which the prefix fails. None fails before the sweep
    // found the violation, and the last fails (the whole history): gallop, then bisect,
    // keeping `failing` an end known to fail.
    let mut ends: Vec<u64> = known
        .iter()
        .map(|op| op.completed.max(op.invoked))
        .filter(|&end| end >= found)
        .collect();
    ends.sort_unstable();
    ends.dedup();
    let mut failing = ends.len() - 1;
    let (mut passing, mut step) = (None::<usize>, 1);
    loop {
        let probe = passing.map_or(0, |p| p + step).min(failing);
        if probe == failing || fails(0, ends[probe]) {
            failing = probe;
            break;
        }
        passing = Some(probe);
        step *= 2;
    }
    let mut low = passing.map_or(0, |p| p + 1);
    while low < failing {
        let mid = low + (failing - low) / 2;
        if fails(0, ends[mid]) {
            failing = mid;
        } else {
            low = mid + 1;
        }
    }
    let to = ends[failing];
    // The start: the latest quiescent invocation from which the window still fails (the
    // first invocation starts the whole prefix, known to fail).
    let mut invocations: Vec<(u64, u64)> = known
        .iter()
        .map(|op| (op.invoked, op.completed.max(op.invoked)))
        .filter(|&(start, _)| start <= to)
        .collect();
    invocations.sort_unstable();
    let mut starts = Vec::new();
    let mut busy_until = None;
    for (start, end) in invocations {
        if busy_until.is_none_or(|busy| busy < start) {
            starts.push(start);
        }
        busy_until = busy_until.max(Some(end));
    }
    starts.dedup();
    let (mut start, mut high) = (0, starts.len() - 1);
    while start < high {
        let mid = start + (high - start).div_ceil(2);
        if fails(starts[mid], to) {
            start = mid;
        } else {
            high = mid - 1;
        }
    }
    Some(Window::primary(history, key, starts[start], to))
}

#[cfg(test)]
mod bound_tests;
#[cfg(test)]
mod scale_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod window_tests;
