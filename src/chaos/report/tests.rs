//! The report over a whole history: each key checked on its own, replica reads kept out of
//! the primary's checks, and every violation printed with the operations that show it.

use super::*;
use crate::chaos::history::{Call, Outcome};
use crate::chaos::testing::{simulate, Shape, TEN_MINUTES_OF_A_KEY};

/// An operation on `key` answered by `node`.
fn op(node: Node, key: &str, call: Call, from: u64, to: u64, outcome: Outcome) -> Operation {
    Operation {
        client: 0,
        connection: 3,
        node,
        key: key.into(),
        call,
        invoked: from,
        completed: to,
        outcome,
        token: None,
    }
}

/// An acknowledged PUT to the primary.
fn put(key: &str, value: &str, from: u64, to: u64) -> Operation {
    op(
        Node::Primary,
        key,
        Call::Put(value.into()),
        from,
        to,
        Outcome::Written,
    )
}

/// A GET `node` answered with `seen`.
fn get(node: Node, key: &str, from: u64, to: u64, seen: Option<&str>) -> Operation {
    let outcome = Outcome::Read(seen.map(str::to_string));
    op(node, key, Call::Get, from, to, outcome)
}

/// Simulated keys `k0`.. with `operations` each, merged into one history.
fn simulated_keys(rng: &mut fastrand::Rng, keys: usize, operations: usize) -> Vec<Operation> {
    let mut history = Vec::new();
    for key in 0..keys {
        let mut shape = Shape::new(5, operations);
        shape.key = format!("k{key}");
        history.extend(simulate(rng, &shape).history);
    }
    rng.shuffle(&mut history);
    history
}

#[test]
fn a_history_a_store_could_have_produced_is_valid_on_every_key() {
    let mut rng = fastrand::Rng::with_seed(5);
    let history = simulated_keys(&mut rng, 5, 2_000);
    let report = check(&history);
    assert!(report.is_valid(), "{report}");
    assert_eq!(report.keys.len(), 5);
    assert_eq!(report.operations(), 10_000);
    assert_eq!(report.violations().count(), 0);
    assert!(report
        .to_string()
        .starts_with("valid: 5 keys, 10000 operations, 0 lost"));
}

#[test]
fn each_violation_is_reported_on_its_key_and_counted() {
    let replica = Node::Replica(2);
    let history = [
        // k1: an acknowledged write lost.
        put("k1", "a", 0, 10),
        get(Node::Primary, "k1", 20, 30, None),
        // k2: a stale read (so "c" was lost, too).
        put("k2", "b", 0, 10),
        put("k2", "c", 20, 30),
        get(Node::Primary, "k2", 40, 50, Some("b")),
        // k3: a replica going back; its primary answers are fine.
        put("k3", "d", 0, 10),
        put("k3", "e", 20, 30),
        get(replica, "k3", 40, 50, Some("e")),
        get(replica, "k3", 60, 70, Some("d")),
    ];
    let report = check(&history);
    assert!(!report.is_valid());
    let keys: Vec<(&str, bool)> = report
        .keys
        .iter()
        .map(|key| (key.key.as_str(), key.is_valid()))
        .collect();
    assert_eq!(keys, [("k1", false), ("k2", false), ("k3", false)]);
    assert_eq!(report.lost_writes(), 2);
    assert_eq!(report.keys[0].lost_writes[0].write, history[0]);
    assert_eq!(report.keys[0].lost_writes[0].read, history[1]);
    assert_eq!(report.keys[1].lost_writes[0].write, history[3]);
    // A lost write is not linearizable either.
    assert_eq!(report.non_linearizable_keys(), 2);
    let window = report.keys[1].not_linearizable.as_ref().expect("a window");
    assert_eq!(window.operations, history[3..5].to_vec());
    assert_eq!(report.replica_violations(), 1);
    assert_eq!(report.keys[2].not_linearizable, None);
    assert_eq!(
        (
            report.keys[2].primary_operations,
            report.keys[2].replica_operations
        ),
        (2, 2)
    );
    assert_eq!(report.violations().count(), 5);
}

#[test]
fn replica_reads_are_not_held_to_the_primary_checks() {
    let replica = Node::Replica(1);
    // A replica lagging behind an acknowledged write is neither a lost write nor a stale read.
    let history = [
        put("k", "a", 0, 10),
        get(replica, "k", 20, 30, None),
        put("k", "b", 40, 50),
        get(replica, "k", 60, 70, Some("a")),
    ];
    let report = check(&history);
    assert!(report.is_valid(), "{report}");
}

#[test]
fn the_report_prints_each_violation_with_its_operations_one_a_line() {
    let history = [
        put("k2", "b", 1_000, 2_000),
        put("k2", "c", 3_000_000_000, 3_000_001_000),
        get(Node::Primary, "k2", 4_000_000_000, 4_000_002_000, Some("b")),
    ];
    let printed = check(&history).to_string();
    let expected = "\
lost acknowledged write on key k2: c was written, then a read showed b, and nothing could have replaced it in between:
    3.000000s..3.000001s client 0 conn 3 primary: PUT k2 c -> OK
    4.000000s..4.000002s client 0 conn 3 primary: GET k2 -> b
key k2 is not linearizable: no order of these operations explains every answer, whatever the key held before them:
    3.000000s..3.000001s client 0 conn 3 primary: PUT k2 c -> OK
    4.000000s..4.000002s client 0 conn 3 primary: GET k2 -> b
INVALID: 1 keys, 3 operations, 1 lost acknowledged writes, 1 keys not linearizable, 0 replica violations, 0 read-your-writes violations, 0 monotonic read violations";
    assert_eq!(printed, expected);
}

#[test]
fn reads_with_a_token_are_held_to_their_clients_writes_and_counted() {
    let mut stale = get(Node::Replica(1), "k", 50, 60, Some("a"));
    stale.token = Some("1:aaaa:9".into());
    let history = [put("k", "a", 10, 20), put("k", "b", 30, 40), stale.clone()];
    let report = check(&history);
    assert!(!report.is_valid());
    assert_eq!(report.read_your_writes_violations(), 1, "{report}");
    assert_eq!(report.monotonic_read_violations(), 0, "{report}");
    assert_eq!(report.replica_violations(), 0, "{report}");
    // The same read without a token is a lagging replica's, which is allowed.
    stale.token = None;
    assert!(check(&[history[0].clone(), history[1].clone(), stale]).is_valid());
}

#[test]
fn a_kill_bounds_an_unanswered_operation_so_a_later_write_can_be_proven_lost() {
    // A DEL sent to the primary at 1 s got no answer; the primary was killed, dead by 5 s.
    let mut del = op(
        Node::Primary,
        "k",
        Call::Del,
        1_000_000_000,
        5_000_000_000,
        Outcome::Unknown,
    );
    let history = |del: &Operation| {
        [
            del.clone(),
            put("k", "a", 6_000_000_000, 6_000_001_000),
            get(Node::Primary, "k", 7_000_000_000, 7_000_001_000, None),
        ]
    };
    let report = check(&history(&del));
    assert_eq!(report.lost_writes(), 1, "{report}");
    assert_eq!(report.non_linearizable_keys(), 1);
    let window = report.keys[0].not_linearizable.as_ref().expect("a window");
    assert_eq!(window.operations, history(&del)[1..].to_vec());
    assert_eq!(
        window.unknown_before, 0,
        "it cannot take effect in the window"
    );
    assert_eq!(
        del.to_string(),
        "1.000000s..? client 0 conn 3 primary: DEL k -> no answer (may or may not have \
         happened, not after 5.000000s)"
    );
    // Without the kill, the DEL may have taken effect after the write: nothing is wrong.
    del.completed = u64::MAX;
    assert!(check(&history(&del)).is_valid());
    assert_eq!(
        del.to_string(),
        "1.000000s..? client 0 conn 3 primary: DEL k -> no answer (may or may not have happened)"
    );
}

/// Prints how long `check` takes on a 10-minute run: 5 keys of 60,000 operations each, 5
/// clients pacing each key at 100 operations a second (run in release mode).
#[test]
// In release mode it measures: cargo test --release -p kvstore --lib check_of_a_ten -- --nocapture
fn check_of_a_ten_minute_run() {
    let mut rng = fastrand::Rng::with_seed(600);
    let mut history = Vec::new();
    for key in 0..5 {
        let mut shape = Shape::new(5, TEN_MINUTES_OF_A_KEY);
        shape.key = format!("k{key}");
        shape.gap = 100_000_000;
        shape.duration = 2_000_000;
        shape.unknown = 200;
        shape.late = 2_000_000_000;
        shape.kill = 2_000_000_000;
        history.extend(simulate(&mut rng, &shape).history);
    }
    let started = std::time::Instant::now();
    let report = check(&history);
    println!("{} in {:?}", report, started.elapsed());
    assert!(report.is_valid());
}
