//! Read-your-writes and monotonic reads: hand-made histories for each rule and for each thing
//! concurrency or an unknown outcome may explain, then simulated histories: replicas that
//! honour the token are accepted however far they lag, and replicas that ignore it are caught.

use super::*;
use crate::chaos::history::Node;
use crate::chaos::testing::{older_by_definition, op, random_parts, simulate, Shape};

/// Client 1's token (any: the checks only ask whether a read carries one).
const TOKEN: &str = "1:aaaa:7";

/// An acknowledged PUT of `value` by `client`.
fn put(client: usize, value: &str, from: u64, to: u64) -> Operation {
    op(client, Call::Put(value.into()), from, to, Outcome::Written)
}

/// An acknowledged DEL by `client`.
fn del(client: usize, from: u64, to: u64) -> Operation {
    op(client, Call::Del, from, to, Outcome::Deleted(true))
}

/// A read by client 1 with its token, answered by replica `replica` on a connection of its own.
fn read(replica: usize, from: u64, to: u64, seen: Option<&str>) -> Operation {
    Operation {
        node: Node::Replica(replica),
        connection: 100 + replica as u64,
        token: Some(TOKEN.into()),
        ..op(
            1,
            Call::Get,
            from,
            to,
            Outcome::Read(seen.map(str::to_string)),
        )
    }
}

/// The faults found, in short: ("own write" | "went back", the read's start).
fn faults(history: &[Operation]) -> Vec<(&'static str, u64)> {
    session_violations(history)
        .iter()
        .map(|v| match &v.fault {
            SessionFault::MissedOwnWrite { read, .. } => ("own write", read.invoked),
            SessionFault::WentBack { later, .. } => ("went back", later.invoked),
        })
        .collect()
}

#[test]
fn a_read_with_the_token_shows_the_clients_own_latest_write() {
    let (a, b) = (put(1, "a", 0, 1), put(1, "b", 2, 3));
    assert!(faults(&[a.clone(), b.clone(), read(1, 5, 6, Some("b"))]).is_empty());
    // Its own older value, or nothing: it missed its own write.
    let older = [a.clone(), b.clone(), read(1, 5, 6, Some("a"))];
    assert_eq!(faults(&older), [("own write", 5)]);
    assert_eq!(
        faults(&[b.clone(), read(2, 5, 6, None)]),
        [("own write", 5)]
    );
    // Before the write was acknowledged, the read may show anything older.
    assert!(faults(&[a.clone(), put(1, "b", 2, 7), read(1, 5, 6, Some("a"))]).is_empty());
    // Its own DEL: nothing, or a value written after it.
    let gone = del(1, 4, 5);
    assert!(faults(&[b.clone(), gone.clone(), read(1, 6, 7, None)]).is_empty());
    let history = [b.clone(), gone, read(1, 6, 7, Some("b"))];
    assert_eq!(faults(&history), [("own write", 6)]);
}

#[test]
fn another_clients_write_that_may_have_come_after_explains_a_different_value() {
    let mine = put(1, "a", 10, 20);
    // Sent before mine completed: it may have taken effect after mine.
    for theirs in [put(2, "x", 15, 30), put(2, "x", 5, 10), put(2, "x", 21, 22)] {
        let history = [mine.clone(), theirs.clone(), read(1, 25, 26, Some("x"))];
        assert!(faults(&history).is_empty(), "{theirs:?}");
    }
    // Completed before mine was sent: provably older.
    let history = [put(2, "x", 1, 9), mine.clone(), read(1, 25, 26, Some("x"))];
    assert_eq!(faults(&history), [("own write", 25)]);
    // A PUT of unknown outcome may take effect until its bound, or any time without one.
    let unknown = |bound| op(2, Call::Put("x".into()), 1, bound, Outcome::Unknown);
    for (bound, explains) in [(u64::MAX, true), (10, true), (9, false)] {
        let history = [unknown(bound), mine.clone(), read(1, 25, 26, Some("x"))];
        assert_eq!(faults(&history).is_empty(), explains, "bound {bound}");
    }
}

#[test]
fn nothing_after_the_clients_own_put_needs_a_del_that_may_have_come_after_it() {
    let mine = put(1, "a", 10, 20);
    let nothing = read(1, 25, 26, None);
    for explains in [
        del(2, 12, 13),
        del(2, 5, 10),
        del(2, 26, 30),
        op(2, Call::Del, 1, u64::MAX, Outcome::Unknown),
    ] {
        let history = [mine.clone(), explains.clone(), nothing.clone()];
        assert!(faults(&history).is_empty(), "{explains:?}");
    }
    for irrelevant in [
        del(2, 1, 9),
        del(2, 27, 30),
        op(2, Call::Del, 1, 9, Outcome::Unknown),
        op(2, Call::Del, 12, 13, Outcome::Failed),
    ] {
        let history = [mine.clone(), irrelevant.clone(), nothing.clone()];
        assert_eq!(faults(&history), [("own write", 25)], "{irrelevant:?}");
    }
}

#[test]
fn only_the_clients_acknowledged_writes_bind_its_reads() {
    let a = put(1, "a", 0, 1);
    // Its own PUT of unknown outcome, or a failed one, may never have taken effect.
    for outcome in [Outcome::Unknown, Outcome::Failed] {
        let b = op(1, Call::Put("b".into()), 2, 3, outcome);
        assert!(faults(&[a.clone(), b, read(1, 5, 6, Some("a"))]).is_empty());
    }
    // Another client's acknowledged write does not bind client 1's reads.
    let theirs = put(2, "b", 2, 3);
    assert!(faults(&[a.clone(), theirs, read(1, 5, 6, Some("a"))]).is_empty());
}

#[test]
fn a_read_without_a_token_promises_nothing() {
    let (a, b) = (put(1, "a", 0, 1), put(1, "b", 2, 3));
    let mut untokened = read(1, 5, 6, Some("a"));
    untokened.token = None;
    assert!(faults(&[a, b, untokened]).is_empty());
}

#[test]
fn the_promise_holds_across_the_clients_connections_and_nodes() {
    let mut a = put(1, "a", 0, 1);
    a.connection = 7;
    let mut b = put(1, "b", 2, 3);
    b.connection = 8;
    let mut on_primary = read(1, 5, 6, Some("a"));
    on_primary.node = Node::Primary;
    assert_eq!(faults(&[a, b, on_primary]), [("own write", 5)]);
}

#[test]
fn a_clients_reads_never_go_back_across_replicas() {
    let (a, b) = (put(2, "a", 0, 1), put(2, "b", 2, 3));
    let newer = read(1, 5, 6, Some("b"));
    let older = read(2, 7, 8, Some("a"));
    let history = [a.clone(), b.clone(), newer.clone(), older.clone()];
    assert_eq!(faults(&history), [("went back", 7)]);
    // Nothing after b, with no DEL that could have come after it: back too.
    let nothing = read(2, 7, 8, None);
    let history = [a.clone(), b.clone(), newer.clone(), nothing.clone()];
    assert_eq!(faults(&history), [("went back", 7)]);
    let history = [b.clone(), del(2, 4, 9), newer.clone(), nothing];
    assert!(faults(&history).is_empty());
    // Concurrent writes may have taken effect in either order.
    let slow_a = put(2, "a", 0, 10);
    assert!(faults(&[slow_a, b.clone(), newer.clone(), older.clone()]).is_empty());
    // An earlier read counts even without a token (the client saw it); a later one is held
    // to it only with one.
    let mut untokened = newer.clone();
    untokened.token = None;
    let history = [a.clone(), b.clone(), untokened.clone(), older.clone()];
    assert_eq!(faults(&history), [("went back", 7)]);
    let mut free = older.clone();
    free.token = None;
    assert!(faults(&[a.clone(), b.clone(), newer.clone(), free]).is_empty());
    // Another client's reads are no promise to this one.
    let mut theirs = newer;
    theirs.client = 3;
    assert!(faults(&[a, b, theirs, older]).is_empty());
}

#[test]
fn a_violation_shows_the_write_and_the_read() {
    let history = [
        put(1, "a", 1_000, 2_000),
        put(1, "b", 3_000, 4_000),
        read(2, 5_000, 6_000, Some("a")),
    ];
    let violations = session_violations(&history);
    assert_eq!(violations.len(), 1);
    assert!(violations[0].missed_own_write());
    let window = &violations[0].window;
    assert_eq!((window.from, window.to), (1_000, 6_000));
    let shown = violations[0].to_string();
    assert!(
        shown.starts_with(
            "client 1 did not read its own write of key k (read-your-writes): it wrote b, then \
             replica 2 showed a, written before that was:\n"
        ),
        "{shown}"
    );
    assert!(shown.contains("[token 1:aaaa:7]"), "{shown}");
    assert_eq!(shown.lines().count(), 4, "{shown}");
}

/// A simulated history with reads by each of its clients, each answered by a replica with the
/// register as of an instant from `floor(f)` to an instant during the read, where `f` is the
/// earliest instant a token allows (the client's last answered operation was answered, and
/// its last read here saw); every read carries a token.
fn with_session_reads(
    rng: &mut fastrand::Rng,
    shape: &Shape,
    floor: impl Fn(u64) -> u64,
) -> Vec<Operation> {
    let simulated = simulate(rng, shape);
    let mut history = simulated.history.clone();
    for client in 0..shape.clients {
        // The client's answered operations (its acknowledged writes, and its reads on the
        // primary), by completion: the state as of then reflects each.
        let mut answered: Vec<u64> = simulated
            .history
            .iter()
            .filter(|op| op.client == client)
            .filter(|op| !matches!(op.outcome, Outcome::Unknown | Outcome::Failed))
            .map(|op| op.completed)
            .collect();
        answered.sort_unstable();
        let (mut clock, mut seen) = (0, 0);
        for _ in 0..shape.operations / shape.clients / 2 {
            let invoked = clock + rng.u64(1..=shape.gap);
            let completed = invoked + rng.u64(0..=shape.duration);
            let before = answered.partition_point(|&done| done <= invoked);
            let own = before.checked_sub(1).map_or(0, |last| answered[last]);
            let instant = rng.u64(floor(own.max(seen))..=completed);
            seen = instant;
            let mut read = read(1 + rng.usize(0..2), invoked, completed, None);
            read.client = client;
            read.outcome = Outcome::Read(simulated.value_at(instant));
            history.push(read);
            clock = completed;
        }
    }
    history
}

#[test]
fn replicas_that_honour_the_token_are_accepted_however_far_they_lag() {
    let mut rng = fastrand::Rng::with_seed(0x5e55);
    for round in 0..30 {
        let mut shape = Shape::new(rng.usize(1..=5), 600);
        shape.gap = rng.u64(20..=500);
        let history = with_session_reads(&mut rng, &shape, |floor| floor);
        assert_eq!(faults(&history), [], "round {round}");
    }
}

#[test]
fn replicas_that_ignore_the_token_are_caught() {
    let mut rng = fastrand::Rng::with_seed(0x5e56);
    let (mut own, mut back) = (0, 0);
    for _ in 0..30 {
        let shape = Shape::new(rng.usize(1..=5), 600);
        // Any instant since the start: a replica that lags without waiting for the token.
        let history = with_session_reads(&mut rng, &shape, |_| 0);
        for violation in session_violations(&history) {
            match violation.missed_own_write() {
                true => own += 1,
                false => back += 1,
            }
        }
    }
    assert!(
        own > 50 && back > 50,
        "{own} own writes missed, {back} went back"
    );
}

/// The definition, pair by pair: a read with a token missed its client's own write if some
/// write of that client, acknowledged by the time the read was sent, was sent after every PUT
/// of the value the read shows could take effect (completed, or was bounded); or the read
/// shows nothing and no DEL sent by its completion could take effect after that write was
/// sent.
fn missed_by_definition(history: &[Operation]) -> Vec<u64> {
    let mut missed: Vec<u64> = history
        .iter()
        .filter(|read| read.token.is_some() && matches!(read.outcome, Outcome::Read(_)))
        .filter(|read| {
            history.iter().any(|write| {
                let acknowledged = matches!(write.outcome, Outcome::Written | Outcome::Deleted(_));
                let own = write.client == read.client && write.call != Call::Get;
                if !acknowledged || !own || write.completed > read.invoked {
                    return false;
                }
                older_by_definition(history, read, write.invoked)
            })
        })
        .map(|read| read.invoked)
        .collect();
    missed.sort_unstable();
    missed
}

#[test]
fn it_finds_exactly_the_reads_the_pairwise_definition_finds_on_random_histories() {
    let mut rng = fastrand::Rng::with_seed(0x5e57);
    let mut found = 0;
    for round in 0..2000 {
        let n = rng.usize(1..=20);
        let history: Vec<Operation> = (0..n)
            .map(|_| {
                let (from, to, value, outcome) = random_parts(&mut rng);
                let client = rng.usize(1..=2);
                match rng.u8(0..6) {
                    0 | 1 => op(client, Call::Put(value.into()), from, to, outcome),
                    2 => {
                        let outcome = match outcome {
                            Outcome::Written => Outcome::Deleted(rng.bool()),
                            other => other,
                        };
                        op(client, Call::Del, from, to, outcome)
                    }
                    _ => {
                        let seen = (rng.u8(0..4) > 0).then_some(value);
                        let mut read = read(rng.usize(0..3), from, to, seen);
                        read.client = client;
                        read.token = (rng.u8(0..4) > 0).then(|| TOKEN.into());
                        read
                    }
                }
            })
            .collect();
        let mut missed: Vec<u64> = faults(&history)
            .into_iter()
            .filter(|(fault, _)| *fault == "own write")
            .map(|(_, at)| at)
            .collect();
        missed.sort_unstable();
        let expected = missed_by_definition(&history);
        found += expected.len();
        assert_eq!(missed, expected, "round {round}: {history:#?}");
    }
    assert!(found > 300, "{found} reads missed their client's write");
}
