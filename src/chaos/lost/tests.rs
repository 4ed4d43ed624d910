//! Lost writes: the definition by hand-made histories, and the fast search held to the
//! definition computed directly on random histories.

use super::*;
use crate::chaos::checker::linearizable;
use crate::chaos::testing::{self, simulate, Shape, TEN_MINUTES_OF_A_KEY};

/// No bound: an unknown operation may take effect any time after its invocation.
const NEVER: u64 = u64::MAX;

/// An operation on key "k" answered by the primary.
fn op(call: Call, from: u64, to: u64, outcome: Outcome) -> Operation {
    testing::op(0, call, from, to, outcome)
}

/// The definition, computed directly (as it first was): an acknowledged write, a read
/// invoked after it completed showing something else, and no other PUT or DEL that did not
/// fail invoked by the time the read completed and completing (or, of unknown outcome,
/// bounded) not before the write was invoked.
fn by_definition(history: &[Operation]) -> Vec<&Operation> {
    let mutations: Vec<&Operation> = history
        .iter()
        .filter(|op| !matches!(op.call, Call::Get) && op.outcome != Outcome::Failed)
        .collect();
    history
        .iter()
        .filter(|write| write.outcome == Outcome::Written)
        .filter(|write| {
            let Call::Put(value) = &write.call else {
                return false;
            };
            history.iter().any(|read| {
                let Outcome::Read(seen) = &read.outcome else {
                    return false;
                };
                if read.invoked <= write.completed || seen.as_deref() == Some(value.as_str()) {
                    return false;
                }
                let replaced = mutations.iter().any(|other| {
                    !std::ptr::eq(*other, *write)
                        && other.invoked <= read.completed
                        && other.completed >= write.invoked
                });
                !replaced
            })
        })
        .collect()
}

#[test]
fn a_write_no_later_read_shows_is_lost_unless_something_could_have_replaced_it() {
    let write = op(Call::Put("a".into()), 0, 1, Outcome::Written);
    let gone = op(Call::Get, 5, 6, Outcome::Read(None));
    assert_eq!(lost_writes(&[write.clone(), gone.clone()]).len(), 1);
    let seen = op(Call::Get, 5, 6, Outcome::Read(Some("a".into())));
    assert!(lost_writes(&[write.clone(), seen]).is_empty());
    // A delete in between (even one whose outcome is unknown) explains the read.
    let del = op(Call::Del, 2, 3, Outcome::Unknown);
    assert!(lost_writes(&[write.clone(), del, gone.clone()]).is_empty());
    // So does one sent as the read completed, or completing as the write was sent: touching
    // at an instant, they overlap.
    let del = op(Call::Del, 6, 7, Outcome::Deleted(true));
    assert!(lost_writes(&[write.clone(), del, gone.clone()]).is_empty());
    let del = op(Call::Del, 0, 0, Outcome::Deleted(false));
    assert!(lost_writes(&[write.clone(), del, gone.clone()]).is_empty());
    // A read that overlaps the write proves nothing.
    let early = op(Call::Get, 0, 6, Outcome::Read(None));
    assert!(lost_writes(&[write, early]).is_empty());
}

#[test]
fn the_proof_is_the_read_that_completed_first_and_replica_reads_prove_nothing() {
    let write = op(Call::Put("a".into()), 0, 1, Outcome::Written);
    let late = op(Call::Get, 5, 9, Outcome::Read(None));
    let first = op(Call::Get, 6, 7, Outcome::Read(Some("b".into())));
    let mut replica = op(Call::Get, 2, 3, Outcome::Read(None));
    replica.node = Node::Replica(1);
    let history = [replica, write, late, first.clone()];
    let lost = proven_lost(&history);
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].write, &history[1]);
    assert_eq!(lost[0].read, &first);
    assert!(lost_writes(&history[..2]).is_empty(), "a replica lags");
}

#[test]
fn an_unknown_operation_bounded_before_the_write_was_sent_cannot_have_replaced_it() {
    // The DEL was sent before the write, to a process killed at its bound.
    let del = |bound| op(Call::Del, 0, bound, Outcome::Unknown);
    let write = op(Call::Put("a".into()), 10, 11, Outcome::Written);
    let gone = op(Call::Get, 20, 21, Outcome::Read(None));
    let history = |bound| [del(bound), write.clone(), gone.clone()];
    // Killed before the write was sent: the DEL took effect before it, if at all.
    assert_eq!(lost_writes(&history(5)), [&write]);
    assert!(!linearizable(&history(5)));
    // Killed as the write was sent, or later, or never: it may have come after the write.
    for bound in [10, 15, NEVER] {
        assert!(lost_writes(&history(bound)).is_empty(), "{bound}");
        assert!(linearizable(&history(bound)), "{bound}");
    }
    // The same for a PUT of another value, and one sent after the write but bounded before
    // the read: it took effect before the read, so the read shows it, or what replaced it.
    let other = op(Call::Put("b".into()), 0, 5, Outcome::Unknown);
    let saw_b = op(Call::Get, 20, 21, Outcome::Read(Some("b".into())));
    assert_eq!(
        lost_writes(&[other, write.clone(), saw_b.clone()]),
        [&write]
    );
    let after = op(Call::Del, 12, 15, Outcome::Unknown);
    assert!(lost_writes(&[write.clone(), after.clone(), gone.clone()]).is_empty());
    assert!(
        lost_writes(&[write.clone(), after, saw_b]).is_empty(),
        "not provably"
    );
}

#[test]
fn a_later_write_bounds_the_reads_that_can_prove_an_earlier_one_lost() {
    let a = op(Call::Put("a".into()), 0, 1, Outcome::Written);
    let b = op(Call::Put("b".into()), 10, 11, Outcome::Written);
    // Sees b: b may have replaced a before the read (it was invoked before the read ended).
    let sees_b = op(Call::Get, 9, 12, Outcome::Read(Some("b".into())));
    assert!(lost_writes(&[a.clone(), b.clone(), sees_b]).is_empty());
    // Sees nothing, entirely before b was invoked: a is lost (b is not).
    let gone = op(Call::Get, 5, 6, Outcome::Read(None));
    assert_eq!(lost_writes(&[a.clone(), b.clone(), gone]), vec![&a]);
}

/// A random history of `n` operations on three values with any outcomes, overlapping a lot;
/// an unknown one mostly bounded, some long after it was sent.
fn random_history(rng: &mut fastrand::Rng, n: usize) -> Vec<Operation> {
    (0..n)
        .map(|_| {
            let from = rng.u64(0..n as u64 * 3);
            let to = from + rng.u64(0..6);
            let value = |rng: &mut fastrand::Rng| ["a", "b", "c"][rng.usize(0..3)].to_string();
            let call = match rng.u8(0..5) {
                0 | 1 => Call::Put(value(rng)),
                2 | 3 => Call::Get,
                _ => Call::Del,
            };
            let outcome = match (rng.u8(0..12), &call) {
                (0 | 1, _) => Outcome::Unknown,
                (2, _) => Outcome::Failed,
                (_, Call::Put(_)) => Outcome::Written,
                (_, Call::Get) if rng.u8(0..3) == 0 => Outcome::Read(None),
                (_, Call::Get) => Outcome::Read(Some(value(rng))),
                (_, Call::Del) => Outcome::Deleted(rng.bool()),
            };
            // An unknown outcome's bound is some time after it was sent, or none.
            let to = match outcome {
                Outcome::Unknown if rng.u8(0..4) == 0 => NEVER,
                Outcome::Unknown => from + rng.u64(0..n as u64 * 2),
                _ => to,
            };
            op(call, from, to, outcome)
        })
        .collect()
}

#[test]
fn it_finds_exactly_the_writes_the_definition_finds_on_random_histories() {
    let mut rng = fastrand::Rng::with_seed(0x1057);
    let mut found = 0;
    for round in 0..3000 {
        let n = rng.usize(1..=40);
        let history = random_history(&mut rng, n);
        let expected = by_definition(&history);
        found += expected.len();
        assert_eq!(
            lost_writes(&history),
            expected,
            "round {round}: {history:#?}"
        );
    }
    assert!(found > 500, "{found} lost writes");
}

#[test]
fn a_write_proven_lost_makes_the_history_not_linearizable() {
    let mut rng = fastrand::Rng::with_seed(0x1059);
    let mut found = 0;
    for round in 0..3000 {
        let n = rng.usize(1..=12);
        let history = random_history(&mut rng, n);
        if !lost_writes(&history).is_empty() {
            found += 1;
            assert!(!linearizable(&history), "round {round}: {history:#?}");
        }
    }
    assert!(found > 200, "{found} histories with a lost write");
}

#[test]
fn it_agrees_with_the_definition_on_simulated_histories_with_reads_emptied() {
    let mut rng = fastrand::Rng::with_seed(0x1058);
    let mut found = 0;
    for round in 0..40 {
        let mut shape = Shape::new(rng.usize(1..=5), 400);
        shape.gap = rng.u64(50..=1_000);
        // An unknown PUT or DEL with no bound may take effect any time later, so after one
        // nothing can be proven lost; with a bound, only until then. Some rounds have none.
        shape.unknown = [0, 30, 300][rng.usize(0..3)];
        let mut history = simulate(&mut rng, &shape).history;
        assert!(lost_writes(&history).is_empty(), "round {round}: valid");
        for _ in 0..5 {
            let at = rng.usize(0..history.len());
            if matches!(history[at].outcome, Outcome::Read(_)) {
                history[at].outcome = Outcome::Read(None);
            }
        }
        let expected = by_definition(&history);
        found += expected.len();
        assert_eq!(lost_writes(&history), expected, "round {round}");
    }
    assert!(found > 20, "{found} lost writes");
}

/// Prints how long the search takes on a key of a 10-minute run (60,000 operations), and
/// the definition computed directly on the first 2,000 and 4,000 (run in release mode).
#[test]
// In release mode it measures: cargo test --release -p kvstore --lib lost_writes_of_sixty -- --nocapture
fn lost_writes_of_sixty_thousand_operations() {
    let mut rng = fastrand::Rng::with_seed(60_000);
    let mut shape = Shape::new(5, TEN_MINUTES_OF_A_KEY);
    shape.gap = 100_000_000;
    shape.duration = 2_000_000;
    shape.unknown = 0;
    let history = simulate(&mut rng, &shape).history;
    let started = std::time::Instant::now();
    assert!(lost_writes(&history).is_empty());
    println!("{} operations: {:?}", history.len(), started.elapsed());
    for n in [TEN_MINUTES_OF_A_KEY / 30, TEN_MINUTES_OF_A_KEY / 15] {
        let started = std::time::Instant::now();
        assert!(by_definition(&history[..n]).is_empty());
        println!("{n} operations by the definition: {:?}", started.elapsed());
    }
}
