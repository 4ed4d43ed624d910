//! The Store's keyspace commands through its mailbox: `KEYS`, `SCAN` and `RANDOMKEY` never
//! return an expired key, `SCAN` returns every key present throughout however the keyspace
//! changes meanwhile, and `FLUSHALL` is one `Clear` mutation, applied from a client or from a
//! primary's stream, and refused while the Store is closed to client writes.

use std::collections::BTreeSet;

use kv_actors::store::expiry::{Expiry, SetArgs, SetCondition};
use kv_actors::store::scan::ScanArgs;
use kv_actors::store::{Apply, SetWrites};

use super::*;

async fn run(store: &Addr<Store>, ops: Vec<Op>) -> Vec<Outcome> {
    store.send(Batch { ops }).await.unwrap().outcomes
}

fn puts(n: usize) -> Vec<Op> {
    (0..n)
        .map(|i| Op::Put(b(&format!("k{i}")), b("v")))
        .collect()
}

#[actix_rt::test]
async fn a_flush_removes_every_key_as_one_mutation() {
    let store = Store::new().start();
    let seen = subscribe(&store).await;
    run(&store, puts(1000)).await;
    let out = run(
        &store,
        vec![Op::Clear, Op::Get(b("k1")), Op::Put(b("after"), b("v"))],
    )
    .await;
    assert_eq!(out[0], Outcome::Applied(1001));
    assert_eq!(out[1], Outcome::NotFound);
    let stats = store.send(Stats).await.unwrap();
    assert_eq!((stats.keys, stats.last_seq), (1, 1002));
    wait_for_len(&seen, 1002).await;
    let published = seen.lock().unwrap().clone();
    assert_eq!(published[1000].change, Change::Clear);
    // An empty keyspace is flushed all the same: the command is history, as in Redis.
    run(&store, vec![Op::Clear, Op::Clear]).await;
    assert_eq!(store.send(Stats).await.unwrap().keys, 0);
}

#[actix_rt::test]
async fn a_large_flush_leaves_the_store_answering() {
    let store = Store::new().start();
    run(&store, puts(200_000)).await;
    // Freed on another thread: the Store answers the next message whatever that takes.
    let out = run(&store, vec![Op::Clear]).await;
    assert_eq!(out, [Outcome::Applied(200_001)]);
    let stats = store.send(Stats).await.unwrap();
    assert_eq!((stats.keys, stats.expiring_keys), (0, 0));
}

#[actix_rt::test]
async fn a_replica_applies_its_primarys_clear_and_refuses_its_clients_flush() {
    let store = Store::new().start();
    store.send(SetWrites { open: false }).await.unwrap();
    let mutation = |seq, change| Mutation::new(seq, change);
    let applied = store.send(Apply {
        mutations: vec![
            mutation(1, Change::put(b"a", b"1")),
            mutation(2, Change::Clear),
            mutation(3, Change::put(b"b", b"2")),
        ],
    });
    assert_eq!(applied.await.unwrap(), Ok(3));
    assert_eq!(store.send(Get { key: b("a") }).await.unwrap(), None);
    assert_eq!(store.send(Get { key: b("b") }).await.unwrap(), Some(b("2")));
    let refused = store
        .send(Batch {
            ops: vec![Op::Clear],
        })
        .await
        .unwrap();
    assert!(refused.refused);
    assert_eq!(store.send(Stats).await.unwrap().keys, 1);
}

/// A key whose deadline has already passed: set, but hidden from then on.
fn expired(key: &str) -> Op {
    Op::Set(Box::new(SetArgs {
        key: b(key),
        value: b("v"),
        only: SetCondition::Always,
        expiry: Expiry::At(1),
        get: false,
    }))
}

fn scan(cursor: u64, pattern: Option<&str>, count: usize) -> Op {
    Op::Scan(Box::new(ScanArgs {
        cursor,
        pattern: pattern.map(b),
        count,
        other_type: false,
    }))
}

fn names(keys: Vec<Bytes>) -> BTreeSet<String> {
    keys.iter()
        .map(|k| String::from_utf8(k.to_vec()).unwrap())
        .collect()
}

/// A whole `SCAN` iteration with `count`; answers every key returned and how many calls.
async fn scan_all(store: &Addr<Store>, pattern: Option<&str>, count: usize) -> (Vec<Bytes>, usize) {
    let (mut cursor, mut all, mut calls) = (0, Vec::new(), 0);
    loop {
        let mut out = run(store, vec![scan(cursor, pattern, count)]).await;
        let Some(Outcome::Scanned(next, keys)) = out.pop() else {
            panic!("{out:?}");
        };
        all.extend(keys);
        calls += 1;
        if next == 0 {
            return (all, calls);
        }
        cursor = next;
    }
}

#[actix_rt::test]
async fn keys_scan_and_randomkey_never_return_an_expired_key() {
    let store = Store::new().start();
    let mut ops = puts(3);
    ops.extend([expired("gone1"), expired("gone2"), expired("k-gone")]);
    run(&store, ops).await;
    let out = run(
        &store,
        vec![
            Op::Keys(b("*")),
            Op::Keys(b("k?")),
            Op::Keys(b("gone1")),
            Op::Keys(b("k1")),
        ],
    )
    .await;
    let keys = |i: usize| match &out[i] {
        Outcome::Keys(keys) => names(keys.clone()),
        other => panic!("{other:?}"),
    };
    assert_eq!(keys(0), names(vec![b("k0"), b("k1"), b("k2")]));
    assert_eq!(keys(1), keys(0));
    assert!(
        keys(2).is_empty(),
        "a literal pattern is a lookup, and finds no expired key"
    );
    assert_eq!(keys(3), names(vec![b("k1")]));
    let (scanned, _) = scan_all(&store, None, 1).await;
    assert_eq!(names(scanned), keys(0));
    let (scanned, _) = scan_all(&store, Some("*gone*"), 1000).await;
    assert!(scanned.is_empty());
    for _ in 0..20 {
        let out = run(&store, vec![Op::RandomKey]).await;
        let Outcome::Bulk(key, None) = &out[0] else {
            panic!("{out:?}");
        };
        assert!(key.starts_with(b"k") && !key.ends_with(b"gone"), "{key:?}");
    }
    run(&store, vec![Op::Clear]).await;
    assert_eq!(run(&store, vec![Op::RandomKey]).await, [Outcome::NotFound]);
    run(&store, vec![expired("only")]).await;
    assert_eq!(run(&store, vec![Op::RandomKey]).await, [Outcome::NotFound]);
}

#[actix_rt::test]
async fn scan_reads_whole_shards_only_as_far_as_count_asks() {
    let store = Store::new().start();
    run(&store, puts(10_000)).await;
    // About 39 keys a shard: COUNT 10 reads one shard a call, COUNT 1000 about 26 shards.
    let (keys, calls) = scan_all(&store, None, 10).await;
    assert_eq!((keys.len(), calls), (10_000, 256));
    let (keys, calls) = scan_all(&store, None, 1000).await;
    assert_eq!(keys.len(), 10_000);
    assert!((9..=11).contains(&calls), "{calls}");
    // Keys that do not match count towards COUNT: no call reads everything looking for one.
    let (keys, calls) = scan_all(&store, Some("nothing*"), 10).await;
    assert_eq!((keys.len(), calls), (0, 256));
    let (keys, calls) = scan_all(&store, Some("k1?"), 10_000).await;
    assert_eq!((names(keys).len(), calls), (10, 1));
    let mut other_type = ScanArgs {
        cursor: 0,
        pattern: None,
        count: 10,
        other_type: true,
    };
    let out = run(&store, vec![Op::Scan(Box::new(other_type.clone()))]).await;
    assert_eq!(out, [Outcome::Scanned(0, Vec::new())]);
    other_type.cursor = 1 << 40;
    other_type.other_type = false;
    let out = run(&store, vec![Op::Scan(Box::new(other_type))]).await;
    assert_eq!(
        out,
        [Outcome::Scanned(0, Vec::new())],
        "an unknown cursor ends"
    );
}

#[actix_rt::test]
async fn scan_returns_every_key_present_throughout_while_others_come_and_go() {
    let store = Store::new().start();
    run(&store, puts(2_000)).await;
    let (mut cursor, mut seen, mut round) = (0, BTreeSet::new(), 0);
    loop {
        // Between two calls, other keys are added and removed, and a flush of nothing else.
        let churn = (0..50).flat_map(|i| {
            let key = b(&format!("churn{round}-{i}"));
            let old = b(&format!("churn{}-{i}", round.max(1) - 1));
            [Op::Put(key, b("v")), Op::Del(old)]
        });
        run(&store, churn.collect()).await;
        let mut out = run(&store, vec![scan(cursor, None, 10)]).await;
        let Some(Outcome::Scanned(next, keys)) = out.pop() else {
            panic!("{out:?}");
        };
        seen.extend(names(keys));
        round += 1;
        if next == 0 {
            break;
        }
        cursor = next;
    }
    let missing: Vec<String> = (0..2_000)
        .map(|i| format!("k{i}"))
        .filter(|k| !seen.contains(k))
        .collect();
    assert!(missing.is_empty(), "never returned: {missing:?}");
}

#[actix_rt::test]
async fn incrbyfloat_getrange_and_setrange_keep_the_deadline_and_refuse_as_redis() {
    let store = Store::new().start();
    let hour = Expiry::In(3_600_000);
    let set = |key: &str, value: &str| {
        Op::Set(Box::new(SetArgs {
            key: b(key),
            value: b(value),
            only: SetCondition::Always,
            expiry: hour,
            get: false,
        }))
    };
    run(&store, vec![set("f", "10.50"), set("s", "Hello World")]).await;
    let out = run(
        &store,
        vec![
            Op::IncrByFloat(b("f"), b("0.1")),
            Op::IncrByFloat(b("new"), b("5.0e3")),
            Op::IncrByFloat(b("s"), b("1")),
            Op::IncrByFloat(b("f"), b("nan")),
            Op::GetRange(b("s"), -5, -1),
            Op::GetRange(b("absent"), 0, -1),
            Op::SetRange(b("s"), 6, b("Redis")),
            Op::SetRange(b("pad"), 3, b("x")),
            Op::SetRange(b("s"), 0, b("")),
            Op::SetRange(b("s"), -1, b("x")),
            Op::SetRange(b("s"), 1 << 29, b("x")),
            Op::Get(b("s")),
            Op::Get(b("pad")),
        ],
    )
    .await;
    assert_eq!(out[0], Outcome::Bulk(b("10.6"), Some(3)));
    assert_eq!(out[1], Outcome::Bulk(b("5000"), Some(4)));
    assert_eq!(out[2], Outcome::Refused("ERR value is not a valid float"));
    assert_eq!(out[3], Outcome::Refused("ERR value is not a valid float"));
    assert_eq!(out[4], Outcome::Bulk(b("World"), None));
    assert_eq!(out[5], Outcome::Bulk(Bytes::new(), None));
    assert_eq!(out[6], Outcome::Number(11, Some(5)));
    assert_eq!(out[7], Outcome::Number(4, Some(6)));
    assert_eq!(
        out[8],
        Outcome::Number(11, None),
        "an empty value changes nothing"
    );
    assert_eq!(out[9], Outcome::Refused("ERR offset is out of range"));
    assert_eq!(
        out[10],
        Outcome::Refused("ERR string exceeds maximum allowed size (proto-max-bulk-len)")
    );
    let value = |o: &Outcome| match o {
        Outcome::Value(pair) => (pair.value().to_vec(), pair.deadline().is_some()),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        value(&out[11]),
        (b"Hello Redis".to_vec(), true),
        "kept its deadline"
    );
    assert_eq!(value(&out[12]), (b"\0\0\0x".to_vec(), false));
    let out = run(&store, vec![Op::Get(b("f"))]).await;
    assert_eq!(
        value(&out[0]),
        (b"10.6".to_vec(), true),
        "kept its deadline"
    );
    let out = run(
        &store,
        vec![Op::IncrByFloat(b("f"), b("1e308")), Op::Get(b("f"))],
    )
    .await;
    assert_eq!(
        out[0],
        Outcome::Bulk(b(&format!("1{}", "0".repeat(308))), Some(7))
    );
    let out = run(&store, vec![Op::IncrByFloat(b("f"), b("1.7e308"))]).await;
    assert_eq!(
        out[0],
        Outcome::Refused("ERR increment would produce NaN or Infinity")
    );
}
