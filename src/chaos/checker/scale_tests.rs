//! The sweep at scale: it agrees with the reference search on many random medium histories,
//! accepts long histories a register produced, and rejects them once a read is made stale.

use super::reference;
use super::*;
use crate::chaos::history::Call;
use crate::chaos::testing::{agreement, simulate, with_stale_read, Shape, TEN_MINUTES_OF_A_KEY};

/// The reference search's verdict.
fn reference_verdict(history: &[Operation]) -> bool {
    let ops: Vec<&Operation> = history.iter().collect();
    reference::linearizable(&ops)
}

/// `history` with one answer changed at random: mostly a read showing another value (one
/// written in the history, or absent) or a DEL's finding flipped, sometimes an outcome made
/// unknown or failed.
fn tamper(history: &[Operation], rng: &mut fastrand::Rng) -> Vec<Operation> {
    let mut tampered = history.to_vec();
    let values: Vec<String> = history
        .iter()
        .filter_map(|op| match &op.call {
            Call::Put(value) => Some(value.clone()),
            _ => None,
        })
        .collect();
    let at = rng.usize(0..tampered.len());
    let op = &mut tampered[at];
    op.outcome = match (rng.u8(0..8), &op.call, &op.outcome) {
        (0, _, _) => Outcome::Unknown,
        (1, _, _) => Outcome::Failed,
        (_, Call::Del, Outcome::Deleted(found)) => Outcome::Deleted(!found),
        (_, Call::Get, _) if !values.is_empty() && rng.bool() => {
            Outcome::Read(Some(values[rng.usize(0..values.len())].clone()))
        }
        (_, Call::Get, _) => Outcome::Read(None),
        (_, _, outcome) => outcome.clone(),
    };
    tampered
}

/// A random history of `shape`, tampered with half the time; `None` if it has more unknown
/// outcomes than the reference search can afford (it is exponential in them).
fn sample(rng: &mut fastrand::Rng, shape: &Shape, most_unknown: usize) -> Option<Vec<Operation>> {
    let simulated = simulate(rng, shape).history;
    let unknown = simulated.iter().filter(|op| op.outcome == Outcome::Unknown);
    if unknown.count() > most_unknown {
        return None;
    }
    Some(if rng.bool() {
        simulated
    } else {
        tamper(&simulated, rng)
    })
}

#[test]
fn it_agrees_with_the_reference_search_on_random_medium_histories() {
    let mut rng = fastrand::Rng::with_seed(0x3ed1a);
    let make = || {
        let mut shape = Shape::new(rng.usize(1..=5), rng.usize(5..=40));
        shape.unknown = rng.u32(0..12);
        shape.late = rng.u64(0..2_000);
        // Kills (bounding the unknown operations sent before them): often, now and then, or
        // never.
        shape.kill = [0, 300, 2_000][rng.usize(0..3)];
        sample(&mut rng, &shape, 3)
    };
    let (valid, invalid) = agreement(6000, make, reference_verdict);
    assert!(
        valid > 500 && invalid > 200,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn it_agrees_with_the_reference_search_on_short_histories_with_many_unknown_outcomes() {
    let mut rng = fastrand::Rng::with_seed(0xdead);
    let make = || {
        let mut shape = Shape::new(rng.usize(1..=4), rng.usize(4..=18));
        shape.unknown = 3;
        shape.late = rng.u64(0..3_000);
        shape.kill = [0, 300, 2_000][rng.usize(0..3)];
        sample(&mut rng, &shape, 6)
    };
    let (valid, invalid) = agreement(10_000, make, reference_verdict);
    assert!(
        valid > 4000 && invalid > 500,
        "{valid} valid, {invalid} invalid"
    );
}

#[test]
fn long_histories_a_register_produced_are_linearizable() {
    let mut rng = fastrand::Rng::with_seed(7);
    for clients in [1, 3, 5, 12] {
        let mut shape = Shape::new(clients, 5_000);
        // Unknown operations that take effect up to a long while after they were sent.
        shape.unknown = 50;
        shape.late = 100_000;
        let history = simulate(&mut rng, &shape).history;
        assert!(linearizable(&history), "{clients} clients");
    }
}

#[test]
fn a_long_history_with_one_stale_read_is_not_linearizable() {
    let mut rng = fastrand::Rng::with_seed(11);
    let mut tried = 0;
    for round in 0..10 {
        let mut shape = Shape::new(rng.usize(2..=6), 3_000);
        shape.unknown = 100;
        let history = simulate(&mut rng, &shape).history;
        let Some(stale) = with_stale_read(&history, &mut rng) else {
            continue;
        };
        tried += 1;
        assert!(!linearizable(&stale), "round {round}");
    }
    assert!(tried >= 8, "stale reads made in {tried} rounds");
}

/// A key of a 10-minute `kvchaos` run: 5 clients on 5 keys at 100 operations a second each
/// make 100 a second on this key, 60,000 in all; a fault every 0.5 to 2 s leaves a few
/// hundred of them unknown. Prints how long the checks take (run in release mode).
#[test]
// In release mode it measures: cargo test --release -p kvstore --lib sixty_thousand -- --nocapture
fn sixty_thousand_operations_on_one_key() {
    let mut rng = fastrand::Rng::with_seed(60_000);
    let shape = Shape {
        key: "k1".into(),
        clients: 5,
        operations: TEN_MINUTES_OF_A_KEY,
        // 50 ms between a client's operations on this key, each taking up to 2 ms.
        gap: 100_000_000,
        duration: 2_000_000,
        unknown: 200,
        failed: 500,
        late: 2_000_000_000,
        // A kill of the primary every 1 s on average bounds the unknown ones sent before it.
        kill: 2_000_000_000,
    };
    let history = simulate(&mut rng, &shape).history;
    let unknown = history
        .iter()
        .filter(|op| op.outcome == Outcome::Unknown)
        .count();
    let started = std::time::Instant::now();
    assert!(linearizable(&history));
    println!(
        "{} operations ({unknown} unknown), valid: linearizable in {:?}",
        history.len(),
        started.elapsed()
    );
    let stale = with_stale_read(&history, &mut rng).expect("a read to make stale");
    let started = std::time::Instant::now();
    assert!(!linearizable(&stale));
    let checked = started.elapsed();
    let window = smallest_violation(&stale).expect("a window");
    println!(
        "one stale read: not linearizable in {checked:?}, smallest window ({} operations) in {:?}",
        window.operations.len(),
        started.elapsed() - checked
    );
}
