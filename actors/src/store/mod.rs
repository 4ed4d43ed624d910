//! The Store actor: the node's data, in memory, and the single source of sequence numbers.
//!
//! Every mutation the Store applies gets the next sequence number and is published, in apply
//! order, to every subscriber. That publication is the one seam through which persistence and
//! replication see changes, so the Store itself never touches a disk or a socket: it stays a
//! pure state machine that answers typed messages, which keeps it fast and easy to test.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;

pub mod keyspace;
pub mod mutation;
pub mod pair;
mod read_modify_write;
pub mod string_ops;

use keyspace::{Keyspace, Snapshot};
pub use mutation::{Change, Mutation, Seq};
use pair::Pair;

/// Mutations the Store applied, in apply order, shared by every subscriber.
///
/// The Store publishes once it has emptied its mailbox, not after every message: the batches
/// of every client that wrote in the meantime go out as one `Applied`, so a subscriber on
/// another thread is woken once per Store turn rather than once per request.
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

/// One operation of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Read this key: answers [`Outcome::Value`], or [`Outcome::NotFound`].
    Get(Bytes),
    /// Set this key (first) to this value (second): answers [`Outcome::Applied`].
    Put(Bytes, Bytes),
    /// Remove this key: answers [`Outcome::Applied`], or [`Outcome::NotFound`] when it did not
    /// exist.
    Del(Bytes),
    /// `INCRBY`: add to the key's integer value (absent: 0): answers [`Outcome::Number`] with
    /// the new value, or [`Outcome::Refused`] (nothing applied).
    Incr(Bytes, i64),
    /// `APPEND`: add to the end of the key's value: answers [`Outcome::Number`], its length.
    Append(Bytes, Bytes),
    /// `STRLEN`: answers [`Outcome::Number`], the length of the key's value (0 when absent).
    StrLen(Bytes),
    /// `SETNX`: set the key only if it is absent: [`Outcome::Number`] 1 (set) or 0.
    SetNx(Bytes, Bytes),
    /// `GETSET`: set the key and answer its previous value ([`Outcome::Swapped`]).
    GetSet(Bytes, Bytes),
    /// `GETDEL`: remove the key and answer its value ([`Outcome::Swapped`]), or
    /// [`Outcome::NotFound`].
    GetDel(Bytes),
    /// `RENAME` (`nx` false: [`Outcome::Applied`]) or `RENAMENX` (`nx` true:
    /// [`Outcome::Number`] 1 or 0): move the first key's value to the second (a `Del` and a
    /// `Put`); [`Outcome::Refused`] when the first is absent.
    Rename(Bytes, Bytes, bool),
    /// `COPY src dst [REPLACE]`: [`Outcome::Number`] 1 when copied, 0 when `src` is absent or
    /// `dst` exists (without `replace`).
    Copy(Bytes, Bytes, bool),
    /// `MSETNX`: set every pair only if no key exists: [`Outcome::Number`] 1 or 0.
    MSetNx(Vec<(Bytes, Bytes)>),
}

impl Op {
    /// Whether the op may change data (refused while the Store is closed to writes).
    pub fn is_write(&self) -> bool {
        !matches!(self, Op::Get(_) | Op::StrLen(_))
    }
}

/// What one [`Op`] came to, in the same position as the op in its batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A `Get` found this pair.
    Value(Pair),
    /// A `Get` or `Del` found no such key.
    NotFound,
    /// A `Put` or `Del` was applied with this sequence number.
    Applied(Seq),
    /// A number answered, with the mutation it applied, if it applied one.
    Number(i64, Option<Seq>),
    /// The key's previous value (or none), replaced or removed by the mutation applied.
    Swapped(Option<Pair>, Seq),
    /// Not applied: why, as Redis words it.
    Refused(&'static str),
}

impl Outcome {
    /// The mutation this outcome applied, if any (what `WAIT` waits for).
    pub fn applied(&self) -> Option<Seq> {
        match self {
            Outcome::Applied(seq) | Outcome::Swapped(_, seq) => Some(*seq),
            Outcome::Number(_, seq) => *seq,
            _ => None,
        }
    }
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
    /// A [`Publish`] is queued behind the messages in the mailbox.
    publish_scheduled: bool,
    /// Client writes are refused ([`SetWrites`]).
    writes_closed: bool,
}

/// Sent by the Store to itself: handled once the mailbox is empty, it publishes everything
/// applied since the last publication.
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
        }
    }

    fn get(&self, key: &[u8]) -> Option<Pair> {
        self.data.get(key).cloned()
    }

    fn put(&mut self, key: &[u8], value: &[u8]) -> Seq {
        // The one copy of a write: out of the request (often a slice of a session's read
        // buffer, which must not be pinned) into the block the map, the log writer and the
        // replicators all share.
        let pair = Pair::new(key, value);
        self.data.insert(pair.clone());
        self.record(Change::Put(pair))
    }

    fn del(&mut self, key: &[u8]) -> Option<Seq> {
        let removed = self.data.remove(key)?;
        // An exact-size copy of the key rather than the caller's slice of a read buffer.
        Some(self.record(Change::Del {
            key: removed.key_bytes(),
        }))
    }

    fn record(&mut self, change: Change) -> Seq {
        self.last_seq += 1;
        if !self.subscribers.is_empty() {
            self.pending.push(Mutation {
                seq: self.last_seq,
                change,
            });
        }
        self.last_seq
    }

    /// Publish what is pending once the messages already in the mailbox are handled, or at
    /// once when a turn has gathered [`MAX_PENDING`] mutations: sessions on other threads
    /// (`--io-threads` above 1) could otherwise keep the mailbox from ever emptying.
    fn schedule_publish(&mut self, ctx: &mut Context<Self>) {
        if self.pending.len() >= MAX_PENDING {
            return self.publish();
        }
        if !self.pending.is_empty() && !self.publish_scheduled {
            self.publish_scheduled = true;
            ctx.notify(Publish);
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
    }
}

impl Handler<Get> for Store {
    type Result = Option<Bytes>;

    fn handle(&mut self, msg: Get, _: &mut Self::Context) -> Self::Result {
        self.get(&msg.key).as_ref().map(Pair::value_bytes)
    }
}

impl Handler<Put> for Store {
    type Result = Seq;

    fn handle(&mut self, msg: Put, ctx: &mut Self::Context) -> Self::Result {
        let seq = self.put(&msg.key, &msg.value);
        self.schedule_publish(ctx);
        seq
    }
}

impl Handler<Del> for Store {
    type Result = Option<Seq>;

    fn handle(&mut self, msg: Del, ctx: &mut Self::Context) -> Self::Result {
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
        let first_seq = self.last_seq;
        let outcomes = msg
            .ops
            .into_iter()
            .map(|op| match op {
                Op::Get(key) => self.get(&key).map_or(Outcome::NotFound, Outcome::Value),
                Op::Put(key, value) => Outcome::Applied(self.put(&key, &value)),
                Op::Del(key) => self.del(&key).map_or(Outcome::NotFound, Outcome::Applied),
                other => self.read_modify_write(other),
            })
            .collect();
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
        let old = std::mem::replace(&mut self.data, msg.data);
        old.drop_in_background();
        self.last_seq = msg.seq;
    }
}
