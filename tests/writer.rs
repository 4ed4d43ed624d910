//! The persistence writer, driven in an actix System on a temporary data directory.

mod common;

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use kv_actors::storage::data_dir::DataDir;
use kv_actors::storage::durability::FsyncPolicy;
use kv_actors::storage::recovery::{recover, RecoveryOptions};
use kv_actors::storage::writer::{GetWriterStats, SyncNow, Writer, WriterConfig};
use kv_actors::store::keyspace::Keyspace;
use kv_actors::store::{Applied, Batch, Change, Mutation, Op, Store, Subscribe, TakeSnapshot};
use slog::{o, Discard, Logger};

fn quiet() -> Logger {
    Logger::root(Discard, o!())
}

fn b(s: String) -> Bytes {
    Bytes::from(s)
}

fn sorted(keyspace: &Keyspace) -> Vec<(Bytes, Bytes)> {
    common::sorted_pairs(&keyspace.snapshot())
}

/// The data directory at `path` once its last writer has let it go (the lock is released
/// when the writer's thread ends).
async fn reopen(path: &std::path::Path) -> DataDir {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        match DataDir::open(path) {
            Ok(dir) => return dir,
            Err(_) if std::time::Instant::now() < deadline => {
                // Poll interval of the deadline-bounded wait for the lock.
                tokio::time::sleep(Duration::from_millis(10)).await
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// A writer for a fresh directory, on an arbiter of its own as in a node.
fn start_writer(
    dir: &Arc<DataDir>,
    config: WriterConfig,
    store: Addr<Store>,
) -> (
    Addr<Writer>,
    kv_actors::storage::durability::Durability,
    Arbiter,
) {
    let recovered = recover(dir, RecoveryOptions::default(), &quiet()).unwrap();
    let (writer, durability) =
        Writer::new(dir.clone(), &recovered, config, store, &quiet()).unwrap();
    let arbiter = Arbiter::new();
    let writer = Writer::start_in_arbiter(&arbiter.handle(), move |_| writer);
    (writer, durability, arbiter)
}

#[actix_rt::test]
async fn fed_mutations_become_durable_in_order_and_replay_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Arc::new(DataDir::open(tmp.path()).unwrap());
    let config = WriterConfig {
        fsync: FsyncPolicy::Always,
        ..WriterConfig::default()
    };
    let (writer, mut durability, arbiter) = start_writer(&dir, config, Store::new().start());

    let mut expected = std::collections::BTreeMap::new();
    let mut last_synced = 0;
    let mut seq = 0;
    for batch in 0..200u64 {
        let mutations: Vec<Mutation> = (0..(batch % 7 + 1))
            .map(|i| {
                seq += 1;
                let key = b(format!("key{}", (batch * 3 + i) % 50));
                if seq % 4 == 0 {
                    expected.remove(&key);
                    Mutation {
                        more: false,
                        seq,
                        change: Change::Del { key },
                    }
                } else {
                    let value = b(format!("v{seq}"));
                    expected.insert(key.clone(), value.clone());
                    Mutation {
                        more: false,
                        seq,
                        change: Change::put(&key, &value),
                    }
                }
            })
            .collect();
        writer.do_send(Applied {
            mutations: mutations.into(),
        });
        durability.wait_safe(seq).await.unwrap();
        let state = durability.current();
        assert!(
            state.synced >= seq && state.synced >= last_synced,
            "durability went backwards"
        );
        last_synced = state.synced;
    }
    assert_eq!(writer.send(SyncNow).await.unwrap(), Ok(seq));
    arbiter.stop();
    drop(writer);

    // A fresh recovery (the writer's lock is released with its directory handle).
    drop(dir);
    let dir = reopen(tmp.path()).await;
    let recovered = recover(&dir, RecoveryOptions::default(), &quiet()).unwrap();
    assert_eq!(recovered.last_seq, seq);
    assert_eq!(
        sorted(&recovered.keyspace),
        expected.into_iter().collect::<Vec<_>>()
    );
}

#[actix_rt::test]
async fn compaction_under_writes_keeps_every_key_and_shrinks_the_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Arc::new(DataDir::open(tmp.path()).unwrap());
    let store_arbiter = Arbiter::new();
    let store = Store::start_in_arbiter(&store_arbiter.handle(), |_| Store::new());
    let config = WriterConfig {
        fsync: FsyncPolicy::EverySec,
        compact_min_bytes: 16 * 1024,
        compact_ratio: 1,
    };
    let (writer, _durability, writer_arbiter) = start_writer(&dir, config, store.clone());
    store
        .send(Subscribe(writer.clone().recipient()))
        .await
        .unwrap();

    // 200 keys overwritten again and again: the logs hold far more than the live data.
    let mut total_written = 0u64;
    for round in 0..300 {
        let ops = (0..20)
            .map(|i| {
                let key = format!("key{}", (round * 20 + i) % 200);
                let value = format!("round {round} value {}", "x".repeat(40));
                total_written += (key.len() + value.len()) as u64;
                Op::Put(b(key), b(value))
            })
            .collect();
        store.send(Batch { ops }).await.unwrap();
    }
    // Every write is in the log now; compaction must bring the files down to about the live
    // data. Small writes keep the writer flushing, which is when it checks the threshold.
    writer.send(SyncNow).await.unwrap().unwrap();
    let dir_bytes = || -> u64 {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .filter_map(|e| e.ok()?.metadata().ok())
            .map(|m| m.len())
            .sum()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while dir_bytes() >= total_written / 2 {
        let stats = writer.send(GetWriterStats).await.unwrap();
        assert!(
            std::time::Instant::now() < deadline,
            "files still hold {} bytes for {total_written} written: {stats:?}",
            dir_bytes()
        );
        store
            .send(Batch {
                ops: vec![Op::Put(b("tick".into()), b("x".repeat(100)))],
            })
            .await
            .unwrap();
        // Poll interval of the deadline-bounded loop, which writes to trigger compaction.
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(writer.send(GetWriterStats).await.unwrap().compactions >= 1);
    writer.send(SyncNow).await.unwrap().unwrap();

    let live = store.send(TakeSnapshot).await.unwrap();
    let expected = common::sorted_pairs(&live.data);
    writer_arbiter.stop();
    store_arbiter.stop();
    drop((writer, store, dir));
    let dir = reopen(tmp.path()).await;
    let recovered = recover(&dir, RecoveryOptions::default(), &quiet()).unwrap();
    assert!(recovered.snapshot_seq > 0, "a snapshot was written");
    assert_eq!(recovered.last_seq, live.seq);
    assert_eq!(sorted(&recovered.keyspace), expected);
}

#[actix_rt::test]
async fn writes_that_arrive_while_the_log_is_closed_for_a_compaction_are_written_once_it_is() {
    // Compaction is due after every write: each new write finds the log being closed (its
    // fsync asked for, new writes held) and must still be written and reported, with nothing
    // else arriving to push it along.
    for fsync in [FsyncPolicy::EverySec, FsyncPolicy::Always, FsyncPolicy::No] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Arc::new(DataDir::open(tmp.path()).unwrap());
        let store_arbiter = Arbiter::new();
        let store = Store::start_in_arbiter(&store_arbiter.handle(), |_| Store::new());
        let config = WriterConfig {
            fsync,
            compact_min_bytes: 1,
            compact_ratio: 0,
        };
        let (writer, mut durability, arbiter) = start_writer(&dir, config, store.clone());
        store
            .send(Subscribe(writer.clone().recipient()))
            .await
            .unwrap();
        for i in 1..=30u64 {
            let ops = vec![Op::Put(b(format!("k{}", i % 4)), b(format!("v{i}")))];
            let seq = store.send(Batch { ops }).await.unwrap().seen;
            let safe = tokio::time::timeout(Duration::from_secs(30), durability.wait_safe(seq));
            assert!(
                matches!(safe.await, Ok(Ok(()))),
                "{fsync}: write {seq} was never reported safe"
            );
        }
        // The logs were closed for compactions along the way (else the test proves nothing).
        assert_eq!(writer.send(SyncNow).await.unwrap(), Ok(30));
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while writer.send(GetWriterStats).await.unwrap().compactions == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "{fsync}: no compaction"
            );
            // Poll interval of the deadline-bounded wait for a compaction to finish.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let live = store.send(TakeSnapshot).await.unwrap();
        let expected = common::sorted_pairs(&live.data);
        arbiter.stop();
        store_arbiter.stop();
        drop((writer, store, dir));
        let dir = reopen(tmp.path()).await;
        let recovered = recover(&dir, RecoveryOptions::default(), &quiet()).unwrap();
        assert_eq!(recovered.last_seq, 30, "{fsync}");
        assert_eq!(sorted(&recovered.keyspace), expected, "{fsync}");
    }
}
