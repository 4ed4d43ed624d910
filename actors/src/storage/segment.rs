//! One log file being appended to.
//!
//! A failed append is rolled back (the file is cut back to its last good length), so a later
//! retry never leaves half a record in the middle of the log.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::storage::data_dir::{DataDir, StorageError};
use crate::store::Seq;

/// The first bytes of every log file: format name and version.
pub const LOG_MAGIC: &[u8; 8] = b"KVLOG\x00\x00\x01";

/// A log file open for appending.
#[derive(Debug)]
pub struct Segment {
    /// The open file, positioned at `len`: the next append goes there. Shared with the fsync
    /// thread (`syncer.rs`), which syncs it while the writer goes on appending.
    file: Arc<File>,
    /// Where the file is, for error messages and for the writer's list of logs.
    path: PathBuf,
    /// The first mutation the log holds (or will hold): the number in its name.
    first_seq: Seq,
    /// Bytes known to be in the file.
    len: u64,
}

impl Segment {
    /// Create the log file that starts at `first_seq`, with its header on disk.
    pub fn create(dir: &DataDir, first_seq: Seq) -> Result<Segment, StorageError> {
        let path = dir.log_path(first_seq);
        // Never clobber an existing log: a name collision is a bug to report, not data to lose.
        let mut file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(StorageError::io("create", &path))?;
        file.write_all(LOG_MAGIC)
            .and_then(|()| file.sync_all())
            .map_err(StorageError::io("write", &path))?;
        dir.sync()?;
        Ok(Segment {
            file: Arc::new(file),
            path,
            first_seq,
            len: LOG_MAGIC.len() as u64,
        })
    }

    /// Reopen an existing log file whose first `len` bytes are valid, cutting off anything after.
    pub fn reopen(path: &Path, first_seq: Seq, len: u64) -> Result<Segment, StorageError> {
        let file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(StorageError::io("open", path))?;
        let mut segment = Segment {
            file: Arc::new(file),
            path: path.to_path_buf(),
            first_seq,
            len,
        };
        segment
            .truncate()
            .map_err(StorageError::io("truncate", path))?;
        Ok(segment)
    }

    /// Where the file is: the writer names it in errors, and removes it once a snapshot covers
    /// it.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first mutation the log holds (or will hold): the number in its name.
    pub fn first_seq(&self) -> Seq {
        self.first_seq
    }

    /// Bytes in the file, its header included, as far as appends succeeded.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the log holds no record yet, only its header: nothing a snapshot could cover.
    pub fn is_empty(&self) -> bool {
        self.len <= LOG_MAGIC.len() as u64
    }

    /// Append `bytes` at the end; on failure, cut the file back so nothing partial remains.
    pub fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        match (&*self.file).write_all(bytes) {
            Ok(()) => {
                self.len += bytes.len() as u64;
                Ok(())
            }
            Err(error) => {
                // If this fails too, the writer cuts the file back before it writes again
                // (`Writer::try_recover`, through `rollback_to`).
                let _ = self.truncate();
                Err(error)
            }
        }
    }

    /// Force everything appended so far to disk.
    pub fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// The file, for the fsync thread: syncing it covers every append made before the sync
    /// started, whatever is appended while it runs.
    pub fn shared_file(&self) -> Arc<File> {
        self.file.clone()
    }

    /// Cut the file to `len` bytes: everything after that was never acknowledged as written.
    pub fn rollback_to(&mut self, len: u64) -> io::Result<()> {
        self.len = len.min(self.len);
        self.truncate()
    }

    fn truncate(&mut self) -> io::Result<()> {
        use std::io::Seek;
        self.file.set_len(self.len)?;
        (&*self.file).seek(io::SeekFrom::Start(self.len))?;
        Ok(())
    }
}
