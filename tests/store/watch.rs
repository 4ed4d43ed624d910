//! `WATCH` in the Store: an `EXEC` runs its transaction only if no key its client watched
//! changed since, whoever changed it (another client, the client itself, an expiry, a full
//! resync); otherwise every op of the transaction is skipped.

use kv_actors::store::keyspace::Keyspace;
use kv_actors::store::{Replace, Seq};

use super::*;

const ME: u64 = 1;
const OTHER: u64 = 2;

async fn run(store: &Addr<Store>, ops: Vec<Op>) -> Vec<Outcome> {
    store.send(Batch { ops }).await.unwrap().outcomes
}

/// `EXEC` of `ops` by `client`, in one batch: answers the check and the ops' outcomes.
async fn exec(store: &Addr<Store>, client: u64, ops: Vec<Op>) -> Vec<Outcome> {
    let mut batch = vec![Op::Exec(client, ops.len())];
    batch.extend(ops);
    run(store, batch).await
}

async fn last_seq(store: &Addr<Store>) -> Seq {
    store.send(Stats).await.unwrap().last_seq
}

#[actix_rt::test]
async fn exec_runs_when_nothing_watched_changed_and_skips_whole_when_it_did() {
    let store = Store::new().start();
    run(
        &store,
        vec![Op::Put(b("k"), b("1")), Op::Put(b("other"), b("1"))],
    )
    .await;
    run(&store, vec![Op::Watch(ME, vec![b("k")])]).await;
    // A change to a key nobody watches does not matter.
    run(&store, vec![Op::Put(b("other"), b("2"))]).await;
    let out = exec(&store, ME, vec![Op::Incr(b("k"), 1)]).await;
    assert_eq!(out[0], Outcome::Number(1, None));
    assert!(matches!(out[1], Outcome::Number(2, Some(_))));

    // The watches ended with that EXEC; watched again, another client's write aborts it.
    run(&store, vec![Op::Watch(ME, vec![b("k"), b("x")])]).await;
    run(&store, vec![Op::Put(b("k"), b("10"))]).await;
    let before = last_seq(&store).await;
    let out = exec(
        &store,
        ME,
        vec![Op::Incr(b("k"), 1), Op::Put(b("y"), b("1"))],
    )
    .await;
    assert_eq!(
        out,
        [
            Outcome::Number(0, None),
            Outcome::NotFound,
            Outcome::NotFound
        ]
    );
    assert_eq!(last_seq(&store).await, before, "nothing of it was applied");
    // And the aborted EXEC forgot the watches: the next one runs.
    let out = exec(&store, ME, vec![Op::Get(b("k"))]).await;
    assert_eq!(out[0], Outcome::Number(1, None));
}

#[actix_rt::test]
async fn a_watchers_own_write_an_expiry_and_a_resync_count_as_changes() {
    let store = Store::new().start();
    run(
        &store,
        vec![Op::Watch(ME, vec![b("k")]), Op::Put(b("k"), b("mine"))],
    )
    .await;
    assert_eq!(exec(&store, ME, vec![]).await[0], Outcome::Number(0, None));

    // A watched key that expires after WATCH has changed.
    let soon = kv_actors::store::expiry::now_ms() as i64 + 50;
    let set = Op::Set(Box::new(kv_actors::store::expiry::SetArgs {
        key: b("k"),
        value: b("v"),
        only: kv_actors::store::expiry::SetCondition::Always,
        expiry: kv_actors::store::expiry::Expiry::At(soon),
        get: false,
    }));
    run(&store, vec![set, Op::Watch(ME, vec![b("k")])]).await;
    eventually("the key expired", || {
        kv_actors::store::expiry::now_ms() as i64 > soon
    })
    .await;
    assert_eq!(exec(&store, ME, vec![]).await[0], Outcome::Number(0, None));

    // The data replaced by a full resync changes every key.
    run(&store, vec![Op::Watch(ME, vec![b("z")])]).await;
    store
        .send(Replace {
            data: Keyspace::new(),
            seq: 100,
        })
        .await
        .unwrap();
    assert_eq!(exec(&store, ME, vec![]).await[0], Outcome::Number(0, None));
}

#[actix_rt::test]
async fn unwatch_forgets_and_one_clients_watch_is_not_anothers() {
    let store = Store::new().start();
    run(
        &store,
        vec![
            Op::Watch(ME, vec![b("k")]),
            Op::Watch(OTHER, vec![b("j")]),
            Op::Unwatch(ME),
            Op::Put(b("k"), b("1")),
        ],
    )
    .await;
    assert_eq!(exec(&store, ME, vec![]).await[0], Outcome::Number(1, None));
    assert_eq!(
        exec(&store, OTHER, vec![]).await[0],
        Outcome::Number(1, None)
    );
}

#[actix_rt::test]
async fn a_transaction_and_each_command_are_published_as_atomic_groups() {
    let store = Store::new().start();
    let seen = subscribe(&store).await;
    run(&store, vec![Op::Put(b("a"), b("1"))]).await;
    let transaction = vec![
        Op::Put(b("b"), b("2")),
        Op::Get(b("b")),
        Op::Rename(b("a"), b("c"), false),
    ];
    exec(&store, ME, transaction).await;
    wait_for_len(&seen, 4).await;
    let more: Vec<(u64, bool)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|m| (m.seq, m.more))
        .collect();
    // Alone; then the transaction's put, and its rename's delete and put, as one group.
    assert_eq!(more, [(1, false), (2, true), (3, true), (4, false)]);
    // A pipeline's independent commands stay apart; one MSET is one group.
    let pipeline = vec![
        Op::Put(b("x"), b("1")),
        Op::Put(b("y"), b("1")),
        Op::MSet(vec![(b("p"), b("1")), (b("q"), b("1"))]),
    ];
    run(&store, pipeline).await;
    wait_for_len(&seen, 8).await;
    let more: Vec<bool> = seen.lock().unwrap()[4..].iter().map(|m| m.more).collect();
    assert_eq!(more, [false, false, true, false]);
}

#[actix_rt::test]
async fn a_watched_key_hidden_by_its_deadline_on_a_replica_aborts_exec() {
    let store = Store::new().closed().start();
    let due = kv_actors::store::expiry::now_ms() + 100;
    let put = Mutation {
        seq: 1,
        change: Change::Put(Pair::with_deadline(b"k", b"v", Some(due))),
        more: false,
    };
    let applied = store.send(kv_actors::store::Apply {
        mutations: vec![put],
    });
    assert_eq!(applied.await.unwrap(), Ok(1));
    run(&store, vec![Op::Watch(ME, vec![b("k")])]).await;
    eventually("the deadline passed", || {
        kv_actors::store::expiry::now_ms() > due
    })
    .await;
    let out = exec(&store, ME, vec![Op::Get(b("k"))]).await;
    assert_eq!(out[0], Outcome::Number(0, None));
}
