//! The Store actor: the node's data, in memory, and the single source of sequence numbers.
//!
//! Every mutation the Store applies gets the next sequence number and is published, in apply
//! order, to every subscriber. That publication is the one seam through which persistence and
//! replication see changes, so the Store itself never touches a disk or a socket: it stays a
//! pure state machine that answers typed messages, which keeps it fast and easy to test.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

mod apply;
pub mod expiry;
pub mod glob;
pub mod keyspace;
mod keyspace_ops;
pub mod mutation;
pub mod op;
pub mod pair;
mod read_modify_write;
pub mod scan;
pub mod string_ops;
mod ttl_ops;
pub mod watch;

use expiry::Millis;
use keyspace::{Keyspace, Snapshot};
pub use mutation::{Change, Mutation, Seq};
pub use op::{Op, Outcome};
use pair::Pair;
use watch::Watches;

/// Mutations the Store applied, in apply order, shared by every subscriber.
///
/// The Store publishes once per pass of its thread's event loop, not after every message: the
/// batches of every client that wrote in the meantime go out as one `Applied`, so the writer
/// writes, and each replicator sends, once per pass rather than once per request.
#[derive(Debug, Clone, Message)]
#[rtype(result = "()")]
pub struct Applied {
    /// The mutations, in apply order, each with its sequence number: one slice shared by every
    /// subscriber, so a publication costs a reference count per subscriber, not a copy.
    pub mutations: Arc<[Mutation]>,
}

/// Read the value of `key`. Answers `None` when the key does not exist.
#[derive(Debug, Message)]
#[rtype(result = "Option<Bytes>")]
pub struct Get {
    /// The key to read.
    pub key: Bytes,
}

/// Set `key` to `value`. Answers the sequence number of the mutation.
#[derive(Debug, Message)]
#[rtype(result = "Seq")]
pub struct Put {
    /// The key to set. The Store copies it and the value into a [`pair::Pair`] of its own, so
    /// both may be slices of a larger buffer.
    pub key: Bytes,
    /// The value to store under `key`.
    pub value: Bytes,
}

/// Remove `key`. Answers the sequence number of the mutation, or `None` when the key did not
/// exist (which changes nothing and so uses no sequence number).
#[derive(Debug, Message)]
#[rtype(result = "Option<Seq>")]
pub struct Del {
    /// The key to remove.
    pub key: Bytes,
}

/// Many operations applied in order as one message.
///
/// A session sends every request a client pipelined in one read as one batch, so the cost of
/// crossing threads is paid once per batch rather than once per request.
#[derive(Debug, Message)]
#[rtype(result = "BatchResult")]
pub struct Batch {
    /// The operations, applied one after another in this order; the answer has one outcome per
    /// op, in the same position.
    pub ops: Vec<Op>,
}

/// The answer to a [`Batch`]: one outcome per op, in order.
#[derive(Debug, MessageResponse)]
pub struct BatchResult {
    /// One outcome per op of the batch, in the same order: the session folds them back into
    /// each command's reply.
    pub outcomes: Vec<Outcome>,
    /// The sequence number of the last mutation this batch applied, if it applied any.
    /// `WAIT` is expressed against it.
    pub last_seq: Option<Seq>,
    /// The Store's last mutation when it answered. An outcome may show any mutation up to it
    /// (a read of a value another client just wrote), so no reply of the batch may leave the
    /// node before everything up to it is as safe as the `--fsync` policy promises.
    pub seen: Seq,
    /// The batch held a write while client writes were closed ([`SetWrites`]): nothing of it
    /// was applied, and `outcomes` is empty.
    pub refused: bool,
}

/// Open or close the Store to client writes ([`Batch`]es that write), for a failover-cluster
/// member: closed unless it is the primary. Answers the last mutation applied, with
/// everything up to it published: once closed, nothing a client sent can follow it, so it
/// is where a deposed primary's history ends (and a new primary's begins) exactly.
/// A replica's stream ([`Apply`], [`Replace`]) is never refused.
#[derive(Debug, Message)]
#[rtype(result = "Seq")]
pub struct SetWrites {
    /// Whether client writes are applied.
    pub open: bool,
}

/// Register a recipient of every mutation applied from now on.
///
/// A subscriber receives each mutation exactly once, in apply order. Delivery never blocks the
/// Store: a subscriber that falls behind must bound its own queue.
#[derive(Message)]
#[rtype(result = "Seq")]
pub struct Subscribe(pub Recipient<Applied>);

/// Answers the number of keys and the last sequence number applied.
#[derive(Debug, Message)]
#[rtype(result = "StoreStats")]
pub struct Stats;

/// Apply mutations that already have their sequence numbers (a replica applying its
/// primary's stream), in order. Each must be the next one: `last_seq + 1`.
///
/// Answers the last sequence number applied; on a gap, applies nothing past it and answers
/// the sequence number expected.
#[derive(Debug, Message)]
#[rtype(result = "Result<Seq, Seq>")]
pub struct Apply {
    /// The primary's mutations, in order, numbered as the primary numbered them.
    pub mutations: Vec<Mutation>,
}

/// Replace all the data with `data` as of mutation `seq` (a replica's full resync).
/// Subscribers are not told: whoever replaces the data resets their state first.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Replace {
    /// The new data: the snapshot a full resync received, whole.
    pub data: Keyspace,
    /// The primary's sequence number that `data` reflects: the next mutation applied must be
    /// `seq + 1`.
    pub seq: Seq,
}

/// Answers a consistent view of all the data and the sequence number it reflects.
///
/// Costs the Store O(shards), not O(keys): see [`crate::store::keyspace`]. Compaction writes it to
/// disk; a replica's full resync streams it.
#[derive(Debug, Message)]
#[rtype(result = "StoreSnapshot")]
pub struct TakeSnapshot;

/// The answer to [`TakeSnapshot`]: the data exactly as of mutation `seq`.
#[derive(MessageResponse)]
pub struct StoreSnapshot {
    /// The data, frozen: writes the Store applies afterwards do not show in it.
    pub data: Snapshot,
    /// The last mutation `data` includes. Everything after it reaches subscribers after this
    /// answer, so whoever carries on from the snapshot (a replicator) misses nothing.
    pub seq: Seq,
}

/// A point-in-time summary of the Store, for `INFO`-style reporting and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub struct StoreStats {
    /// How many keys the Store holds.
    pub keys: usize,
    /// The sequence number of the last mutation applied (0 when none has been): the node's
    /// offset, as `INFO` reports it.
    pub last_seq: Seq,
    /// How many keys have a deadline (Redis's `expires=`).
    pub expiring_keys: usize,
    /// How many keys this node deleted because their deadline passed (Redis's `expired_keys`).
    pub expired_keys: u64,
}

/// The most mutations one publication waits to gather.
const MAX_PENDING: usize = 4096;

/// How many messages may wait in the Store's mailbox before senders park.
const MAILBOX_CAPACITY: usize = 64 * 1024;

/// The in-memory key-value map and its history counter.
pub struct Store {
    /// The node's data: every key with its value.
    data: Keyspace,
    /// The sequence number of the last mutation applied; the next one gets `last_seq + 1`.
    last_seq: Seq,
    /// Who receives every publication (the persistence writer, each replicator); one that
    /// stopped is dropped at the next publication.
    subscribers: Vec<Recipient<Applied>>,
    /// Mutations applied since the last publication.
    pending: Vec<Mutation>,
    /// A [`Publish`] is on its way (see [`Store::schedule_publish`]).
    publish_scheduled: bool,
    /// Client writes are refused ([`SetWrites`]). A closed Store does not author history, so
    /// it never deletes an expired key either: it hides it until its primary's delete arrives.
    writes_closed: bool,
    /// The time the message being handled is judged at (milliseconds since the Unix epoch):
    /// read once per message, so every op of a batch (a transaction) sees one instant.
    now: Millis,
    /// Keys deleted because their deadline passed.
    expired: u64,
    /// An active expiry pass ran out of its budget and carries on after the thread's other
    /// tasks: the periodic tick starts no second one meanwhile.
    expiring_now: bool,
    /// Who watches which keys (`WATCH`), marked by every change to them.
    watches: Watches,
}

/// Sent by the Store to itself at the end of a pass of its thread's event loop: it publishes
/// everything applied since the last publication.
#[derive(Message)]
#[rtype(result = "()")]
struct Publish;

impl Store {
    /// An empty store whose first mutation will get sequence number 1.
    pub fn new() -> Self {
        Self::with_data(Keyspace::new(), 0)
    }

    /// A store that starts from recovered `data` whose last applied mutation was `last_seq`;
    /// the next mutation gets `last_seq + 1`.
    pub fn with_data(data: Keyspace, last_seq: Seq) -> Self {
        Store {
            data,
            last_seq,
            subscribers: Vec::new(),
            pending: Vec::new(),
            publish_scheduled: false,
            writes_closed: false,
            now: expiry::now_ms(),
            expired: 0,
            expiring_now: false,
            watches: Watches::default(),
        }
    }

    /// The same store, closed to client writes from the start ([`SetWrites`]): a replica's,
    /// or a failover-cluster member's until it is named primary. It then never deletes an
    /// expired key of its own, not even before the message that would close it arrives.
    pub fn closed(mut self) -> Self {
        self.writes_closed = true;
        self
    }

    /// Read the clock for the message about to be handled.
    fn tick(&mut self) {
        self.now = expiry::now_ms();
    }

    /// The live pair under `key`: one whose deadline has passed is absent. An open Store (the
    /// author of history) deletes it then, as Redis's lazy expiry does; a closed one leaves
    /// that to its primary's delete.
    fn lookup(&mut self, key: &[u8]) -> Option<Pair> {
        let pair = self.data.get(key)?;
        if !pair.expired_at(self.now) {
            return Some(pair.clone());
        }
        if !self.writes_closed {
            self.expire(key);
        }
        None
    }

    /// Delete `key`, whose deadline has passed, as an ordinary logged and replicated delete;
    /// answers whether there was such a key.
    fn expire(&mut self, key: &[u8]) -> bool {
        let found = self.remove_logged(key).is_some();
        self.expired += u64::from(found);
        found
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Seq {
        self.put_expiring(key, value, None)
    }

    /// Set `key` to `value`, expiring at `deadline` (`None`: never).
    fn put_expiring(&mut self, key: &[u8], value: &[u8], deadline: Option<Millis>) -> Seq {
        // The one copy of a write: out of the request (often a slice of a session's read
        // buffer, which must not be pinned) into the block the map, the log writer and the
        // replicators all share.
        self.put_pair(Pair::with_deadline(key, value, deadline))
    }

    /// Store `pair` as it is, as a logged `Put`.
    fn put_pair(&mut self, pair: Pair) -> Seq {
        self.data.insert(pair.clone());
        self.record(Change::Put(pair))
    }

    /// Remove `key`: answers the mutation, or `None` when there was no key to remove. A key
    /// whose deadline had passed is removed too, but was not there for the client.
    fn del(&mut self, key: &[u8]) -> Option<Seq> {
        let (removed, seq) = self.remove_logged(key)?;
        (!removed.expired_at(self.now)).then_some(seq)
    }

    /// Remove `key` as a logged `Del`: answers the pair removed and the mutation.
    fn remove_logged(&mut self, key: &[u8]) -> Option<(Pair, Seq)> {
        let removed = self.data.remove(key)?;
        // An exact-size copy of the key rather than the caller's slice of a read buffer.
        let seq = self.record(Change::Del {
            key: removed.key_bytes(),
        });
        Some((removed, seq))
    }

    fn record(&mut self, change: Change) -> Seq {
        if !self.watches.is_empty() {
            self.watches.touch_change(&change);
        }
        self.last_seq += 1;
        if !self.subscribers.is_empty() {
            self.pending.push(Mutation {
                more: false,
                seq: self.last_seq,
                change,
            });
        }
        self.last_seq
    }

    /// Publish what is pending once every task the thread can run now has run (and the
    /// batches they send are applied), or at once when [`MAX_PENDING`] mutations have
    /// gathered: sessions on other threads (`--io-threads` above 1) could otherwise keep it
    /// from ever publishing.
    fn schedule_publish(&mut self, ctx: &mut Context<Self>) {
        if self.pending.len() >= MAX_PENDING {
            return self.publish();
        }
        if !self.pending.is_empty() && !self.publish_scheduled {
            self.publish_scheduled = true;
            // After the tasks the thread can run now (tokio wakes a yielded task once the
            // current tick, at most 61 task polls, is over): the sessions woken by the same
            // readiness events send their batches first, so that one publication, one write
            // and one replication send carry a pass of the event loop.
            let me = ctx.address();
            ctx.spawn(
                async move {
                    tokio::task::yield_now().await;
                    me.do_send(Publish);
                }
                .into_actor(self),
            );
        }
    }

    /// Send everything applied since the last publication to every subscriber, as one shared
    /// slice. Runs before any message that hands out a position (a subscription, a snapshot)
    /// so that nothing at or before that position reaches a subscriber afterwards.
    fn publish(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let mutations: Arc<[Mutation]> = std::mem::take(&mut self.pending).into();
        // `do_send` ignores the subscriber's mailbox capacity on purpose: a mutation must never
        // be dropped, and the Store must never wait for a subscriber.
        self.subscribers.retain(|subscriber| subscriber.connected());
        for subscriber in &self.subscribers {
            subscriber.do_send(Applied {
                mutations: mutations.clone(),
            });
        }
    }
}

impl Default for Store {
    fn default() -> Self {
        Self::new()
    }
}

impl Actor for Store {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Every session of the node talks to this one actor (from other threads too, with
        // `--io-threads` above 1); a large mailbox keeps their sends from parking while it
        // catches up, and still bounds it.
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        ctx.run_interval(expiry::CYCLE, |store, ctx| store.expiry_tick(ctx));
    }
}

impl Handler<Get> for Store {
    type Result = Option<Bytes>;

    fn handle(&mut self, msg: Get, ctx: &mut Self::Context) -> Self::Result {
        self.tick();
        let found = self.lookup(&msg.key).as_ref().map(Pair::value_bytes);
        self.schedule_publish(ctx);
        found
    }
}

impl Handler<Put> for Store {
    type Result = Seq;

    fn handle(&mut self, msg: Put, ctx: &mut Self::Context) -> Self::Result {
        self.tick();
        let seq = self.put(&msg.key, &msg.value);
        self.schedule_publish(ctx);
        seq
    }
}

impl Handler<Del> for Store {
    type Result = Option<Seq>;

    fn handle(&mut self, msg: Del, ctx: &mut Self::Context) -> Self::Result {
        self.tick();
        let seq = self.del(&msg.key);
        self.schedule_publish(ctx);
        seq
    }
}

impl Handler<Batch> for Store {
    type Result = BatchResult;

    fn handle(&mut self, msg: Batch, ctx: &mut Self::Context) -> Self::Result {
        if self.writes_closed && msg.ops.iter().any(Op::is_write) {
            return BatchResult {
                outcomes: Vec::new(),
                last_seq: None,
                seen: self.last_seq,
                refused: true,
            };
        }
        self.tick();
        let first_seq = self.last_seq;
        let outcomes = self.apply_ops(msg.ops);
        // Every mutation of the batch was numbered in turn after `first_seq`.
        let last_seq = (self.last_seq > first_seq).then_some(self.last_seq);
        self.schedule_publish(ctx);
        BatchResult {
            outcomes,
            last_seq,
            seen: self.last_seq,
            refused: false,
        }
    }
}

impl Handler<SetWrites> for Store {
    type Result = Seq;

    fn handle(&mut self, msg: SetWrites, _: &mut Self::Context) -> Seq {
        self.writes_closed = !msg.open;
        self.publish();
        self.last_seq
    }
}

impl Handler<Publish> for Store {
    type Result = ();

    fn handle(&mut self, _: Publish, _: &mut Self::Context) {
        self.publish_scheduled = false;
        self.publish();
    }
}

impl Handler<Subscribe> for Store {
    type Result = Seq;

    /// Answers the last sequence number applied before the subscription: the subscriber will
    /// see every mutation after it.
    fn handle(&mut self, msg: Subscribe, _: &mut Self::Context) -> Self::Result {
        self.publish();
        self.subscribers.push(msg.0);
        self.last_seq
    }
}

impl Handler<Stats> for Store {
    type Result = StoreStats;

    /// Publishes what is pending first: whoever asks where the Store stands (shutdown, before
    /// it syncs the log) can rely on every applied mutation being on its way to subscribers.
    fn handle(&mut self, _: Stats, _: &mut Self::Context) -> Self::Result {
        self.publish();
        StoreStats {
            keys: self.data.len(),
            last_seq: self.last_seq,
            expiring_keys: self.data.expiring(),
            expired_keys: self.expired,
        }
    }
}

impl Handler<TakeSnapshot> for Store {
    type Result = StoreSnapshot;

    fn handle(&mut self, _: TakeSnapshot, _: &mut Self::Context) -> Self::Result {
        self.publish();
        StoreSnapshot {
            data: self.data.snapshot(),
            seq: self.last_seq,
        }
    }
}

impl Handler<Apply> for Store {
    type Result = Result<Seq, Seq>;

    fn handle(&mut self, msg: Apply, _: &mut Self::Context) -> Self::Result {
        let mut result = Ok(self.last_seq);
        for mutation in msg.mutations {
            // Checked: the offsets come from a peer, and u64::MAX has no successor.
            let next = self.last_seq.saturating_add(1);
            if mutation.seq != next || next == Seq::MAX {
                result = Err(next);
                break;
            }
            match &mutation.change {
                Change::Put(pair) => {
                    self.data.insert(pair.clone());
                }
                Change::Del { key } => {
                    self.data.remove(key);
                }
                Change::Clear => self.clear_data(),
            }
            if !self.watches.is_empty() {
                self.watches.touch_change(&mutation.change);
            }
            // The primary's numbering is kept exactly, even for a DEL that found nothing
            // here, so offsets mean the same on both sides.
            self.last_seq = mutation.seq;
            if !self.subscribers.is_empty() {
                self.pending.push(mutation);
            }
            result = Ok(self.last_seq);
        }
        // Published at once, not deferred: the follower may reset the writer for a full
        // resync as soon as this answers, and nothing from before the reset may reach the
        // writer after it. (A replica's stream arrives in large batches; nothing to gain.)
        self.publish();
        result
    }
}

impl Handler<Replace> for Store {
    type Result = ();

    fn handle(&mut self, msg: Replace, _: &mut Self::Context) {
        // Whoever replaces the data reset the subscribers first; what is pending predates it.
        self.pending.clear();
        self.watches.touch_all();
        let old = std::mem::replace(&mut self.data, msg.data);
        old.drop_in_background();
        self.last_seq = msg.seq;
    }
}
