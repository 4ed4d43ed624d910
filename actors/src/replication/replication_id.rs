//! The replication id: which history a node's data belongs to, and which history it continues.
//!
//! A primary's id is random. It is kept across a clean restart (shutdown wrote `clean` with
//! the offset reached, and recovery reached exactly that offset), and replaced after anything
//! else: after a crash the primary may have lost a tail of mutations a replica already has, and
//! reusing its offsets under the same id would let that replica resume on a different history.
//! The new id records the history it continues and how far ([`Lineage`], as Redis's PSYNC2
//! keeps `replid2`): after a crash, the primary's former id up to the offset it recovered;
//! after a replica is promoted by hand, the id of the primary it followed, up to its offset.
//! A replica whose data is a prefix of that ([`Lineage::contains`]) can be continued, by a
//! partial resync where the backlog allows; any other replica holds data the primary does not
//! have, and is never overwritten without an operator's word (docs/replication.md).
//!
//! A replica records the id of the primary whose data it holds (`following`), and only once
//! that data is durable, so a partial resync is offered only for data that really matches.
//! While a full resync replaces its data it says `resyncing`: what it holds then is disposable.
//!
//! Stored in the data directory as the one-line file `REPLICATION`:
//! `<state> <id> <offset> [<previous id> <previous offset>]`.

use std::fs;

use crate::storage::data_dir::{DataDir, StorageError};
use crate::store::Seq;

/// The history a primary's history continues, and how far they are one: a replica of that
/// history at or before `offset` holds a prefix of the primary's data (Redis's `replid2` and
/// `second_replid_offset`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Previous {
    /// The earlier history's id.
    pub id: String,
    /// The last mutation the two histories share.
    pub offset: Seq,
}

/// A primary's history: its id, and the earlier history it continues, if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Lineage {
    /// The id of this primary's history (40 hex digits).
    pub id: String,
    /// The history this one continues: after a crash, the primary's own former id (up to
    /// what it recovered); after a replica is promoted, the id of the primary it followed.
    pub previous: Option<Previous>,
}

impl Lineage {
    /// Whether a replica holding history `id` up to `offset` holds a prefix of this
    /// history, when this one has reached `last_seq`.
    pub fn contains(&self, id: &str, offset: Seq, last_seq: Seq) -> bool {
        (id == self.id && offset <= last_seq)
            || self
                .previous
                .as_ref()
                .is_some_and(|p| id == p.id && offset <= p.offset.min(last_seq))
    }
}

/// What the `REPLICATION` file says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicationState {
    /// No id: a fresh directory.
    None,
    /// A replica in the middle of a full resync: its data is being replaced by its primary's,
    /// so whatever it holds after a crash is disposable, and it asks for a full resync.
    Resyncing,
    /// A primary running (or crashed) with this history.
    Dirty {
        /// The id it runs with; replaced at the next start unless a clean shutdown comes first.
        id: String,
        /// The history it continues, if any.
        previous: Option<Previous>,
    },
    /// A primary that shut down cleanly with this history at this offset.
    Clean {
        /// The id it ran with, kept if it starts again at exactly `offset`.
        id: String,
        /// The last mutation it had applied at shutdown.
        offset: Seq,
        /// The history it continues, if any: kept with the id.
        previous: Option<Previous>,
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
    let number = |i: usize| fields.get(i).and_then(|s| s.parse::<Seq>().ok());
    let previous = match (id(3), number(4)) {
        (Some(id), Some(offset)) => Some(Previous { id, offset }),
        _ => None,
    };
    let state = match fields.first().copied() {
        Some("clean") => match (id(1), number(2)) {
            (Some(id), Some(offset)) => ReplicationState::Clean {
                id,
                offset,
                previous,
            },
            _ => ReplicationState::None,
        },
        Some("dirty") => id(1).map_or(ReplicationState::None, |id| ReplicationState::Dirty {
            id,
            previous,
        }),
        Some("following") => id(1).map_or(ReplicationState::None, |id| {
            ReplicationState::Following { id }
        }),
        Some("resyncing") => ReplicationState::Resyncing,
        // An unreadable file names no history: a primary then refuses to overwrite this
        // node's data until an operator says so (RESYNC), the safe way round.
        _ => ReplicationState::None,
    };
    Ok(state)
}

/// Write the state durably (temporary file, fsync, rename, fsync the directory).
pub fn save(dir: &DataDir, state: &ReplicationState) -> Result<(), StorageError> {
    let previous = |p: &Option<Previous>| {
        p.as_ref()
            .map_or(String::new(), |p| format!(" {} {}", p.id, p.offset))
    };
    let line = match state {
        ReplicationState::None => "none - 0".to_string(),
        ReplicationState::Resyncing => "resyncing - 0".to_string(),
        ReplicationState::Dirty { id, previous: p } => format!("dirty {id} 0{}", previous(p)),
        ReplicationState::Clean {
            id,
            offset,
            previous: p,
        } => format!("clean {id} {offset}{}", previous(p)),
        ReplicationState::Following { id } => format!("following {id} 0"),
    };
    dir.write_atomic(FILE, format!("{line}\n").as_bytes())
}

/// The history a primary starting at `last_seq` runs with, and whether it kept its id. After
/// a clean shutdown at exactly that offset: the same id (and the same earlier history).
/// Otherwise a new id, continuing what the data directory held up to `last_seq`: the
/// primary's own former history after a crash, or the history a promoted replica followed.
/// Marks the history dirty until the next clean shutdown.
pub fn primary_id(dir: &DataDir, last_seq: Seq) -> Result<(Lineage, bool), StorageError> {
    let continued = |id: String| {
        Some(Previous {
            id,
            offset: last_seq,
        })
    };
    let (lineage, kept) = match load(dir)? {
        ReplicationState::Clean {
            id,
            offset,
            previous,
        } if offset == last_seq => (Lineage { id, previous }, true),
        // Recovered less than it had at shutdown: the same history, cut short.
        ReplicationState::Clean { id, offset, .. } if offset > last_seq => (
            Lineage {
                id: generate(),
                previous: continued(id),
            },
            false,
        ),
        ReplicationState::Dirty { id, .. } | ReplicationState::Following { id } => (
            Lineage {
                id: generate(),
                previous: continued(id),
            },
            false,
        ),
        _ => (
            Lineage {
                id: generate(),
                previous: None,
            },
            false,
        ),
    };
    let dirty = ReplicationState::Dirty {
        id: lineage.id.clone(),
        previous: lineage.previous.clone(),
    };
    save(dir, &dirty)?;
    Ok((lineage, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_primary_keeps_its_id_only_after_a_clean_shutdown_at_the_same_offset() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::open(tmp.path()).unwrap();
        let (first, kept) = primary_id(&dir, 0).unwrap();
        assert!(!kept && first.id.len() == 40 && first.previous.is_none());
        // Crashed (still dirty): a new id, continuing the old one up to what was recovered.
        let (second, kept) = primary_id(&dir, 10).unwrap();
        assert!(!kept && second.id != first.id);
        assert_eq!(
            second.previous,
            Some(Previous {
                id: first.id.clone(),
                offset: 10
            })
        );
        let clean = ReplicationState::Clean {
            id: second.id.clone(),
            offset: 10,
            previous: second.previous.clone(),
        };
        save(&dir, &clean).unwrap();
        assert_eq!(load(&dir).unwrap(), clean);
        assert_eq!(primary_id(&dir, 10).unwrap(), (second.clone(), true));
        save(&dir, &clean).unwrap();
        // Recovered less than it had at shutdown: a new id, continuing the old one so far.
        let (third, kept) = primary_id(&dir, 9).unwrap();
        assert!(!kept);
        assert_eq!(
            third.previous.map(|p| (p.id, p.offset)),
            Some((second.id, 9))
        );
        // A replica promoted by hand continues the history it followed.
        save(&dir, &ReplicationState::Following { id: "abc".into() }).unwrap();
        let (promoted, _) = primary_id(&dir, 7).unwrap();
        assert_eq!(
            promoted.previous,
            Some(Previous {
                id: "abc".into(),
                offset: 7
            })
        );
        save(&dir, &ReplicationState::Resyncing).unwrap();
        assert_eq!(load(&dir).unwrap(), ReplicationState::Resyncing);
    }

    #[test]
    fn a_lineage_contains_its_own_prefixes_and_its_predecessors_up_to_the_fork() {
        let lineage = Lineage {
            id: "new".into(),
            previous: Some(Previous {
                id: "old".into(),
                offset: 100,
            }),
        };
        assert!(lineage.contains("new", 150, 150));
        assert!(!lineage.contains("new", 151, 150), "a replica ahead of us");
        assert!(lineage.contains("old", 100, 150));
        assert!(lineage.contains("old", 40, 150));
        assert!(
            !lineage.contains("old", 101, 150),
            "the old history went on without us"
        );
        assert!(!lineage.contains("other", 0, 150));
    }
}
