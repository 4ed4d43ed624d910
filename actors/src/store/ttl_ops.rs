//! The Store's expiry: the ops that set, change, clear and read a key's deadline (`SET` with
//! options, `EXPIRE` and its kin, `PERSIST`, `TTL` and its kin, `GETEX`), and active expiry,
//! which deletes keys whose deadline has passed. A deadline change is logged as a `Put` of the
//! same value with the new deadline, an expiry as a `Del`, so the log, snapshots and replicas
//! see ordinary mutations. Part of the Store (`mod.rs`); no I/O.

use std::time::Instant;

use actix::prelude::*;

use super::expiry::Millis;
use super::expiry::{SetArgs, SetCondition};
use super::pair::Pair;
use super::watch::ClientId;
use super::{Op, Outcome, Seq, Store};

/// Keys deleted between two looks at the clock in an expiry pass: the clock is cheap but not
/// free, and a deletion takes well under a microsecond.
const CLOCK_EVERY: u32 = 64;

impl Store {
    /// The expiry ops: `SET` with options, `EXPIRE`, `PERSIST`, `TTL`, `GETEX`.
    pub(super) fn ttl_op(&mut self, op: Op) -> Outcome {
        match op {
            Op::Set(args) => self.set(*args),
            Op::Expire(key, expiry, only) => {
                let Some(pair) = self.lookup(&key) else {
                    return Outcome::Number(0, None);
                };
                let Some(deadline) = expiry.deadline(self.now, pair.deadline()) else {
                    return Outcome::Refused("ERR internal: EXPIRE without a time");
                };
                if !only.allows(pair.deadline(), deadline) {
                    return Outcome::Number(0, None);
                }
                Outcome::Number(1, Some(self.set_deadline(&key, &pair, deadline)))
            }
            Op::Persist(key) => match self.lookup(&key) {
                Some(pair) if pair.deadline().is_some() => {
                    Outcome::Number(1, Some(self.put_pair(pair.expiring_at(None))))
                }
                _ => Outcome::Number(0, None),
            },
            Op::Ttl(key, query) => match self.lookup(&key) {
                Some(pair) => Outcome::Number(query.answer(pair.deadline(), self.now), None),
                None => Outcome::Number(-2, None),
            },
            Op::GetEx(key, change) => {
                let Some(pair) = self.lookup(&key) else {
                    return Outcome::NotFound;
                };
                let seq = match change.map(|e| e.deadline(self.now, pair.deadline())) {
                    None => None,
                    Some(None) if pair.deadline().is_none() => None,
                    Some(None) => Some(self.put_pair(pair.expiring_at(None))),
                    Some(Some(deadline)) => Some(self.set_deadline(&key, &pair, deadline)),
                };
                match seq {
                    Some(seq) => Outcome::Swapped(Some(pair), seq),
                    None => Outcome::Value(pair),
                }
            }
            _ => Outcome::Refused("ERR internal: not an expiry op"),
        }
    }

    /// `SET key value [NX|XX] [GET] [EX|PX|EXAT|PXAT|KEEPTTL]`.
    fn set(&mut self, args: SetArgs) -> Outcome {
        let old = self.lookup(&args.key);
        let applies = match args.only {
            SetCondition::Always => true,
            SetCondition::IfAbsent => old.is_none(),
            SetCondition::IfPresent => old.is_some(),
        };
        if !applies {
            return match (args.get, old) {
                (true, Some(pair)) => Outcome::Value(pair),
                _ => Outcome::NotFound,
            };
        }
        let current = old.as_ref().and_then(|pair| pair.deadline());
        let deadline = args.expiry.deadline(self.now, current);
        // A deadline already past is set all the same: the key is hidden from then on, and
        // deleted by the next expiry pass, as any other expired key.
        let seq = self.put_expiring(&args.key, &args.value, deadline);
        match args.get {
            true => Outcome::Swapped(old, seq),
            false => Outcome::Applied(seq),
        }
    }

    /// Give the live `pair` under `key` the deadline `deadline`; one already past deletes the
    /// key at once, as Redis does.
    fn set_deadline(&mut self, key: &[u8], pair: &Pair, deadline: Millis) -> Seq {
        if deadline <= self.now {
            // The key is live, so the delete finds it.
            let _ = self.del(key);
            return self.last_seq;
        }
        self.put_pair(pair.expiring_at(Some(deadline)))
    }

    /// The periodic start of active expiry: a pass, unless one is still going on (a pass that
    /// ran out of its budget carries on by itself; a second chain beside it would make each
    /// turn of the thread hold it for two budgets).
    pub(super) fn expiry_tick(&mut self, ctx: &mut Context<Self>) {
        if !self.expiring_now {
            self.expire_due(ctx);
        }
    }

    /// One pass of active expiry: delete every key whose deadline has passed, soonest first,
    /// for at most [`super::expiry::BUDGET`]; what is left waits until every other task of
    /// the Store's thread had its turn. Only the author of history expires keys (see
    /// [`Store::lookup`]), and only once someone records what it does: a delete no
    /// subscriber (the writer) sees would leave a gap in the log.
    fn expire_due(&mut self, ctx: &mut Context<Self>) {
        self.expiring_now = false;
        if self.writes_closed || self.subscribers.is_empty() {
            return;
        }
        self.tick();
        let started = Instant::now();
        let mut deleted = 0u32;
        while let Some(pair) = self.data.first_due(self.now) {
            let key = pair.key_bytes();
            if !self.expire(&key) {
                // Cannot happen (the index holds only pairs of the keyspace); never spin.
                break;
            }
            deleted += 1;
            if deleted.is_multiple_of(CLOCK_EVERY) && started.elapsed() >= super::expiry::BUDGET {
                if self.data.first_due(self.now).is_some() {
                    // Carry on once every other task of this thread (the sessions on it) had
                    // its turn: a message to itself (`notify`) would be handled in the same
                    // poll, and a million deletions would hold the thread for half a second.
                    let resume = fut::wrap_future(tokio::task::yield_now());
                    ctx.spawn(resume.map(|(), store: &mut Store, ctx| store.expire_due(ctx)));
                    self.expiring_now = true;
                }
                break;
            }
        }
        self.schedule_publish(ctx);
    }
}

impl Store {
    /// `WATCH` and `UNWATCH`. A watched key whose deadline has passed is deleted first (on a
    /// primary), so its expiry counts as a change only if it comes after the `WATCH`.
    pub(super) fn watch_op(&mut self, op: Op) -> Outcome {
        match op {
            Op::Watch(client, keys) => {
                for key in keys {
                    let _ = self.lookup(&key);
                    self.watches.watch(client, &key, self.now);
                }
            }
            Op::Unwatch(client) => {
                self.watches.release(client);
            }
            _ => return Outcome::Refused("ERR internal: not a watch op"),
        }
        Outcome::Number(1, None)
    }

    /// `EXEC`'s check: whether no key `client` watched has changed, an expiry included (as in
    /// Redis, a watched key that expired counts as changed); its watches are forgotten.
    pub(super) fn exec_may_run(&mut self, client: ClientId) -> bool {
        if self.watches.is_empty() {
            return true;
        }
        let (keys, since) = self.watches.keys_of(client);
        for key in keys {
            // A primary deletes a key whose deadline passed (which marks its watchers); a
            // replica hides it, and one hidden since the WATCH has changed all the same.
            let _ = self.lookup(&key);
            let deadline = self.data.get(&key).and_then(|pair| pair.deadline());
            if deadline.is_some_and(|at| at > since && at <= self.now) {
                self.watches.touch(&key);
            }
        }
        !self.watches.release(client)
    }
}
