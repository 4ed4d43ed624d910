//! A node's data directory: its files, their names, and the lock that keeps a second node out.
//!
//! ```text
//! LOCK                              held (flock) by the node using the directory
//! snapshot-<seq>.kvs                every key as of mutation <seq>
//! log-<first seq>.kvl               mutations from <first seq> on, appended in order
//! *.tmp                             a snapshot being written; removed at start-up
//! ```
//!
//! Sequence numbers in file names are zero-padded to 20 digits so names sort in history order.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::store::Seq;

/// Everything that can go wrong with the files of a data directory. Each message names the
/// file and says what the operator can do.
#[derive(Debug, Error)]
pub enum StorageError {
    /// A file operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done (`open`, `rename snapshot`, ...), as the message says it.
        action: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Another process holds the directory's `LOCK`: two nodes must never share their data.
    #[error(
        "data directory {} is in use by another kvnode process (its LOCK file is held); \
         stop that node or choose another --data-dir",
        path.display()
    )]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// A damaged record before the end of a log: not what a crash leaves, so start-up stops
    /// rather than guess which data to keep.
    #[error(
        "{}: damaged record at byte offset {offset} ({detail}), before the end of the log; \
         the data after it cannot be trusted. Restore the data directory from a backup or a \
         replica, or restart with --truncate-corrupt-tail to discard everything from this \
         offset on",
        path.display()
    )]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Where the damaged record starts: what `--truncate-corrupt-tail` would cut at.
        offset: u64,
        /// What is wrong with the record.
        detail: String,
    },
    /// A snapshot that does not read back whole. Snapshots go into place only once complete,
    /// so this is damage, not a crash.
    #[error(
        "{}: damaged snapshot ({detail}); restore the data directory from a backup or a replica",
        path.display()
    )]
    BadSnapshot {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A small state file (`EPOCH`) that does not read back: such files are replaced
    /// atomically, so this is damage, not a crash.
    #[error(
        "{}: {detail}; the file is replaced atomically, so this is damage: restore the data \
         directory from a backup or a replica",
        path.display()
    )]
    BadStateFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// The mutations of a log do not follow on from the ones recovered before it.
    #[error(
        "{}: mutation {found} follows mutation {expected_after}; a log file is missing",
        path.display()
    )]
    Gap {
        /// The log in which the gap shows.
        path: PathBuf,
        /// The last mutation recovered before it.
        expected_after: Seq,
        /// The mutation the log has next, later than `expected_after + 1`.
        found: Seq,
    },
    /// A file named as a log that does not start with the log header (or, other than the
    /// newest log, is too short to hold one).
    #[error("{}: not a kvstore log file (bad header)", path.display())]
    NotALog {
        /// The file.
        path: PathBuf,
    },
    /// A compaction's snapshot was not put in place: the data was replaced (a replica's full
    /// resync) while it was written, and it would bring the old data back.
    #[error("the snapshot was superseded: the data was replaced while it was written")]
    Superseded,
}

impl StorageError {
    /// A `map_err` helper for I/O on `path`.
    pub fn io(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StorageError {
        let path = path.to_path_buf();
        move |source| StorageError::Io {
            action,
            path,
            source,
        }
    }
}

/// What kind of file a name in the directory is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FileKind {
    /// `snapshot-<seq>.kvs`: every key as of mutation `seq`.
    Snapshot(Seq),
    /// `log-<first seq>.kvl`: the mutations from `first seq` on.
    Log(Seq),
    /// `*.tmp`: a file that was being written and never went into place; removed at start-up.
    Temporary,
}

/// An open, locked data directory.
#[derive(Debug)]
pub struct DataDir {
    /// The directory (`--data-dir`); every file's path is made from it.
    path: PathBuf,
    /// Held for as long as the directory is in use; the lock goes with the file.
    _lock: File,
}

impl DataDir {
    /// Create `path` if needed and lock it, failing at once if another process holds it.
    pub fn open(path: &Path) -> Result<DataDir, StorageError> {
        fs::create_dir_all(path).map_err(StorageError::io("create data directory", path))?;
        let lock_path = path.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(StorageError::io("open", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StorageError::Locked {
                    path: path.to_path_buf(),
                })
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(StorageError::Io {
                    action: "lock",
                    path: lock_path,
                    source,
                })
            }
        }
        Ok(DataDir {
            path: path.to_path_buf(),
            _lock: lock,
        })
    }

    /// The directory itself, for the files named elsewhere (the `REPLICATION` state).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path of the log whose first mutation is `first_seq`.
    pub fn log_path(&self, first_seq: Seq) -> PathBuf {
        self.path.join(format!("log-{first_seq:020}.kvl"))
    }

    /// The path of the snapshot as of mutation `seq`.
    pub fn snapshot_path(&self, seq: Seq) -> PathBuf {
        self.path.join(format!("snapshot-{seq:020}.kvs"))
    }

    /// Every file of ours in the directory: snapshots (oldest first), then logs (oldest first),
    /// then temporary files.
    pub fn files(&self) -> Result<Vec<(FileKind, PathBuf)>, StorageError> {
        let entries = fs::read_dir(&self.path).map_err(StorageError::io("list", &self.path))?;
        let mut files = Vec::new();
        for entry in entries {
            let entry = entry.map_err(StorageError::io("list", &self.path))?;
            let name = entry.file_name();
            if let Some(kind) = name.to_str().and_then(file_kind) {
                files.push((kind, entry.path()));
            }
        }
        files.sort();
        Ok(files)
    }

    /// Replace the small file `name` with `contents`, atomically and durably: written beside
    /// it, synced, renamed over it, and the rename synced, so a crash leaves the old file or
    /// the new one, never a torn mix.
    pub fn write_atomic(&self, name: &str, contents: &[u8]) -> Result<(), StorageError> {
        let path = self.path.join(name);
        let tmp = self.path.join(format!("{name}.tmp"));
        File::create(&tmp)
            .and_then(|mut f| {
                f.write_all(contents)?;
                f.sync_all()
            })
            .map_err(StorageError::io("write", &tmp))?;
        fs::rename(&tmp, &path).map_err(StorageError::io("rename", &tmp))?;
        self.sync()
    }

    /// Make renames and deletions in the directory durable.
    pub fn sync(&self) -> Result<(), StorageError> {
        File::open(&self.path)
            .and_then(|dir| dir.sync_all())
            .map_err(StorageError::io("sync directory", &self.path))
    }
}

fn file_kind(name: &str) -> Option<FileKind> {
    if name.ends_with(".tmp") {
        return Some(FileKind::Temporary);
    }
    let seq = |digits: &str| (digits.len() == 20).then(|| digits.parse().ok()).flatten();
    if let Some(digits) = name
        .strip_prefix("log-")
        .and_then(|n| n.strip_suffix(".kvl"))
    {
        return seq(digits).map(FileKind::Log);
    }
    if let Some(digits) = name
        .strip_prefix("snapshot-")
        .and_then(|n| n.strip_suffix(".kvs"))
    {
        return seq(digits).map(FileKind::Snapshot);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_in_history_order() {
        let dir = std::env::temp_dir().join(format!("kv-datadir-{}", std::process::id()));
        let data = DataDir::open(&dir).unwrap();
        for path in [
            data.log_path(11),
            data.snapshot_path(10),
            data.log_path(1),
            dir.join("snapshot-x.kvs.tmp"),
            dir.join("unrelated.txt"),
        ] {
            fs::write(path, b"").unwrap();
        }
        let kinds: Vec<FileKind> = data.files().unwrap().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            kinds,
            vec![
                FileKind::Snapshot(10),
                FileKind::Log(1),
                FileKind::Log(11),
                FileKind::Temporary
            ]
        );
        assert!(matches!(
            DataDir::open(&dir),
            Err(StorageError::Locked { .. })
        ));
        drop(data);
        assert!(DataDir::open(&dir).is_ok(), "the lock goes with the node");
        fs::remove_dir_all(dir).unwrap();
    }
}
