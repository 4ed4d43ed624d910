//! The replication id: which history a node's data belongs to.
//!
//! A primary's id is random. It is kept across a clean restart (shutdown wrote `clean` with
//! the offset reached, and recovery reached exactly that offset), and replaced after anything
//! else: after a crash the primary may have lost a tail of mutations a replica already has, and
//! reusing its offsets under the same id would let that replica resume on a different history.
//! A replica records the id of the primary whose data it holds (`following`), and only once
//! that data is durable, so a partial resync is offered only for data that really matches.
//!
//! Stored in the data directory as the one-line file `REPLICATION`: `<state> <id> <offset>`.

use std::fs;
use std::io::Write;

use crate::storage::data_dir::{DataDir, StorageError};
use crate::store::Seq;

/// What the `REPLICATION` file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationState {
    /// No id: a fresh directory, or a replica in the middle of a full resync.
    None,
    /// A primary running (or crashed) with this id.
    Dirty {
        /// The id it runs with; replaced at the next start unless a clean shutdown comes first.
        id: String,
    },
    /// A primary that shut down cleanly with this id at this offset.
    Clean {
        /// The id it ran with, kept if it starts again at exactly `offset`.
        id: String,
        /// The last mutation it had applied at shutdown.
        offset: Seq,
    },
    /// A replica whose data is its primary's history `id`.
    Following {
        /// The primary's id, offered back in `POSITION` so that a reconnecting primary can
        /// resume the stream (a partial resync).
        id: String,
    },
}

const FILE: &str = "REPLICATION";

/// A new random id: 40 hex digits, as Redis's, from the operating system's random source.
pub fn generate() -> String {
    let mut bytes = [0u8; 20];
    if getrandom::fill(&mut bytes).is_err() {
        // No random source at all: time and process id still make a clash practically
        // impossible, and an id only has to differ from the ids other histories had.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = nanos ^ (u128::from(std::process::id()) << 64);
        bytes[..16].copy_from_slice(&seed.to_le_bytes());
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Read the state; a missing file is `None`.
pub fn load(dir: &DataDir) -> Result<ReplicationState, StorageError> {
    let path = dir.path().join(FILE);
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(ReplicationState::None),
        Err(e) => return Err(StorageError::io("read", &path)(e)),
    };
    let fields: Vec<&str> = text.split_whitespace().collect();
    let id = |i: usize| fields.get(i).map(|s| s.to_string());
    let state = match fields.first().copied() {
        Some("clean") => match (id(1), fields.get(2).and_then(|s| s.parse().ok())) {
            (Some(id), Some(offset)) => ReplicationState::Clean { id, offset },
            _ => ReplicationState::None,
        },
        Some("dirty") => id(1).map_or(ReplicationState::None, |id| ReplicationState::Dirty { id }),
        Some("following") => id(1).map_or(ReplicationState::None, |id| {
            ReplicationState::Following { id }
        }),
        // An unreadable file only costs a full resync.
        _ => ReplicationState::None,
    };
    Ok(state)
}

/// Write the state durably (temporary file, fsync, rename, fsync the directory).
pub fn save(dir: &DataDir, state: &ReplicationState) -> Result<(), StorageError> {
    let line = match state {
        ReplicationState::None => "none - 0".to_string(),
        ReplicationState::Dirty { id } => format!("dirty {id} 0"),
        ReplicationState::Clean { id, offset } => format!("clean {id} {offset}"),
        ReplicationState::Following { id } => format!("following {id} 0"),
    };
    let path = dir.path().join(FILE);
    let tmp = dir.path().join("REPLICATION.tmp");
    fs::File::create(&tmp)
        .and_then(|mut f| {
            f.write_all(line.as_bytes())?;
            f.write_all(b"\n")?;
            f.sync_all()
        })
        .map_err(StorageError::io("write", &tmp))?;
    fs::rename(&tmp, &path).map_err(StorageError::io("rename", &tmp))?;
    dir.sync()
}

/// The id a primary starting at `last_seq` runs with: the old one after a clean shutdown
/// at exactly that offset, a new one otherwise. Marks it dirty until the next clean shutdown.
pub fn primary_id(dir: &DataDir, last_seq: Seq) -> Result<(String, bool), StorageError> {
    let (id, kept) = match load(dir)? {
        ReplicationState::Clean { id, offset } if offset == last_seq => (id, true),
        _ => (generate(), false),
    };
    save(dir, &ReplicationState::Dirty { id: id.clone() })?;
    Ok((id, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_primary_keeps_its_id_only_after_a_clean_shutdown_at_the_same_offset() {
        let tmp = std::env::temp_dir().join(format!("kv-replid-{}", std::process::id()));
        let dir = DataDir::open(&tmp).unwrap();
        let (first, kept) = primary_id(&dir, 0).unwrap();
        assert!(!kept && first.len() == 40);
        // Crashed (still dirty): a new id.
        let (second, kept) = primary_id(&dir, 10).unwrap();
        assert!(!kept && second != first);
        save(
            &dir,
            &ReplicationState::Clean {
                id: second.clone(),
                offset: 10,
            },
        )
        .unwrap();
        assert_eq!(primary_id(&dir, 10).unwrap(), (second.clone(), true));
        save(
            &dir,
            &ReplicationState::Clean {
                id: second.clone(),
                offset: 10,
            },
        )
        .unwrap();
        // Recovered less than it had at shutdown: history may differ, so a new id.
        assert!(!primary_id(&dir, 9).unwrap().1);
        save(&dir, &ReplicationState::Following { id: "abc".into() }).unwrap();
        assert_eq!(
            load(&dir).unwrap(),
            ReplicationState::Following { id: "abc".into() }
        );
        drop(dir);
        fs::remove_dir_all(tmp).unwrap();
    }
}
