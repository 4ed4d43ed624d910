//! The Replicator actor against a fake replica endpoint in the same actix System.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use kv_actors::replication::replicator::{Replicator, ReplicatorConfig};
use kv_actors::storage::durability::Durability;
use kv_actors::storage::record::{self, Entry};
use kv_actors::store::{Batch, Change, Mutation, Op, Store, Subscribe, TakeSnapshot};
use slog::{o, Discard, Logger};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// What the fake replica received.
#[derive(Default)]
struct Received {
    /// The full resync's snapshot: its pairs, its offset, the count its end record gave.
    snapshot: Vec<(Bytes, Bytes)>,
    snapshot_seq: Option<u64>,
    snapshot_count: Option<u64>,
    /// Every mutation after the snapshot, in the order it arrived.
    mutations: Vec<Mutation>,
}

/// A replica that answers the handshake as an empty node, keeps the snapshot it is sent, then
/// records every mutation after it and acknowledges it.
async fn fake_replica(listener: TcpListener, received: Arc<Mutex<Received>>) {
    let (stream, _) = listener.accept().await.unwrap();
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let mut line = String::new();
    reader.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("REPLICATE "), "{line}");
    // The handshake without a cluster secret: a nonce each, no proofs.
    writer
        .write_all(format!("CHALLENGE {} -\n", "0".repeat(32)).as_bytes())
        .await
        .unwrap();
    line.clear();
    reader.read_line(&mut line).await.unwrap();
    assert!(line.starts_with("PROVE - "), "{line}");
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
                Entry::End { seq, count } => {
                    in_snapshot = false;
                    let mut received = received.lock().unwrap();
                    received.snapshot_seq = Some(seq);
                    received.snapshot_count = Some(count);
                    applied = Some(seq);
                }
                Entry::Mutation(mutation) if in_snapshot => match mutation.change {
                    Change::Put(pair) => received.lock().unwrap().snapshot.push((
                        Bytes::copy_from_slice(pair.key()),
                        Bytes::copy_from_slice(pair.value()),
                    )),
                    Change::Del { .. } | Change::Clear => panic!("a DEL in a snapshot"),
                },
                Entry::Mutation(mutation) => {
                    applied = Some(mutation.seq);
                    received.lock().unwrap().mutations.push(mutation);
                }
                Entry::Heartbeat { .. } => {}
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
    let received = Arc::new(Mutex::new(Received::default()));
    actix_rt::spawn(fake_replica(listener, received.clone()));

    let store_arbiter = Arbiter::new();
    let store = Store::start_in_arbiter(&store_arbiter.handle(), |_| Store::new());
    let config = ReplicatorConfig {
        replica: replica.to_string(),
        secret: None,
        replication_id: "test-id".into(),
        previous: None,
        backlog_bytes: 64 * 1024 * 1024,
        backlog_min_bytes: 1024 * 1024,
        full_sync_buffer_bytes: 64 * 1024 * 1024,
        timeout: Duration::from_secs(30),
        epoch: 0,
        authoritative: false,
        tls: None,
    };
    let log = Logger::root(Discard, o!());
    let (replicator, progress) =
        Replicator::new(config, store.clone(), Durability::none(), 0, &log);
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

    // The primary's data, taken before the replica's records are looked at.
    let primary = store.send(TakeSnapshot).await.unwrap();
    let primary: HashMap<Bytes, Bytes> = primary
        .data
        .iter()
        .map(|pair| {
            let key = Bytes::copy_from_slice(pair.key());
            (key, Bytes::copy_from_slice(pair.value()))
        })
        .collect();
    let received = received.lock().unwrap();
    let seen = &received.mutations;
    let from = received.snapshot_seq.expect("a snapshot was sent") + 1;
    assert_eq!(
        received.snapshot_count,
        Some(received.snapshot.len() as u64),
        "the snapshot's end record counts its pairs"
    );
    assert!(
        seen.iter().map(|m| m.seq).eq(from..=total),
        "every mutation after the snapshot, once and in order"
    );
    // The snapshot and the mutations after it, applied in order, are the Store's data.
    let mut replica: HashMap<Bytes, Bytes> = received.snapshot.iter().cloned().collect();
    for mutation in seen.iter() {
        match &mutation.change {
            Change::Put(pair) => {
                let key = Bytes::copy_from_slice(pair.key());
                replica.insert(key, Bytes::copy_from_slice(pair.value()));
            }
            Change::Del { key } => {
                replica.remove(key);
            }
            Change::Clear => replica.clear(),
        }
    }
    assert_eq!(replica.len(), primary.len(), "the replica has every key");
    assert!(replica == primary, "the replica's data is the primary's");
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
