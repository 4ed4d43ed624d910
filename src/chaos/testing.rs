//! Test support: long random histories that are valid by construction, made by simulating a
//! register under concurrent clients, so the checkers can be tested on histories far too long
//! for a brute-force reference (a valid one must be accepted, a tampered one rejected).

use crate::chaos::history::{Call, Node, Operation, Outcome};

/// An operation of client `client` on key `k`, sent to the primary on connection `client`,
/// invoked at `from`, completed (or, of unknown outcome, bounded) at `to`.
pub(crate) fn op(client: usize, call: Call, from: u64, to: u64, outcome: Outcome) -> Operation {
    Operation {
        connection: client as u64,
        node: Node::Primary,
        client,
        key: "k".into(),
        call,
        invoked: from,
        completed: to,
        outcome,
        token: None,
    }
}

/// The parts of an operation of the small random histories the read checks are held to their
/// definitions on: its invocation, its completion (for an unknown outcome a bound soon or
/// late, or none), one of four values, and its outcome.
pub(crate) fn random_parts(rng: &mut fastrand::Rng) -> (u64, u64, &'static str, Outcome) {
    let from = rng.u64(0..60);
    let to = from + rng.u64(0..6);
    let value = ["a", "b", "c", "d"][rng.usize(0..4)];
    let outcome = [Outcome::Written, Outcome::Unknown, Outcome::Failed][rng.usize(0..3)].clone();
    let to = match outcome {
        Outcome::Unknown if rng.bool() => u64::MAX,
        Outcome::Unknown => from + rng.u64(0..30),
        _ => to,
    };
    (from, to, value, outcome)
}

/// The definition, by brute force, of an answered read showing something older than the
/// instant `since`: a value every PUT of which (to the primary, not failed) could take effect
/// only before then (completed, or was bounded); or nothing, with no DEL sent by the time the
/// read completed that could take effect at or after then.
pub(crate) fn older_by_definition(history: &[Operation], read: &Operation, since: u64) -> bool {
    let done = || {
        history
            .iter()
            .filter(|op| op.node == Node::Primary && op.outcome != Outcome::Failed)
    };
    match &read.outcome {
        Outcome::Read(Some(value)) => {
            let puts = done().filter(|op| op.call == Call::Put(value.clone()));
            let last = puts.map(|put| put.completed).max();
            last.is_some_and(|last| last < since)
        }
        _ => !done().any(|del| {
            del.call == Call::Del && del.invoked <= read.completed && del.completed >= since
        }),
    }
}

/// The shape of a simulated history of one key.
#[derive(Debug, Clone)]
pub(crate) struct Shape {
    /// The key all operations concern.
    pub key: String,
    /// Concurrent clients, each with one operation in flight at a time.
    pub clients: usize,
    /// Operations in all.
    pub operations: usize,
    /// The longest pause of a client between two operations (ns).
    pub gap: u64,
    /// The longest an answered operation takes (ns).
    pub duration: u64,
    /// One operation in `unknown` gets no answer (0: none).
    pub unknown: u32,
    /// One operation in `failed` gets an error that says it did not happen (0: none).
    pub failed: u32,
    /// The latest an unanswered operation takes effect after its invocation (ns), when it does.
    pub late: u64,
    /// The longest time between two kills of the process (ns; 0: none). An unanswered
    /// operation sent before a kill is bounded by it (takes effect by then, if at all), as
    /// the runner records it, half the time; otherwise, and after the last kill, unbounded.
    pub kill: u64,
}

impl Shape {
    /// A key under `clients` clients, with some operations unanswered or failed.
    pub fn new(clients: usize, operations: usize) -> Shape {
        Shape {
            key: "k".into(),
            clients,
            operations,
            gap: 50,
            duration: 100,
            unknown: 20,
            failed: 30,
            late: 1_000,
            kill: 2_000,
        }
    }
}

/// A simulated history, and what the register held over time (to derive replica reads).
#[derive(Debug, Clone)]
pub(crate) struct Simulated {
    /// The operations, in invocation order.
    pub history: Vec<Operation>,
    /// Each instant an operation took effect, and the register's value after it, in order.
    pub effects: Vec<(u64, Option<String>)>,
}

impl Simulated {
    /// The register's value as of `time` (after every effect at or before it).
    pub fn value_at(&self, time: u64) -> Option<String> {
        let applied = self.effects.partition_point(|(at, _)| *at <= time);
        let last = applied.checked_sub(1)?;
        self.effects[last].1.clone()
    }
}

/// A history of one key that a register could have produced: every client waits for each
/// answer (or gives up on it) before its next operation; each operation takes effect at a
/// random instant between its invocation and completion, an unanswered one maybe much later
/// (but not after its bound) or never, a failed one never. Values written are unique.
pub(crate) fn simulate(rng: &mut fastrand::Rng, shape: &Shape) -> Simulated {
    let mut history = Vec::with_capacity(shape.operations);
    // (instant it takes effect, index in `history`)
    let mut effects: Vec<(u64, usize)> = Vec::new();
    let mut clocks = vec![0u64; shape.clients];
    // Kills up to about when the run ends (each client's operations one after another).
    let mut kills = Vec::new();
    let per_client = (shape.operations / shape.clients.max(1)) as u64;
    let end = per_client * (shape.gap + shape.duration);
    while shape.kill > 0 && kills.last().is_none_or(|&last| last < end) {
        kills.push(kills.last().unwrap_or(&0) + rng.u64(1..=shape.kill));
    }
    for n in 0..shape.operations {
        let client = rng.usize(0..shape.clients);
        let invoked = clocks[client] + rng.u64(1..=shape.gap);
        let duration = rng.u64(0..=shape.duration);
        let call = match rng.u8(0..10) {
            0..=3 => Call::Put(format!("{}-c{client}-{n}", shape.key)),
            4..=7 => Call::Get,
            _ => Call::Del,
        };
        let unknown = shape.unknown > 0 && rng.u32(0..shape.unknown) == 0;
        let failed = !unknown && shape.failed > 0 && rng.u32(0..shape.failed) == 0;
        let (completed, outcome) = if unknown {
            let next_kill = kills.iter().copied().find(|&kill| kill > invoked);
            let bound = next_kill.filter(|_| rng.bool()).unwrap_or(u64::MAX);
            if rng.bool() {
                let latest = invoked.saturating_add(shape.late).min(bound);
                effects.push((rng.u64(invoked..=latest), n));
            }
            (bound, Outcome::Unknown)
        } else if failed {
            (invoked + duration, Outcome::Failed)
        } else {
            effects.push((invoked + rng.u64(0..=duration), n));
            // Filled in below, once the order of effects is known.
            (invoked + duration, Outcome::Written)
        };
        // A client gives up on an answer after the longest an answered operation takes.
        clocks[client] = if unknown {
            invoked + shape.duration
        } else {
            completed
        };
        history.push(Operation {
            client,
            connection: client as u64,
            node: Node::Primary,
            key: shape.key.clone(),
            call,
            invoked,
            completed,
            outcome,
            token: None,
        });
    }
    effects.sort_unstable();
    let mut value: Option<String> = None;
    let mut states = Vec::with_capacity(effects.len());
    for &(at, i) in &effects {
        let op = &mut history[i];
        let answer = match &op.call {
            Call::Put(v) => {
                value = Some(v.clone());
                Outcome::Written
            }
            Call::Get => Outcome::Read(value.clone()),
            Call::Del => Outcome::Deleted(value.take().is_some()),
        };
        if op.outcome != Outcome::Unknown {
            op.outcome = answer;
        }
        states.push((at, value.clone()));
    }
    history.sort_by_key(|op| op.invoked);
    Simulated {
        history,
        effects: states,
    }
}

/// The history with one answered read changed to a value that was provably overwritten before
/// the read began: the value of an acknowledged write, followed by another acknowledged
/// mutation invoked after it completed, both completed before the read was invoked. `None` if
/// no read of the history has such a value (a few random reads are tried).
pub(crate) fn with_stale_read(
    history: &[Operation],
    rng: &mut fastrand::Rng,
) -> Option<Vec<Operation>> {
    let reads: Vec<usize> = (0..history.len())
        .filter(|&r| matches!(history[r].outcome, Outcome::Read(_)))
        .collect();
    let acknowledged = |op: &&Operation| {
        !matches!(op.call, Call::Get)
            && matches!(op.outcome, Outcome::Written | Outcome::Deleted(_))
    };
    for _ in 0..20 {
        let r = *reads.get(rng.usize(0..reads.len().max(1)))?;
        let read = &history[r];
        let before: Vec<&Operation> = history
            .iter()
            .filter(acknowledged)
            .filter(|m| m.completed < read.invoked)
            .collect();
        let Some(latest) = before.iter().map(|m| m.invoked).max() else {
            continue;
        };
        let stale = before.iter().rev().find_map(|w| match &w.call {
            Call::Put(value)
                if w.completed < latest && read.outcome != Outcome::Read(Some(value.clone())) =>
            {
                Some(value.clone())
            }
            _ => None,
        });
        if let Some(value) = stale {
            let mut tampered = history.to_vec();
            tampered[r].outcome = Outcome::Read(Some(value));
            return Some(tampered);
        }
    }
    None
}

/// The operations on a key of a 10-minute run (5 clients at 100 operations a second): the
/// size the measuring tests use in release mode, where they print how long the checks take.
/// A tenth of it in debug builds, so that the test suite stays quick.
pub const TEN_MINUTES_OF_A_KEY: usize = if cfg!(debug_assertions) {
    6_000
} else {
    60_000
};

/// Holds the checker to `oracle` on `rounds` histories from `make` (which may skip a round by
/// answering `None`), and answers how many were valid and how many invalid, so that a caller
/// can insist that both kinds were exercised.
pub fn agreement(
    rounds: usize,
    mut make: impl FnMut() -> Option<Vec<Operation>>,
    oracle: impl Fn(&[Operation]) -> bool,
) -> (usize, usize) {
    let (mut valid, mut invalid) = (0, 0);
    for round in 0..rounds {
        let Some(history) = make() else { continue };
        let expected = oracle(&history);
        if expected {
            valid += 1;
        } else {
            invalid += 1;
        }
        assert_eq!(
            crate::chaos::checker::linearizable(&history),
            expected,
            "round {round}: {history:#?}"
        );
    }
    (valid, invalid)
}
