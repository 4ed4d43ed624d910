//! The checker's specification: hand-made histories, valid and invalid, including the tricky
//! ones, and agreement with a brute-force checker on small random histories.

use super::reference::{step, State};
use super::*;
use crate::chaos::history::Call;

pub(super) use crate::chaos::testing::op;

/// A PUT of `v`.
pub(super) fn put(v: &str) -> Call {
    Call::Put(v.into())
}

/// A read that found `v`.
pub(super) fn read(v: Option<&str>) -> Outcome {
    Outcome::Read(v.map(str::to_string))
}

#[test]
fn sequential_histories_are_linearizable_exactly_when_a_register_agrees() {
    let valid = [
        op(0, put("a"), 0, 1, Outcome::Written),
        op(0, Call::Get, 2, 3, read(Some("a"))),
        op(0, Call::Del, 4, 5, Outcome::Deleted(true)),
        op(0, Call::Get, 6, 7, read(None)),
        op(0, Call::Del, 8, 9, Outcome::Deleted(false)),
    ];
    assert!(linearizable(&valid));
    let stale = [
        op(0, put("a"), 0, 1, Outcome::Written),
        op(0, put("b"), 2, 3, Outcome::Written),
        op(1, Call::Get, 4, 5, read(Some("a"))),
    ];
    assert!(
        !linearizable(&stale),
        "a read after a later write completed saw the old value"
    );
    let from_nowhere = [op(0, Call::Get, 0, 1, read(Some("x")))];
    assert!(!linearizable(&from_nowhere), "a value nobody wrote");
}

#[test]
fn a_read_of_a_concurrent_write_may_see_either_value() {
    let base = op(0, put("a"), 0, 1, Outcome::Written);
    let concurrent = op(1, put("b"), 2, 10, Outcome::Written);
    for seen in ["a", "b"] {
        let history = [
            base.clone(),
            concurrent.clone(),
            op(2, Call::Get, 3, 4, read(Some(seen))),
        ];
        assert!(linearizable(&history), "{seen}");
    }
    // But once one reader saw the new value, a later reader may not see the old one.
    let history = [
        base,
        concurrent,
        op(2, Call::Get, 3, 4, read(Some("b"))),
        op(3, Call::Get, 5, 6, read(Some("a"))),
    ];
    assert!(!linearizable(&history));
}

#[test]
fn an_unknown_write_may_or_may_not_have_taken_effect_but_not_both() {
    let unknown = op(1, put("b"), 2, 3, Outcome::Unknown);
    let first = op(0, put("a"), 0, 1, Outcome::Written);
    for seen in [Some("a"), Some("b")] {
        let history = [
            first.clone(),
            unknown.clone(),
            op(2, Call::Get, 10, 11, read(seen)),
        ];
        assert!(linearizable(&history), "{seen:?}");
    }
    // It took effect for one reader, so it cannot be undone for a later one.
    let history = [
        first,
        unknown,
        op(2, Call::Get, 10, 11, read(Some("b"))),
        op(2, Call::Get, 12, 13, read(Some("a"))),
    ];
    assert!(!linearizable(&history));
}

#[test]
fn failed_operations_did_not_happen() {
    let history = [
        op(0, put("a"), 0, 1, Outcome::Written),
        op(1, put("b"), 2, 3, Outcome::Failed),
        op(2, Call::Get, 4, 5, read(Some("b"))),
    ];
    assert!(!linearizable(&history));
}

#[test]
fn a_del_racing_a_put() {
    let put_a = op(0, put("a"), 0, 10, Outcome::Written);
    let del = op(1, Call::Del, 0, 10, Outcome::Deleted(true));
    // The DEL removed the PUT's value: afterwards the key is absent.
    let history = [
        put_a.clone(),
        del.clone(),
        op(2, Call::Get, 11, 12, read(None)),
    ];
    assert!(linearizable(&history));
    // The DEL found something, so the PUT came first: the key cannot hold "a" afterwards.
    let history = [put_a, del, op(2, Call::Get, 11, 12, read(Some("a")))];
    assert!(!linearizable(&history));
}

#[test]
fn a_lost_acknowledged_write_is_not_linearizable() {
    // Written and acknowledged, then a crash: afterwards the key reads absent.
    let history = [
        op(0, put("a"), 0, 1, Outcome::Written),
        op(1, Call::Get, 5, 6, read(None)),
    ];
    assert!(!linearizable(&history));
}

/// Brute force: some order of every known operation (and a subset of the unknown ones) that
/// respects real time and the register, from an absent key. An unknown operation's
/// `completed` is its bound: like a completion, it must come before anything invoked after.
fn brute_force(history: &[Operation]) -> bool {
    brute_force_from(history, &None)
}

/// Brute force from the register state `initial`.
pub(super) fn brute_force_from(history: &[Operation], initial: &State) -> bool {
    let ops: Vec<&Operation> = history
        .iter()
        .filter(|o| o.outcome != Outcome::Failed)
        .collect();
    let unknown: Vec<usize> = (0..ops.len())
        .filter(|&i| ops[i].outcome == Outcome::Unknown)
        .collect();
    for subset in 0..(1u32 << unknown.len()) {
        let chosen: Vec<usize> = (0..ops.len())
            .filter(|&i| match unknown.iter().position(|&u| u == i) {
                Some(bit) => subset & (1 << bit) != 0,
                None => true,
            })
            .collect();
        if orders(&ops, &chosen, &mut Vec::new(), initial) {
            return true;
        }
    }
    false
}

/// Whether `left` can be appended to `order` in some order that respects real time (an op
/// may not come after one invoked after it completed, or after its bound if unknown) and the
/// register.
fn orders(ops: &[&Operation], left: &[usize], order: &mut Vec<usize>, state: &State) -> bool {
    if left.is_empty() {
        return true;
    }
    for (n, &i) in left.iter().enumerate() {
        // `i` may go next only if no other remaining op completed (or was bounded) before `i`
        // was invoked.
        let blocked = left
            .iter()
            .any(|&j| j != i && ops[j].completed < ops[i].invoked);
        if blocked {
            continue;
        }
        let (answer, next) = step(state, &ops[i].call);
        if ops[i].outcome != Outcome::Unknown && ops[i].outcome != answer {
            continue;
        }
        let mut rest = left.to_vec();
        rest.remove(n);
        order.push(i);
        if orders(ops, &rest, order, &next) {
            return true;
        }
        order.pop();
    }
    false
}

/// A random history of up to 6 operations on two values, with any outcomes (mostly invalid),
/// small enough for brute force. An unknown one has no bound one time in three.
pub(super) fn random_small(rng: &mut fastrand::Rng) -> Vec<Operation> {
    let n = rng.usize(1..=6);
    (0..n)
        .map(|i| {
            let from = rng.u64(0..20);
            let to = from + rng.u64(0..8);
            let call = match rng.u8(0..3) {
                0 => put(["a", "b"][rng.usize(0..2)]),
                1 => Call::Get,
                _ => Call::Del,
            };
            let outcome = match (rng.u8(0..8), &call) {
                (0, _) => Outcome::Unknown,
                (1, _) => Outcome::Failed,
                (_, Call::Put(_)) => Outcome::Written,
                (_, Call::Get) => read([None, Some("a"), Some("b")][rng.usize(0..3)]),
                (_, Call::Del) => Outcome::Deleted(rng.bool()),
            };
            let unbounded = outcome == Outcome::Unknown && rng.u8(0..3) == 0;
            op(
                i,
                call,
                from,
                if unbounded { u64::MAX } else { to },
                outcome,
            )
        })
        .collect()
}

#[test]
fn it_agrees_with_brute_force_on_small_random_histories() {
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut invalid = 0;
    for round in 0..3000 {
        let history = random_small(&mut rng);
        let expected = brute_force(&history);
        invalid += usize::from(!expected);
        assert_eq!(
            linearizable(&history),
            expected,
            "round {round}: {history:#?}"
        );
    }
    assert!(
        invalid > 100,
        "the random histories include invalid ones ({invalid})"
    );
}

#[test]
fn long_sequential_histories_are_checked_like_short_ones() {
    // 200 sequential writes and reads: valid, then one stale read at the end.
    let mut history = Vec::new();
    for i in 0..100u64 {
        let v = format!("v{i}");
        history.push(op(0, put(&v), 4 * i, 4 * i + 1, Outcome::Written));
        history.push(op(1, Call::Get, 4 * i + 2, 4 * i + 3, read(Some(&v))));
    }
    assert!(linearizable(&history));
    history.push(op(1, Call::Get, 1000, 1001, read(Some("v3"))));
    assert!(!linearizable(&history));
}
