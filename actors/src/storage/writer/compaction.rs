//! Compaction: when the logs since the last snapshot have grown large enough, the writer
//! closes its log, asks the Store for a snapshot of its data, writes it on a thread of its own
//! (the writer keeps appending meanwhile), and then removes the logs and the older snapshot it
//! covers.

use std::mem;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use actix::prelude::*;
use slog::{info, warn};

use super::Writer;
use crate::storage::data_dir::StorageError;
use crate::storage::segment::Segment;
use crate::storage::snapshot_file;
use crate::store::{Seq, StoreSnapshot, TakeSnapshot};

/// How long to wait before trying again after a compaction failed.
const COMPACTION_RETRY: Duration = Duration::from_secs(30);

/// Sent by the snapshot thread to the writer when a compaction's snapshot is written, or failed.
#[derive(Message)]
#[rtype(result = "()")]
pub(super) struct SnapshotWritten {
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

impl Writer {
    /// Start a compaction once the logs since the last snapshot are large enough (and none is
    /// running, and the last one did not fail just now).
    pub(super) fn maybe_compact(&mut self, ctx: &mut Context<Self>) {
        let threshold = self.config.compact_min_bytes.max(
            self.config
                .compact_ratio
                .saturating_mul(self.snapshot_bytes),
        );
        let recently_failed = self
            .compaction_failed_at
            .is_some_and(|at| at.elapsed() < COMPACTION_RETRY);
        let due = !self.compacting
            && self.failure.is_none()
            && !recently_failed
            && self.log_bytes >= threshold
            // A fresh log has nothing for a snapshot to cover yet.
            && !self.segment.is_empty();
        if !due && !self.rotating {
            return;
        }
        // Close the current log durably and continue in a new one: the snapshot will cover
        // every log before the new one. The closed log must be on disk before the new one
        // holds a record (a crash must never keep a later log and lose an earlier one's
        // tail), so new writes wait, unwritten, while the fsync thread syncs it; its answer
        // brings the writer back here.
        if self.syncing || self.written > self.synced || !self.unsynced.is_empty() {
            self.rotating = true;
            self.start_sync();
            if self.syncing || self.failure.is_some() {
                return;
            }
        }
        self.rotating = false;
        let next = match Segment::create(&self.dir, self.written + 1) {
            Ok(next) => next,
            Err(error) => {
                warn!(self.log, "cannot start a new log for compaction"; "error" => %error);
                self.compaction_failed_at = Some(Instant::now());
                return;
            }
        };
        let closed = mem::replace(&mut self.segment, next);
        self.sync_epoch += 1;
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
