//! Start-up recovery: rebuild the keyspace from the newest snapshot and the logs after it.
//!
//! A record cut short or damaged at the very end of the newest log is what a crash in the
//! middle of an append leaves behind: it is cut away with a warning naming the file and the
//! offset. Damage anywhere else stops start-up with an error naming the file and the offset,
//! unless the operator accepts the loss with `--truncate-corrupt-tail`.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use slog::{info, warn, Logger};

use crate::replication::fingerprint::WINDOW;
use crate::storage::data_dir::{DataDir, FileKind, StorageError};
use crate::storage::record::{self, Entry, RecordError, RecordReader};
use crate::storage::segment::{Segment, LOG_MAGIC};
use crate::storage::snapshot_file;
use crate::store::keyspace::Keyspace;
use crate::store::{Change, Mutation, Seq};

/// Choices the operator makes about recovery.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecoveryOptions {
    /// Accept losing everything from the first damaged record on, wherever it is.
    pub truncate_corrupt_tail: bool,
}

/// A log file that recovery kept, with the length of its valid part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// Where the log is.
    pub path: PathBuf,
    /// The first mutation it holds: the number in its name.
    pub first_seq: Seq,
    /// The length of its valid part, in bytes: appending continues there.
    pub len: u64,
}

/// The state rebuilt from a data directory.
pub struct Recovered {
    /// The data as of `last_seq`, for the Store to start from.
    pub keyspace: Keyspace,
    /// The last mutation applied; the next one gets `last_seq + 1`.
    pub last_seq: Seq,
    /// The snapshot loaded (0 when there was none).
    pub snapshot_seq: Seq,
    /// Its size in bytes: the writer's starting point for when to compact next.
    pub snapshot_bytes: u64,
    /// The logs after the snapshot, oldest first; appends continue in the last one.
    pub logs: Vec<LogFile>,
    /// The last mutations replayed from the logs (at most `fingerprint::WINDOW`), oldest
    /// first: a replica fingerprints them for its primary to check.
    pub tail: Vec<Mutation>,
}

impl Recovered {
    /// The log to append to after what was recovered: the newest log, or a new one.
    pub fn continue_log(&self, dir: &DataDir) -> Result<Segment, StorageError> {
        match self.logs.last() {
            Some(last) => Segment::reopen(&last.path, last.first_seq, last.len),
            None => Segment::create(dir, self.last_seq + 1),
        }
    }
}

/// How often progress is logged while loading a large data directory.
const PROGRESS_EVERY: Duration = Duration::from_secs(2);

/// Reports progress through a large recovery now and then.
struct Progress<'a> {
    /// Where progress is reported.
    log: &'a Logger,
    /// Bytes of the newest snapshot and of every log: what 100% stands for.
    total: u64,
    /// Bytes of the files already read, before the one being read now.
    done_before: u64,
    /// When progress was last reported: the next report waits [`PROGRESS_EVERY`].
    last: Instant,
}

impl Progress<'_> {
    fn report(&mut self, done_in_file: u64, keys: usize) {
        if self.last.elapsed() >= PROGRESS_EVERY {
            self.last = Instant::now();
            let done = self.done_before + done_in_file;
            let percent = done.saturating_mul(100) / self.total.max(1);
            info!(self.log, "recovering"; "percent" => percent, "keys" => keys);
        }
    }
}

/// Rebuild the data of `dir`.
pub fn recover(
    dir: &DataDir,
    options: RecoveryOptions,
    log: &Logger,
) -> Result<Recovered, StorageError> {
    let started = Instant::now();
    let files = dir.files()?;
    let mut snapshots = Vec::new();
    let mut logs = Vec::new();
    for (kind, path) in files {
        match kind {
            FileKind::Snapshot(seq) => snapshots.push((seq, path)),
            FileKind::Log(first_seq) => logs.push((first_seq, path)),
            FileKind::Temporary => {
                info!(log, "removing unfinished snapshot"; "file" => %path.display());
                fs::remove_file(&path).map_err(StorageError::io("remove", &path))?;
            }
        }
    }
    let total = snapshots.last().map_or(0, |(_, p)| file_len(p))
        + logs.iter().map(|(_, p)| file_len(p)).sum::<u64>();
    let mut progress = Progress {
        log,
        total,
        done_before: 0,
        last: Instant::now(),
    };

    let mut keyspace = Keyspace::new();
    let (snapshot_seq, snapshot_bytes) = match snapshots.last() {
        Some((seq, path)) => {
            snapshot_file::load(path, *seq, &mut keyspace, |done, keys| {
                progress.report(done, keys)
            })?;
            (*seq, file_len(path))
        }
        None => (0, 0),
    };
    progress.done_before = snapshot_bytes;

    // A log whose successor starts at or before the snapshot's next mutation is covered.
    let covered = |i: usize| {
        logs.get(i + 1)
            .is_some_and(|(next, _)| *next <= snapshot_seq + 1)
    };
    let mut obsolete: Vec<PathBuf> = (0..logs.len())
        .filter(|&i| covered(i))
        .map(|i| logs[i].1.clone())
        .collect();
    obsolete.extend(snapshots.iter().rev().skip(1).map(|(_, p)| p.clone()));
    let live: Vec<(Seq, PathBuf)> = (0..logs.len())
        .filter(|&i| !covered(i))
        .map(|i| logs[i].clone())
        .collect();

    let mut last_seq = snapshot_seq;
    let mut kept = Vec::new();
    let mut tail = VecDeque::new();
    for (index, (first_seq, path)) in live.iter().enumerate() {
        let is_last = index + 1 == live.len();
        let replay = replay_log(
            path,
            is_last,
            options,
            &mut keyspace,
            &mut last_seq,
            &mut tail,
            log,
            &mut progress,
        )?;
        match replay {
            Replayed::Kept(len) => kept.push(LogFile {
                path: path.clone(),
                first_seq: *first_seq,
                len,
            }),
            Replayed::Empty => {
                fs::remove_file(path).map_err(StorageError::io("remove", path))?;
            }
            Replayed::CutShort(len) => {
                // Everything after the cut cannot follow it: set those files aside.
                kept.push(LogFile {
                    path: path.clone(),
                    first_seq: *first_seq,
                    len,
                });
                for (_, later) in &live[index + 1..] {
                    let aside = later.with_extension("kvl.discarded");
                    warn!(log, "setting aside a log that follows a truncated one";
                        "file" => %later.display(), "renamed_to" => %aside.display());
                    fs::rename(later, &aside).map_err(StorageError::io("rename", later))?;
                }
                break;
            }
        }
        progress.done_before += file_len(path);
    }

    for path in obsolete {
        info!(log, "removing file covered by the snapshot"; "file" => %path.display());
        fs::remove_file(&path).map_err(StorageError::io("remove", &path))?;
    }
    dir.sync()?;
    info!(log, "recovered data";
        "keys" => keyspace.len(), "last_seq" => last_seq, "snapshot_seq" => snapshot_seq,
        "logs" => kept.len(), "bytes" => total,
        "duration_ms" => started.elapsed().as_millis() as u64);
    Ok(Recovered {
        keyspace,
        last_seq,
        snapshot_seq,
        snapshot_bytes,
        logs: kept,
        tail: tail.into(),
    })
}

/// What replaying one log file came to.
enum Replayed {
    /// Every record was good (possibly after cutting a torn tail); the file's valid length.
    Kept(u64),
    /// The file holds no header: it was created just before a crash.
    Empty,
    /// Damage before the end was cut away on the operator's say-so; the valid length.
    CutShort(u64),
}

// Its arguments are the replay's state, threaded through every log in turn.
#[allow(clippy::too_many_arguments)]
fn replay_log(
    path: &Path,
    is_last: bool,
    options: RecoveryOptions,
    keyspace: &mut Keyspace,
    last_seq: &mut Seq,
    tail: &mut VecDeque<Mutation>,
    log: &Logger,
    progress: &mut Progress,
) -> Result<Replayed, StorageError> {
    let file = File::open(path).map_err(StorageError::io("open", path))?;
    let len = file
        .metadata()
        .map_err(StorageError::io("read", path))?
        .len();
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 8];
    if len < LOG_MAGIC.len() as u64 {
        if is_last {
            warn!(log, "removing a log file cut short before its header"; "file" => %path.display());
            return Ok(Replayed::Empty);
        }
        return Err(StorageError::NotALog {
            path: path.to_path_buf(),
        });
    }
    input
        .read_exact(&mut magic)
        .map_err(StorageError::io("read", path))?;
    if &magic != LOG_MAGIC {
        return Err(StorageError::NotALog {
            path: path.to_path_buf(),
        });
    }
    let mut reader = RecordReader::new(input, LOG_MAGIC.len() as u64);
    let mut applied = 0u64;
    // An atomic group read in part (its mutations so far, and where its first record starts):
    // applied only once its last mutation is read, so a log cut inside it keeps none of it.
    let mut group: Vec<Mutation> = Vec::new();
    let mut group_at = reader.offset();
    loop {
        let at = reader.offset();
        let error = match reader.read_next() {
            Ok(Some(Entry::Mutation(mutation))) => {
                let next = last_seq.saturating_add(group.len() as Seq + 1);
                if mutation.seq > next {
                    return Err(StorageError::Gap {
                        path: path.to_path_buf(),
                        expected_after: next - 1,
                        found: mutation.seq,
                    });
                }
                if mutation.seq == next {
                    if group.is_empty() {
                        group_at = at;
                    }
                    let last_of_group = !mutation.more;
                    group.push(mutation);
                    if last_of_group {
                        for mutation in group.drain(..) {
                            apply(mutation, keyspace, last_seq, tail);
                        }
                    }
                }
                applied += 1;
                if applied.is_multiple_of(65_536) {
                    progress.report(reader.offset(), keyspace.len());
                }
                continue;
            }
            Ok(Some(Entry::End { .. } | Entry::Heartbeat { .. })) => {
                RecordError::Malformed("a marker record in a log")
            }
            Ok(None) if group.is_empty() => return Ok(Replayed::Kept(reader.offset())),
            // The file ends inside a group: a crash while it was written (it never ends one).
            Ok(None) => RecordError::Truncated,
            Err(Ok(error)) => error,
            Err(Err(error)) => return Err(StorageError::io("read", path)(error)),
        };
        let offset = reader.offset();
        // Back to the start of a group the damage cut into: none of it is kept.
        let cut = if group.is_empty() { offset } else { group_at };
        let torn = is_last && is_torn_tail(path, offset, len, &error)?;
        if torn || options.truncate_corrupt_tail {
            warn!(log, "truncating the log at a damaged record";
                "file" => %path.display(), "offset" => cut, "reason" => %error,
                "discarded_bytes" => len - cut, "group_mutations_discarded" => group.len(),
                "cause" => if torn { "crash during an append" } else { "--truncate-corrupt-tail" });
            truncate(path, cut)?;
            return Ok(if torn {
                Replayed::Kept(cut)
            } else {
                Replayed::CutShort(cut)
            });
        }
        // The offset named is where `--truncate-corrupt-tail` would cut (found by the
        // `log_recovery` fuzz target: it named the damage inside a group, past the cut).
        let detail = match cut == offset {
            true => error.to_string(),
            false => format!(
                "{error} at byte offset {offset}, in an atomic group that starts here \
                 and is kept whole or not at all"
            ),
        };
        return Err(StorageError::Corrupt {
            path: path.to_path_buf(),
            offset: cut,
            detail,
        });
    }
}

/// Apply one recovered mutation: to the data, the history window, and the last sequence number.
fn apply(
    mutation: Mutation,
    keyspace: &mut Keyspace,
    last_seq: &mut Seq,
    tail: &mut VecDeque<Mutation>,
) {
    if tail.len() == WINDOW {
        tail.pop_front();
    }
    tail.push_back(mutation.clone());
    *last_seq = mutation.seq;
    match mutation.change {
        Change::Put(pair) => {
            keyspace.insert(pair);
        }
        Change::Del { key } => {
            keyspace.remove(&key);
        }
        // A FLUSHALL: everything before it is gone; what follows builds anew.
        Change::Clear => keyspace.take().drop_in_background(),
    }
}

/// Whether damage at `offset` is what a crash during an append leaves: the record runs past
/// the end of the file, or no valid record follows the damage. A crash can leave a partly
/// written header, zeros where the file system allocated space it never filled, or pages of a
/// write-back that were only partly written, but never a whole valid record *after* the torn
/// one; damage followed by good records is corruption.
fn is_torn_tail(
    path: &Path,
    offset: u64,
    len: u64,
    error: &RecordError,
) -> Result<bool, StorageError> {
    match error {
        RecordError::Truncated => return Ok(true),
        RecordError::Malformed(_) => return Ok(false),
        RecordError::BadHeader | RecordError::BadBody { .. } => {}
    }
    if offset + 1 >= len {
        return Ok(true);
    }
    let mut file = File::open(path).map_err(StorageError::io("open", path))?;
    file.seek(SeekFrom::Start(offset + 1))
        .map_err(StorageError::io("read", path))?;
    let mut rest = Vec::new();
    file.read_to_end(&mut rest)
        .map_err(StorageError::io("read", path))?;
    let valid_record_follows = (0..rest.len()).any(|at| {
        matches!(
            record::decode(&rest[at..], record::MAX_BODY),
            Ok(Some((Entry::Mutation(_), _)))
        )
    });
    Ok(!valid_record_follows)
}

fn truncate(path: &Path, len: u64) -> Result<(), StorageError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(StorageError::io("open", path))?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(StorageError::io("truncate", path))
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map_or(0, |m| m.len())
}
