//! The durable Raft log and vote: openraft's `RaftLogStorage` over plain files.
//!
//! Layout of a node's directory:
//! - `raft.log`: append-only framed records (see [`super::record`]), one per log entry, in
//!   index order. `append` fsyncs before acknowledging; `truncate` cuts the file at the first
//!   removed entry's offset; a torn or corrupt tail is cut off when the file is opened.
//! - `vote`, `committed`, `purged`: one record each, replaced atomically (temp, fsync, rename,
//!   fsync dir). `purged` is what makes `purge` durable: entries at or below it are ignored on
//!   open, and the dead prefix is dropped by rewriting the log once it outweighs the live part.
//!
//! The whole log is also kept in memory: the control plane writes a handful of entries per
//! failover, so this is tiny, and reads never touch the disk.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{
    AnyError, Entry, ErrorSubject, ErrorVerb, LogId, OptionalSend, StorageError, StorageIOError,
    Vote,
};

use slog::{warn, Logger};

use crate::consensus::cluster_state::NodeId;
use crate::consensus::record::{
    decode, encode_into, read_atomic, sync_dir, write_atomic, Decoded, StoreError,
};
use crate::consensus::type_config::TypeConfig;

/// The log file's name in the node's directory.
pub const LOG_FILE: &str = "raft.log";
/// The vote file's name: the node's term and whom it voted for, which must never be forgotten.
pub const VOTE_FILE: &str = "vote";
/// The last committed log id, so a restarted node re-applies committed entries at once.
const COMMITTED_FILE: &str = "committed";
/// The purge point: entries at or below it are dead even if still in the log file.
const PURGED_FILE: &str = "purged";

/// Converts a file-format error into the error type openraft expects from storage; any such
/// error stops the Raft node, which is the right reaction to a disk we can no longer trust.
pub fn to_storage_error(
    e: StoreError,
    subject: ErrorSubject<NodeId>,
    verb: ErrorVerb,
) -> StorageError<NodeId> {
    StorageIOError::new(subject, verb, AnyError::new(&e)).into()
}

/// The Raft log and vote of one node, persisted in a directory.
///
/// Cheap to clone: clones share the same state, which is how openraft gets its `LogReader`.
#[derive(Clone)]
pub struct FileLogStore {
    inner: Arc<Mutex<LogInner>>,
    /// Where retried writes are reported.
    log: Logger,
}

/// How long a failed storage write waits before it is tried again.
const STORAGE_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// What `open` found, for the start-up log line and for tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    /// Bytes cut off the end of `raft.log` because the tail was torn or corrupt.
    pub truncated_bytes: u64,
    /// Entries recovered.
    pub entries: usize,
    /// Whether a vote was found: a node that voted before may have acknowledged a leader's
    /// heartbeat just before it went down, so it waits out that leader's lease before starting.
    pub has_vote: bool,
}

/// The state behind the lock: the open file and the in-memory copy of everything in it.
struct LogInner {
    dir: PathBuf,
    /// `raft.log`, opened for append so every write lands at the current end.
    file: File,
    /// Length of `raft.log` as far as we have written and synced it.
    file_len: u64,
    /// Live entries by index, each with the file offset of its record.
    entries: BTreeMap<u64, (Entry<TypeConfig>, u64)>,
    /// The durable purge point.
    last_purged: Option<LogId<NodeId>>,
    /// The durable vote.
    vote: Option<Vote<NodeId>>,
    /// The durable committed log id.
    committed: Option<LogId<NodeId>>,
    /// Set when a failed write could not be rolled back; every later call fails.
    broken: Option<String>,
}

impl FileLogStore {
    /// Opens (or creates) the log in `dir`, recovering from a crash: a bad record and all that
    /// follows it is truncated away, since anything after the last good record can only be
    /// the part of a write that `append` never acknowledged.
    pub fn open(dir: impl AsRef<Path>, log: &Logger) -> Result<(Self, OpenReport), StoreError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir)
            .map_err(|e| StoreError::io(format!("create {}", dir.display()), e))?;
        let last_purged: Option<LogId<NodeId>> = read_atomic(&dir, PURGED_FILE)?;
        let vote: Option<Vote<NodeId>> = read_atomic(&dir, VOTE_FILE)?;
        let committed = read_atomic(&dir, COMMITTED_FILE)?;

        let path = dir.join(LOG_FILE);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| StoreError::io(format!("open {}", path.display()), e))?;
        // Make a newly created log file's directory entry durable.
        sync_dir(&dir)?;
        let bytes =
            fs::read(&path).map_err(|e| StoreError::io(format!("read {}", path.display()), e))?;

        let mut entries = BTreeMap::new();
        let mut offset = 0usize;
        let mut prev: Option<u64> = None;
        let purged_index = last_purged.map(|l| l.index);
        loop {
            match decode::<Entry<TypeConfig>>(&bytes[offset..]) {
                Decoded::Record(entry, n) => {
                    let index = entry.log_id.index;
                    if prev.is_some_and(|p| index <= p) {
                        return Err(StoreError::Corrupt(format!(
                            "{}: index {index} after {prev:?} at offset {offset}",
                            path.display()
                        )));
                    }
                    prev = Some(index);
                    if purged_index.is_none_or(|p| index > p) {
                        entries.insert(index, (entry, offset as u64));
                    }
                    offset += n;
                }
                Decoded::End => break,
                Decoded::Bad(why) => {
                    warn!(log, "cutting a torn or corrupt tail off the Raft log";
                        "file" => %path.display(), "offset" => offset, "why" => why,
                        "bytes" => bytes.len() - offset);
                    file.set_len(offset as u64)
                        .and_then(|_| file.sync_data())
                        .map_err(|e| StoreError::io(format!("truncate {}", path.display()), e))?;
                    break;
                }
            }
        }
        let report = OpenReport {
            truncated_bytes: (bytes.len() - offset) as u64,
            entries: entries.len(),
            has_vote: vote.is_some(),
        };
        let inner = LogInner {
            dir,
            file,
            file_len: offset as u64,
            entries,
            last_purged,
            vote,
            committed,
            broken: None,
        };
        Ok((
            FileLogStore {
                inner: Arc::new(Mutex::new(inner)),
                log: log.clone(),
            },
            report,
        ))
    }

    /// Runs a file operation off the async threads (it fsyncs) while holding the lock. An
    /// I/O error (a full disk, a file size limit) is retried until the operation succeeds,
    /// rather than returned: openraft stops for good on a storage error, and a member whose
    /// disk fills up must come back when space is freed. Meanwhile this member's Raft waits
    /// (it acknowledges and votes for nothing, as if cut off), which is safe: nothing is
    /// reported durable before it is. A failed write is rolled back before it is retried; a
    /// store that cannot roll back is broken, and that is returned.
    async fn blocking<R, F>(&self, mut f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnMut(&mut LogInner) -> Result<R, StoreError> + Send + 'static,
    {
        let inner = self.inner.clone();
        let log = self.log.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = inner.lock().map_err(|_| StoreError::Poisoned)?;
            let mut failing = false;
            loop {
                if let Some(why) = &guard.broken {
                    return Err(StoreError::Broken(why.clone()));
                }
                match f(&mut guard) {
                    Err(StoreError::Io { what, source }) => {
                        if !failing {
                            warn!(log, "raft storage write failed; retrying until it succeeds";
                                "what" => &what, "error" => %source);
                            failing = true;
                        }
                        std::thread::sleep(STORAGE_RETRY);
                    }
                    result => return result,
                }
            }
        })
        .await
        .map_err(|e| StoreError::Join(e.to_string()))?
    }

    /// Replaces the small file `name` with `value` (atomically and durably, off the async
    /// threads), then records it in memory with `remember`; errors are openraft's, about
    /// `subject`.
    async fn save_small<T>(
        &self,
        name: &'static str,
        value: T,
        subject: ErrorSubject<NodeId>,
        remember: fn(&mut LogInner, T),
    ) -> Result<(), StorageError<NodeId>>
    where
        T: serde::Serialize + Clone + Send + 'static,
    {
        self.blocking(move |s| {
            write_atomic(&s.dir, name, &value)?;
            remember(s, value.clone());
            Ok(())
        })
        .await
        .map_err(|e| to_storage_error(e, subject, ErrorVerb::Write))
    }

    /// Runs an in-memory read under the lock.
    fn read<R>(&self, f: impl FnOnce(&LogInner) -> R) -> Result<R, StoreError> {
        let guard = self.inner.lock().map_err(|_| StoreError::Poisoned)?;
        Ok(f(&guard))
    }
}

impl LogInner {
    /// Appends entries with one write and one fsync. If the write fails the file is cut back
    /// to its previous length, so a later append cannot land behind garbage that recovery
    /// would treat as the end of the log.
    fn append(&mut self, new: Vec<Entry<TypeConfig>>) -> Result<(), StoreError> {
        let Some(first) = new.first() else {
            return Ok(());
        };
        // openraft truncates conflicts before appending; stay safe if an append overlaps anyway.
        self.truncate_from(first.log_id.index)?;
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(new.len());
        for e in &new {
            offsets.push(self.file_len + buf.len() as u64);
            encode_into(&mut buf, e)?;
        }
        if let Err(e) = self
            .file
            .write_all(&buf)
            .and_then(|_| self.file.sync_data())
        {
            if let Err(e2) = self
                .file
                .set_len(self.file_len)
                .and_then(|_| self.file.sync_data())
            {
                self.broken = Some(format!("append failed ({e}) and rollback failed ({e2})"));
            }
            return Err(StoreError::io("append raft.log", e));
        }
        self.file_len += buf.len() as u64;
        for (e, off) in new.into_iter().zip(offsets) {
            self.entries.insert(e.log_id.index, (e, off));
        }
        Ok(())
    }

    /// Removes entries at and after `index`, on disk first, then in memory.
    fn truncate_from(&mut self, index: u64) -> Result<(), StoreError> {
        let Some((_, (_, offset))) = self.entries.range(index..).next() else {
            return Ok(());
        };
        let offset = *offset;
        self.file
            .set_len(offset)
            .and_then(|_| self.file.sync_data())
            .map_err(|e| StoreError::io("truncate raft.log", e))?;
        self.file_len = offset;
        self.entries.split_off(&index);
        Ok(())
    }

    /// Makes the purge point durable, forgets the entries up to it, and rewrites the file
    /// when the dead prefix is larger than the live part (amortised O(1) per entry).
    fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StoreError> {
        if self.last_purged.is_some_and(|p| p.index >= log_id.index) {
            return Ok(());
        }
        write_atomic(&self.dir, PURGED_FILE, &log_id)?;
        self.last_purged = Some(log_id);
        self.entries = self.entries.split_off(&(log_id.index + 1));
        let dead = self
            .entries
            .values()
            .next()
            .map_or(self.file_len, |(_, off)| *off);
        if dead > 0 && dead >= self.file_len - dead {
            self.rewrite()?;
        }
        Ok(())
    }

    /// Writes the live entries to a new file and renames it over `raft.log`.
    fn rewrite(&mut self) -> Result<(), StoreError> {
        let tmp = self.dir.join(format!("{LOG_FILE}.tmp"));
        let path = self.dir.join(LOG_FILE);
        let mut buf = Vec::new();
        let mut offsets = Vec::with_capacity(self.entries.len());
        for (index, (e, _)) in &self.entries {
            offsets.push((*index, buf.len() as u64));
            encode_into(&mut buf, e)?;
        }
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| StoreError::io("create raft.log.tmp", e))?;
        f.write_all(&buf)
            .and_then(|_| f.sync_all())
            .map_err(|e| StoreError::io("write raft.log.tmp", e))?;
        fs::rename(&tmp, &path).map_err(|e| StoreError::io("rename raft.log.tmp", e))?;
        sync_dir(&self.dir)?;
        // From here the old handle points at an unlinked file: any failure must stop the store.
        match OpenOptions::new().read(true).append(true).open(&path) {
            Ok(file) => self.file = file,
            Err(e) => {
                self.broken = Some(format!("reopen after rewrite failed: {e}"));
                return Err(StoreError::io("reopen raft.log", e));
            }
        }
        self.file_len = buf.len() as u64;
        for (index, off) in offsets {
            if let Some(slot) = self.entries.get_mut(&index) {
                slot.1 = off;
            }
        }
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for FileLogStore {
    /// Entries in `range`, from memory: reads never touch the disk.
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.read(|s| {
            s.entries
                .range(range)
                .map(|(_, (e, _))| e.clone())
                .collect()
        })
        .map_err(|e| to_storage_error(e, ErrorSubject::Logs, ErrorVerb::Read))
    }
}

impl RaftLogStorage<TypeConfig> for FileLogStore {
    /// A clone shares the same log, so the reader always sees what was appended.
    type LogReader = FileLogStore;

    /// The last log id is the last entry's, or the purge point when the log is empty (the
    /// storage suite requires it).
    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.read(|s| {
            let last = s
                .entries
                .values()
                .next_back()
                .map(|(e, _)| e.log_id)
                .or(s.last_purged);
            LogState {
                last_purged_log_id: s.last_purged,
                last_log_id: last,
            }
        })
        .map_err(|e| to_storage_error(e, ErrorSubject::Logs, ErrorVerb::Read))
    }

    /// A clone of this store (shared state).
    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    /// Durable before it returns: a vote forgotten in a crash could be cast twice in a term.
    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.save_small(VOTE_FILE, *vote, ErrorSubject::Vote, |s, v| {
            s.vote = Some(v)
        })
        .await
    }

    /// The vote read at open, or saved since.
    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        self.read(|s| s.vote)
            .map_err(|e| to_storage_error(e, ErrorSubject::Vote, ErrorVerb::Read))
    }

    /// Persisting `committed` lets a restarted node re-apply its committed entries at once,
    /// before it hears from a leader, so its cluster state is current immediately.
    async fn save_committed(
        &mut self,
        committed: Option<LogId<NodeId>>,
    ) -> Result<(), StorageError<NodeId>> {
        let unchanged = self
            .read(|s| s.committed == committed)
            .map_err(|e| to_storage_error(e, ErrorSubject::Store, ErrorVerb::Read))?;
        if unchanged {
            return Ok(());
        }
        self.save_small(COMMITTED_FILE, committed, ErrorSubject::Store, |s, c| {
            s.committed = c
        })
        .await
    }

    /// The committed log id read at open, or saved since.
    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        self.read(|s| s.committed)
            .map_err(|e| to_storage_error(e, ErrorSubject::Store, ErrorVerb::Read))
    }

    /// Writes and fsyncs the batch, then tells openraft it is durable (only then may the
    /// leader count this node towards a commit).
    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        match self.blocking(move |s| s.append(entries.clone())).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(io::Error::other(e.to_string())));
                Err(to_storage_error(e, ErrorSubject::Logs, ErrorVerb::Write))
            }
        }
    }

    /// Removes a conflicting suffix (a deposed leader's uncommitted entries), on disk first.
    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.blocking(move |s| s.truncate_from(log_id.index))
            .await
            .map_err(|e| to_storage_error(e, ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }

    /// Forgets entries covered by a snapshot; the purge point is made durable first.
    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.blocking(move |s| s.purge(log_id))
            .await
            .map_err(|e| to_storage_error(e, ErrorSubject::Log(log_id), ErrorVerb::Delete))
    }
}
