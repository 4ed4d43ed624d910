//! What a replica's full resync and a new primary's history do to the writer: the data on
//! disk replaced whole ([`Reset`]), and the replication id the directory follows recorded
//! ([`Follow`]).

use actix::prelude::*;
use slog::{error, info};

use super::Writer;
use crate::replication::replication_id::{self, ReplicationState};
use crate::storage::data_dir::{FileKind, StorageError};
use crate::storage::segment::Segment;
use crate::storage::snapshot_file;
use crate::storage::writer_messages::{Follow, Reset};

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
        self.sync_epoch += 1;
        self.rotating = false;
        self.older_logs.clear();
        self.log_bytes = self.segment.len();
        self.snapshot_bytes = size;
        self.snapshot_path = Some(path);
        self.synced_len = self.segment.len();
        self.written = msg.seq;
        self.synced = msg.seq;
        self.durable_as_of = std::time::Instant::now();
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

impl Writer {
    /// Fail for good: no write, read or acknowledgement of durability until a restart.
    fn fail_until_restart(&mut self, reason: String) {
        self.reset_failed = true;
        self.failure = Some(reason.into());
        self.publish();
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
                self.fail_until_restart(format!(
                    "could not store a full resync ({error}); restart this replica"
                ));
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
            self.fail_until_restart(format!(
                "cannot record the replication id ({error}); restart this replica"
            ));
        }
        result.map_err(|e| e.to_string())
    }
}
