//! What a node knows about itself and reports to operators: `INFO`, `DIGEST` and `WAIT`.
//!
//! Sessions answer these from a [`NodeContext`] shared by every session of the node: the
//! replicators' published progress, the follower (on a replica), the client count.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::watch;

use crate::follower::{Follower, FollowerInfo, Peek};
use crate::keyspace::Snapshot;
use crate::replicator::{LinkState, ReplicaProgress};
use crate::store::{Seq, StoreStats};

/// Facts about the node that every session can report.
#[derive(Debug, Clone, Default)]
pub struct NodeContext {
    /// `primary` or `replica`.
    pub role: &'static str,
    /// A primary's replication id.
    pub replication_id: Arc<str>,
    /// A primary's replicas, one progress channel each.
    pub replicas: Vec<watch::Receiver<ReplicaProgress>>,
    /// A replica's follower, which accepts the primary's stream.
    pub follower: Option<Addr<Follower>>,
    /// Open client connections, kept by the Listener.
    pub clients: Arc<AtomicUsize>,
    /// Required in a replication handshake, when set.
    pub cluster_secret: Option<String>,
    /// A replication link silent for this long is closed.
    pub replication_timeout: Duration,
    /// Turns true when the node starts shutting down, which ends every `WAIT`.
    pub stopping: Option<watch::Receiver<bool>>,
    /// Clients blocked in `WAIT` right now.
    pub blocked: Arc<AtomicUsize>,
    /// Held while a `DIGEST` runs: one at a time per node, however many clients ask, so they
    /// cannot start a hashing thread and a snapshot each.
    pub digest_turn: Arc<tokio::sync::Mutex<()>>,
}

/// Counts a client as blocked while it lives.
struct Blocked<'a>(&'a AtomicUsize);

impl<'a> Blocked<'a> {
    fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Blocked(counter)
    }
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl NodeContext {
    /// The one-line `INFO` reply: space-separated `field=value` pairs.
    pub fn info_line(&self, stats: StoreStats, follower: Option<FollowerInfo>) -> String {
        let mut line = String::new();
        let _ = write!(line, "role={}", self.role);
        match follower {
            Some(f) => {
                let id = f.replication_id.as_deref().unwrap_or("-");
                let _ = write!(line, " replication_id={id} offset={}", stats.last_seq);
                let _ = write!(
                    line,
                    " primary_link={}",
                    if f.linked { "up" } else { "down" }
                );
            }
            None => {
                let _ = write!(
                    line,
                    " replication_id={} offset={}",
                    self.replication_id, stats.last_seq
                );
            }
        }
        let _ = write!(
            line,
            " keys={} connected_clients={} blocked_clients={}",
            stats.keys,
            self.clients.load(Ordering::Relaxed),
            self.blocked.load(Ordering::Relaxed)
        );
        if self.follower.is_none() {
            let connected = self
                .replicas
                .iter()
                .filter(|r| r.borrow().state == LinkState::Streaming)
                .count();
            let _ = write!(
                line,
                " connected_replicas={connected} configured_replicas={}",
                self.replicas.len()
            );
            for (i, replica) in self.replicas.iter().enumerate() {
                let p = replica.borrow().clone();
                let _ = write!(
                    line,
                    " replica{i}_addr={} replica{i}_state={} replica{i}_acked={} replica{i}_durable={} replica{i}_lag_offsets={} replica{i}_lag_ms={}",
                    p.addr,
                    p.state.as_str(),
                    p.acked,
                    p.durable,
                    p.lag_offsets,
                    p.lag_ms
                );
            }
        }
        line
    }

    /// How many connected replicas have acknowledged everything up to `seq`.
    pub fn replicas_at(&self, seq: Seq) -> usize {
        self.replicas
            .iter()
            .filter(|r| {
                let progress = r.borrow();
                progress.state == LinkState::Streaming && progress.acked >= seq
            })
            .count()
    }

    /// `WAIT`: until `wanted` replicas acknowledged `seq`, or `timeout` passes (none: forever),
    /// or the node shuts down; answers how many did.
    pub async fn wait_for_replicas(
        &self,
        seq: Seq,
        wanted: usize,
        timeout: Option<Duration>,
    ) -> usize {
        let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
        let mut receivers = self.replicas.clone();
        let mut stopping = self.stopping.clone();
        let mut blocked = None;
        loop {
            let count = self.replicas_at(seq);
            if count >= wanted || receivers.is_empty() {
                return count;
            }
            blocked.get_or_insert_with(|| Blocked::new(&self.blocked));
            let changed =
                futures::future::select_all(receivers.iter_mut().map(|r| Box::pin(r.changed())));
            let expired = async {
                match deadline {
                    Some(deadline) => tokio::time::sleep_until(deadline).await,
                    None => futures::future::pending().await,
                }
            };
            let stop = async {
                match stopping.as_mut() {
                    Some(stopping) => {
                        let _ = stopping.wait_for(|stopping| *stopping).await;
                    }
                    None => futures::future::pending().await,
                }
            };
            let gone = tokio::select! {
                (result, index, _) = changed => result.is_err().then_some(index),
                () = expired => return self.replicas_at(seq),
                () = stop => return self.replicas_at(seq),
            };
            // A replicator that stopped can no longer acknowledge anything.
            if let Some(index) = gone {
                receivers.remove(index);
            }
        }
    }
}

/// The `INFO` line as Redis clients expect it over RESP: a heading, then one `field:value`
/// line per field.
pub fn redis_style(line: &str) -> String {
    let mut text = String::from("# kvstore\r\n");
    for field in line.split(' ') {
        text.push_str(&field.replacen('=', ":", 1));
        text.push_str("\r\n");
    }
    text
}

/// A replica's replication state, or `None` if its follower is gone.
pub async fn follower_info(follower: &Addr<Follower>) -> Option<FollowerInfo> {
    follower.send(Peek).await.ok()
}

/// An order-independent 64-bit hash of every key and value: equal data gives an equal
/// digest on any node, whatever the order of its hash tables.
pub fn digest(snapshot: &Snapshot) -> u64 {
    snapshot
        .iter()
        .map(|pair| {
            let key = pair.key();
            let mut h = fnv1a(0xcbf2_9ce4_8422_2325, &(key.len() as u64).to_le_bytes());
            h = fnv1a(h, key);
            h = fnv1a(h, pair.value());
            mix(h)
        })
        .fold(0u64, u64::wrapping_add)
}

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// splitmix64's finaliser: spreads every input bit over the output before the sum.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
