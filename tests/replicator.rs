//! The Replicator actor against a fake replica endpoint in the same actix System.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use kv_actors::replication::replicator::{Replicator, ReplicatorConfig};
use kv_actors::storage::record::{self, Entry};
use kv_actors::store::{Batch, Change, Mutation, Op, Store, Subscribe};
use slog::{o, Discard, Logger};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// A replica that answers the handshake as an empty node, takes the snapshot it is sent, then
/// records every mutation after it and acknowledges it. Answers the snapshot's offset.
async fn fake_replica(
    listener: TcpListener,
    seen: Arc<Mutex<Vec<Mutation>>>,
    snapshot_seq: Arc<Mutex<Option<u64>>>,
) {
    let (stream, _) = listener.accept().await.unwrap();
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    assert_eq!(line, "REPLICATE -\n");
    writer.write_all(b"POSITION - 0\n").await.unwrap();
    line.clear();
    reader.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("FULLSYNC "), "{line}");
    let mut buf = BytesMut::new();
    let mut in_snapshot = true;
    loop {
        let mut applied = None;
        while let Some((entry, used)) = record::decode(&buf, 1 << 20).unwrap() {
            let _ = buf.split_to(used);
            match entry {
                Entry::End { seq, .. } => {
                    in_snapshot = false;
                    *snapshot_seq.lock().unwrap() = Some(seq);
                    applied = Some(seq);
                }
                Entry::Mutation(mutation) if !in_snapshot => {
                    applied = Some(mutation.seq);
                    seen.lock().unwrap().push(mutation);
                }
                _ => {}
            }
        }
        if let Some(applied) = applied {
            let ack = format!("ACK {applied} {applied}\n");
            if writer.write_all(ack.as_bytes()).await.is_err() {
                return;
            }
        }
        if reader.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            return;
        }
    }
}

#[actix_rt::test]
async fn every_keys_history_arrives_in_order() {
    const MUTATIONS: usize = 100_000;
    const KEYS: usize = 997;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let replica = listener.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let snapshot_seq = Arc::new(Mutex::new(None));
    actix_rt::spawn(fake_replica(listener, seen.clone(), snapshot_seq.clone()));

    let store_arbiter = Arbiter::new();
    let store = Store::start_in_arbiter(&store_arbiter.handle(), |_| Store::new());
    let config = ReplicatorConfig {
        replica: replica.to_string(),
        secret: None,
        replication_id: "test-id".into(),
        backlog_bytes: 64 * 1024 * 1024,
        timeout: Duration::from_secs(30),
    };
    let log = Logger::root(Discard, o!());
    let (replicator, progress) = Replicator::new(config, store.clone(), 0, &log);
    let replicator = replicator.start();
    store.send(Subscribe(replicator.recipient())).await.unwrap();

    // Many concurrent senders, interleaving writes to the same keys.
    let senders: Vec<_> = (0..8)
        .map(|sender| {
            let store = store.clone();
            actix_rt::spawn(async move {
                for i in (sender * 10..MUTATIONS).step_by(8 * 10) {
                    let ops = (i..(i + 10).min(MUTATIONS))
                        .map(|n| {
                            let key = Bytes::from(format!("key{}", n % KEYS));
                            if n % 9 == 0 {
                                Op::Del(key)
                            } else {
                                Op::Put(key, Bytes::from(format!("{n}")))
                            }
                        })
                        .collect();
                    store.send(Batch { ops }).await.unwrap();
                }
            })
        })
        .collect();
    for sender in senders {
        sender.await.unwrap();
    }

    let mut progress = progress;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let total = {
        let stats = store.send(kv_actors::store::Stats).await.unwrap();
        stats.last_seq
    };
    while progress.borrow().acked < total {
        let _ = tokio::time::timeout_at(deadline, progress.changed()).await;
        assert!(
            tokio::time::Instant::now() < deadline,
            "replica acked {:?}",
            progress.borrow()
        );
    }

    let seen = seen.lock().unwrap();
    let from = snapshot_seq.lock().unwrap().expect("a snapshot was sent") + 1;
    assert!(
        seen.iter().map(|m| m.seq).eq(from..=total),
        "every mutation after the snapshot, once and in order"
    );
    // Per key, the values written by any one sender only ever grow.
    let mut last: HashMap<(Bytes, usize), usize> = HashMap::new();
    for mutation in seen.iter() {
        if let Change::Put(pair) = &mutation.change {
            let key = Bytes::copy_from_slice(pair.key());
            let n: usize = std::str::from_utf8(pair.value()).unwrap().parse().unwrap();
            let sender = (n % 80) / 10;
            if let Some(previous) = last.insert((key.clone(), sender), n) {
                assert!(previous < n, "{key:?}: {n} arrived after {previous}");
            }
        }
    }
    store_arbiter.stop();
}
