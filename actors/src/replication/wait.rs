//! `WAIT`: how many replicas have acknowledged a write, and waiting until enough have.
//!
//! It reads the progress each Replicator publishes ([`super::progress`]) on its watch
//! channel, so a client blocked in `WAIT` costs the replicators nothing.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use super::progress::{LinkState, ReplicaProgress};
use crate::store::Seq;

/// How many connected replicas have acknowledged everything up to `seq` (applied it).
pub fn acknowledged(replicas: &[watch::Receiver<ReplicaProgress>], seq: Seq) -> usize {
    streaming_where(replicas, |p| p.acked >= seq)
}

/// How many connected replicas have made everything up to `seq` durable (what
/// `--min-replicas-to-write` counts).
pub fn durable(replicas: &[watch::Receiver<ReplicaProgress>], seq: Seq) -> usize {
    streaming_where(replicas, |p| p.durable >= seq)
}

/// How many streaming replicas' progress satisfies `holds`.
fn streaming_where(
    replicas: &[watch::Receiver<ReplicaProgress>],
    holds: impl Fn(&ReplicaProgress) -> bool,
) -> usize {
    replicas
        .iter()
        .filter(|r| {
            let progress = r.borrow();
            progress.state == LinkState::Streaming && holds(&progress)
        })
        .count()
}

/// Wait until `wanted` replicas acknowledged `seq` (as `count` counts them:
/// [`acknowledged`] or [`durable`]), or `timeout` passes (none: forever), or
/// `stopping` turns true (the node shuts down); answers how many did. The caller counts in
/// `blocked` while it waits (`INFO`'s `blocked_clients`).
pub async fn wait_for(
    count: fn(&[watch::Receiver<ReplicaProgress>], Seq) -> usize,
    replicas: &[watch::Receiver<ReplicaProgress>],
    seq: Seq,
    wanted: usize,
    timeout: Option<Duration>,
    stopping: Option<watch::Receiver<bool>>,
    blocked: &AtomicUsize,
) -> usize {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let mut receivers = replicas.to_vec();
    let mut stopping = stopping;
    let mut counted = None;
    loop {
        let counted_now = count(replicas, seq);
        if counted_now >= wanted || receivers.is_empty() {
            return counted_now;
        }
        counted.get_or_insert_with(|| Blocked::new(blocked));
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
            () = expired => return count(replicas, seq),
            () = stop => return count(replicas, seq),
        };
        // A replicator that stopped can no longer acknowledge anything.
        if let Some(index) = gone {
            receivers.remove(index);
        }
    }
}

/// Counts a client as blocked while it lives (`WAIT`, `WAITPOS`).
pub(crate) struct Blocked<'a>(&'a AtomicUsize);

impl<'a> Blocked<'a> {
    /// Count one more blocked client, until this is dropped.
    pub(crate) fn new(counter: &'a AtomicUsize) -> Self {
        counter.fetch_add(1, Ordering::Relaxed);
        Blocked(counter)
    }
}

impl Drop for Blocked<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
