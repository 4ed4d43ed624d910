//! Replica reads: hand-made histories for each rule and each thing concurrency may explain,
//! lagging replicas of simulated histories accepted, and the search held to the pairwise
//! definition on random histories.

use super::*;
use crate::chaos::testing::{older_by_definition, op, random_parts, simulate, Shape};

/// A primary operation on key "k".
fn primary(call: Call, from: u64, to: u64, outcome: Outcome) -> Operation {
    op(0, call, from, to, outcome)
}

/// A read of key "k" answered by replica 1 on connection `connection`.
fn replica_read(connection: u64, from: u64, to: u64, seen: Option<&str>) -> Operation {
    Operation {
        client: 1,
        connection,
        node: Node::Replica(1),
        key: "k".into(),
        call: Call::Get,
        invoked: from,
        completed: to,
        outcome: Outcome::Read(seen.map(str::to_string)),
        token: None,
    }
}

/// An acknowledged PUT of `value` to the primary.
fn put(value: &str, from: u64, to: u64) -> Operation {
    primary(Call::Put(value.into()), from, to, Outcome::Written)
}

/// The faults found, in short: ("unwritten" | "went back", the later read's start).
fn faults(history: &[Operation]) -> Vec<(&'static str, u64)> {
    replica_violations(history)
        .iter()
        .map(|v| match &v.fault {
            ReplicaFault::Unwritten { read } => ("unwritten", read.invoked),
            ReplicaFault::WentBack { later, .. } => ("went back", later.invoked),
        })
        .collect()
}

#[test]
fn a_replica_shows_only_values_a_put_had_been_sent_for() {
    let a = put("a", 10, 20);
    // Sent before the read completed: fine, even if the PUT completed later or never.
    assert!(faults(&[a.clone(), replica_read(1, 5, 10, Some("a"))]).is_empty());
    let mut unknown = a.clone();
    unknown.outcome = Outcome::Unknown;
    assert!(faults(&[unknown, replica_read(1, 15, 16, Some("a"))]).is_empty());
    // Sent after the read completed, never sent, or failed: not written.
    let early = replica_read(1, 5, 9, Some("a"));
    assert_eq!(faults(&[a.clone(), early]), [("unwritten", 5)]);
    assert_eq!(
        faults(&[replica_read(1, 5, 9, Some("x"))]),
        [("unwritten", 5)]
    );
    let mut failed = a;
    failed.outcome = Outcome::Failed;
    let late = replica_read(1, 30, 31, Some("a"));
    assert_eq!(faults(&[failed, late]), [("unwritten", 30)]);
    // Nothing is always a value a lagging replica may show.
    assert!(faults(&[put("a", 0, 1), replica_read(1, 5, 6, None)]).is_empty());
}

#[test]
fn a_replica_may_not_show_an_older_value_after_a_newer_one_on_one_connection() {
    let (a, b) = (put("a", 0, 1), put("b", 2, 3));
    let newer = replica_read(7, 5, 6, Some("b"));
    let older = replica_read(7, 7, 8, Some("a"));
    assert_eq!(
        faults(&[a.clone(), b.clone(), newer.clone(), older.clone()]),
        [("went back", 7)]
    );
    // The other way round is moving forward.
    let forward = replica_read(7, 9, 10, Some("b"));
    let history = [a.clone(), b.clone(), older.clone(), forward];
    assert!(faults(&history).is_empty());
    // On another connection, or overlapping on one, nothing is promised.
    let mut elsewhere = older.clone();
    elsewhere.connection = 8;
    let history = [a.clone(), b.clone(), newer.clone(), elsewhere];
    assert!(faults(&history).is_empty());
    let overlapping = replica_read(7, 5, 8, Some("a"));
    assert!(faults(&[a.clone(), b.clone(), newer.clone(), overlapping]).is_empty());
    // Concurrent writes may take effect in either order: "a" may be the newer one; so may
    // one of unknown outcome, until its bound.
    let slow_a = put("a", 0, 10);
    assert!(faults(&[slow_a, b.clone(), newer.clone(), older.clone()]).is_empty());
    let unknown_a = |bound| primary(Call::Put("a".into()), 0, bound, Outcome::Unknown);
    let history = |bound| [unknown_a(bound), b.clone(), newer.clone(), older.clone()];
    assert!(faults(&history(2)).is_empty());
    assert!(faults(&history(u64::MAX)).is_empty());
    assert_eq!(faults(&history(1)), [("went back", 7)]);
}

#[test]
fn a_replica_may_show_nothing_after_a_value_only_if_a_del_could_have_come_after_it() {
    let a = put("a", 10, 11);
    let saw_a = replica_read(7, 20, 21, Some("a"));
    let nothing = replica_read(7, 30, 31, None);
    let history = [a.clone(), saw_a.clone(), nothing.clone()];
    assert_eq!(faults(&history), [("went back", 30)]);
    let del = |from, to, outcome| primary(Call::Del, from, to, outcome);
    // A DEL after the PUT, or concurrent with it, or of unknown outcome sent any time before
    // the read completed and bounded not before the PUT was sent (or not at all), explains
    // it.
    for explains in [
        del(12, 13, Outcome::Deleted(true)),
        del(5, 10, Outcome::Deleted(false)),
        del(1, u64::MAX, Outcome::Unknown),
        del(1, 10, Outcome::Unknown),
        del(30, 35, Outcome::Deleted(true)),
    ] {
        let history = [a.clone(), explains.clone(), saw_a.clone(), nothing.clone()];
        assert!(faults(&history).is_empty(), "{explains:?}");
    }
    // One completed before the PUT, or of unknown outcome bounded before it (sent to a
    // process killed before the PUT was sent), one sent after the read, or a failed one does
    // not.
    for irrelevant in [
        del(1, 2, Outcome::Deleted(true)),
        del(1, 9, Outcome::Unknown),
        del(32, 33, Outcome::Unknown),
        del(12, 13, Outcome::Failed),
    ] {
        let history = [
            a.clone(),
            irrelevant.clone(),
            saw_a.clone(),
            nothing.clone(),
        ];
        assert_eq!(faults(&history), [("went back", 30)], "{irrelevant:?}");
    }
    // Nothing, then a value: a replica catching up (nothing proves the absence was later).
    let history = [a, nothing, replica_read(7, 40, 41, Some("a"))];
    assert!(faults(&history).is_empty());
}

#[test]
fn a_violation_shows_the_writes_and_reads_behind_it() {
    let history = [
        put("a", 1_000, 2_000),
        put("b", 3_000, 4_000),
        replica_read(7, 5_000, 6_000, Some("b")),
        replica_read(7, 7_000, 8_000, Some("a")),
    ];
    let violations = replica_violations(&history);
    assert_eq!(violations.len(), 1);
    let window = &violations[0].window;
    assert_eq!((window.from, window.to), (1_000, 8_000));
    assert_eq!(window.operations, history.to_vec());
    let shown = violations[0].to_string();
    assert!(
        shown.starts_with(
            "replica 1 went back in time on connection 7 for key k: it showed b, then a, \
             written before that was:\n"
        ),
        "{shown}"
    );
    assert_eq!(shown.lines().count(), 5, "{shown}");
}

/// Replica reads of a simulated history: each replica shows the register as it was `lag`
/// earlier than an instant during the read, so it never goes back on a connection.
fn with_replica_reads(rng: &mut fastrand::Rng, shape: &Shape) -> Vec<Operation> {
    let simulated = simulate(rng, shape);
    let mut history = simulated.history.clone();
    let end = history.last().map_or(0, |op| op.invoked);
    for replica in 1..=2u64 {
        let lag = rng.u64(0..=shape.duration * 5 * replica);
        let mut clock = 0;
        for connection in 0..3 {
            for _ in 0..shape.operations / 6 {
                let invoked = clock + rng.u64(1..=shape.gap);
                let completed = invoked + rng.u64(0..=shape.duration);
                let instant = rng.u64(invoked..=completed);
                let seen = simulated.value_at(instant.saturating_sub(lag));
                let mut read = replica_read(replica * 10 + connection, invoked, completed, None);
                read.node = Node::Replica(replica as usize);
                read.outcome = Outcome::Read(seen);
                history.push(read);
                clock = completed;
            }
            clock = rng.u64(0..end / 2);
        }
    }
    history
}

#[test]
fn lagging_replicas_of_simulated_histories_show_no_fault() {
    let mut rng = fastrand::Rng::with_seed(0x4e9);
    for round in 0..30 {
        let mut shape = Shape::new(rng.usize(1..=5), 600);
        shape.gap = rng.u64(20..=500);
        shape.unknown = rng.u32(0..40);
        let history = with_replica_reads(&mut rng, &shape);
        assert_eq!(faults(&history), [], "round {round}");
    }
}

/// The definition, pair by pair: a read went back if an earlier read on its connection
/// (completed before it was invoked) showed a written value (its first PUT was invoked by
/// then) whose first PUT was invoked after every PUT of the value it shows could take effect
/// (completed, or was bounded), or it shows nothing and no DEL sent by its completion could
/// take effect after that first PUT.
fn went_back_by_definition(history: &[Operation]) -> Vec<u64> {
    let ops = || history.iter().filter(|op| op.outcome != Outcome::Failed);
    let puts = |value: &str| {
        ops()
            .filter(move |op| op.node == Node::Primary && op.call == Call::Put(value.into()))
            .collect::<Vec<_>>()
    };
    let reads: Vec<&Operation> = history
        .iter()
        .filter(|op| op.node != Node::Primary)
        .collect();
    let mut back = Vec::new();
    for later in &reads {
        let went_back = reads.iter().any(|earlier| {
            let Outcome::Read(Some(value)) = &earlier.outcome else {
                return false;
            };
            let Some(first) = puts(value).iter().map(|put| put.invoked).min() else {
                return false;
            };
            if first > earlier.completed {
                return false;
            }
            if earlier.connection != later.connection || earlier.completed > later.invoked {
                return false;
            }
            older_by_definition(history, later, first)
        });
        if went_back {
            back.push(later.invoked);
        }
    }
    back.sort_unstable();
    back
}

#[test]
fn it_finds_exactly_the_reads_the_pairwise_definition_finds_on_random_histories() {
    let mut rng = fastrand::Rng::with_seed(0x4ea);
    let mut found = 0;
    for round in 0..2000 {
        let n = rng.usize(1..=24);
        let history: Vec<Operation> = (0..n)
            .map(|_| {
                let (from, to, value, outcome) = random_parts(&mut rng);
                match rng.u8(0..6) {
                    0 | 1 => primary(Call::Put(value.into()), from, to, outcome),
                    2 => primary(Call::Del, from, to, outcome),
                    _ => {
                        let seen = (rng.u8(0..4) > 0).then_some(value);
                        replica_read(rng.u64(0..2), from, to, seen)
                    }
                }
            })
            .collect();
        let mut back: Vec<u64> = faults(&history)
            .into_iter()
            .filter(|(fault, _)| *fault == "went back")
            .map(|(_, at)| at)
            .collect();
        back.sort_unstable();
        let expected = went_back_by_definition(&history);
        found += expected.len();
        assert_eq!(back, expected, "round {round}: {history:#?}");
    }
    assert!(found > 300, "{found} reads went back");
}
