//! Snapshot files: every key and value as of one sequence number.
//!
//! ```text
//! snapshot := "KVSNAP\0\1" | record* | end record
//! ```
//! Each key is a `Put` record carrying the snapshot's sequence number; the end record carries
//! the count of records before it, so a snapshot cut short is never mistaken for a small one.
//! A snapshot is written to a `.tmp` file, fsynced, renamed into place and the directory
//! fsynced, so a crash leaves either the old snapshot or the new one, never half of one.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::storage::data_dir::{DataDir, StorageError};
use crate::storage::record::{self, Entry, RecordReader};
use crate::store::keyspace::{Keyspace, Snapshot};
use crate::store::{Change, Seq};

/// The first bytes of every snapshot file: format name and version.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"KVSNAP\x00\x01";

/// Which data a directory holds: a counter bumped whenever the data is replaced wholesale (a
/// replica's full resync). A snapshot taken in one generation may go into place only while
/// that generation lasts, and the check and the rename happen under one lock, so that a
/// replacement can never fall between them and leave old data next to new.
#[derive(Debug, Default)]
pub struct Generation(Mutex<u64>);

impl Generation {
    fn lock(&self) -> MutexGuard<'_, u64> {
        // A panic elsewhere while holding it leaves a plain counter behind, still valid.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The current generation.
    pub fn current(&self) -> u64 {
        *self.lock()
    }

    /// Start a new generation: snapshots of earlier ones will not go into place.
    pub fn bump(&self) {
        *self.lock() += 1;
    }
}

/// Write `data` as the snapshot for `seq`; answers its path and size in bytes.
///
/// With `taken_in`, the snapshot goes into place only if that generation is still current
/// when it is renamed: a compaction whose data was replaced meanwhile (a replica's full
/// resync) must not put old data back.
pub fn write(
    dir: &DataDir,
    data: &Snapshot,
    seq: Seq,
    taken_in: Option<(&Generation, u64)>,
) -> Result<(PathBuf, u64), StorageError> {
    static WRITES: AtomicU64 = AtomicU64::new(0);
    let path = dir.snapshot_path(seq);
    // A name of its own, so two writers of the same snapshot never share a temporary file.
    let unique = WRITES.fetch_add(1, Ordering::Relaxed);
    let tmp = path.with_extension(format!("kvs.{}-{unique}.tmp", std::process::id()));
    let size = write_tmp(&tmp, data, seq).map_err(StorageError::io("write snapshot", &tmp))?;
    {
        let current = taken_in.map(|(generation, taken)| (generation.lock(), taken));
        if let Some((current, taken)) = &current {
            if **current != *taken {
                let _ = fs::remove_file(&tmp);
                return Err(StorageError::Superseded);
            }
        }
        fs::rename(&tmp, &path).map_err(StorageError::io("rename snapshot", &tmp))?;
    }
    dir.sync()?;
    Ok((path, size))
}

fn write_tmp(tmp: &Path, data: &Snapshot, seq: Seq) -> io::Result<u64> {
    let file = File::create(tmp)?;
    let mut out = BufWriter::with_capacity(1 << 20, file);
    out.write_all(SNAPSHOT_MAGIC)?;
    let mut size = SNAPSHOT_MAGIC.len() as u64;
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut count = 0u64;
    for pair in data.iter() {
        record::encode_pair(seq, pair, &mut buf);
        count += 1;
        if buf.len() >= 64 * 1024 {
            out.write_all(&buf)?;
            size += buf.len() as u64;
            buf.clear();
        }
    }
    record::encode_end(seq, count, &mut buf);
    out.write_all(&buf)?;
    size += buf.len() as u64;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(size)
}

/// Load the snapshot at `path` (for sequence number `seq`) into `keyspace`, calling
/// `progress` with the bytes read so far now and then.
pub fn load(
    path: &Path,
    seq: Seq,
    keyspace: &mut Keyspace,
    mut progress: impl FnMut(u64, usize),
) -> Result<(), StorageError> {
    let bad = |detail: String| StorageError::BadSnapshot {
        path: path.to_path_buf(),
        detail,
    };
    let file = File::open(path).map_err(StorageError::io("open", path))?;
    let mut input = BufReader::with_capacity(1 << 20, file);
    let mut magic = [0u8; 8];
    input
        .read_exact(&mut magic)
        .map_err(|_| bad("no header".into()))?;
    if &magic != SNAPSHOT_MAGIC {
        return Err(bad("not a kvstore snapshot".into()));
    }
    let mut reader = RecordReader::new(input, SNAPSHOT_MAGIC.len() as u64);
    let mut count = 0u64;
    loop {
        let entry = match reader.read_next() {
            Ok(Some(entry)) => entry,
            Ok(None) => return Err(bad("it ends before its end marker".into())),
            Err(Ok(error)) => return Err(bad(format!("{error} at offset {}", reader.offset()))),
            Err(Err(error)) => return Err(StorageError::io("read", path)(error)),
        };
        match entry {
            Entry::Mutation(mutation) if mutation.seq == seq => match mutation.change {
                Change::Put(pair) => {
                    keyspace.insert(pair);
                }
                Change::Del { .. } | Change::Clear => {
                    return Err(bad("a delete in a snapshot".into()))
                }
            },
            Entry::Mutation(mutation) => {
                return Err(bad(format!(
                    "record for mutation {} in the snapshot of {seq}",
                    mutation.seq
                )))
            }
            Entry::Heartbeat { .. } => return Err(bad("a heartbeat in a snapshot".into())),
            Entry::End {
                seq: end_seq,
                count: expected,
            } => {
                if end_seq != seq || expected != count {
                    return Err(bad(format!(
                        "end marker says {expected} keys at {end_seq}, found {count} at {seq}"
                    )));
                }
                progress(reader.offset(), keyspace.len());
                return Ok(());
            }
        }
        count += 1;
        if count.is_multiple_of(65_536) {
            progress(reader.offset(), keyspace.len());
        }
    }
}
