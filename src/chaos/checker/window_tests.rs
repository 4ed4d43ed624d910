//! The smallest violating window: what a window proves (checked by brute force against the
//! whole history), that the sweep checks windows exactly, and that the window found is
//! minimal and short.

use super::bound_tests::random_unknowns;
use super::sweep::{prepare, run, Span, Verdict};
use super::tests::{brute_force_from, op, put, random_small, read};
use super::*;
use crate::chaos::history::Call;
use crate::chaos::testing::{simulate, with_stale_read, Shape};

/// Brute force of the window `from..=to` as the module doc defines it: the known operations
/// inside it must take effect with their answers; PUTs and DELs of unknown outcome, or
/// straddling an end, may take effect from `from` (or their invocation, if later) to their
/// completion or bound, with any answer; the register starts absent or holding the value of
/// a PUT acknowledged before, or of unknown outcome and bounded before.
fn brute_window(history: &[Operation], from: u64, to: u64) -> bool {
    let mut ops = Vec::new();
    let mut entry = vec![None];
    for op in history.iter().filter(|op| op.outcome != Outcome::Failed) {
        if let (Call::Put(value), Outcome::Written | Outcome::Unknown) = (&op.call, &op.outcome) {
            if op.completed < from {
                entry.push(Some(value.clone()));
            }
        }
        let known = op.outcome != Outcome::Unknown;
        if known && op.invoked >= from && op.completed <= to {
            ops.push(op.clone());
        } else if op.call != Call::Get && op.invoked <= to && op.completed >= from {
            let mut optional = op.clone();
            optional.invoked = op.invoked.max(from);
            optional.outcome = Outcome::Unknown;
            ops.push(optional);
        }
    }
    entry.iter().any(|state| brute_force_from(&ops, state))
}

/// The sweep's verdict on a window.
fn sweep_window(history: &[Operation], from: u64, to: u64) -> bool {
    let ops: Vec<&Operation> = history.iter().collect();
    run(&prepare(&ops, Span { from, to })) == Verdict::Linearizable
}

#[test]
fn a_failing_window_proves_the_whole_history_wrong_and_the_sweep_checks_windows_exactly() {
    let mut rng = fastrand::Rng::with_seed(0x31d0);
    let mut failing = 0;
    for round in 0..3000 {
        // Half of them heavy with unknown outcomes, most of them bounded.
        let history = if round % 2 == 0 {
            random_small(&mut rng)
        } else {
            random_unknowns(&mut rng)
        };
        let whole = brute_force_from(&history, &None);
        let mut starts: Vec<u64> = history.iter().map(|op| op.invoked).collect();
        let mut ends: Vec<u64> = history.iter().map(|op| op.completed).collect();
        starts.push(0);
        ends.push(u64::MAX);
        for &from in &starts {
            for &to in ends.iter().filter(|&&to| to >= from) {
                let expected = brute_window(&history, from, to);
                assert_eq!(
                    sweep_window(&history, from, to),
                    expected,
                    "round {round}, window {from}..={to}: {history:#?}"
                );
                if !expected {
                    failing += 1;
                    assert!(!whole, "round {round}: a window fails, the whole does not");
                }
            }
        }
    }
    assert!(failing > 2000, "{failing} failing windows");
}

#[test]
fn the_window_found_fails_and_none_ending_earlier_or_starting_later_at_a_quiet_instant_does() {
    let mut rng = fastrand::Rng::with_seed(0x5a11);
    let mut found = 0;
    for round in 0..3000 {
        let history = if round % 2 == 0 {
            random_small(&mut rng)
        } else {
            random_unknowns(&mut rng)
        };
        let window = smallest_violation(&history);
        if brute_force_from(&history, &None) {
            assert_eq!(window, None, "round {round}");
            continue;
        }
        found += 1;
        let window = window.expect("a window for a history that is not linearizable");
        assert!(
            !brute_window(&history, window.from, window.to),
            "round {round}: {window:#?} {history:#?}"
        );
        for op in &history {
            if op.completed < window.to {
                let to = op.completed;
                assert!(brute_window(&history, 0, to), "round {round}: ends at {to}");
            }
            let quiescent = history.iter().all(|other| {
                matches!(other.outcome, Outcome::Failed | Outcome::Unknown)
                    || other.invoked >= op.invoked
                    || other.completed < op.invoked
            });
            if quiescent && op.invoked > window.from && op.invoked <= window.to {
                let from = op.invoked;
                assert!(
                    brute_window(&history, from, window.to),
                    "round {round}: starts at {from}: {window:#?} {history:#?}"
                );
            }
        }
    }
    assert!(found > 400, "{found} windows");
}

#[test]
fn a_linearizable_history_has_no_violating_window() {
    let mut rng = fastrand::Rng::with_seed(3);
    let history = simulate(&mut rng, &Shape::new(4, 2_000)).history;
    assert_eq!(smallest_violation(&history), None);
}

/// A long sequential history of `pairs` PUTs each read back, on key "k".
fn written_and_read(pairs: u64) -> Vec<Operation> {
    let mut history = Vec::new();
    for i in 0..pairs {
        let v = format!("v{i}");
        history.push(op(0, put(&v), 4 * i, 4 * i + 1, Outcome::Written));
        history.push(op(1, Call::Get, 4 * i + 2, 4 * i + 3, read(Some(&v))));
    }
    history
}

#[test]
fn a_stale_read_is_shown_by_the_write_that_replaced_the_value_and_the_read() {
    let mut history = written_and_read(1_000);
    // The read of v500 (at 2002..2003) shows v499 instead: v500 replaced it at 2000..2001.
    history[1_001].outcome = read(Some("v499"));
    let window = smallest_violation(&history).expect("a window");
    assert_eq!(window.key, "k");
    assert_eq!((window.from, window.to), (2_000, 2_003));
    assert_eq!(window.operations, history[1_000..=1_001].to_vec());
    assert_eq!(window.unknown_before, 0);
}

#[test]
fn a_lost_write_is_shown_by_the_write_and_the_read_that_missed_it() {
    let mut history = written_and_read(100);
    history.push(op(0, put("last"), 1_000, 1_001, Outcome::Written));
    history.push(op(2, Call::Get, 1_010, 1_011, read(None)));
    let window = smallest_violation(&history).expect("a window");
    assert_eq!((window.from, window.to), (1_000, 1_011));
    assert_eq!(window.operations.len(), 2);
}

#[test]
fn an_unknown_delete_from_before_a_window_may_take_effect_in_it_but_only_once() {
    let mut history = written_and_read(10);
    // No bound: it may take effect any time after it was sent.
    history.push(op(3, Call::Del, 5, u64::MAX, Outcome::Unknown));
    history.push(op(0, put("last"), 1_000, 1_001, Outcome::Written));
    history.push(op(2, Call::Get, 1_010, 1_011, read(None)));
    // The DEL may take effect after "last" was written: nothing is wrong.
    assert_eq!(smallest_violation(&history), None);
    // But "last" cannot come back after that: no PUT of it is left to take effect. The two
    // reads show it by themselves, whatever the register held before them.
    history.push(op(2, Call::Get, 1_020, 1_021, read(Some("last"))));
    let window = smallest_violation(&history).expect("a window");
    assert_eq!((window.from, window.to), (1_010, 1_021));
    assert_eq!(window.operations, history[history.len() - 2..].to_vec());
    assert_eq!(window.unknown_before, 1);
}

#[test]
fn an_unknown_delete_bounded_before_a_window_cannot_take_effect_in_it() {
    let mut history = written_and_read(10);
    // Sent at 5 to a process dead by 6.
    history.push(op(3, Call::Del, 5, 6, Outcome::Unknown));
    history.push(op(0, put("last"), 1_000, 1_001, Outcome::Written));
    history.push(op(2, Call::Get, 1_010, 1_011, read(None)));
    let window = smallest_violation(&history).expect("a window");
    assert_eq!((window.from, window.to), (1_000, 1_011));
    assert_eq!(window.operations, history[history.len() - 2..].to_vec());
    assert_eq!(window.unknown_before, 0);
}

#[test]
fn windows_of_long_paced_histories_with_a_stale_read_are_short() {
    let mut rng = fastrand::Rng::with_seed(17);
    let mut tried = 0;
    for round in 0..10 {
        // As in a paced run: clients pause longer between operations than one takes.
        let mut shape = Shape::new(rng.usize(2..=5), 3_000);
        shape.unknown = 100;
        shape.gap = 1_000;
        let history = simulate(&mut rng, &shape).history;
        let Some(stale) = with_stale_read(&history, &mut rng) else {
            continue;
        };
        tried += 1;
        let window = smallest_violation(&stale).expect("a window");
        assert!(
            !sweep_window(&stale, window.from, window.to),
            "round {round}"
        );
        assert!(
            window.operations.len() <= 20,
            "round {round}: {} operations",
            window.operations.len()
        );
    }
    assert!(tried >= 8, "stale reads made in {tried} rounds");
}
