//! The Replicator actor: keeps one replica converging to the primary's data.
//!
//! One per replica. It subscribes to the Store's mutation stream, keeps the recent mutations
//! in a bounded [`Backlog`], and streams them to its replica over TCP, never making a client
//! wait (except one that asks to, with `WAIT` or `--min-replicas-to-write`).
//! The link: connect to the replica's client port and send `REPLICATE <nonce> [<epoch>]`; the replica
//! answers `POSITION <replication id> <offset>`. When the id is ours and the backlog holds
//! everything after the offset, the stream resumes there (`CONTINUE`, a partial resync);
//! otherwise the replicator takes a copy-on-write snapshot from the Store and streams it as
//! records (`FULLSYNC`), then every mutation after it. The replica acknowledges with
//! `ACK <applied> <durable>` lines, at least once a second; a link silent for longer than the
//! timeout is dropped. A dropped link is retried forever with capped exponential backoff, and
//! state changes are logged once, not every attempt.

use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{debug, error, info, warn, Logger};
use tokio::sync::watch;
use tokio_util::codec::LinesCodecError;

use super::backlog::Backlog;
use super::handshake::{self, Opened};
use super::progress::{LinkState, ReplicaProgress};
use super::replication_id::Lineage;
pub use super::replicator_config::{ReplicatorConfig, StopReplicating};
use super::replicator_config::{BACKOFF_CAP, BACKOFF_START, CHUNK_BYTES, TICK};
use super::resync;
use super::wire::{ReplicaLine, StreamEncoder, SyncStart};
use crate::storage::durability::Durability;
use crate::store::{Applied, Mutation, Seq, Store, StoreSnapshot, TakeSnapshot};
use crate::tls::WriteHalf;

/// A live connection to the replica.
struct Link {
    /// `None` while a write is in flight.
    writer: Option<WriteHalf>,
    /// The write in flight, cancelled with the link (a stalled replica never finishes it).
    writing: Option<SpawnHandle>,
    /// The stream of the replica's lines (`ACK`), cancelled with the link.
    reader: SpawnHandle,
    /// Where the link is: a full resync being sent, or streaming.
    state: LinkState,
    /// Every mutation up to this one has been written to the socket.
    sent: Seq,
    /// When the replica last acknowledged: a link silent past the timeout is dropped.
    last_heard: Instant,
}

/// Streams mutations to one replica.
pub struct Replicator {
    /// Which replica, how to reach it, and the link's limits.
    config: ReplicatorConfig,
    /// The primary's Store: snapshots for full resyncs come from it.
    store: Addr<Store>,
    /// The primary's persistence: only what it reports safe is sent.
    durability: Durability,
    /// Logs with `replica=<addr>`.
    log: Logger,
    /// The recent mutations, for a partial resync and for a replica that reads slowly.
    backlog: Backlog,
    /// The live connection, if any.
    link: Option<Link>,
    /// Counts connection attempts, so results of an abandoned attempt are ignored.
    attempt: u64,
    /// How long to wait before the next connection attempt (capped exponential backoff).
    backoff: Duration,
    /// Whether the last attempt failed, so repeated failures are logged once.
    failing: bool,
    /// Why the replica's data must not be overwritten, while that holds.
    refused: Option<&'static str>,
    /// The replica has its full resync and is catching up on what came after it: the
    /// backlog holds that for it (up to the hold limit) until it is within the usual limit.
    catching_up: bool,
    /// The replica applied every mutation up to this one (never more than was sent)...
    acked: Seq,
    /// ...and made every one up to this one durable.
    durable: Seq,
    /// Where `INFO` and `WAIT` read this replica's progress.
    progress: watch::Sender<ReplicaProgress>,
    /// Offsets of the replica's own data that full resyncs replaced (see
    /// [`ReplicatorConfig::authoritative`]).
    discarded: u64,
}

impl Replicator {
    /// A replicator whose backlog continues after `last_seq`, with the channel on which it
    /// publishes its replica's progress.
    /// Only what `durability` reports safe (written, or fsynced under `--fsync always`) is
    /// sent, so that a replica never holds a mutation its primary could lose in a crash the
    /// policy survives: after such a crash, the primary's history still continues the replica's.
    pub fn new(
        config: ReplicatorConfig,
        store: Addr<Store>,
        durability: Durability,
        last_seq: Seq,
        log: &Logger,
    ) -> (Replicator, watch::Receiver<ReplicaProgress>) {
        let progress = ReplicaProgress::connecting(config.replica.clone(), last_seq);
        let (progress, watcher) = watch::channel(progress);
        let replicator = Replicator {
            backlog: Backlog::new(
                config.backlog_bytes,
                config.full_sync_buffer_bytes,
                last_seq,
            )
            .with_margin(config.backlog_min_bytes),
            log: log.new(slog::o!("replica" => config.replica.to_string())),
            config,
            store,
            durability,
            link: None,
            attempt: 0,
            backoff: BACKOFF_START,
            failing: false,
            refused: None,
            catching_up: false,
            acked: 0,
            durable: 0,
            progress,
            discarded: 0,
        };
        (replicator, watcher)
    }

    /// Start the backlog with what this node applied as a replica ([`Backlog::seeded`]).
    pub fn with_history(mut self, before: Seq, batches: Vec<std::sync::Arc<[Mutation]>>) -> Self {
        self.backlog = self.backlog.seeded(before, batches);
        self
    }

    fn publish(&self) {
        let idle = match self.refused {
            Some(_) => LinkState::Refused,
            None => LinkState::Connecting,
        };
        let state = self.link.as_ref().map_or(idle, |l| l.state);
        let last = self.backlog.last_seq();
        let lag_ms = if self.acked >= last {
            0
        } else {
            self.backlog
                .applied_at(self.acked)
                .map_or(0, |at| at.elapsed().as_millis() as u64)
        };
        self.progress.send_replace(ReplicaProgress {
            addr: self.config.replica.clone(),
            state,
            acked: self.acked,
            durable: self.durable,
            lag_offsets: last.saturating_sub(self.acked),
            lag_ms,
            refused: self.refused,
            discarded: self.discarded,
            backlog_bytes: self.backlog.bytes(),
        });
    }

    /// Open a link: connect, handshake, and learn where the replica stands.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        self.attempt += 1;
        let attempt = self.attempt;
        let addr = self.config.replica.clone();
        let (secret, tls) = (self.config.secret.clone(), self.config.tls.clone());
        let (timeout, at) = (
            self.config.timeout,
            (self.backlog.first(), self.config.epoch),
        );
        let handshake =
            async move { handshake::open(&addr, secret.as_ref(), tls.as_ref(), timeout, at).await };
        ctx.spawn(handshake.into_actor(self).map(move |result, act, ctx| {
            if attempt != act.attempt {
                return;
            }
            match result {
                Ok(opened) => act.start_link(opened, ctx),
                Err(error) => act.retry_later(&error, ctx),
            }
        }));
    }

    fn start_link(&mut self, opened: Opened, ctx: &mut Context<Self>) {
        let Opened {
            lines,
            writer,
            id,
            offset,
            window,
        } = opened;
        let partial = match self.continuation(id.as_deref(), offset, window) {
            Ok(partial) => partial,
            Err(reason) if self.config.authoritative => {
                let kept = self.common_offset(id.as_deref(), offset);
                let discarded = offset.saturating_sub(kept);
                self.discarded += discarded;
                warn!(self.log, "the replica holds writes this epoch does not (a deposed primary's); replacing them";
                    "reason" => reason, "replica_id" => id.as_deref().unwrap_or("-"),
                    "replica_offset" => offset, "discarded_offsets" => discarded,
                    "epoch" => self.config.epoch);
                false
            }
            Err(reason) => return self.refuse(reason, id.as_deref(), offset, ctx),
        };
        if self.refused.take().is_some() {
            info!(self.log, "the replica's history can be continued now"; "replica_offset" => offset);
        }
        let reader = ctx.add_stream(lines);
        self.link = Some(Link {
            writer: Some(writer),
            writing: None,
            reader,
            state: if partial {
                LinkState::Streaming
            } else {
                LinkState::FullSync
            },
            sent: offset,
            last_heard: Instant::now(),
        });
        // A replica on another history has acknowledged nothing of ours yet.
        self.acked = if partial { offset } else { 0 };
        self.durable = self.durable.min(self.acked);
        if partial {
            info!(self.log, "replica connected; resuming the stream (partial resync)";
                "offset" => offset, "primary_offset" => self.backlog.last_seq());
            self.connected();
            let mut control = Vec::new();
            self.config.continue_at(offset).encode(&mut control);
            self.write(control, offset, ctx);
        } else {
            info!(self.log, "replica connected; sending a full snapshot (full resync)";
                "replica_id" => id.as_deref().unwrap_or("-"), "replica_offset" => offset);
            self.full_sync(ctx);
        }
        self.publish();
    }

    /// How the replica can be brought to the primary's data ([`resync::decide`]).
    fn continuation(
        &self,
        id: Option<&str>,
        offset: Seq,
        window: Option<(Seq, u64)>,
    ) -> Result<bool, &'static str> {
        let lineage = Lineage {
            id: self.config.replication_id.to_string(),
            previous: self.config.previous.clone(),
        };
        resync::decide(&lineage, &self.backlog, id, offset, window)
    }

    /// How much of a replica's data (history `id` up to `offset`) this history shares.
    fn common_offset(&self, id: Option<&str>, offset: Seq) -> Seq {
        match (id, &self.config.previous) {
            (Some(id), _) if id == &*self.config.replication_id => offset,
            (Some(id), Some(previous)) if id == previous.id => offset.min(previous.offset),
            _ => 0,
        }
    }

    /// Refuse to stream to a replica whose data the primary's history does not continue:
    /// close the connection, say so (loudly once), show it in `INFO`, and look again later,
    /// in case an operator resolved it (`RESYNC` on the replica).
    fn refuse(
        &mut self,
        reason: &'static str,
        id: Option<&str>,
        offset: Seq,
        ctx: &mut Context<Self>,
    ) {
        if self.refused.replace(reason).is_none() {
            error!(self.log, "refusing to overwrite a replica whose history this primary does not continue; \
                resolve it with RESYNC on the replica (it takes this primary's data) or by promoting the replica";
                "reason" => reason, "replica_id" => id.unwrap_or("-"), "replica_offset" => offset,
                "primary_id" => &*self.config.replication_id, "primary_offset" => self.backlog.last_seq());
        } else {
            debug!(self.log, "replica still refused"; "reason" => reason, "replica_offset" => offset);
        }
        self.failing = true;
        self.publish();
        self.schedule_connect(ctx);
    }

    fn connected(&mut self) {
        self.backoff = BACKOFF_START;
        self.failing = false;
    }

    /// Stream a snapshot of the Store, then carry on with the mutations after it.
    fn full_sync(&mut self, ctx: &mut Context<Self>) {
        let attempt = self.attempt;
        let id = self.config.replication_id.clone();
        let previous = self.config.previous.clone();
        let mut durability = self.durability.clone();
        let take = self.store.send(TakeSnapshot).into_actor(self).map(move |snapshot, act, ctx| {
            if attempt != act.attempt {
                return;
            }
            let Ok(StoreSnapshot { data, seq }) = snapshot else {
                return act.drop_link("the store is gone", ctx);
            };
            // What comes after the snapshot is held until the replica has it (up to the hold
            // limit), however long the transfer takes: the resync converges.
            act.backlog.hold_after(Some(seq));
            act.backlog.acknowledged(None);
            let Some(mut writer) = act.link.as_mut().and_then(|l| l.writer.take()) else {
                return;
            };
            let send = async move {
                // Sent once the primary's writer has made it safe, as every mutation is.
                durability
                    .wait_safe(seq)
                    .await
                    .map_err(|e| std::io::Error::other(format!("the primary cannot persist: {e}")))?;
                let mut buf = Vec::new();
                SyncStart::Full {
                    id: id.to_string(),
                    seq,
                    previous,
                }
                .encode(&mut buf);
                let mut count = 0u64;
                for pair in data.iter() {
                    StreamEncoder::snapshot_pair(seq, pair, &mut buf);
                    count += 1;
                    if buf.len() >= CHUNK_BYTES {
                        writer.send(&buf).await?;
                        buf.clear();
                    }
                }
                StreamEncoder::snapshot_end(seq, count, &mut buf);
                writer.send(&buf).await?;
                Ok::<_, std::io::Error>((writer, seq, count))
            };
            let handle = ctx.spawn(send.into_actor(act).map(move |result, act, ctx| {
                if attempt != act.attempt {
                    return;
                }
                match result {
                    Ok((writer, seq, keys)) => {
                        if !act.backlog.covers(seq) {
                            return act.drop_link("the backlog overflowed during the full resync", ctx);
                        }
                        if let Some(link) = act.link.as_mut() {
                            link.writer = Some(writer);
                            link.writing = None;
                            link.sent = seq;
                            link.state = LinkState::Streaming;
                        }
                        act.catching_up = true;
                        info!(act.log, "full resync sent; streaming"; "snapshot_seq" => seq, "keys" => keys);
                        act.connected();
                        act.publish();
                        act.pump(ctx);
                    }
                    Err(error) => act.drop_link(&format!("write failed: {error}"), ctx),
                }
            }));
            if let Some(link) = act.link.as_mut() {
                link.writing = Some(handle);
            }
        });
        ctx.spawn(take);
    }

    /// Write what the replica has not been sent yet, one chunk at a time.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        let Some(link) = self.link.as_ref() else {
            return;
        };
        if link.state != LinkState::Streaming {
            return;
        }
        // Checked even while a write is stalled: a replica that stopped reading is dropped as
        // soon as the backlog no longer holds what it still needs.
        if !self.backlog.covers(link.sent) {
            let sent = link.sent;
            warn!(self.log, "replica fell out of the backlog; it will be fully resynced";
                "sent" => sent, "primary_offset" => self.backlog.last_seq(),
                "backlog_bytes" => self.backlog.bytes());
            return self.drop_link("fell out of the backlog", ctx);
        }
        if link.writer.is_none() {
            return;
        }
        let mut mutations = self.backlog.after(link.sent, CHUNK_BYTES);
        // Only what the primary's writer has made safe: a crash must not leave a replica
        // holding mutations its primary lost.
        let safe = self.durability.safe();
        mutations.truncate(mutations.partition_point(|m| m.seq <= safe));
        let Some(last) = mutations.last().map(|m| m.seq) else {
            return;
        };
        let mut buf = Vec::with_capacity(CHUNK_BYTES + 1024);
        for mutation in &mutations {
            StreamEncoder::mutation(mutation, &mut buf);
        }
        self.write(buf, last, ctx);
    }

    /// Write `bytes`, after which everything up to `sent` is on its way; then pump again.
    fn write(&mut self, bytes: Vec<u8>, sent: Seq, ctx: &mut Context<Self>) {
        let Some(mut writer) = self.link.as_mut().and_then(|l| l.writer.take()) else {
            return;
        };
        let attempt = self.attempt;
        let write = async move {
            let result = writer.send(&bytes).await;
            (writer, result)
        };
        let done = write
            .into_actor(self)
            .map(move |(writer, result), act, ctx| {
                if attempt != act.attempt {
                    return;
                }
                match result {
                    Ok(()) => {
                        if let Some(link) = act.link.as_mut() {
                            link.writer = Some(writer);
                            link.writing = None;
                            link.sent = link.sent.max(sent);
                        }
                        if let Some(sent) = act.link.as_ref().map(|l| l.sent) {
                            act.release_hold(sent);
                        }
                        act.pump(ctx);
                    }
                    Err(error) => act.drop_link(&format!("write failed: {error}"), ctx),
                }
            });
        let handle = ctx.spawn(done);
        if let Some(link) = self.link.as_mut() {
            link.writing = Some(handle);
        }
    }

    /// After a full resync, the backlog holds what the replica still needs until it has
    /// caught up to within the backlog's own limit (`sent` is what it has been sent).
    fn release_hold(&mut self, sent: Seq) {
        if !self.catching_up {
            return;
        }
        if self.backlog.within_limit() {
            self.backlog.hold_after(None);
            self.catching_up = false;
        } else {
            self.backlog.hold_after(Some(sent));
        }
    }

    /// End the current link (if any) and reconnect after the backoff.
    fn drop_link(&mut self, reason: &str, ctx: &mut Context<Self>) {
        self.backlog.hold_after(None);
        self.catching_up = false;
        if let Some(link) = self.link.take() {
            ctx.cancel_future(link.reader);
            if let Some(writing) = link.writing {
                ctx.cancel_future(writing);
            }
            if link.state == LinkState::Streaming {
                warn!(self.log, "replication link lost; reconnecting"; "reason" => reason,
                    "acked" => self.acked);
            } else {
                warn!(self.log, "replication link failed during resync; reconnecting";
                    "reason" => reason);
            }
            self.failing = true;
        }
        self.attempt += 1;
        self.publish();
        self.schedule_connect(ctx);
    }

    fn retry_later(&mut self, error: &str, ctx: &mut Context<Self>) {
        if self.failing {
            debug!(self.log, "replica still unreachable"; "error" => error);
        } else {
            warn!(self.log, "replica unreachable; retrying with backoff"; "error" => error);
            self.failing = true;
        }
        self.schedule_connect(ctx);
    }

    fn schedule_connect(&mut self, ctx: &mut Context<Self>) {
        let attempt = self.attempt;
        ctx.run_later(self.backoff, move |act, ctx| {
            if act.attempt == attempt && act.link.is_none() {
                act.connect(ctx);
            }
        });
        self.backoff = (self.backoff * 2).min(BACKOFF_CAP);
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        let timeout = self.config.timeout;
        let Some(link) = self.link.as_ref() else {
            return self.publish();
        };
        if link.last_heard.elapsed() > timeout {
            return self.drop_link("no acknowledgement within the timeout", ctx);
        }
        // A heartbeat when idle, so the replica knows the link is alive.
        if link.state == LinkState::Streaming
            && link.writer.is_some()
            && link.sent >= self.backlog.last_seq().min(self.durability.safe())
        {
            let mut beat = Vec::new();
            StreamEncoder::heartbeat(link.sent, &mut beat);
            let sent = link.sent;
            self.write(beat, sent, ctx);
        }
        self.publish();
    }
}

impl Actor for Replicator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(64 * 1024);
        ctx.run_interval(TICK, |act, ctx| act.tick(ctx));
        // Mutations become sendable as the writer makes them safe.
        let progress = futures::stream::unfold(self.durability.clone(), |mut durability| async {
            durability.changed().await.then_some((Safer, durability))
        });
        ctx.add_message_stream(progress);
        self.connect(ctx);
    }
}

impl Handler<StopReplicating> for Replicator {
    type Result = ();

    fn handle(&mut self, _: StopReplicating, ctx: &mut Self::Context) {
        info!(self.log, "replication stopped: this node is no longer the primary";
            "epoch" => self.config.epoch, "acked" => self.acked);
        ctx.stop();
    }
}

/// The primary's writer made more mutations safe: some may now be sent.
#[derive(Message)]
#[rtype(result = "()")]
struct Safer;

impl Handler<Safer> for Replicator {
    type Result = ();

    fn handle(&mut self, _: Safer, ctx: &mut Self::Context) {
        self.pump(ctx);
    }
}

impl Handler<Applied> for Replicator {
    type Result = ();

    fn handle(&mut self, msg: Applied, ctx: &mut Self::Context) {
        self.backlog.push(msg.mutations);
        self.pump(ctx);
    }
}

impl StreamHandler<Result<String, LinesCodecError>> for Replicator {
    fn handle(&mut self, line: Result<String, LinesCodecError>, ctx: &mut Self::Context) {
        let line = match line {
            Ok(line) => line,
            Err(error) => {
                return self.drop_link(&format!("bad line from the replica: {error}"), ctx)
            }
        };
        let Ok(ReplicaLine::Ack { applied, durable }) = ReplicaLine::parse(&line) else {
            return self.drop_link(
                &format!("unexpected line from the replica: {line:.80}"),
                ctx,
            );
        };
        // Never believe more than was sent: an acknowledgement of another history's offsets
        // must not count for WAIT.
        let sent = self.link.as_ref().map_or(0, |l| l.sent);
        self.acked = applied.min(sent);
        self.durable = durable.min(self.acked);
        if let Some(link) = self.link.as_mut() {
            link.last_heard = Instant::now();
            // What a streaming replica made durable, it resumes after, even from a restart.
            if link.state == LinkState::Streaming {
                self.backlog.acknowledged(Some(self.durable));
            }
        }
        self.publish();
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        self.drop_link("the replica closed the connection", ctx);
    }
}
