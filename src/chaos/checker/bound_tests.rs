//! Unknown outcomes with a bound (the process they were sent to was killed by then): such an
//! operation may take effect at any instant from its invocation to its bound, or never. The
//! specification by hand-made histories, each checked by the sweep, the reference search and
//! brute force alike, and the reference search held to brute force on random ones.

use super::reference;
use super::tests::{brute_force_from, op, put, random_small, read};
use super::*;
use crate::chaos::history::Call;
use crate::chaos::testing::agreement;

/// No bound: the operation may take effect any time after its invocation.
const NEVER: u64 = u64::MAX;

/// Whether `history` is linearizable, after checking that the sweep, the reference search
/// and brute force all say so.
fn verdict(history: &[Operation]) -> bool {
    let expected = brute_force_from(history, &None);
    let ops: Vec<&Operation> = history.iter().collect();
    assert_eq!(linearizable(history), expected, "sweep: {history:#?}");
    assert_eq!(
        reference::linearizable(&ops),
        expected,
        "reference: {history:#?}"
    );
    expected
}

#[test]
fn an_unknown_write_read_after_its_bound_took_effect_before_it() {
    let unknown = op(1, put("b"), 2, 5, Outcome::Unknown);
    // Read long after the process died: it took effect by then.
    assert!(verdict(&[
        unknown.clone(),
        op(2, Call::Get, 10, 11, read(Some("b")))
    ]));
    // But it cannot take effect after a write invoked after its bound.
    let c = op(0, put("c"), 6, 7, Outcome::Written);
    let history = [
        unknown.clone(),
        c.clone(),
        op(2, Call::Get, 10, 11, read(Some("b"))),
    ];
    assert!(!verdict(&history));
    let mut unbounded = unknown.clone();
    unbounded.completed = NEVER;
    assert!(verdict(&[
        unbounded,
        c,
        op(2, Call::Get, 10, 11, read(Some("b")))
    ]));
    // Touching at an instant overlaps: a write invoked at the bound may come before it.
    let at_bound = op(0, put("c"), 5, 7, Outcome::Written);
    let history = [unknown, at_bound, op(2, Call::Get, 10, 11, read(Some("b")))];
    assert!(verdict(&history));
}

#[test]
fn an_unknown_delete_cannot_take_effect_after_its_bound() {
    let written = op(0, put("a"), 0, 1, Outcome::Written);
    let del = |bound| op(1, Call::Del, 2, bound, Outcome::Unknown);
    // The first read shows "a", so the DEL had not taken effect; by its bound it can no
    // longer, so the second read cannot show nothing.
    let reads = [
        op(2, Call::Get, 5, 6, read(Some("a"))),
        op(2, Call::Get, 7, 8, read(None)),
    ];
    let history = |bound| {
        [
            written.clone(),
            del(bound),
            reads[0].clone(),
            reads[1].clone(),
        ]
    };
    assert!(!verdict(&history(3)));
    assert!(
        verdict(&history(6)),
        "it may take effect at 5..=6, after the read"
    );
    assert!(verdict(&history(NEVER)));
    // Bounded before the read showing nothing: it took effect before it, fine.
    let gone = op(2, Call::Get, 7, 8, read(None));
    assert!(verdict(&[written, del(3), gone]));
}

#[test]
fn a_known_operation_in_flight_may_have_to_take_effect_before_an_unknown_ones_bound() {
    // The read shows nothing: only the unknown DEL can have removed "a", by its bound 5, so
    // the PUT in flight until 10 took effect by 5, before it.
    let history = [
        op(0, put("a"), 0, 10, Outcome::Written),
        op(1, Call::Del, 0, 5, Outcome::Unknown),
        op(2, Call::Get, 11, 12, read(None)),
    ];
    assert!(verdict(&history));
    // So no read after the bound can show "a".
    let mut seen = history.to_vec();
    seen.push(op(3, Call::Get, 6, 7, read(Some("a"))));
    assert!(!verdict(&seen));
    seen[3].outcome = read(None);
    assert!(verdict(&seen));
    // A PUT sent after the bound comes after the DEL.
    let mut late = history.to_vec();
    late[0].invoked = 6;
    assert!(!verdict(&late));
}

#[test]
fn of_two_pending_writes_the_one_bounded_first_is_used_first() {
    // Two unknown PUTs of values no read shows, both sent at 0: one bounded at 20, one at
    // 100. A DEL at 5 finds one of them; the key reads absent at 22; a DEL at 25 finds
    // something again: only the PUT bounded at 100 can have written it, so the one bounded
    // at 20 must be the one the first DEL found.
    let history = [
        op(0, put("x"), 0, 100, Outcome::Unknown),
        op(1, put("y"), 0, 20, Outcome::Unknown),
        op(2, Call::Del, 5, 5, Outcome::Deleted(true)),
        op(2, Call::Get, 22, 22, read(None)),
        op(2, Call::Del, 25, 25, Outcome::Deleted(true)),
    ];
    assert!(verdict(&history));
    // Sent at 10, after the first DEL, the PUT bounded at 20 cannot be the one it found;
    // and it can no longer take effect at 25 (counting pending PUTs without their bounds
    // would take it for the one bounded at 100, still pending).
    let mut late = history.to_vec();
    late[1].invoked = 10;
    assert!(!verdict(&late));
}

#[test]
fn a_value_no_one_had_sent_cannot_be_read_bound_or_not() {
    for bound in [15, NEVER] {
        let history = [
            op(0, Call::Get, 0, 5, read(Some("a"))),
            op(1, put("a"), 10, bound, Outcome::Unknown),
        ];
        assert!(!verdict(&history), "{bound}");
    }
}

#[test]
fn a_window_starts_after_an_unknown_operation_bounded_before_it() {
    let mut history = vec![
        op(0, put("a"), 0, 1, Outcome::Written),
        op(1, Call::Get, 2, 3, read(Some("a"))),
        // Bounded at 5: it may have left "x" there, but cannot take effect later.
        op(2, put("x"), 4, 5, Outcome::Unknown),
        op(1, Call::Get, 10, 11, read(Some("x"))),
        op(1, Call::Get, 12, 13, read(Some("a"))),
    ];
    let window = smallest_violation(&history).expect("a window");
    assert_eq!((window.from, window.to), (10, 13));
    assert_eq!(window.operations, history[3..].to_vec());
    assert_eq!(window.unknown_before, 0);
    // Unbounded, it may take effect in the window, too; still "a" cannot come back.
    history[2].completed = NEVER;
    let window = smallest_violation(&history).expect("a window");
    assert_eq!((window.from, window.to), (10, 13));
    assert_eq!(window.unknown_before, 1);
}

#[test]
fn the_reference_search_agrees_with_brute_force_on_small_random_histories() {
    let mut rng = fastrand::Rng::with_seed(0xb0d);
    let mut invalid = 0;
    for round in 0..3000 {
        let history = random_small(&mut rng);
        let ops: Vec<&Operation> = history.iter().collect();
        let expected = brute_force_from(&history, &None);
        invalid += usize::from(!expected);
        assert_eq!(
            reference::linearizable(&ops),
            expected,
            "round {round}: {history:#?}"
        );
    }
    assert!(invalid > 100, "{invalid} invalid");
}

/// A random history of up to 7 operations, half the PUTs and DELs of unknown outcome with
/// random bounds (one in four none), writing values reads show ("a") or never show ("x",
/// "y": alike to the sweep, so only its counting of them by bound tells them apart).
pub(super) fn random_unknowns(rng: &mut fastrand::Rng) -> Vec<Operation> {
    let n = rng.usize(3..=7);
    (0..n)
        .map(|i| {
            let from = rng.u64(0..16);
            let to = from + rng.u64(0..10);
            let call = match rng.u8(0..6) {
                0 => put("a"),
                1 => put("x"),
                2 => put("y"),
                3 | 4 => Call::Get,
                _ => Call::Del,
            };
            let outcome = match &call {
                Call::Get => read([None, Some("a")][rng.usize(0..2)]),
                _ if rng.bool() => Outcome::Unknown,
                Call::Put(_) => Outcome::Written,
                Call::Del => Outcome::Deleted(rng.bool()),
            };
            let unbounded = outcome == Outcome::Unknown && rng.u8(0..4) == 0;
            op(i, call, from, if unbounded { NEVER } else { to }, outcome)
        })
        .collect()
}

#[test]
fn the_sweep_agrees_with_brute_force_on_histories_heavy_with_bounded_unknowns() {
    let mut rng = fastrand::Rng::with_seed(0xb0d2);
    let (valid, invalid) = agreement(
        3000,
        || Some(random_unknowns(&mut rng)),
        |history| brute_force_from(history, &None),
    );
    assert!(
        valid > 500 && invalid > 500,
        "{valid} valid, {invalid} invalid"
    );
}
