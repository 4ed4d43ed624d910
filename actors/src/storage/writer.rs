//! The persistence writer: appends every mutation the Store publishes to the log, with group
//! commit, an fsync policy, and compaction into snapshots (`writer/compaction.rs`).
//!
//! It runs on the Store's thread, as the sessions and replicators do, and hands each group of
//! writes to the operating system there (a `write` into the page cache, as Redis writes its
//! AOF from its event loop): a batch is applied, logged and answered in one turn of that
//! thread, with no wake-up of another thread and back. What can take as long as the disk
//! wants, `fdatasync`, runs on the fsync thread (`syncer.rs`), which the writer keeps busy
//! with one sync at a time while it goes on appending: under `--fsync always` the group that
//! arrives during an fsync is written at once and covered by the next. Group commit falls out
//! of the actor model: `Applied` messages that arrive meanwhile wait in the mailbox, and the
//! next flush writes them all at once.
//!
//! Bytes written but not yet fsynced are kept in memory until an fsync succeeds. After a write
//! or fsync error the writer cuts the log back to its last durable length and writes them
//! again, so a failure never leaves a hole or half a record in the log, and the data the
//! kernel may have dropped after a failed fsync is rewritten rather than trusted.

mod compaction;
mod resync;

use std::mem;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{error, info, warn, Logger};

use crate::storage::data_dir::{DataDir, StorageError};
use crate::storage::durability::{Durability, DurableSender, DurableState, FsyncPolicy};
use crate::storage::record;
use crate::storage::recovery::Recovered;
use crate::storage::segment::Segment;
use crate::storage::snapshot_file::Generation;
use crate::storage::syncer::{SyncJob, Synced, Syncer};
pub use crate::storage::writer_messages::{
    Follow, GetWriterStats, Reset, SyncNow, WriterConfig, WriterStats,
};
use crate::store::{Applied, Seq, Store};

/// How often the writer fsyncs under `everysec`, and retries after a failure.
const TICK: Duration = Duration::from_secs(1);
/// The most bytes written but not yet fsynced that the writer keeps for a rewrite; past it,
/// it asks for an fsync at once, and while that runs it writes no more (what arrives waits,
/// and so do its replies).
const MAX_UNSYNCED_BYTES: usize = 8 * 1024 * 1024;
/// Under `everysec`, how old the oldest write not yet known to be on disk may get while a
/// sync runs before the writer writes no more until it ends: a crash of the machine loses at
/// most about this much, however long the disk stalls (Redis's bound for `everysec`, too).
const MAX_EXPOSURE: Duration = Duration::from_secs(2);
/// What a record buffer starts with, and what an empty one may keep; a burst of writes that
/// grew one past this gives the memory back rather than keep it for the life of the node.
const BUFFER_BYTES: usize = 64 * 1024;

/// Sent by the writer to itself on an `Applied`: handled once the mailbox is empty, it writes
/// everything received meanwhile at once (group commit).
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

/// The persistence writer actor.
pub struct Writer {
    /// The data directory, shared with the snapshot thread.
    dir: Arc<DataDir>,
    /// The fsync policy and when to compact.
    config: WriterConfig,
    /// Logs with `actor=writer`.
    log: Logger,
    /// The Store, asked for a snapshot when it is time to compact.
    store: Addr<Store>,
    /// Where the writer publishes its progress and failures, for sessions and the Follower.
    durable: DurableSender,
    /// The log being appended to.
    segment: Segment,
    /// Older logs since the last snapshot, oldest first.
    older_logs: Vec<PathBuf>,
    /// Bytes in the logs since the last snapshot: compaction starts once this is large enough.
    log_bytes: u64,
    /// The size of the last snapshot, which the compaction threshold grows with.
    snapshot_bytes: u64,
    /// The last snapshot, removed once a newer one is in place.
    snapshot_path: Option<PathBuf>,
    /// Records received but not yet written.
    pending: Vec<u8>,
    /// The last sequence number received: `written` becomes it once `pending` is written.
    pending_last: Seq,
    /// Records written since the last fsync, kept to be rewritten after a failure: the bytes
    /// of the segment from `synced_len` on.
    unsynced: Vec<u8>,
    /// Length of the segment known to be on disk.
    synced_len: u64,
    /// Every mutation up to this one has been handed to the operating system.
    written: Seq,
    /// Every mutation up to this one is on disk.
    synced: Seq,
    /// A [`Flush`] is queued behind the messages in the mailbox.
    flush_scheduled: bool,
    /// Why the log cannot be written, while it cannot: writes are refused, the tick retries.
    failure: Option<Arc<str>>,
    /// A snapshot is being taken or written; no other compaction starts meanwhile.
    compacting: bool,
    /// When a compaction last failed: the next one waits [`COMPACTION_RETRY`].
    compaction_failed_at: Option<Instant>,
    /// How many compactions have finished since start-up, for [`WriterStats`].
    compactions: u64,
    /// A [`Reset`] (or recording a [`Follow`]) failed part way: the persistence failure is
    /// permanent until a restart.
    reset_failed: bool,
    /// How many full resyncs replaced the data: published, so that nobody waits for a
    /// position of a history that is gone.
    resets: u64,
    /// The last failure was an fsync's (or one is unresolved): the kernel may have dropped
    /// what was written since the last good fsync, which recovery writes again.
    fsync_failed: bool,
    /// Bumped by every [`Reset`]: a snapshot taken before it describes replaced data. Shared
    /// with the snapshot thread, which checks it and renames its file under one lock.
    generation: Arc<Generation>,
    /// The fsync thread (none until the actor starts, or if it could not be started: then
    /// the writer syncs in place).
    syncer: Option<Syncer>,
    /// A sync job is running: at most one at a time.
    syncing: bool,
    /// Bumped whenever the segment is replaced or cut back: a job's result from before names
    /// bytes that are no longer the log's, and is ignored.
    sync_epoch: u64,
    /// The log is being closed for a compaction: nothing more is written to it, and the
    /// compaction goes on once a sync has made it durable.
    rotating: bool,
    /// Everything written before this instant is on disk: when the last sync that succeeded
    /// was asked for.
    durable_as_of: Instant,
    /// When the running sync was asked for.
    sync_asked: Instant,
    /// [`SyncNow`]s waiting for the running sync job to end.
    sync_now: Vec<tokio::sync::oneshot::Sender<Result<Seq, String>>>,
}

impl Writer {
    /// A writer continuing the logs recovery found in `dir`; answers the writer and the
    /// durability handle that sessions wait on.
    pub fn new(
        dir: Arc<DataDir>,
        recovered: &Recovered,
        config: WriterConfig,
        store: Addr<Store>,
        log: &Logger,
    ) -> Result<(Writer, Durability), StorageError> {
        let segment = recovered.continue_log(&dir)?;
        let mut logs = recovered.logs.clone();
        logs.pop();
        let log_bytes = logs.iter().map(|l| l.len).sum::<u64>() + segment.len();
        let (durable, durability) = Durability::channel(config.fsync, recovered.last_seq);
        let synced_len = segment.len();
        let writer = Writer {
            snapshot_path: (recovered.snapshot_seq > 0)
                .then(|| dir.snapshot_path(recovered.snapshot_seq)),
            dir,
            config,
            log: log.new(slog::o!("actor" => "writer")),
            store,
            durable,
            segment,
            older_logs: logs.into_iter().map(|l| l.path).collect(),
            log_bytes,
            snapshot_bytes: recovered.snapshot_bytes,
            pending: Vec::with_capacity(BUFFER_BYTES),
            pending_last: recovered.last_seq,
            unsynced: Vec::new(),
            synced_len,
            written: recovered.last_seq,
            synced: recovered.last_seq,
            flush_scheduled: false,
            failure: None,
            compacting: false,
            compaction_failed_at: None,
            compactions: 0,
            generation: Arc::new(Generation::default()),
            reset_failed: false,
            fsync_failed: false,
            resets: 0,
            syncer: None,
            syncing: false,
            sync_epoch: 0,
            rotating: false,
            durable_as_of: Instant::now(),
            sync_asked: Instant::now(),
            sync_now: Vec::new(),
        };
        Ok((writer, durability))
    }

    fn publish(&self) {
        self.durable.send_replace(DurableState {
            written: self.written,
            synced: self.synced,
            failure: self.failure.clone(),
            generation: self.resets,
        });
    }

    /// Hand everything pending to the operating system.
    fn write_pending(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.all_durable() {
            // Everything before this write is on disk now: the first write after a quiet
            // spell is not held as if a sync were overdue.
            self.durable_as_of = Instant::now();
        }
        self.segment.append(&self.pending)?;
        self.log_bytes += self.pending.len() as u64;
        self.written = self.pending_last;
        if self.config.fsync == FsyncPolicy::No {
            // Nothing is kept for a rewrite: the operating system decides durability.
            self.synced_len = self.segment.len();
            self.pending.clear();
        } else if self.unsynced.is_empty() {
            mem::swap(&mut self.unsynced, &mut self.pending);
        } else {
            self.unsynced.extend_from_slice(&self.pending);
            self.pending.clear();
        }
        release_if_large(&mut self.pending);
        Ok(())
    }

    /// Fsync in place, on this thread: at shutdown, after a failure, and if the fsync thread
    /// could not be started. Everything written is durable once it returns.
    fn sync(&mut self) -> std::io::Result<()> {
        if self.all_durable() {
            return Ok(());
        }
        let asked = Instant::now();
        self.segment.sync()?;
        self.synced = self.written;
        self.synced_len = self.segment.len();
        self.durable_as_of = asked;
        self.unsynced.clear();
        release_if_large(&mut self.unsynced);
        Ok(())
    }

    /// Whether everything written is known to be on disk: nothing for a sync to do.
    fn all_durable(&self) -> bool {
        self.written == self.synced && self.unsynced.is_empty()
    }

    /// Have everything written so far made durable by the fsync thread, unless a sync is
    /// running (its end starts the next one, if one is wanted then).
    fn start_sync(&mut self) {
        if self.syncing || self.all_durable() {
            return;
        }
        let job = SyncJob {
            file: self.segment.shared_file(),
            seq: self.written,
            len: self.segment.len(),
            epoch: self.sync_epoch,
        };
        match self.syncer.as_ref().map(|syncer| syncer.submit(job)) {
            Some(Ok(())) => {
                self.syncing = true;
                self.sync_asked = Instant::now();
            }
            // No fsync thread: sync here.
            _ => match self.sync() {
                Ok(()) => self.publish(),
                Err(error) => self.fail("fsync", error),
            },
        }
    }

    /// Whether new records must wait in `pending`: the log is being closed, or, until the
    /// running sync ends, the bytes kept for a rewrite are at their limit or (`everysec`) the
    /// last point known to be on disk (`durable_as_of`) is [`MAX_EXPOSURE`] old: a stalled
    /// disk stops new writes (and so their replies) rather than let what is at risk grow.
    fn holding_writes(&self) -> bool {
        let stalled = self.config.fsync == FsyncPolicy::EverySec
            && self.durable_as_of.elapsed() >= MAX_EXPOSURE;
        self.rotating || (self.syncing && (stalled || self.unsynced.len() >= MAX_UNSYNCED_BYTES))
    }

    fn fail(&mut self, what: &str, error: std::io::Error) {
        let reason: Arc<str> = format!("{what} {}: {error}", self.segment.path().display()).into();
        error!(self.log, "persistence failed; refusing writes until the disk recovers";
            "error" => %reason, "written_seq" => self.written, "synced_seq" => self.synced);
        self.failure = Some(reason);
        if what == "fsync" {
            self.fsync_failed = true;
        }
        // A compaction waiting for the log to be durable starts again once the disk recovers.
        self.rotating = false;
        self.publish();
    }

    /// After a failure: write again what the failure may have lost, then what is pending.
    fn try_recover(&mut self) {
        if self.reset_failed || self.syncing {
            // The files the writer was appending to are gone: nothing here can be trusted to
            // reach the disk. Only a restart (which resyncs in full) clears it. (Or a sync is
            // still running: the log is not cut back under it; the next tick tries again.)
            return;
        }
        self.sync_epoch += 1;
        let attempt = (|| {
            // A failed append whose cut-back failed too may have left the file longer than
            // the log, or its position past the end: put both back first.
            self.segment.rollback_to(self.segment.len())?;
            if self.fsync_failed {
                // After a failed fsync the kernel may have dropped pages it had not written
                // back: what is not known to be on disk is written again, into the space it
                // held, and synced, before anything new.
                self.segment.rollback_to(self.synced_len)?;
                self.segment.append(&self.unsynced)?;
                self.segment.sync()?;
                self.fsync_failed = false;
                self.synced = self.written;
                self.synced_len = self.segment.len();
                self.unsynced.clear();
            }
            // A failed write cut back only its own bytes: what was written before it (and
            // acknowledged) is still in the file, and stays there.
            self.write_pending()?;
            self.fsync_failed = true;
            self.segment.sync()?;
            self.fsync_failed = false;
            self.synced = self.written;
            self.synced_len = self.segment.len();
            self.unsynced.clear();
            Ok::<_, std::io::Error>(())
        })();
        match attempt {
            Ok(()) => {
                self.durable_as_of = Instant::now();
                info!(self.log, "persistence recovered; accepting writes again";
                    "synced_seq" => self.synced);
                self.failure = None;
                self.publish();
            }
            Err(error) => {
                warn!(self.log, "persistence still failing"; "error" => %error);
            }
        }
    }

    /// Compact if it is time, write what is pending (unless writes are held), ask for the
    /// fsync the policy wants, and publish the progress.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.failure.is_some() {
            return; // the tick retries
        }
        // First, so that what is pending goes to the new log once the old one is closed.
        self.maybe_compact(ctx);
        if self.failure.is_some() {
            return;
        }
        if !self.holding_writes() {
            if let Err(error) = self.write_pending() {
                return self.fail("write", error);
            }
        }
        // Under `everysec`, written bytes are kept until fsynced; a burst of large writes
        // fsyncs early rather than let that copy grow with the write rate.
        let sync_now =
            self.config.fsync == FsyncPolicy::Always || self.unsynced.len() >= MAX_UNSYNCED_BYTES;
        if sync_now {
            self.start_sync();
            if self.failure.is_some() {
                return;
            }
        }
        self.publish();
    }

    /// A sync job ended: what it covered is durable (unless the log changed under it, or the
    /// writer has failed meanwhile: then nothing is taken from it), and what waited for it
    /// goes on.
    fn synced(&mut self, done: Synced, ctx: &mut Context<Self>) {
        self.syncing = false;
        if done.epoch == self.sync_epoch && done.result.is_err() && self.failure.is_some() {
            // Failed already (a write): this fsync's error is the only report the kernel
            // gives of pages it dropped (the next fsync of the file succeeds), so recovery
            // must write again everything after the last good sync, not trust it.
            self.fsync_failed = true;
        }
        if done.epoch != self.sync_epoch || self.failure.is_some() {
            self.answer_sync_now();
            return self.flush(ctx);
        }
        if let Err(error) = done.result {
            self.fail("fsync", error);
            return self.answer_sync_now();
        }
        if done.len > self.synced_len {
            let covered = usize::try_from(done.len - self.synced_len).unwrap_or(usize::MAX);
            self.unsynced.drain(..covered.min(self.unsynced.len()));
            self.synced_len = done.len;
            release_if_large(&mut self.unsynced);
        }
        self.synced = self.synced.max(done.seq);
        self.durable_as_of = self.durable_as_of.max(self.sync_asked);
        // Before the flush, which may start another sync that a SyncNow would wait for.
        self.answer_sync_now();
        self.flush(ctx);
        // After a slow sync, what was written meanwhile is not left for the next tick.
        let overdue = self.config.fsync == FsyncPolicy::EverySec
            && self.written > self.synced
            && self.durable_as_of.elapsed() >= TICK;
        if overdue && self.failure.is_none() {
            self.start_sync();
        }
    }

    /// Answer the [`SyncNow`]s that waited for the running sync, now that none runs.
    fn answer_sync_now(&mut self) {
        if self.syncing || self.sync_now.is_empty() {
            return;
        }
        let result = self.sync_in_place();
        for waiter in self.sync_now.drain(..) {
            let _ = waiter.send(result.clone());
        }
    }

    /// Write everything and fsync it here, now (no sync job may be running: two fsyncs of
    /// one file at once could leave the one that says "done" not knowing of the other's
    /// error). Answers the last durable sequence number.
    fn sync_in_place(&mut self) -> Result<Seq, String> {
        if self.failure.is_some() {
            self.try_recover();
        }
        if let Some(failure) = &self.failure {
            return Err(failure.to_string());
        }
        let result = self.write_pending().and_then(|()| self.sync());
        if let Err(error) = result {
            self.fail("fsync", error);
            return Err(self.failure.as_deref().unwrap_or_default().to_string());
        }
        self.publish();
        Ok(self.synced)
    }
}

/// Replace an empty buffer that a burst made large with a small one.
fn release_if_large(buffer: &mut Vec<u8>) {
    if buffer.is_empty() && buffer.capacity() > 16 * BUFFER_BYTES {
        *buffer = Vec::with_capacity(BUFFER_BYTES);
    }
}

impl Actor for Writer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Applied messages must never be refused for a full mailbox (the Store uses
        // `do_send`, which ignores capacity, but keep the intent explicit).
        ctx.set_mailbox_capacity(64 * 1024);
        match Syncer::start(ctx.address().recipient()) {
            Ok(syncer) => self.syncer = Some(syncer),
            Err(error) => warn!(self.log, "cannot start the fsync thread; fsyncing in place";
                "error" => %error),
        }
        ctx.run_interval(TICK, |act, _| {
            if act.failure.is_some() {
                act.try_recover();
            } else if act.config.fsync == FsyncPolicy::EverySec && act.written > act.synced {
                act.start_sync();
            }
        });
        info!(self.log, "persistence writer started"; "fsync" => %self.config.fsync,
            "log" => %self.segment.path().display(), "synced_seq" => self.synced);
    }
}

impl Handler<Applied> for Writer {
    type Result = ();

    fn handle(&mut self, msg: Applied, ctx: &mut Self::Context) {
        for mutation in msg.mutations.iter() {
            record::encode_mutation(mutation, &mut self.pending);
            self.pending_last = mutation.seq;
        }
        if !self.flush_scheduled {
            // Runs after every message already in the mailbox: that is the group commit.
            self.flush_scheduled = true;
            ctx.notify(Flush);
        }
    }
}

impl Handler<Flush> for Writer {
    type Result = ();

    fn handle(&mut self, _: Flush, ctx: &mut Self::Context) {
        self.flush_scheduled = false;
        self.flush(ctx);
    }
}

impl Handler<Synced> for Writer {
    type Result = ();

    fn handle(&mut self, done: Synced, ctx: &mut Self::Context) {
        self.synced(done, ctx);
    }
}

impl Handler<SyncNow> for Writer {
    type Result = ResponseFuture<Result<Seq, String>>;

    /// At once, or once the running sync job has ended.
    fn handle(&mut self, _: SyncNow, _: &mut Self::Context) -> Self::Result {
        if !self.syncing {
            let result = self.sync_in_place();
            return Box::pin(async move { result });
        }
        let (tell, told) = tokio::sync::oneshot::channel();
        self.sync_now.push(tell);
        Box::pin(async move {
            told.await
                .unwrap_or_else(|_| Err("the writer stopped".to_string()))
        })
    }
}

impl Handler<GetWriterStats> for Writer {
    type Result = WriterStats;

    fn handle(&mut self, _: GetWriterStats, _: &mut Self::Context) -> WriterStats {
        WriterStats {
            log_bytes: self.log_bytes,
            snapshot_bytes: self.snapshot_bytes,
            compactions: self.compactions,
        }
    }
}
