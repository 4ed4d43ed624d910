//! The Store's whole-keyspace ops: `KEYS`, `SCAN`, `RANDOMKEY` (reads that never return a key
//! whose deadline has passed, and never delete one either: active expiry does), and
//! `FLUSHDB`/`FLUSHALL` (one `Clear` mutation, however many keys); and the string ops of the
//! same change, `INCRBYFLOAT`, `GETRANGE`, `SETRANGE` (a change is an ordinary `Put` that
//! keeps the key's deadline, as `INCR`'s is). Part of the Store (`mod.rs`); no I/O.
//!
//! `KEYS` looks at every key in one turn of the Store, as Redis's does: on a million keys it
//! holds every other client up for as long as that takes (tens of milliseconds). `SCAN` reads
//! only the shards it needs for its `COUNT` (see [`super::scan`]).

use std::hash::BuildHasher;

use bytes::Bytes;
use foldhash::fast::RandomState;

use super::glob::Glob;
use super::keyspace::SHARDS;
use super::mutation::{Change, Seq};
use super::op::{Op, Outcome};
use super::pair::Pair;
use super::scan::ScanArgs;
use super::string_ops;
use super::Store;

impl Store {
    /// The keyspace ops.
    pub(super) fn keyspace_op(&mut self, op: Op) -> Outcome {
        match op {
            Op::Clear => Outcome::Applied(self.clear()),
            Op::Keys(pattern) => Outcome::Keys(self.keys(&pattern)),
            Op::Scan(args) => {
                let (cursor, keys) = self.scan(&args);
                Outcome::Scanned(cursor, keys)
            }
            Op::RandomKey => self
                .random_key()
                .map_or(Outcome::NotFound, |key| Outcome::Bulk(key, None)),
            Op::IncrByFloat(key, increment) => {
                let old = self.lookup(&key);
                let value = old.as_ref().map(Pair::value);
                match string_ops::increment_float(value, &increment) {
                    Ok(text) => {
                        let deadline = old.as_ref().and_then(Pair::deadline);
                        let seq = self.put_expiring(&key, &text, deadline);
                        Outcome::Bulk(Bytes::from(text), Some(seq))
                    }
                    Err(why) => Outcome::Refused(why),
                }
            }
            Op::GetRange(key, start, end) => {
                let part = self.lookup(&key).map_or_else(Bytes::new, |pair| {
                    let range = string_ops::range(pair.value().len(), start, end);
                    // A slice of the stored block: no copy, however long.
                    pair.value_bytes().slice(range)
                });
                Outcome::Bulk(part, None)
            }
            Op::SetRange(key, offset, value) => {
                let old = self.lookup(&key);
                let old_value = old.as_ref().map(Pair::value);
                match string_ops::set_range(old_value, offset, &value) {
                    Ok(Some(new)) => {
                        let deadline = old.as_ref().and_then(Pair::deadline);
                        let seq = self.put_expiring(&key, &new, deadline);
                        Outcome::Number(new.len() as i64, Some(seq))
                    }
                    Ok(None) => Outcome::Number(old_value.map_or(0, <[u8]>::len) as i64, None),
                    Err(why) => Outcome::Refused(why),
                }
            }
            _ => Outcome::Refused("ERR internal: not a keyspace op"),
        }
    }

    /// Every live key that matches `pattern`. A pattern without special characters names one
    /// key: a lookup, not a walk over all of them.
    fn keys(&self, pattern: &[u8]) -> Vec<Bytes> {
        let live = |pair: &&Pair| !pair.expired_at(self.now);
        if Glob::is_literal(pattern) {
            let found = self.data.get(pattern).filter(live);
            return found.map(Pair::key_bytes).into_iter().collect();
        }
        let glob = Glob::new(pattern);
        self.data
            .iter()
            .filter(live)
            .filter(|pair| glob.matches(pair.key()))
            .map(Pair::key_bytes)
            .collect()
    }

    /// One `SCAN` call: whole shards from the cursor's, until `count` keys were looked at
    /// (those that do not match count too, so a pattern that matches little never makes one
    /// call read the whole keyspace); answers the next cursor (0: done) and the live keys that
    /// match.
    fn scan(&self, args: &ScanArgs) -> (u64, Vec<Bytes>) {
        let glob = args
            .pattern
            .as_deref()
            .map(Glob::new)
            .filter(|glob| !glob.matches_all());
        let mut shard = usize::try_from(args.cursor).unwrap_or(SHARDS);
        if args.other_type {
            shard = SHARDS;
        }
        let mut keys = Vec::new();
        let mut looked_at = 0;
        while shard < SHARDS && looked_at < args.count {
            for pair in self.data.shard(shard) {
                looked_at += 1;
                let wanted = glob.as_ref().is_none_or(|glob| glob.matches(pair.key()));
                if wanted && !pair.expired_at(self.now) {
                    keys.push(pair.key_bytes());
                }
            }
            shard += 1;
        }
        let next = if shard >= SHARDS { 0 } else { shard as u64 };
        (next, keys)
    }

    /// A live key picked at random, or `None` when there is none: from a shard picked at
    /// random, the first live key from a random place in it (so not exactly uniform, as
    /// Redis's is not either).
    fn random_key(&self) -> Option<Bytes> {
        // A fresh random state per call: its seed advances with every one taken.
        let random = RandomState::default().hash_one(self.now) as usize;
        (0..SHARDS)
            .map(|i| (random.wrapping_add(i)) % SHARDS)
            .find_map(|shard| {
                let len = self.data.shard_len(shard);
                let skip = random.rotate_right(8) % len.max(1);
                let pairs = self.data.shard(shard);
                let from_skip = pairs.skip(skip);
                let before_skip = self.data.shard(shard).take(skip);
                from_skip
                    .chain(before_skip)
                    .find(|pair| !pair.expired_at(self.now))
                    .map(Pair::key_bytes)
            })
    }

    /// Remove every key as one logged `Clear`. The old keys are freed on another thread when
    /// there are many ([`super::keyspace::Keyspace::drop_in_background`]), so the Store keeps
    /// answering while a million pairs are freed.
    fn clear(&mut self) -> Seq {
        self.clear_data();
        self.record(Change::Clear)
    }

    /// Empty the keyspace, freeing the old keys off this thread when there are many: what a
    /// `Clear` does, from a client here or from the primary's stream on a replica.
    pub(super) fn clear_data(&mut self) {
        self.data.take().drop_in_background();
    }
}
