//! Keys with a time to live: the clock, the deadline arithmetic of Redis's expiry commands, and
//! the index of deadlines that active expiry walks.
//!
//! A deadline is absolute: milliseconds since the Unix epoch, kept in the key's own
//! [`Pair`] (so the log, snapshots and the replication stream carry it with the value, and a
//! replica or a restarted node agrees on it whatever its clock did meanwhile). As in Redis, a
//! relative time to live (`EX`, `PX`, `EXPIRE`) becomes a deadline on the node that applies the
//! command, and only the node that authors history (a primary) deletes an expired key, by an
//! ordinary logged and replicated delete; every other node hides a key whose deadline has
//! passed on its own clock until that delete arrives.
//!
//! Active expiry does not sample as Redis does: [`Expiries`] keeps every expiring key ordered by
//! deadline, so each pass deletes exactly the keys that are due, oldest first, and a million
//! keys expiring leave no memory behind for long. The index holds the pairs themselves (one
//! reference each, no copy of a key), and a pair leaves it when it leaves the keyspace, so it
//! never pins a value that was overwritten.

use std::cmp::Ordering;
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;

use super::pair::Pair;

/// Milliseconds since the Unix epoch: a deadline, or the time now.
pub type Millis = u64;

/// How often the Store looks for keys whose deadline has passed. Redis runs its active
/// expiry cycle ten times a second too; reads never wait for it (they check the deadline).
pub const CYCLE: Duration = Duration::from_millis(100);

/// The most one expiry pass may hold the Store before it lets the messages waiting in its
/// mailbox (clients) go first; it carries on right after them.
pub const BUDGET: Duration = Duration::from_millis(1);

/// The wall clock, in milliseconds since the Unix epoch (0 for a clock set before 1970).
pub fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as Millis)
}

/// What a write does to its key's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The key never expires (a plain `SET`, `PERSIST`).
    Clear,
    /// The key keeps the deadline it had (`KEEPTTL`).
    Keep,
    /// The key expires this many milliseconds from now (`EX`, `PX`, `EXPIRE`, `PEXPIRE`); zero
    /// or less means at once.
    In(i64),
    /// The key expires at this time, in milliseconds since the Unix epoch (`EXAT`, `PXAT`,
    /// `EXPIREAT`, `PEXPIREAT`); a time already past means at once.
    At(i64),
}

impl Expiry {
    /// The deadline this gives a key that had `current`, at `now`; `None`: never expires.
    pub fn deadline(self, now: Millis, current: Option<Millis>) -> Option<Millis> {
        match self {
            Expiry::Clear => None,
            Expiry::Keep => current,
            Expiry::In(ms) => Some(now.saturating_add_signed(ms)),
            Expiry::At(ms) => Some(ms.max(0) as Millis),
        }
    }
}

/// When a `SET` applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetCondition {
    /// Always (no `NX` or `XX`).
    Always,
    /// `NX`: only when the key does not exist.
    IfAbsent,
    /// `XX`: only when the key exists.
    IfPresent,
}

/// The arguments of a `SET` with options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetArgs {
    /// The key to set.
    pub key: Bytes,
    /// Its new value.
    pub value: Bytes,
    /// When the set applies.
    pub only: SetCondition,
    /// What happens to the key's deadline.
    pub expiry: Expiry,
    /// `GET`: answer the previous value rather than `OK`.
    pub get: bool,
}

/// The conditions of an `EXPIRE` (Redis 7's `NX`, `XX`, `GT`, `LT`; `XX` goes with `GT` or
/// `LT`, the parser refuses the other combinations). None set: always.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExpireCondition {
    /// `NX`: only a key that has no deadline.
    pub nx: bool,
    /// `XX`: only a key that has one.
    pub xx: bool,
    /// `GT`: only when the new deadline is later (a key without one counts as never, so
    /// never later).
    pub gt: bool,
    /// `LT`: only when the new deadline is earlier (a key without one counts as never, so
    /// any deadline is earlier).
    pub lt: bool,
}

impl ExpireCondition {
    /// Whether a key whose deadline is `current` may be given `new`.
    pub fn allows(self, current: Option<Millis>, new: Millis) -> bool {
        let later = current.is_some_and(|at| new > at);
        let earlier = current.is_none_or(|at| new < at);
        !(self.nx && current.is_some()
            || self.xx && current.is_none()
            || self.gt && !later
            || self.lt && !earlier)
    }
}

/// What a `TTL`-like command answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlQuery {
    /// `TTL`: seconds left, rounded to the nearest.
    Seconds,
    /// `PTTL`: milliseconds left.
    Millis,
    /// `EXPIRETIME`: the deadline, in seconds since the Unix epoch.
    AtSeconds,
    /// `PEXPIRETIME`: the deadline, in milliseconds since the Unix epoch.
    AtMillis,
}

impl TtlQuery {
    /// The answer for a live key whose deadline is `deadline` at `now`: -1 when it has none.
    /// (An absent key answers -2, decided by whoever found it absent.)
    pub fn answer(self, deadline: Option<Millis>, now: Millis) -> i64 {
        let Some(deadline) = deadline else {
            return -1;
        };
        let left = deadline.saturating_sub(now) as i64;
        match self {
            // As Redis rounds it: 1.5 s left answers 2.
            TtlQuery::Seconds => (left + 500) / 1000,
            TtlQuery::Millis => left,
            TtlQuery::AtSeconds => (deadline / 1000) as i64,
            TtlQuery::AtMillis => deadline as i64,
        }
    }
}

/// A pair in the index, ordered by its deadline, then its key (a pair without a deadline never
/// enters the index).
#[derive(Clone)]
struct Due(Pair);

impl Due {
    fn order_key(&self) -> (Millis, &[u8]) {
        (self.0.deadline().unwrap_or(Millis::MAX), self.0.key())
    }
}

impl PartialEq for Due {
    fn eq(&self, other: &Due) -> bool {
        self.order_key() == other.order_key()
    }
}

impl Eq for Due {}

impl PartialOrd for Due {
    fn partial_cmp(&self, other: &Due) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Due {
    fn cmp(&self, other: &Due) -> Ordering {
        self.order_key().cmp(&other.order_key())
    }
}

/// Every key of a keyspace that has a deadline, soonest first. The keyspace keeps it in step
/// with its pairs: a pair enters with its insertion and leaves with its replacement or removal.
#[derive(Clone, Default)]
pub struct Expiries {
    /// The expiring pairs, by deadline then key.
    due: BTreeSet<Due>,
}

impl Expiries {
    /// Note `pair`, if it has a deadline.
    pub fn track(&mut self, pair: &Pair) {
        if pair.deadline().is_some() {
            self.due.insert(Due(pair.clone()));
        }
    }

    /// Forget `pair`, if it had a deadline.
    pub fn untrack(&mut self, pair: &Pair) {
        if pair.deadline().is_some() {
            self.due.remove(&Due(pair.clone()));
        }
    }

    /// The pair whose deadline comes first, if it has passed at `now`.
    pub fn first_due(&self, now: Millis) -> Option<&Pair> {
        self.due
            .first()
            .map(|due| &due.0)
            .filter(|pair| pair.expired_at(now))
    }

    /// How many keys have a deadline.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// Whether no key has a deadline.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_redis() {
        assert_eq!(Expiry::Clear.deadline(1_000, Some(5)), None);
        assert_eq!(Expiry::Keep.deadline(1_000, Some(5)), Some(5));
        assert_eq!(Expiry::In(500).deadline(1_000, None), Some(1_500));
        assert_eq!(Expiry::In(-5_000).deadline(1_000, None), Some(0));
        assert_eq!(Expiry::At(-1).deadline(1_000, None), Some(0));
        assert_eq!(Expiry::At(7).deadline(1_000, None), Some(7));
    }

    #[test]
    fn conditions_treat_no_deadline_as_never() {
        let only = |nx, xx, gt, lt| ExpireCondition { nx, xx, gt, lt };
        let (nx, xx) = (
            only(true, false, false, false),
            only(false, true, false, false),
        );
        let (gt, lt) = (
            only(false, false, true, false),
            only(false, false, false, true),
        );
        assert!(ExpireCondition::default().allows(Some(5), 1));
        assert!(nx.allows(None, 10) && !nx.allows(Some(5), 10));
        assert!(xx.allows(Some(5), 10) && !xx.allows(None, 10));
        assert!(gt.allows(Some(5), 10) && !gt.allows(Some(10), 10) && !gt.allows(None, 10));
        assert!(lt.allows(Some(15), 10) && lt.allows(None, 10) && !lt.allows(Some(5), 10));
        let xx_lt = only(false, true, false, true);
        assert!(xx_lt.allows(Some(15), 10) && !xx_lt.allows(None, 10));
    }

    #[test]
    fn ttl_answers_round_as_redis_does() {
        assert_eq!(TtlQuery::Seconds.answer(None, 0), -1);
        assert_eq!(TtlQuery::Seconds.answer(Some(2_500), 1_000), 2);
        assert_eq!(TtlQuery::Seconds.answer(Some(1_499), 1_000), 0);
        assert_eq!(TtlQuery::Millis.answer(Some(2_500), 1_000), 1_500);
        assert_eq!(TtlQuery::AtSeconds.answer(Some(2_500), 1_000), 2);
        assert_eq!(TtlQuery::AtMillis.answer(Some(2_500), 1_000), 2_500);
    }

    #[test]
    fn the_index_gives_the_soonest_due_key() {
        let mut index = Expiries::default();
        let late = Pair::with_deadline(b"late", b"", Some(30));
        let early = Pair::with_deadline(b"early", b"", Some(10));
        index.track(&late);
        index.track(&early);
        index.track(&Pair::new(b"never", b""));
        assert_eq!(index.len(), 2);
        assert_eq!(index.first_due(9), None);
        assert_eq!(index.first_due(10), Some(&early));
        index.untrack(&early);
        assert_eq!(index.first_due(29), None);
        assert_eq!(index.first_due(30), Some(&late));
    }
}
