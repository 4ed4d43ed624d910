//! Keys with a time to live, in the Store: deadlines set, changed and read as Redis's commands
//! do, a key gone from its deadline on, and deletes only by a Store that authors history.

use std::time::{SystemTime, UNIX_EPOCH};

use kv_actors::store::expiry::{ExpireCondition, Expiry, SetArgs, SetCondition, TtlQuery};
use kv_actors::store::{Apply, SetWrites};

use super::*;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn set(key: &str, value: &str, expiry: Expiry) -> Op {
    Op::Set(Box::new(SetArgs {
        key: b(key),
        value: b(value),
        only: SetCondition::Always,
        expiry,
        get: false,
    }))
}

fn ttl(key: &str, query: TtlQuery) -> Op {
    Op::Ttl(b(key), query)
}

async fn run(store: &Addr<Store>, ops: Vec<Op>) -> Vec<Outcome> {
    store.send(Batch { ops }).await.unwrap().outcomes
}

fn number(outcome: &Outcome) -> i64 {
    match outcome {
        Outcome::Number(n, _) => *n,
        other => panic!("expected a number, got {other:?}"),
    }
}

#[actix_rt::test]
async fn deadlines_are_set_read_and_cleared_as_in_redis() {
    let store = Store::new().start();
    let hour = 3_600_000;
    let at = now_ms() + hour;
    let out = run(
        &store,
        vec![
            set("k", "v", Expiry::In(hour)),
            ttl("k", TtlQuery::Seconds),
            ttl("k", TtlQuery::Millis),
            ttl("absent", TtlQuery::Seconds),
            Op::Put(b("plain"), b("v")),
            ttl("plain", TtlQuery::Seconds),
            set("at", "v", Expiry::At(at)),
            ttl("at", TtlQuery::AtMillis),
            ttl("at", TtlQuery::AtSeconds),
        ],
    )
    .await;
    assert_eq!(number(&out[1]), 3600);
    assert!((hour - 1000..=hour).contains(&number(&out[2])));
    assert_eq!(number(&out[3]), -2);
    assert_eq!(number(&out[5]), -1);
    assert_eq!((number(&out[7]), number(&out[8])), (at, at / 1000));

    // A value changed in place keeps its deadline; a plain SET clears it; KEEPTTL keeps it.
    let out = run(
        &store,
        vec![
            Op::Put(b("n"), b("1")),
            Op::Expire(b("n"), Expiry::In(hour), ExpireCondition::default()),
            Op::Incr(b("n"), 1),
            ttl("n", TtlQuery::Seconds),
            Op::Append(b("n"), b("0")),
            ttl("n", TtlQuery::Seconds),
            set("n", "x", Expiry::Keep),
            ttl("n", TtlQuery::Seconds),
            Op::Put(b("n"), b("y")),
            ttl("n", TtlQuery::Seconds),
        ],
    )
    .await;
    assert_eq!(number(&out[1]), 1);
    assert_eq!(number(&out[3]), 3600);
    assert_eq!(number(&out[5]), 3600);
    assert_eq!(number(&out[7]), 3600);
    assert_eq!(number(&out[9]), -1);

    // RENAME and COPY carry the deadline; PERSIST removes it once.
    let out = run(
        &store,
        vec![
            Op::Rename(b("k"), b("moved"), false),
            ttl("moved", TtlQuery::Seconds),
            Op::Copy(b("moved"), b("copied"), false),
            ttl("copied", TtlQuery::Seconds),
            Op::Persist(b("copied")),
            Op::Persist(b("copied")),
            ttl("copied", TtlQuery::Seconds),
        ],
    )
    .await;
    assert_eq!(number(&out[1]), 3600);
    assert_eq!(number(&out[3]), 3600);
    assert_eq!((number(&out[4]), number(&out[5])), (1, 0));
    assert_eq!(number(&out[6]), -1);
}

#[actix_rt::test]
async fn expire_conditions_compare_with_never_for_a_key_without_a_deadline() {
    let store = Store::new().start();
    let only = |nx, xx, gt, lt| ExpireCondition { nx, xx, gt, lt };
    let expire = |ms, only| Op::Expire(b("k"), Expiry::In(ms), only);
    let out = run(
        &store,
        vec![
            Op::Put(b("k"), b("v")),
            expire(100_000, only(false, false, true, false)), // GT: never is not earlier
            expire(100_000, only(false, true, false, false)), // XX: no deadline yet
            expire(100_000, only(false, false, false, true)), // LT: earlier than never
            expire(50_000, only(true, false, false, false)),  // NX: has one now
            expire(200_000, only(false, false, true, false)), // GT: later
            expire(300_000, only(false, true, false, true)),  // XX LT: not earlier
            expire(100_000, only(false, false, false, false)),
            expire(10_000, Default::default()),
        ],
    )
    .await;
    let answers: Vec<i64> = out[1..].iter().map(number).collect();
    assert_eq!(answers, [0, 0, 1, 0, 1, 0, 1, 1]);
    // A time already past deletes the key, and says so.
    let out = run(
        &store,
        vec![expire(-1, Default::default()), Op::Get(b("k"))],
    )
    .await;
    assert_eq!(number(&out[0]), 1);
    assert_eq!(out[1], Outcome::NotFound);
}

#[actix_rt::test]
async fn set_conditions_and_get_answer_as_redis_does() {
    let store = Store::new().start();
    let with = |only, get| {
        Op::Set(Box::new(SetArgs {
            key: b("k"),
            value: b("new"),
            only,
            expiry: Expiry::Clear,
            get,
        }))
    };
    let out = run(
        &store,
        vec![
            with(SetCondition::IfPresent, false),
            with(SetCondition::IfAbsent, true),
            with(SetCondition::IfAbsent, true),
            with(SetCondition::Always, true),
            Op::GetEx(b("k"), Some(Expiry::In(60_000))),
            ttl("k", TtlQuery::Seconds),
            Op::GetEx(b("k"), Some(Expiry::Clear)),
            ttl("k", TtlQuery::Seconds),
            Op::GetEx(b("gone"), None),
        ],
    )
    .await;
    assert_eq!(out[0], Outcome::NotFound);
    assert!(matches!(out[1], Outcome::Swapped(None, _)));
    assert!(matches!(&out[2], Outcome::Value(p) if p.value() == b"new"));
    assert!(matches!(&out[3], Outcome::Swapped(Some(p), _) if p.value() == b"new"));
    assert!(matches!(&out[4], Outcome::Swapped(Some(p), _) if p.value() == b"new"));
    assert_eq!(number(&out[5]), 60);
    assert!(matches!(&out[6], Outcome::Swapped(Some(_), _)));
    assert_eq!(number(&out[7]), -1);
    assert_eq!(out[8], Outcome::NotFound);
}

#[actix_rt::test]
async fn an_expired_key_is_never_answered_and_its_delete_is_published() {
    let store = Store::new().start();
    let seen = subscribe(&store).await;
    let soon = now_ms() + 100;
    run(
        &store,
        vec![
            set("read", "v", Expiry::At(soon)),
            set("untouched", "v", Expiry::At(soon)),
            set("past", "v", Expiry::At(1)),
            Op::Put(b("kept"), b("v")),
        ],
    )
    .await;
    // Set with a deadline already past: hidden at once.
    assert_eq!(
        run(&store, vec![Op::Get(b("past"))]).await,
        [Outcome::NotFound]
    );
    eventually("the key read expired", || now_ms() > soon).await;
    let out = run(
        &store,
        vec![
            Op::Get(b("read")),
            ttl("read", TtlQuery::Seconds),
            Op::Del(b("read")),
        ],
    )
    .await;
    assert_eq!(out[0], Outcome::NotFound);
    assert_eq!(number(&out[1]), -2);
    assert_eq!(out[2], Outcome::NotFound);
    // Active expiry deletes the key nobody reads, as a published delete.
    let mut stats = store.send(Stats).await.unwrap();
    while stats.keys > 1 {
        assert!(now_ms() < soon + 60_000, "active expiry never ran");
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        stats = store.send(Stats).await.unwrap();
    }
    assert_eq!((stats.expired_keys, stats.expiring_keys), (3, 0));
    wait_for_len(&seen, 7).await;
    let deleted: Vec<Bytes> = seen
        .lock()
        .unwrap()
        .iter()
        .filter_map(|m| match &m.change {
            Change::Del { key } => Some(key.clone()),
            Change::Put(_) | Change::Clear => None,
        })
        .collect();
    let mut deleted: Vec<&[u8]> = deleted.iter().map(|k| &k[..]).collect();
    deleted.sort();
    assert_eq!(deleted, [&b"past"[..], b"read", b"untouched"]);
}

#[actix_rt::test]
async fn a_store_closed_to_writes_hides_expired_keys_until_its_primary_deletes_them() {
    let store = Store::new().start();
    store.send(SetWrites { open: false }).await.unwrap();
    let seen = subscribe(&store).await;
    let put = |seq, deadline| Mutation {
        more: false,
        seq,
        change: Change::Put(Pair::with_deadline(b"k", b"v", Some(deadline))),
    };
    let applied = store.send(Apply {
        mutations: vec![put(1, 1)],
    });
    assert_eq!(applied.await.unwrap(), Ok(1));
    assert_eq!(store.send(Get { key: b("k") }).await.unwrap(), None);
    let out = run(&store, vec![ttl("k", TtlQuery::Seconds)]).await;
    assert_eq!(number(&out[0]), -2);
    // Hidden, but not deleted: only the primary's delete removes it.
    let stats = store.send(Stats).await.unwrap();
    assert_eq!((stats.keys, stats.expired_keys), (1, 0));
    let del = Mutation {
        more: false,
        seq: 2,
        change: Change::Del { key: b("k") },
    };
    let applied = store.send(Apply {
        mutations: vec![del],
    });
    assert_eq!(applied.await.unwrap(), Ok(2));
    assert_eq!(store.send(Stats).await.unwrap().keys, 0);
    wait_for_len(&seen, 2).await;
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "the replica added no delete of its own"
    );
}

#[actix_rt::test]
async fn a_mass_expiry_lets_other_messages_in_between_its_passes() {
    const KEYS: usize = 100_000;
    let store = Store::new().start();
    let _log = subscribe(&store).await;
    let due = now_ms() + 100;
    let ops = (0..KEYS)
        .map(|i| set(&format!("k{i}"), "v", Expiry::At(due)))
        .collect();
    run(&store, ops).await;
    // While the keys are being deleted, the Store keeps answering: some answer shows a part
    // of them deleted (one pass of 1 ms deletes far fewer than all of them).
    let mut partway = false;
    loop {
        let stats = store.send(Stats).await.unwrap();
        partway |= stats.keys > 0 && stats.keys < KEYS && stats.expired_keys > 0;
        if stats.keys == 0 {
            break;
        }
        assert!(now_ms() < due + 60_000, "the keys never expired");
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(std::time::Duration::from_micros(200)).await;
    }
    assert!(
        partway,
        "the Store answered nothing while it expired the keys"
    );
}

#[actix_rt::test]
async fn a_value_changed_in_place_still_expires_actively() {
    let store = Store::new().start();
    let seen = subscribe(&store).await;
    let due = now_ms() + 100;
    // The rate limiter's pattern: a counter given a deadline, then incremented.
    let ops = vec![
        Op::Incr(b("hits"), 1),
        Op::Expire(b("hits"), Expiry::At(due), ExpireCondition::default()),
        Op::Incr(b("hits"), 1),
        Op::Append(b("hits"), b("0")),
        set("kept", "v", Expiry::Keep),
    ];
    run(&store, ops).await;
    assert_eq!(store.send(Stats).await.unwrap().expiring_keys, 1);
    // Nobody reads it again: active expiry alone deletes it.
    wait_for_len(&seen, 6).await;
    let last = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.change, Change::Del { key: b("hits") });
    let stats = store.send(Stats).await.unwrap();
    assert_eq!(
        (stats.keys, stats.expiring_keys, stats.expired_keys),
        (1, 0, 1)
    );
}

#[actix_rt::test]
async fn a_store_deletes_nothing_before_it_is_subscribed_to_or_while_closed() {
    let past = Pair::with_deadline(b"k", b"v", Some(1));
    let data: kv_actors::store::keyspace::Keyspace = std::iter::once(past).collect();
    let open = Store::with_data(data.clone(), 5).start();
    let closed = Store::with_data(data, 5).closed().start();
    // Passes run every 100 ms; none may number a delete nobody would log.
    let until = now_ms() + 300;
    eventually("a few expiry passes", || now_ms() > until).await;
    for store in [&open, &closed] {
        let stats = store.send(Stats).await.unwrap();
        assert_eq!((stats.last_seq, stats.keys), (5, 1));
    }
    // Subscribed to, the open one deletes it as mutation 6; the closed one never does.
    let seen = subscribe(&open).await;
    wait_for_len(&seen, 1).await;
    assert_eq!(seen.lock().unwrap()[0].seq, 6);
    let seen = subscribe(&closed).await;
    let until = now_ms() + 300;
    eventually("a few more passes", || now_ms() > until).await;
    assert!(seen.lock().unwrap().is_empty());
}
