//! The replication backlog: the most recent mutations, bounded in bytes.
//!
//! A replica that reconnects holding offset `n` can resume from `n + 1` (a partial resync) as
//! long as the backlog still holds every mutation after `n`; otherwise it needs a full resync.
//! The backlog keeps the Store's published batches themselves (`Arc<[Mutation]>`): replicators
//! of the same node hold the same batches, so their backlogs share memory.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use super::fingerprint;
use crate::store::{Change, Mutation, Seq};

/// Bytes a mutation is counted as: its key and value plus a fixed overhead.
fn weight(mutation: &Mutation) -> usize {
    48 + match &mutation.change {
        Change::Put(pair) => pair.key().len() + pair.value().len(),
        Change::Del { key } => key.len(),
        Change::Clear => 0,
    }
}

/// A bounded window of the latest mutations, in sequence order with no gaps.
pub struct Backlog {
    /// The Store's published batches, oldest first, each with when it arrived: what `lag_ms`
    /// is measured from.
    batches: VecDeque<(Arc<[Mutation]>, Instant)>,
    /// The weight of every mutation held (see `weight`), kept under `limit`.
    bytes: usize,
    /// The most bytes held (`--repl-backlog-bytes`); past it the oldest batches go...
    limit: usize,
    /// ...unless a full resync (or the catch-up after it) still needs them: then up to this
    /// many (`--repl-full-sync-buffer-bytes`), as Redis buffers a replica's output during a
    /// full sync, so that a full resync under load converges instead of starting over.
    hold_limit: usize,
    /// Every mutation after this one is held for a replica's full resync, if set.
    hold_after: Option<Seq>,
    /// The sequence number of the last mutation before the window.
    before: Seq,
    /// The last sequence number in the window (`before` when it is empty).
    last: Seq,
}

impl Backlog {
    /// An empty backlog of at most `limit` bytes (`hold_limit` while a full resync needs
    /// more), continuing after `last_seq`.
    pub fn new(limit: usize, hold_limit: usize, last_seq: Seq) -> Self {
        Backlog {
            batches: VecDeque::new(),
            bytes: 0,
            limit,
            hold_limit: hold_limit.max(limit),
            hold_after: None,
            before: last_seq,
            last: last_seq,
        }
    }

    /// Add a batch the Store applied. The oldest batches go once the limit is passed (the
    /// newest batch always stays, whatever its size).
    pub fn push(&mut self, batch: Arc<[Mutation]>) {
        let Some(last) = batch.last() else { return };
        self.last = last.seq;
        self.bytes += batch.iter().map(weight).sum::<usize>();
        self.batches.push_back((batch, Instant::now()));
        while self.bytes > self.limit && self.batches.len() > 1 {
            let held = match (self.hold_after, self.batches.front()) {
                (Some(after), Some((oldest, _))) => oldest.last().is_some_and(|m| m.seq > after),
                _ => false,
            };
            if held && self.bytes <= self.hold_limit {
                break;
            }
            if let Some((old, _)) = self.batches.pop_front() {
                self.bytes -= old.iter().map(weight).sum::<usize>();
                self.before = old.last().map_or(self.before, |m| m.seq);
            }
        }
    }

    /// The batches held, oldest first (they follow [`Backlog::first`] with no gap).
    pub fn batches(&self) -> Vec<Arc<[Mutation]>> {
        self.batches
            .iter()
            .map(|(batch, _)| batch.clone())
            .collect()
    }

    /// This backlog, started instead with `batches`, the mutations after `before` that this
    /// node applied as a replica (an elected member's history,
    /// [`crate::replication::follower::Fenced`]): a replica behind the new primary then
    /// resumes from them by a partial resync. Unchanged unless they reach exactly to where
    /// this backlog starts.
    pub fn seeded(self, before: Seq, batches: Vec<Arc<[Mutation]>>) -> Backlog {
        let mut seeded = Backlog::new(self.limit, self.hold_limit, before);
        for batch in batches {
            seeded.push(batch);
        }
        match seeded.last == self.last && self.batches.is_empty() {
            true => seeded,
            false => self,
        }
    }

    /// An empty backlog with the same limits, continuing after `seq` (the data was replaced).
    pub fn emptied_at(&self, seq: Seq) -> Backlog {
        Backlog::new(self.limit, self.hold_limit, seq)
    }

    /// Hold every mutation after `seq` (a full resync as of `seq` is on its way to a replica,
    /// which then needs what came after it), up to the hold limit; `None` releases the hold,
    /// and the backlog shrinks back to its limit as batches arrive.
    pub fn hold_after(&mut self, seq: Option<Seq>) {
        self.hold_after = seq;
    }

    /// Whether the backlog is within its own limit, so a hold no longer keeps anything.
    pub fn within_limit(&self) -> bool {
        self.bytes <= self.limit
    }

    /// One hash over the fingerprints of the mutations after `start` up to `end`
    /// ([`super::fingerprint`]), or `None` unless the backlog holds them all.
    pub fn fingerprint(&self, start: Seq, end: Seq) -> Option<u64> {
        if !self.covers(start) || end > self.last || end < start {
            return None;
        }
        let first = self
            .batches
            .partition_point(|(batch, _)| batch.last().is_some_and(|m| m.seq <= start));
        let mutations = self
            .batches
            .range(first..)
            .flat_map(|(batch, _)| batch.iter())
            .filter(|m| m.seq > start)
            .take_while(|m| m.seq <= end);
        Some(fingerprint::over(mutations.map(fingerprint::of)))
    }

    /// The backlog holds every mutation after this one.
    pub fn first(&self) -> Seq {
        self.before
    }

    /// The last sequence number the backlog has seen.
    pub fn last_seq(&self) -> Seq {
        self.last
    }

    /// Whether every mutation after `seq` is here (or `seq` is the latest).
    pub fn covers(&self, seq: Seq) -> bool {
        seq >= self.before && seq <= self.last
    }

    /// The mutations after `seq`, oldest first, until about `max_bytes` are taken.
    pub fn after(&self, seq: Seq, max_bytes: usize) -> Vec<Mutation> {
        let start = self
            .batches
            .partition_point(|(batch, _)| batch.last().is_some_and(|m| m.seq <= seq));
        let mut taken = Vec::new();
        let mut bytes = 0;
        // A batch is everything the Store applied in one turn, which can be large: stop
        // inside it, not after it.
        'batches: for (batch, _) in self.batches.range(start..) {
            for mutation in batch.iter().filter(|m| m.seq > seq) {
                bytes += weight(mutation);
                taken.push(mutation.clone());
                if bytes >= max_bytes {
                    break 'batches;
                }
            }
        }
        taken
    }

    /// When the mutation after `seq` was applied, if the backlog still holds it.
    pub fn applied_at(&self, seq: Seq) -> Option<Instant> {
        let index = self
            .batches
            .partition_point(|(batch, _)| batch.last().is_some_and(|m| m.seq <= seq));
        self.batches.get(index).map(|(_, at)| *at)
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(seqs: std::ops::RangeInclusive<Seq>) -> Arc<[Mutation]> {
        seqs.map(|seq| Mutation {
            more: false,
            seq,
            change: Change::put(format!("k{seq}").as_bytes(), &[b'v'; 100]),
        })
        .collect()
    }

    #[test]
    fn resumes_only_where_it_holds_everything_after() {
        let mut backlog = Backlog::new(1000, 1000, 10);
        assert!(backlog.covers(10));
        backlog.push(batch(11..=13));
        backlog.push(batch(14..=15));
        assert!(backlog.covers(10) && backlog.covers(12) && backlog.covers(15));
        assert!(!backlog.covers(9) && !backlog.covers(16));
        let seqs: Vec<Seq> = backlog
            .after(12, usize::MAX)
            .iter()
            .map(|m| m.seq)
            .collect();
        assert_eq!(seqs, vec![13, 14, 15]);
        // 160 bytes each: pushing more drops the oldest batches.
        backlog.push(batch(16..=20));
        assert!(backlog.bytes() <= 1000);
        assert!(!backlog.covers(10));
        assert!(backlog.covers(15) || backlog.covers(13));
        assert_eq!(backlog.after(19, usize::MAX).len(), 1);
    }

    #[test]
    fn a_chunk_stops_inside_a_large_batch() {
        let mut backlog = Backlog::new(1 << 20, 1 << 20, 0);
        backlog.push(batch(1..=1000));
        // About 155 bytes each: a 1,000-byte chunk is 7 mutations, not the whole batch.
        let first: Vec<Seq> = backlog.after(0, 1000).iter().map(|m| m.seq).collect();
        assert_eq!(first, (1..=7).collect::<Vec<_>>());
        let next: Vec<Seq> = backlog.after(7, 1000).iter().map(|m| m.seq).collect();
        assert_eq!(next, (8..=14).collect::<Vec<_>>());
    }

    #[test]
    fn a_hold_keeps_what_a_full_resync_needs_up_to_its_own_limit() {
        // 160 bytes a mutation: 1,000 bytes hold 6, the hold limit 31.
        let mut backlog = Backlog::new(1000, 5000, 0);
        backlog.hold_after(Some(5));
        for seq in 1..=20 {
            backlog.push(batch(seq..=seq));
        }
        assert!(backlog.covers(5), "everything after the hold is kept");
        assert!(!backlog.covers(4), "what came before it goes as usual");
        for seq in 21..=40 {
            backlog.push(batch(seq..=seq));
        }
        assert!(
            backlog.bytes() <= 5000 && !backlog.covers(5),
            "bounded by the hold limit"
        );
        backlog.hold_after(None);
        backlog.push(batch(41..=41));
        assert!(backlog.within_limit(), "released, it shrinks back");
    }
}
