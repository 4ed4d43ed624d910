//! The Store actor, driven through its mailbox in an actix System, with no sockets.

use std::sync::{Arc, Mutex};

use actix::prelude::*;
use bytes::Bytes;
use kv_actors::store::pair::Pair;
use kv_actors::store::{
    Applied, Batch, BatchResult, Change, Del, Get, Mutation, Op, Outcome, Put, Seq, SetWrites,
    Stats, Store, StoreStats, Subscribe, TakeSnapshot,
};

#[path = "store/expiry.rs"]
mod expiry;
#[path = "store/keyspace.rs"]
mod keyspace;
#[path = "store/watch.rs"]
mod watch;

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// Collects every mutation published to it.
struct Recorder(Arc<Mutex<Vec<Mutation>>>);

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<Applied> for Recorder {
    type Result = ();
    fn handle(&mut self, msg: Applied, _: &mut Self::Context) {
        self.0.lock().unwrap().extend(msg.mutations.iter().cloned());
    }
}

/// Start a recorder subscribed to `store`; answers the mutations it has seen so far.
async fn subscribe(store: &Addr<Store>) -> Arc<Mutex<Vec<Mutation>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = Recorder(seen.clone()).start();
    store.send(Subscribe(recorder.recipient())).await.unwrap();
    seen
}

#[actix_rt::test]
async fn put_get_del_semantics() {
    let store = Store::new().start();
    assert_eq!(store.send(Get { key: b("k") }).await.unwrap(), None);
    assert_eq!(store.send(Del { key: b("k") }).await.unwrap(), None);
    let first = store
        .send(Put {
            key: b("k"),
            value: b("v1"),
        })
        .await
        .unwrap();
    assert_eq!(first, 1);
    assert_eq!(
        store.send(Get { key: b("k") }).await.unwrap(),
        Some(b("v1"))
    );
    let second = store
        .send(Put {
            key: b("k"),
            value: b("v2"),
        })
        .await
        .unwrap();
    assert_eq!(second, 2, "an overwrite is a mutation too");
    assert_eq!(
        store.send(Get { key: b("k") }).await.unwrap(),
        Some(b("v2"))
    );
    assert_eq!(store.send(Del { key: b("k") }).await.unwrap(), Some(3));
    assert_eq!(store.send(Get { key: b("k") }).await.unwrap(), None);
    assert_eq!(
        store.send(Stats).await.unwrap(),
        StoreStats {
            keys: 0,
            last_seq: 3,
            expiring_keys: 0,
            expired_keys: 0,
        }
    );
}

#[actix_rt::test]
async fn a_batch_applies_in_order_and_answers_each_op() {
    let store = Store::new().start();
    let BatchResult {
        outcomes,
        last_seq,
        seen,
        refused,
    } = store
        .send(Batch {
            ops: vec![
                Op::Get(b("a")),
                Op::Put(b("a"), b("1")),
                Op::Get(b("a")),
                Op::Del(b("a")),
                Op::Del(b("a")),
                Op::Put(b("b"), b("2")),
            ],
        })
        .await
        .unwrap();
    assert_eq!(
        outcomes,
        vec![
            Outcome::NotFound,
            Outcome::Applied(1),
            Outcome::Value(Pair::new(b"a", b"1")),
            Outcome::Applied(2),
            Outcome::NotFound,
            Outcome::Applied(3),
        ]
    );
    assert_eq!(last_seq, Some(3));
    assert!(!refused, "a store is open to writes unless closed");
    assert_eq!(
        seen, 3,
        "the batch could show everything up to its last mutation"
    );
    let reads_only = store
        .send(Batch {
            ops: vec![Op::Get(b("b"))],
        })
        .await
        .unwrap();
    assert_eq!(reads_only.last_seq, None);
    assert_eq!(
        reads_only.seen, 3,
        "a read could show any mutation the Store has applied"
    );
}

/// A failover-cluster member's Store is closed to client writes unless it is the primary:
/// a batch that writes is refused whole (nothing applied), reads still work, and closing
/// answers exactly where the history stands.
#[actix_rt::test]
async fn a_closed_store_refuses_client_writes_but_not_reads() {
    let store = Store::new().start();
    let put = |key: &str| Batch {
        ops: vec![Op::Get(b(key)), Op::Put(b(key), b("1"))],
    };
    assert!(!store.send(put("a")).await.unwrap().refused);
    assert_eq!(store.send(SetWrites { open: false }).await.unwrap(), 1);
    let refused = store.send(put("b")).await.unwrap();
    assert!(refused.refused);
    assert!(refused.outcomes.is_empty());
    let read = store
        .send(Batch {
            ops: vec![Op::Get(b("a"))],
        })
        .await
        .unwrap();
    assert!(!read.refused);
    assert_eq!(read.outcomes.len(), 1);
    assert_eq!(store.send(SetWrites { open: true }).await.unwrap(), 1);
    assert_eq!(store.send(put("b")).await.unwrap().last_seq, Some(2));
}

#[actix_rt::test]
async fn sequence_numbers_continue_from_recovered_state() {
    let data = [Pair::new(b"k", b"v")].into_iter().collect();
    let store = Store::with_data(data, 41).start();
    assert_eq!(store.send(Get { key: b("k") }).await.unwrap(), Some(b("v")));
    let seq = store
        .send(Put {
            key: b("x"),
            value: b("y"),
        })
        .await
        .unwrap();
    assert_eq!(seq, 42);
}

#[actix_rt::test]
async fn a_subscriber_sees_each_mutation_once_in_apply_order() {
    let store = Store::new().start();
    let seen = subscribe(&store).await;
    store
        .send(Put {
            key: b("a"),
            value: b("1"),
        })
        .await
        .unwrap();
    store.send(Del { key: b("missing") }).await.unwrap();
    store.send(Del { key: b("a") }).await.unwrap();
    store
        .send(Batch {
            ops: vec![Op::Put(b("b"), b("2")), Op::Get(b("b"))],
        })
        .await
        .unwrap();
    let expected = vec![
        Mutation {
            more: false,
            seq: 1,
            change: Change::put(b"a", b"1"),
        },
        Mutation {
            more: false,
            seq: 2,
            change: Change::Del { key: b("a") },
        },
        Mutation {
            more: false,
            seq: 3,
            change: Change::put(b"b", b"2"),
        },
    ];
    wait_for_len(&seen, expected.len()).await;
    assert_eq!(*seen.lock().unwrap(), expected);
}

/// Poll until `condition` holds, with a deadline, without blocking the thread the actors
/// under test run on.
async fn eventually(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        // Poll interval of the deadline-bounded wait above.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

/// Wait until `seen` holds `len` mutations.
async fn wait_for_len(seen: &Arc<Mutex<Vec<Mutation>>>, len: usize) {
    eventually(&format!("the subscriber saw {len} mutations"), || {
        seen.lock().unwrap().len() >= len
    })
    .await;
}

#[actix_rt::test]
async fn concurrent_senders_get_gapless_increasing_sequence_numbers() {
    const SENDERS: usize = 16;
    const PER_SENDER: usize = 2_000;
    // The Store on a thread of its own, as in a node; senders on this thread and another.
    let store_arbiter = Arbiter::new();
    let sender_arbiter = Arbiter::new();
    let store = Store::start_in_arbiter(&store_arbiter.handle(), |_| Store::new());
    let first = subscribe(&store).await;
    let second = subscribe(&store).await;

    let mut tasks = Vec::new();
    for sender in 0..SENDERS {
        let store = store.clone();
        let (done, result) = futures::channel::oneshot::channel();
        let task = async move {
            let mut seqs = Vec::new();
            for i in 0..PER_SENDER {
                let key = b(&format!("s{sender}-k{}", i % 10));
                let value = b(&format!("{i}"));
                let seq = if i % 7 == 6 {
                    store.send(Del { key }).await.unwrap()
                } else if i % 3 == 0 {
                    store
                        .send(Batch {
                            ops: vec![Op::Put(key.clone(), value), Op::Get(key)],
                        })
                        .await
                        .unwrap()
                        .last_seq
                } else {
                    Some(store.send(Put { key, value }).await.unwrap())
                };
                // Each sender's own mutations are applied in the order it sent them.
                if let (Some(seq), Some(&last)) = (seq, seqs.last()) {
                    assert!(seq > last, "sequence numbers must increase per sender");
                }
                seqs.extend(seq);
            }
            let _ = done.send(seqs);
        };
        if sender % 2 == 0 {
            actix_rt::spawn(task);
        } else {
            assert!(sender_arbiter.spawn(task));
        }
        tasks.push(result);
    }
    let mut all: Vec<u64> = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("sender finished"));
    }
    all.sort_unstable();
    let total = all.len();
    assert_eq!(
        all,
        (1..=total as u64).collect::<Vec<_>>(),
        "no gaps, no repeats"
    );

    for seen in [&first, &second] {
        wait_for_len(seen, total).await;
        let seen = seen.lock().unwrap();
        let seqs: Vec<u64> = seen.iter().map(|m| m.seq).collect();
        assert_eq!(
            seqs,
            (1..=total as u64).collect::<Vec<_>>(),
            "every mutation exactly once, in apply order"
        );
    }
    store_arbiter.stop();
    sender_arbiter.stop();
}

#[actix_rt::test]
async fn a_stopped_subscriber_does_not_disturb_the_store() {
    let store = Store::new().start();
    let live = subscribe(&store).await;
    let stopped = Recorder(Arc::new(Mutex::new(Vec::new()))).start();
    store
        .send(Subscribe(stopped.clone().recipient()))
        .await
        .unwrap();
    // The Store holds a recipient of it, which does not keep it alive once it stops itself.
    stopped.send(StopRecorder).await.unwrap();
    eventually("the subscriber has stopped", || !stopped.connected()).await;
    for i in 0..100 {
        let seq = store
            .send(Put {
                key: b("k"),
                value: b(&i.to_string()),
            })
            .await
            .unwrap();
        assert_eq!(seq, i + 1);
    }
    assert_eq!(
        store.send(Get { key: b("k") }).await.unwrap(),
        Some(b("99"))
    );
    // The live subscriber still gets every mutation, in order.
    eventually("the live subscriber has every mutation", || {
        live.lock().unwrap().len() == 100
    })
    .await;
    let seqs: Vec<Seq> = live.lock().unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (1..=100).collect::<Vec<_>>());
}

/// Makes a [`Recorder`] stop itself.
#[derive(Message)]
#[rtype(result = "()")]
struct StopRecorder;

impl Handler<StopRecorder> for Recorder {
    type Result = ();
    fn handle(&mut self, _: StopRecorder, ctx: &mut Self::Context) {
        ctx.stop();
    }
}

/// Wait until the publications recorded hold `len` mutations in all.
async fn wait_for_published(published: &Arc<Mutex<Vec<Vec<Seq>>>>, len: usize) {
    eventually(&format!("{len} mutations are published"), || {
        published.lock().unwrap().concat().len() >= len
    })
    .await;
}

/// Records each `Applied` message whole, to see how the Store groups its publications.
struct BatchRecorder(Arc<Mutex<Vec<Vec<Seq>>>>);

impl Actor for BatchRecorder {
    type Context = Context<Self>;
}

impl Handler<Applied> for BatchRecorder {
    type Result = ();
    fn handle(&mut self, msg: Applied, _: &mut Self::Context) {
        let seqs = msg.mutations.iter().map(|m| m.seq).collect();
        self.0.lock().unwrap().push(seqs);
    }
}

#[actix_rt::test]
async fn writes_queued_together_are_published_together_and_positions_stay_exact() {
    let store = Store::new().start();
    let published = Arc::new(Mutex::new(Vec::new()));
    let early = BatchRecorder(published.clone()).start();
    store.send(Subscribe(early.recipient())).await.unwrap();

    // Ten clients' batches reach the mailbox before the Store runs, then a subscription and a
    // snapshot in the same turn.
    let writes: Vec<_> = (0..10)
        .map(|i| {
            store.send(Batch {
                ops: vec![Op::Put(b(&format!("k{i}")), b("v"))],
            })
        })
        .collect();
    let late_seen = Arc::new(Mutex::new(Vec::new()));
    let late = Recorder(late_seen.clone()).start();
    let late_from = store.send(Subscribe(late.recipient()));
    let snapshot = store.send(TakeSnapshot);
    for write in writes {
        write.await.unwrap();
    }
    assert_eq!(
        late_from.await.unwrap(),
        10,
        "subscribed after the ten writes"
    );
    let snapshot = snapshot.await.unwrap();
    assert_eq!((snapshot.seq, snapshot.data.len()), (10, 10));

    store
        .send(Put {
            key: b("after"),
            value: b("v"),
        })
        .await
        .unwrap();
    wait_for_len(&late_seen, 1).await;
    let late_seqs: Vec<Seq> = late_seen.lock().unwrap().iter().map(|m| m.seq).collect();
    assert_eq!(
        late_seqs,
        vec![11],
        "a late subscriber sees only what follows its position"
    );
    wait_for_published(&published, 11).await;
    let batches = published.lock().unwrap().clone();
    assert_eq!(
        batches,
        vec![(1..=10).collect::<Vec<_>>(), vec![11]],
        "the ten queued writes went out as one publication, before the position was handed out"
    );
}

#[actix_rt::test]
async fn a_long_turn_publishes_as_it_goes() {
    let store = Store::new().start();
    let published = Arc::new(Mutex::new(Vec::new()));
    let recorder = BatchRecorder(published.clone()).start();
    store.send(Subscribe(recorder.recipient())).await.unwrap();
    // Three batches of 3,000 writes queued in one turn: the second takes what is pending past
    // 4,096 mutations, which goes out at once; the rest waits for the end of the turn.
    let writes: Vec<_> = (0..3)
        .map(|b| {
            store.send(Batch {
                ops: (0..3000)
                    .map(|i| Op::Put(Bytes::from(format!("b{b}-{i}")), Bytes::from("v")))
                    .collect(),
            })
        })
        .collect();
    for write in writes {
        write.await.unwrap();
    }
    wait_for_published(&published, 9000).await;
    let sizes: Vec<usize> = published.lock().unwrap().iter().map(Vec::len).collect();
    assert_eq!(sizes, vec![6000, 3000]);
}

/// A read-modify-write op is published (to the log writer and the replicators) as the plain
/// `Put` or `Del` it came to, so the log and the replicas stay exactly in step; a refused one
/// publishes nothing.
#[actix_rt::test]
async fn read_modify_write_ops_publish_the_values_they_produce() {
    let store = Store::new().start();
    let seen = subscribe(&store).await;
    let result = store
        .send(Batch {
            ops: vec![
                Op::Incr(b("n"), 5),
                Op::Append(b("n"), b("0")),
                Op::Incr(b("word"), 1),
                Op::Put(b("word"), b("x")),
                Op::Incr(b("word"), 1),
                Op::GetDel(b("n")),
                Op::StrLen(b("n")),
            ],
        })
        .await
        .unwrap();
    assert_eq!(
        result.outcomes,
        [
            Outcome::Number(5, Some(1)),
            Outcome::Number(2, Some(2)),
            Outcome::Number(1, Some(3)),
            Outcome::Applied(4),
            Outcome::Refused("ERR value is not an integer or out of range"),
            Outcome::Swapped(Some(Pair::new(b"n", b"50")), 5),
            Outcome::Number(0, None),
        ]
    );
    assert_eq!(result.last_seq, Some(5));
    wait_for_len(&seen, 5).await;
    let published = seen.lock().unwrap().clone();
    let changes: Vec<String> = published
        .iter()
        .map(|m| match &m.change {
            Change::Put(pair) => format!(
                "{} put {}={}",
                m.seq,
                String::from_utf8_lossy(pair.key()),
                String::from_utf8_lossy(pair.value())
            ),
            Change::Del { key } => format!("{} del {}", m.seq, String::from_utf8_lossy(key)),
            Change::Clear => format!("{} clear", m.seq),
        })
        .collect();
    assert_eq!(
        changes,
        [
            "1 put n=5",
            "2 put n=50",
            "3 put word=1",
            "4 put word=x",
            "5 del n"
        ]
    );
}
