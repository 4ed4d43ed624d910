//! The Store's keyspace commands through its mailbox: `FLUSHALL` as one `Clear` mutation,
//! applied from a client or from a primary's stream, and refused while the Store is closed to
//! client writes.

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
    let mutation = |seq, change| Mutation { seq, change };
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
