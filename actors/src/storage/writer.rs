//! The persistence writer: appends every mutation the Store publishes to the log, with group
//! commit, an fsync policy, and compaction into snapshots.
//!
//! It runs on an arbiter of its own, so its blocking file calls never hold up the Store or a
//! session. Group commit falls out of the actor model: `Applied` messages that arrive while a
//! write or fsync is running wait in the mailbox, and the next flush writes them all at once
//! and covers them with one fsync.
//!
//! Bytes written but not yet fsynced are kept in memory until an fsync succeeds. After a write
//! or fsync error the writer cuts the log back to its last durable length and writes them
//! again, so a failure never leaves a hole or half a record in the log, and the data the
//! kernel may have dropped after a failed fsync is rewritten rather than trusted.

use std::mem;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{error, info, warn, Logger};

use crate::replication::replication_id::{self, ReplicationState};
use crate::storage::data_dir::{DataDir, FileKind, StorageError};
use crate::storage::durability::{Durability, DurableSender, DurableState, FsyncPolicy};
use crate::storage::record;
use crate::storage::recovery::Recovered;
use crate::storage::segment::Segment;
use crate::storage::snapshot_file::{self, Generation};
pub use crate::storage::writer_messages::{
    Follow, GetWriterStats, Reset, SyncNow, WriterConfig, WriterStats,
};
use crate::store::{Applied, Seq, Store, StoreSnapshot, TakeSnapshot};

/// How often the writer fsyncs under `everysec`, and retries after a failure.
const TICK: Duration = Duration::from_secs(1);
/// The most bytes written but not yet fsynced that the writer keeps for a rewrite; past it,
/// it fsyncs at once.
const MAX_UNSYNCED_BYTES: usize = 8 * 1024 * 1024;
/// What a record buffer starts with, and what an empty one may keep; a burst of writes that
/// grew one past this gives the memory back rather than keep it for the life of the node.
const BUFFER_BYTES: usize = 64 * 1024;
/// How long to wait before trying again after a compaction failed.
const COMPACTION_RETRY: Duration = Duration::from_secs(30);

/// Sent by the writer to itself on an `Applied`: handled once the mailbox is empty, it writes
/// everything received meanwhile at once (group commit).
#[derive(Message)]
#[rtype(result = "()")]
struct Flush;

/// Sent by the snapshot thread to the writer when a compaction's snapshot is written, or failed.
#[derive(Message)]
#[rtype(result = "()")]
struct SnapshotWritten {
    /// The snapshot's path and size in bytes, or why it could not be written.
    result: Result<(PathBuf, u64), StorageError>,
    /// The logs closed before the snapshot was taken: it covers them, so they can go.
    covered_logs: Vec<PathBuf>,
    /// The last mutation the snapshot includes.
    seq: Seq,
    /// When the compaction started, to log how long it took.
    started: Instant,
    /// The data generation the snapshot was taken in (see `Writer::generation`).
    generation: u64,
}

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
    /// Records written since the last fsync, kept to be rewritten after a failure.
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

    fn sync(&mut self) -> std::io::Result<()> {
        if self.written == self.synced && self.unsynced.is_empty() {
            return Ok(());
        }
        self.segment.sync()?;
        self.synced = self.written;
        self.synced_len = self.segment.len();
        self.unsynced.clear();
        release_if_large(&mut self.unsynced);
        Ok(())
    }

    fn fail(&mut self, what: &str, error: std::io::Error) {
        let reason: Arc<str> = format!("{what} {}: {error}", self.segment.path().display()).into();
        error!(self.log, "persistence failed; refusing writes until the disk recovers";
            "error" => %reason, "written_seq" => self.written, "synced_seq" => self.synced);
        self.failure = Some(reason);
        if what == "fsync" {
            self.fsync_failed = true;
        }
        self.publish();
    }

    /// After a failure: write again what the failure may have lost, then what is pending.
    fn try_recover(&mut self) {
        if self.reset_failed {
            // The files the writer was appending to are gone: nothing here can be trusted to
            // reach the disk. Only a restart (which resyncs in full) clears it.
            return;
        }
        let attempt = (|| {
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

    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.failure.is_some() {
            return; // the tick retries
        }
        if let Err(error) = self.write_pending() {
            return self.fail("write", error);
        }
        // Under `everysec`, written bytes are kept until fsynced; a burst of large writes
        // fsyncs early rather than let that copy grow with the write rate.
        let sync_now =
            self.config.fsync == FsyncPolicy::Always || self.unsynced.len() >= MAX_UNSYNCED_BYTES;
        if sync_now {
            if let Err(error) = self.sync() {
                return self.fail("fsync", error);
            }
        }
        self.publish();
        self.maybe_compact(ctx);
    }

    fn maybe_compact(&mut self, ctx: &mut Context<Self>) {
        let threshold = self.config.compact_min_bytes.max(
            self.config
                .compact_ratio
                .saturating_mul(self.snapshot_bytes),
        );
        let recently_failed = self
            .compaction_failed_at
            .is_some_and(|at| at.elapsed() < COMPACTION_RETRY);
        if self.compacting
            || self.failure.is_some()
            || recently_failed
            || self.log_bytes < threshold
            // A fresh log has nothing for a snapshot to cover yet.
            || self.segment.is_empty()
        {
            return;
        }
        // Close the current log durably and continue in a new one: the snapshot will cover
        // every log before the new one.
        if let Err(error) = self.sync() {
            return self.fail("fsync", error);
        }
        let next = match Segment::create(&self.dir, self.written + 1) {
            Ok(next) => next,
            Err(error) => {
                warn!(self.log, "cannot start a new log for compaction"; "error" => %error);
                self.compaction_failed_at = Some(Instant::now());
                return;
            }
        };
        let closed = mem::replace(&mut self.segment, next);
        self.synced_len = self.segment.len();
        self.older_logs.push(closed.path().to_path_buf());
        self.compacting = true;
        let covered_logs = self.older_logs.clone();
        let started = Instant::now();
        info!(self.log, "compaction started"; "log_bytes" => self.log_bytes,
            "snapshot_bytes" => self.snapshot_bytes, "threshold" => threshold);
        let dir = self.dir.clone();
        let me = ctx.address();
        let generation = self.generation.current();
        let current = self.generation.clone();
        let take = self
            .store
            .send(TakeSnapshot)
            .into_actor(self)
            .map(move |snapshot, act, _| match snapshot {
                Ok(StoreSnapshot { data, seq }) => {
                    // Serialising runs on a thread of its own, so the writer keeps appending.
                    let spawned = std::thread::Builder::new()
                        .name("kv-snapshot".into())
                        .spawn(move || {
                            let taken_in = Some((&*current, generation));
                            let result = snapshot_file::write(&dir, &data, seq, taken_in);
                            me.do_send(SnapshotWritten {
                                result,
                                covered_logs,
                                seq,
                                started,
                                generation,
                            });
                        });
                    if let Err(error) = spawned {
                        warn!(act.log, "cannot start the snapshot thread"; "error" => %error);
                        act.compacting = false;
                        act.compaction_failed_at = Some(Instant::now());
                    }
                }
                Err(error) => {
                    warn!(act.log, "the store did not answer for a snapshot"; "error" => %error);
                    act.compacting = false;
                    act.compaction_failed_at = Some(Instant::now());
                }
            });
        ctx.spawn(take);
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
        ctx.run_interval(TICK, |act, _| {
            if act.failure.is_some() {
                act.try_recover();
            } else if act.config.fsync == FsyncPolicy::EverySec && act.written > act.synced {
                match act.sync() {
                    Ok(()) => act.publish(),
                    Err(error) => act.fail("fsync", error),
                }
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

impl Handler<SyncNow> for Writer {
    type Result = Result<Seq, String>;

    fn handle(&mut self, _: SyncNow, _: &mut Self::Context) -> Self::Result {
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

impl Handler<SnapshotWritten> for Writer {
    type Result = ();

    fn handle(&mut self, msg: SnapshotWritten, _: &mut Self::Context) {
        self.compacting = false;
        if msg.generation != self.generation.current() {
            // The data was replaced while this snapshot was written: it is stale.
            if let Ok((path, _)) = &msg.result {
                if self.snapshot_path.as_ref() != Some(path) {
                    let _ = std::fs::remove_file(path);
                }
            }
            return;
        }
        let (path, size) = match msg.result {
            Ok(written) => written,
            Err(error) => {
                warn!(self.log, "compaction failed; keeping the logs"; "error" => %error);
                self.compaction_failed_at = Some(Instant::now());
                return;
            }
        };
        let mut obsolete = msg.covered_logs.clone();
        if let Some(previous) = self.snapshot_path.replace(path.clone()) {
            if previous != path {
                obsolete.push(previous);
            }
        }
        for file in &obsolete {
            if let Err(error) = std::fs::remove_file(file) {
                warn!(self.log, "cannot remove a file the snapshot covers";
                    "file" => %file.display(), "error" => %error);
            }
        }
        let _ = self.dir.sync();
        self.older_logs
            .retain(|log| !msg.covered_logs.contains(log));
        let remaining_older: u64 = self
            .older_logs
            .iter()
            .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
            .sum();
        self.log_bytes = remaining_older + self.segment.len();
        self.snapshot_bytes = size;
        self.compactions += 1;
        info!(self.log, "compaction finished"; "snapshot" => %path.display(),
            "snapshot_seq" => msg.seq, "snapshot_bytes" => size,
            "removed_files" => obsolete.len(), "log_bytes" => self.log_bytes,
            "duration_ms" => msg.started.elapsed().as_millis() as u64);
    }
}

impl Writer {
    fn reset(&mut self, msg: Reset) -> Result<(), StorageError> {
        // Until the new data is on disk, what the directory holds is disposable: after a crash
        // here the replica asks for a full resync again.
        // Positions from here on count in the new history: waiters on the old one are told.
        self.resets += 1;
        replication_id::save(&self.dir, &ReplicationState::Resyncing)?;
        // Under the lock a compaction renames under: a snapshot of the old data either went
        // into place before this (and is deleted below) or never will.
        self.generation.bump();
        // Everything pending belongs to the history being replaced.
        self.pending.clear();
        self.unsynced.clear();
        // Logs before snapshots: a Reset cut short then leaves a snapshot without the logs
        // after it (a consistent, if older, directory), never logs without their snapshot.
        let files = self.dir.files()?;
        let logs = files.iter().filter(|(k, _)| matches!(k, FileKind::Log(_)));
        let snapshots = files
            .iter()
            .filter(|(k, _)| matches!(k, FileKind::Snapshot(_)));
        for (_, path) in logs.chain(snapshots) {
            std::fs::remove_file(path).map_err(StorageError::io("remove", path))?;
        }
        let (path, size) = snapshot_file::write(&self.dir, &msg.data, msg.seq, None)?;
        self.segment = Segment::create(&self.dir, msg.seq + 1)?;
        self.older_logs.clear();
        self.log_bytes = self.segment.len();
        self.snapshot_bytes = size;
        self.snapshot_path = Some(path);
        self.synced_len = self.segment.len();
        self.written = msg.seq;
        self.synced = msg.seq;
        self.pending_last = msg.seq;
        self.failure = None;
        replication_id::save(
            &self.dir,
            &ReplicationState::Following {
                id: msg.replication_id,
            },
        )?;
        self.publish();
        Ok(())
    }
}

impl Handler<Reset> for Writer {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: Reset, _: &mut Self::Context) -> Self::Result {
        let seq = msg.seq;
        let keys = msg.data.len();
        match self.reset(msg) {
            Ok(()) => {
                info!(self.log, "data replaced by a full resync"; "seq" => seq, "keys" => keys);
                Ok(())
            }
            Err(error) => {
                error!(self.log, "could not store a full resync; restart this replica to resync it";
                    "error" => %error);
                // The old logs may be gone and the new one not there: nothing written from now
                // on would be durable. The failure stays (no write, read or acknowledgement of
                // durability) until a restart, which finds the directory `resyncing` and asks
                // for a full resync.
                self.reset_failed = true;
                self.failure = Some(
                    format!("could not store a full resync ({error}); restart this replica").into(),
                );
                self.publish();
                Err(error.to_string())
            }
        }
    }
}

impl Handler<Follow> for Writer {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: Follow, _: &mut Self::Context) -> Result<(), String> {
        let result = replication_id::save(&self.dir, &msg.0);
        if let Err(error) = &result {
            // The directory would go on naming a history its data no longer is: stop, as
            // after a failed full resync, until a restart (which the primaries then judge on
            // what the file says, and refuse rather than mix histories).
            error!(self.log, "cannot record the primary's new replication id; restart this replica";
                "error" => %error);
            self.reset_failed = true;
            self.failure = Some(
                format!("cannot record the replication id ({error}); restart this replica").into(),
            );
            self.publish();
        }
        result.map_err(|e| e.to_string())
    }
}
