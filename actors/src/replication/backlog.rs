//! The replication backlog: the most recent mutations, bounded in bytes.
//!
//! A replica that reconnects holding offset `n` can resume from `n + 1` (a partial resync) as
//! long as the backlog still holds every mutation after `n`; otherwise it needs a full resync.
//! The backlog keeps the Store's published batches themselves (`Arc<[Mutation]>`): replicators
//! of the same node hold the same batches, so their backlogs share memory.
//!
//! A replicator's backlog serves one replica, so it keeps only what that replica may still
//! need: once the replica has said what it made durable (its `ACK`), what came before that is
//! kept only up to a small margin ([`Backlog::with_margin`]); the limit bounds the rest. A
//! connected, caught-up replica then costs the margin, not the limit, while one that drops
//! out can still resume from what it acknowledged as long as the writes since fit the limit.

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
    /// The Store's published batches, oldest first, each with when it arrived (what `lag_ms`
    /// is measured from) and the weight of every batch ever pushed up to and including it (so
    /// the weight of any run of batches is a subtraction).
    batches: VecDeque<(Arc<[Mutation]>, Instant, u64)>,
    /// The weight of every mutation held (see `weight`), kept under `limit`.
    bytes: usize,
    /// The weight of every batch ever pushed, dropped ones included.
    pushed: u64,
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
    /// The replica made every mutation up to this one durable (its last `ACK`): it never
    /// resumes from before it, so what lies before is kept only up to `margin` bytes...
    floor: Option<Seq>,
    /// ...(`--repl-backlog-min-bytes`), for a quick reconnect's fingerprint window and
    /// whatever else reads just behind the replica; unbounded (`usize::MAX`) by default.
    margin: usize,
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
            pushed: 0,
            floor: None,
            margin: usize::MAX,
        }
    }

    /// This backlog, keeping at most `margin` bytes of batches its replica has acknowledged
    /// as durable ([`Backlog::acknowledged`]); without it, only the limit trims.
    pub fn with_margin(mut self, margin: usize) -> Self {
        self.margin = margin;
        self
    }

    /// The replica made every mutation up to `durable` durable (`None`: where it stands is
    /// not known, as during a full resync): what lies before it is trimmed to the margin.
    pub fn acknowledged(&mut self, durable: Option<Seq>) {
        self.floor = durable;
        self.trim();
    }

    /// Add a batch the Store applied. The oldest batches go once the limit is passed (the
    /// newest batch always stays, whatever its size).
    pub fn push(&mut self, batch: Arc<[Mutation]>) {
        let Some(last) = batch.last() else { return };
        self.last = last.seq;
        let added = batch.iter().map(weight).sum::<usize>();
        self.bytes += added;
        self.pushed += added as u64;
        self.batches.push_back((batch, Instant::now(), self.pushed));
        self.trim();
    }

    /// Drop the oldest batches while the backlog is over its limit (unless a hold keeps them,
    /// up to the hold limit), or while more than the margin lies before the replica's floor.
    fn trim(&mut self) {
        while self.batches.len() > 1 {
            let Some(oldest) = self.batches.front().and_then(|(b, _, _)| b.last()) else {
                break;
            };
            let held = self.hold_after.is_some_and(|after| oldest.seq > after);
            let over_limit = self.bytes > self.limit && !(held && self.bytes <= self.hold_limit);
            let settled = !held
                && self.floor.is_some_and(|floor| {
                    oldest.seq <= floor && self.bytes_upto(floor) > self.margin
                });
            if !over_limit && !settled {
                break;
            }
            if let Some((old, _, end)) = self.batches.pop_front() {
                self.bytes = (self.pushed - end) as usize;
                self.before = old.last().map_or(self.before, |m| m.seq);
            }
        }
    }

    /// The weight of the batches held that end at or before `seq`.
    fn bytes_upto(&self, seq: Seq) -> usize {
        let upto = self
            .batches
            .partition_point(|(batch, _, _)| batch.last().is_some_and(|m| m.seq <= seq));
        let dropped = self.pushed - self.bytes as u64;
        match upto.checked_sub(1).and_then(|i| self.batches.get(i)) {
            Some((_, _, end)) => (end - dropped) as usize,
            None => 0,
        }
    }

    /// The batches held, oldest first (they follow [`Backlog::first`] with no gap).
    pub fn batches(&self) -> Vec<Arc<[Mutation]>> {
        self.batches
            .iter()
            .map(|(batch, _, _)| batch.clone())
            .collect()
    }

    /// This backlog, started instead with `batches`, the mutations after `before` that this
    /// node applied as a replica (an elected member's history,
    /// [`crate::replication::follower::Fenced`]): a replica behind the new primary then
    /// resumes from them by a partial resync. Unchanged unless they reach exactly to where
    /// this backlog starts.
    pub fn seeded(self, before: Seq, batches: Vec<Arc<[Mutation]>>) -> Backlog {
        let mut seeded = Backlog::new(self.limit, self.hold_limit, before).with_margin(self.margin);
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
        Backlog::new(self.limit, self.hold_limit, seq).with_margin(self.margin)
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
            .partition_point(|(batch, _, _)| batch.last().is_some_and(|m| m.seq <= start));
        let mutations = self
            .batches
            .range(first..)
            .flat_map(|(batch, _, _)| batch.iter())
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
            .partition_point(|(batch, _, _)| batch.last().is_some_and(|m| m.seq <= seq));
        let mut taken = Vec::new();
        let mut bytes = 0;
        // A batch is everything the Store applied in one turn, which can be large: stop
        // inside it, not after it.
        'batches: for (batch, _, _) in self.batches.range(start..) {
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
            .partition_point(|(batch, _, _)| batch.last().is_some_and(|m| m.seq <= seq));
        self.batches.get(index).map(|(_, at, _)| *at)
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

    #[test]
    fn while_streaming_it_keeps_what_follows_the_acknowledged_offset_plus_the_margin() {
        // About 150 bytes a mutation: a 500-byte margin is 3 of them.
        let mut backlog = Backlog::new(1 << 20, 1 << 20, 0).with_margin(500);
        for seq in 1..=100 {
            backlog.push(batch(seq..=seq));
        }
        assert_eq!(
            backlog.first(),
            0,
            "no acknowledgement yet: the limit alone trims"
        );
        backlog.acknowledged(Some(90));
        assert!(
            backlog.covers(90) && backlog.covers(87),
            "the margin before the ack stays"
        );
        assert!(!backlog.covers(86) && backlog.bytes() <= 500 + 10 * 160);
        backlog.push(batch(101..=101));
        assert!(
            backlog.covers(87),
            "a new batch after the ack trims nothing more"
        );
    }

    #[test]
    fn while_the_replica_is_away_it_keeps_from_its_last_ack_up_to_the_limit() {
        let mut backlog = Backlog::new(5000, 5000, 0).with_margin(0);
        for seq in 1..=10 {
            backlog.push(batch(seq..=seq));
        }
        backlog.acknowledged(Some(5));
        assert_eq!(backlog.first(), 5, "what the replica made durable goes");
        // The link is down: nothing more is acknowledged, and writes go on.
        for seq in 11..=35 {
            backlog.push(batch(seq..=seq));
            assert!(
                backlog.covers(5),
                "it can resume from its ack while the writes fit"
            );
        }
        for seq in 36..=60 {
            backlog.push(batch(seq..=seq));
        }
        assert!(
            !backlog.covers(5) && backlog.within_limit(),
            "past the limit, as before"
        );
    }

    #[test]
    fn nothing_the_replica_has_not_acknowledged_is_dropped_within_the_limit() {
        let mut backlog = Backlog::new(20_000, 20_000, 0).with_margin(0);
        let mut acked = 0;
        for seq in 1..=500 {
            backlog.push(batch(seq..=seq));
            if seq % 7 == 0 {
                acked = seq - 3;
                backlog.acknowledged(Some(acked));
            }
            let after: usize = backlog.after(acked, usize::MAX).iter().map(weight).sum();
            assert!(after > 20_000 || backlog.covers(acked), "seq {seq}");
            assert!(backlog.bytes() <= 20_000);
        }
    }

    #[test]
    fn a_full_resync_hold_outlasts_the_margin() {
        let mut backlog = Backlog::new(1000, 5000, 0).with_margin(0);
        backlog.acknowledged(None);
        backlog.hold_after(Some(5));
        for seq in 1..=20 {
            backlog.push(batch(seq..=seq));
        }
        // An acknowledgement past the hold (the replica acks its old data) drops none of it.
        backlog.acknowledged(Some(12));
        assert!(backlog.covers(5), "everything after the snapshot is held");
        backlog.hold_after(None);
        backlog.acknowledged(Some(20));
        assert_eq!(backlog.first(), 19, "released, the acknowledged part goes");
    }
}
