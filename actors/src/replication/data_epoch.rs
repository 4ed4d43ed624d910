//! The epoch a node's data belongs to: the term of the primary whose history it holds.
//!
//! In a failover cluster, a node's data position is `(epoch, durable offset)`, compared as
//! Raft compares logs (last term, then last index): the consensus layer refuses its vote to a
//! candidate whose position is behind the voter's, so a node missing data another holds is
//! never elected over it (docs/replication.md, "Failover"). For that comparison to be safe
//! after a crash, the epoch is made durable *before* any data of that epoch: a replica records
//! a new primary's epoch before it applies the primary's first mutation, a promoted node
//! before it accepts its first write. Recorded in the data directory's `EPOCH` file.
//!
//! A node outside a failover cluster keeps epoch 0 and no file.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use crate::storage::data_dir::{DataDir, StorageError};

/// The file in the data directory that holds the epoch.
const FILE: &str = "EPOCH";

/// The durable epoch of this node's data, shared by the follower (which raises it), the
/// coordinator (which raises it on promotion) and the vote check (which reads it).
#[derive(Debug, Clone, Default)]
pub struct DataEpoch {
    /// The epoch, once durable.
    epoch: Arc<AtomicU64>,
    /// Where it is recorded; `None` outside a cluster (and in tests), where it stays 0.
    dir: Option<Arc<DataDir>>,
    /// Serialises raises, so two never write the file at once.
    raising: Arc<std::sync::Mutex<()>>,
    /// The data is disposable (a full resync under way or cut short): it then counts as
    /// holding nothing of any epoch.
    disposable: Arc<AtomicBool>,
}

impl DataEpoch {
    /// The epoch recorded in `dir` (0 when there is none yet).
    pub fn load(dir: Arc<DataDir>) -> Result<DataEpoch, StorageError> {
        let path = dir.path().join(FILE);
        let epoch = match std::fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse()
                .map_err(|_| StorageError::BadStateFile {
                    path: path.clone(),
                    detail: format!("holds {text:?}, not an epoch number"),
                })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(StorageError::io("read", &path)(e)),
        };
        Ok(DataEpoch {
            epoch: Arc::new(AtomicU64::new(epoch)),
            dir: Some(dir),
            raising: Arc::default(),
            disposable: Arc::default(),
        })
    }

    /// The epoch this node's durable data belongs to.
    pub fn get(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Whether the data is disposable now (see [`DataEpoch::set_disposable`]).
    pub fn disposable(&self) -> bool {
        self.disposable.load(Ordering::Acquire)
    }

    /// Mark the data disposable (a full resync began, or `RESYNC`) or whole again (a full
    /// resync is installed and durable).
    pub fn set_disposable(&self, disposable: bool) {
        self.disposable.store(disposable, Ordering::Release);
    }

    /// Record that the data now belongs to `epoch` (no-op unless it is newer), durably before
    /// this returns. Blocks on the disk: call it off the Store's thread
    /// (`tokio::task::spawn_blocking`).
    pub fn raise(&self, epoch: u64) -> Result<(), StorageError> {
        let _turn = self
            .raising
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if epoch <= self.get() {
            return Ok(());
        }
        if let Some(dir) = &self.dir {
            dir.write_atomic(FILE, format!("{epoch}\n").as_bytes())?;
        }
        self.epoch.store(epoch, Ordering::Release);
        Ok(())
    }

    /// [`DataEpoch::raise`] on the blocking pool, for async callers.
    pub async fn raise_async(&self, epoch: u64) -> Result<(), String> {
        if epoch <= self.get() {
            return Ok(());
        }
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.raise(epoch))
            .await
            .map_err(|e| format!("recording the epoch failed: {e}"))?
            .map_err(|e| format!("recording the epoch failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_survives_a_restart_and_never_goes_back() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = Arc::new(DataDir::open(tmp.path()).unwrap());
        let epoch = DataEpoch::load(dir.clone()).unwrap();
        assert_eq!(epoch.get(), 0);
        epoch.raise(3).unwrap();
        epoch.raise(2).unwrap();
        assert_eq!(epoch.get(), 3);
        assert_eq!(DataEpoch::load(dir.clone()).unwrap().get(), 3);
        std::fs::write(tmp.path().join(FILE), "three\n").unwrap();
        assert!(
            DataEpoch::load(dir).is_err(),
            "a damaged EPOCH is an error, not epoch 0"
        );
    }
}
