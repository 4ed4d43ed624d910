//! The Follower actor: a replica's side of replication.
//!
//! A primary's replication connection arrives like any client connection; its session hands
//! everything after the `REPLICATE` handshake to the Follower. The Follower applies the stream
//! in order through the replica's own Store (so the replica's persistence writer persists it),
//! answers where the replica stands, and reports what it applied and what is durable, which the
//! session sends back as `ACK` lines.
//!
//! Only one primary stream is applied at a time: a new one supersedes the old, whose session
//! is closed (a primary reconnecting after a network cut must not wait for the old TCP
//! connection to time out).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use actix::prelude::*;
use slog::{info, warn, Logger};

use super::backlog::Backlog;
use super::data_epoch::DataEpoch;
use super::fingerprint::Recent;
pub use super::follower_messages::{
    Ack, Attach, CurrentAck, Detach, Fence, Fenced, FollowerInfo, Peek, Position, Rebase, Resync,
    Stream, Superseded,
};
use super::follower_parts::{Basis, Loading, Step};
use super::node_position::NodePosition;
use super::position_token::History;
use super::replication_id::Previous;
use crate::storage::durability::Durability;
use crate::storage::writer::{Reset, Writer};
use crate::store::{Apply, Mutation, Replace, Seq, Store};

mod plan;

/// Applies a primary's stream on a replica.
pub struct Follower {
    /// The replica's Store, which applies the stream.
    store: Addr<Store>,
    /// The replica's persistence writer, reset to a snapshot by a full resync.
    writer: Addr<Writer>,
    /// How far the writer has made the data durable, for the `durable` acknowledgement.
    durability: Durability,
    /// Logs with `actor=follower`.
    log: Logger,
    /// The primary history this replica's data belongs to, if any.
    replication_id: Option<String>,
    /// The last mutation applied.
    applied: Seq,
    /// The stream applied now (it has started: FULLSYNC or CONTINUE received), and the session
    /// to close when another supersedes it.
    link: Option<(u64, Recipient<Superseded>)>,
    /// Streams attached but not started: a primary that connects supersedes the current
    /// stream only once it starts one, so a primary that refuses to stream (its history does
    /// not continue this replica's) never disturbs the one that streams.
    /// With each, where this replica stood when it attached: a full resync the primary
    /// decided on then is refused if the replica has moved on since (another stream went on).
    pending: HashMap<u64, (Recipient<Superseded>, Basis)>,
    /// How many streams have attached: the id of the latest.
    links: u64,
    /// A full resync being received.
    loading: Option<Loading>,
    /// Fingerprints of the last mutations applied, offered to a primary to check.
    recent: Recent,
    /// The mutations of an atomic group whose last one has not arrived yet.
    partial: Vec<Mutation>,
    /// The writer's generation once it has stored the last installed full resync: until it
    /// reports that, nothing is acknowledged as durable.
    reset_generation: Option<u64>,
    /// How many `Reset`s the writer has been sent (its generation once it has stored them
    /// all): what a full resync's install waits for, even before the writer reports the last.
    resets: Arc<AtomicU64>,
    /// Whether this replica's data is disposable (after `RESYNC`, or a full resync cut short
    /// by a crash): it then tells primaries it holds nothing, so the next one sends all.
    discard: bool,
    /// Streams from epochs older than this are refused (a deposed primary's).
    min_epoch: u64,
    /// The epoch of each attached stream's primary.
    epochs: HashMap<u64, u64>,
    /// The epoch this node's data belongs to, raised (durably) before a newer primary's
    /// stream is applied.
    data_epoch: DataEpoch,
    /// When the current stream last delivered a part (see [`Fenced::last_frame`]).
    last_frame: Option<std::time::Instant>,
    /// In a failover cluster, the latest mutations applied (up to `--repl-backlog-bytes`): if
    /// this node is elected, its replicas that are behind resume from them by a partial
    /// resync instead of a full one (Redis keeps its backlog on replicas for PSYNC2 alike).
    history: Option<Backlog>,
    /// The history its primary's continues, as far as this replica knows (the one it held
    /// when its primary continued it under a new id); and where `WAITPOS` reads its history.
    previous: Option<Previous>,
    position: Option<NodePosition>,
}

impl Follower {
    /// A follower for a replica whose data is history `replication_id` up to `applied`, or
    /// disposable (`discard`: a full resync was cut short); `tail` is its last mutations, as
    /// recovery replayed them, whose fingerprints it offers its primaries.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: Addr<Store>,
        writer: Addr<Writer>,
        durability: Durability,
        replication_id: Option<String>,
        applied: Seq,
        discard: bool,
        tail: &[Mutation],
        data_epoch: DataEpoch,
        log: &Logger,
    ) -> Follower {
        let mut recent = Recent::default();
        for mutation in tail {
            recent.push(mutation);
        }
        let generation = durability.current().generation;
        Follower {
            store,
            writer,
            durability,
            log: log.new(slog::o!("actor" => "follower")),
            replication_id,
            applied,
            link: None,
            pending: HashMap::new(),
            links: 0,
            loading: None,
            reset_generation: None,
            resets: Arc::new(AtomicU64::new(generation)),
            recent,
            partial: Vec::new(),
            discard,
            min_epoch: {
                data_epoch.set_disposable(discard);
                data_epoch.get()
            },
            epochs: HashMap::new(),
            data_epoch,
            last_frame: None,
            history: None,
            previous: None,
            position: None,
        }
    }

    /// Publish the history the data belongs to in `position` (`WAITPOS`), now and on change.
    pub fn publish_position(mut self, position: NodePosition) -> Follower {
        self.position = Some(position);
        self.publish_history();
        self
    }

    /// Publish the history the data belongs to now (none while disposable), if it changed.
    fn publish_history(&self) {
        if let Some(position) = &self.position {
            let id = self.replication_id.as_deref().filter(|_| !self.discard);
            position.set_history(History::new(
                id,
                self.previous.clone(),
                self.data_epoch.get(),
            ));
        }
    }

    /// Keep the latest mutations applied, up to `bytes`, for [`Fenced::history`] (a member of
    /// a failover cluster does; a static replica never becomes a primary by itself).
    pub fn keep_history(mut self, bytes: usize) -> Follower {
        self.history = Some(Backlog::new(bytes, bytes, self.applied));
        self
    }

    /// Where this replica stands, as a primary judges it in a handshake.
    fn basis(&self) -> Basis {
        Basis {
            replication_id: self.replication_id.clone(),
            applied: self.applied,
            discard: self.discard,
        }
    }

    /// What stream `link` acknowledges now.
    fn ack(&self, link: u64) -> Ack {
        let current = self.link.as_ref().is_some_and(|(l, _)| *l == link);
        if self.loading.is_some() || !current {
            // Before the primary said how the stream starts, and while a full resync loads,
            // the data held may be of another history: acknowledge nothing, which still tells
            // the primary the link is alive.
            return Ack {
                applied: 0,
                durable: 0,
            };
        }
        // While the writer reports a failure, nothing more is known to be durable; nor until
        // it has stored an installed full resync (what it had synced belongs to the history
        // replaced).
        let state = self.durability.current();
        let resetting = self.reset_generation.is_some_and(|g| state.generation < g);
        let durable = match (self.durability.failure(), resetting) {
            (None, false) => state.synced.min(self.applied),
            _ => 0,
        };
        if !resetting && !self.discard {
            // A full resync is installed and durable: the data counts again (for elections).
            self.data_epoch.set_disposable(false);
        }
        Ack {
            applied: self.applied,
            durable,
        }
    }
}

impl Actor for Follower {
    type Context = Context<Self>;
}

impl Follower {
    /// Forget a full resync in progress; what it loaded so far is freed off this thread.
    fn abandon_loading(&mut self) {
        if let Some(loading) = self.loading.take() {
            loading.keyspace.drop_in_background();
        }
    }
}

impl Handler<Attach> for Follower {
    type Result = Result<Position, u64>;

    fn handle(&mut self, msg: Attach, _: &mut Self::Context) -> Result<Position, u64> {
        if msg.epoch < self.min_epoch {
            warn!(self.log, "refused a stream from a deposed primary";
                "epoch" => msg.epoch, "current_epoch" => self.min_epoch);
            return Err(self.min_epoch);
        }
        // Pending until it starts a stream: only then does it supersede the current one.
        self.links += 1;
        self.epochs.insert(self.links, msg.epoch);
        let basis = self.basis();
        self.pending.insert(self.links, (msg.session, basis));
        if self.discard {
            // Disposable data: the primary is told there is nothing, and sends everything.
            return Ok(Position {
                link: self.links,
                replication_id: None,
                offset: 0,
                window: None,
            });
        }
        Ok(Position {
            link: self.links,
            replication_id: self.replication_id.clone(),
            offset: self.applied,
            window: self.recent.window(msg.from, self.applied),
        })
    }
}

impl Handler<Detach> for Follower {
    type Result = ();

    fn handle(&mut self, msg: Detach, _: &mut Self::Context) {
        self.pending.remove(&msg.link);
        self.epochs.remove(&msg.link);
        if self
            .link
            .as_ref()
            .is_some_and(|(link, _)| *link == msg.link)
        {
            self.link = None;
            self.abandon_loading();
        }
    }
}

impl Handler<Fence> for Follower {
    type Result = Fenced;

    fn handle(&mut self, msg: Fence, _: &mut Self::Context) -> Self::Result {
        if msg.epoch > self.min_epoch {
            info!(self.log, "new epoch: streams from older ones are refused";
                "epoch" => msg.epoch, "previous" => self.min_epoch);
            self.min_epoch = msg.epoch;
        }
        let min = self.min_epoch;
        let epochs = &self.epochs;
        let stale = |link: &u64| epochs.get(link).is_none_or(|e| *e < min);
        let current_stale = self.link.as_ref().is_some_and(|(link, _)| stale(link));
        let pending: Vec<u64> = self.pending.keys().copied().filter(stale).collect();
        if current_stale {
            if let Some((_, session)) = self.link.take() {
                session.do_send(Superseded);
            }
            self.abandon_loading();
        }
        for link in pending {
            if let Some((session, _)) = self.pending.remove(&link) {
                session.do_send(Superseded);
            }
        }
        // The history continues exactly to what is applied, or it is of no use.
        let history = self
            .history
            .as_ref()
            .filter(|h| h.last_seq() == self.applied && !self.discard)
            .map(|h| (h.first(), h.batches()));
        Fenced {
            replication_id: self.replication_id.clone(),
            last_frame: self.last_frame,
            history,
        }
    }
}

impl Handler<Rebase> for Follower {
    type Result = ();

    fn handle(&mut self, msg: Rebase, _: &mut Self::Context) {
        self.replication_id = Some(msg.id);
        self.applied = msg.applied;
        self.recent.clear();
        self.previous = None;
        self.publish_history();
        if let Some(history) = self.history.as_mut() {
            // What it wrote as a primary is not here: start again from where it stands.
            *history = history.emptied_at(msg.applied);
        }
    }
}

impl Handler<Peek> for Follower {
    type Result = FollowerInfo;

    fn handle(&mut self, _: Peek, _: &mut Self::Context) -> FollowerInfo {
        FollowerInfo {
            replication_id: self.replication_id.clone(),
            linked: self.link.is_some(),
        }
    }
}

impl Handler<CurrentAck> for Follower {
    type Result = Ack;

    fn handle(&mut self, msg: CurrentAck, _: &mut Self::Context) -> Ack {
        self.ack(msg.link)
    }
}

impl Handler<Resync> for Follower {
    type Result = ();

    fn handle(&mut self, _: Resync, _: &mut Self::Context) {
        info!(self.log, "RESYNC: this replica gives up its data; the next primary stream replaces it";
            "replication_id" => self.replication_id.as_deref().unwrap_or("-"), "offset" => self.applied);
        self.discard = true;
        self.data_epoch.set_disposable(true);
        self.recent.clear();
        self.publish_history();
        if let Some((_, current)) = self.link.take() {
            current.do_send(Superseded);
        }
        self.abandon_loading();
    }
}

impl Handler<Stream> for Follower {
    type Result = AtomicResponse<Self, Result<Ack, String>>;

    fn handle(&mut self, msg: Stream, _: &mut Self::Context) -> Self::Result {
        self.last_frame = Some(std::time::Instant::now());
        let link = msg.link;
        let epoch = self.epochs.get(&link).copied().unwrap_or(0);
        let mut current = self
            .link
            .as_ref()
            .is_some_and(|(link, _)| *link == msg.link);
        let mut moved_on = false;
        if !current && msg.start.is_some() {
            // A pending stream starts: it supersedes the one applied until now, unless the
            // primary decided on it against data this replica no longer holds.
            let pending = self.pending.remove(&msg.link);
            moved_on = pending
                .as_ref()
                .is_some_and(|(_, basis)| *basis != self.basis());
            if let Some((session, _)) = pending.filter(|_| !moved_on) {
                if let Some((_, old)) = self.link.replace((msg.link, session)) {
                    info!(self.log, "a new primary stream supersedes the current one");
                    old.do_send(Superseded);
                }
                self.abandon_loading();
                current = true;
            }
        }
        let steps = if moved_on {
            Err(
                "this replica moved on since the stream's handshake; the primary must look again"
                    .into(),
            )
        } else if !current {
            Err("this stream was superseded".into())
        } else if epoch < self.min_epoch {
            Err(format!(
                "the primary's epoch {epoch} is over (epoch {} began)",
                self.min_epoch
            ))
        } else if let Some(failure) = self.durability.failure() {
            // Applying more than the disk can take would only grow the writer's memory: end
            // the stream; the primary reconnects (with backoff) until the disk recovers.
            Err(format!("this replica cannot persist: {failure}"))
        } else {
            self.plan(msg.start, msg.records)
        };
        let store = self.store.clone();
        let writer = self.writer.clone();
        // A newer primary's epoch is durable before anything of its stream is applied.
        let data_epoch = (epoch > self.data_epoch.get()).then(|| self.data_epoch.clone());
        let keep_history = self.history.is_some();
        let resets = self.resets.clone();
        let position = self.position.clone();
        let data_epoch_now = self.data_epoch.get();
        let work = async move {
            let mut batches: Vec<Arc<[Mutation]>> = Vec::new();
            let mut reset_at = None;
            let mut installed = None;
            let mut applied = None;
            let steps = steps?;
            if let Some(data_epoch) = data_epoch {
                data_epoch.raise_async(epoch).await?;
            }
            for step in steps {
                match step {
                    Step::Apply(mutations) => {
                        if keep_history {
                            batches.push(Arc::<[Mutation]>::from(mutations.clone()));
                        }
                        let last = store
                            .send(Apply { mutations })
                            .await
                            .map_err(|_| "the store is gone".to_string())?
                            .map_err(|expected| {
                                format!("gap in the stream: expected mutation {expected}")
                            })?;
                        applied = Some(last);
                    }
                    Step::Install {
                        keyspace,
                        seq,
                        id,
                        previous,
                    } => {
                        let snapshot = keyspace.snapshot();
                        let keys = keyspace.len();
                        // Queued before the Store can publish anything after the snapshot,
                        // so the writer stores the snapshot before those mutations; not
                        // awaited, so a large install never silences the link's ACKs.
                        // No history (every token waits) until the Store holds the new one;
                        // safe once the writer has stored it.
                        let generation = resets.fetch_add(1, Ordering::AcqRel) + 1;
                        if let Some(position) = &position {
                            position.replacing(generation);
                        }
                        writer.do_send(Reset {
                            data: snapshot,
                            seq,
                            replication_id: id.clone(),
                        });
                        store
                            .send(Replace {
                                data: keyspace,
                                seq,
                            })
                            .await
                            .map_err(|_| "the store is gone".to_string())?;
                        if let Some(position) = &position {
                            let epoch = epoch.max(data_epoch_now);
                            let history = History::new(Some(&id), previous.clone(), epoch);
                            position.set_history(history);
                        }
                        installed = Some((id, keys, previous));
                        applied = Some(seq);
                        batches.clear();
                        reset_at = Some(seq);
                    }
                }
            }
            Ok::<_, String>((installed, applied, (reset_at, batches)))
        };
        AtomicResponse::new(Box::pin(work.into_actor(self).map(
            move |result, act, _| {
                let (installed, applied, (reset_at, batches)) = result.inspect_err(|error| {
                    warn!(act.log, "replication stream failed"; "error" => error);
                })?;
                if let Some(history) = act.history.as_mut() {
                    if let Some(seq) = reset_at {
                        *history = history.emptied_at(seq);
                    }
                    for batch in batches {
                        history.push(batch);
                    }
                }
                if let Some((id, keys, previous)) = installed {
                    info!(act.log, "full resync installed"; "primary_id" => &id, "keys" => keys);
                    act.replication_id = Some(id);
                    act.discard = false;
                    act.recent.clear();
                    act.previous = previous;
                    act.reset_generation = Some(act.resets.load(Ordering::Acquire));
                }
                if let Some(applied) = applied {
                    act.applied = applied;
                }
                act.publish_history();
                Ok(act.ack(link))
            },
        )))
    }
}
