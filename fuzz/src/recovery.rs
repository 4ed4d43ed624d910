//! Start-up recovery of a data directory whose logs are damaged: it keeps exactly a prefix of
//! the history (whole atomic groups, never less than the snapshot and the records before the
//! damage), or refuses with an error that names the file and the damage; it never panics.

use std::path::Path;

use arbitrary::Unstructured;
use kv_actors::replication::fingerprint::WINDOW;
use kv_actors::storage::data_dir::{DataDir, StorageError};
use kv_actors::storage::record;
use kv_actors::storage::recovery::{self, RecoveryOptions};
use kv_actors::storage::segment::LOG_MAGIC;
use kv_actors::store::{Mutation, Seq};
use tempfile::TempDir;

use crate::gen::{self, Damage, Model};

/// What recovery rebuilt, in a form to compare.
#[derive(Debug, PartialEq, Eq)]
struct State {
    /// The data.
    model: Model,
    /// The last mutation applied.
    last_seq: Seq,
    /// The snapshot it started from.
    snapshot_seq: Seq,
    /// The logs kept: their first mutation and valid length.
    logs: Vec<(Seq, u64)>,
    /// The mutations it would fingerprint for a primary.
    tail: Vec<Seq>,
}

/// One input: most of the time a history written as a snapshot and one or two logs, with
/// damage done to one log; now and then a log of raw input bytes.
pub fn log_recovery(data: &[u8]) {
    let mut u = Unstructured::new(data);
    match gen::byte(&mut u) % 4 {
        0 => raw_log(u),
        _ => damaged_history(&mut u),
    }
}

/// A data directory in memory when the machine has one (`/dev/shm`): recovery syncs files and
/// directories, which costs nothing there.
pub fn scratch() -> TempDir {
    let shm = Path::new("/dev/shm");
    let made = match shm.is_dir() {
        true => tempfile::Builder::new().prefix("kv-fuzz").tempdir_in(shm),
        false => tempfile::Builder::new().prefix("kv-fuzz").tempdir(),
    };
    made.expect("a scratch directory")
}

/// A log holding whatever the input holds (after the log header, or not): recovery never
/// panics, refuses only with an error that names the damage, and what it keeps recovers again
/// to the same state.
fn raw_log(mut u: Unstructured) {
    let with_magic = !gen::one_in(&mut u, 4);
    let mut log = match with_magic {
        true => LOG_MAGIC.to_vec(),
        false => Vec::new(),
    };
    log.extend_from_slice(u.take_rest());
    for truncate_corrupt_tail in [false, true] {
        let scratch = scratch();
        write_files(scratch.path(), None, &[(1, log.clone())]);
        if let Ok(state) = recover_checked(scratch.path(), truncate_corrupt_tail) {
            assert_eq!(recover_again(scratch.path()), state);
        }
    }
}

/// A history of whole atomic groups, with a snapshot at one group's end (or none) and its
/// mutations in one log or two (the second starting after a group), damage done to one log.
fn damaged_history(u: &mut Unstructured) {
    let history = gen::history(u, 1, 24);
    // The data after each whole group: every prefix recovery may keep.
    let mut model = Model::new();
    let mut prefixes = vec![(0, model.clone())];
    for mutation in &history {
        gen::apply(&mut model, &mutation.change);
        if !mutation.more {
            prefixes.push((mutation.seq, model.clone()));
        }
    }
    let (snapshot_seq, snapshot) = prefixes[gen::up_to(u, prefixes.len() - 1)].clone();
    let split = prefixes[gen::up_to(u, prefixes.len() - 1)].0 as usize;
    let mut logs = match split {
        0 => vec![(1, encode(&history))],
        _ => vec![
            (1, encode(&history[..split])),
            (split as Seq + 1, encode(&history[split..])),
        ],
    };
    let harmed = gen::up_to(u, logs.len());
    let mut intact_upto = history.len() as Seq;
    if let Some((first_seq, bytes)) = logs.get_mut(harmed) {
        let damage = gen::damage(u, bytes.len(), 4);
        let first_damaged = damage.iter().map(first_offset).min();
        if let Some(first_damaged) = first_damaged {
            // Every group whose records end before the first damaged byte is intact.
            intact_upto = *first_seq - 1;
            let mut end = LOG_MAGIC.len();
            for mutation in history.iter().skip(*first_seq as usize - 1) {
                let mut one = Vec::new();
                record::encode_mutation(mutation, &mut one);
                end += one.len();
                if end > first_damaged || end > bytes.len() {
                    break;
                }
                if !mutation.more {
                    intact_upto = mutation.seq;
                }
            }
        }
        *bytes = gen::damaged(std::mem::take(bytes), &damage);
    }
    let must_keep = intact_upto.max(snapshot_seq);
    for truncate_corrupt_tail in [false, true] {
        let scratch = scratch();
        let snapshot_file = (snapshot_seq > 0).then_some((snapshot_seq, &snapshot));
        write_files(scratch.path(), snapshot_file, &logs);
        let Ok(state) = recover_checked(scratch.path(), truncate_corrupt_tail) else {
            continue;
        };
        let kept = prefixes.iter().find(|(seq, _)| *seq == state.last_seq);
        assert!(
            kept.is_some_and(|(_, model)| *model == state.model),
            "recovery kept no prefix of whole groups: {state:?}"
        );
        assert_eq!(state.snapshot_seq, snapshot_seq);
        assert!(
            state.last_seq >= must_keep,
            "recovery lost intact records: kept up to {}, intact up to {must_keep}",
            state.last_seq
        );
        let replayed = &history[snapshot_seq as usize..state.last_seq as usize];
        let tail: Vec<Seq> = replayed.iter().map(|m| m.seq).collect();
        assert_eq!(state.tail, tail[tail.len().saturating_sub(WINDOW)..]);
        assert_eq!(recover_again(scratch.path()), state);
    }
}

/// The first byte a piece of damage touches (in the file as it was when it was done): every
/// byte before it, in every later form of the file, is as it was written.
fn first_offset(damage: &Damage) -> usize {
    match *damage {
        Damage::Truncate(at) | Damage::Flip(at, _) => at,
        Damage::Zero(start, _) | Damage::Remove(start, _) => start,
        Damage::Copy { to, .. } => to,
    }
}

/// A log holding `mutations`.
fn encode(mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = LOG_MAGIC.to_vec();
    for mutation in mutations {
        record::encode_mutation(mutation, &mut bytes);
    }
    bytes
}

/// Write a snapshot (if any) and logs into the data directory `path`.
fn write_files(path: &Path, snapshot: Option<(Seq, &Model)>, logs: &[(Seq, Vec<u8>)]) {
    let dir = DataDir::open(path).expect("a scratch data directory");
    if let Some((seq, model)) = snapshot {
        let mut bytes = kv_actors::storage::snapshot_file::SNAPSHOT_MAGIC.to_vec();
        for (key, (value, deadline)) in model {
            let pair = kv_actors::store::pair::Pair::with_deadline(key, value, *deadline);
            record::encode_pair(seq, &pair, &mut bytes);
        }
        record::encode_end(seq, model.len() as u64, &mut bytes);
        std::fs::write(dir.snapshot_path(seq), bytes).expect("write a snapshot");
    }
    for (first_seq, bytes) in logs {
        std::fs::write(dir.log_path(*first_seq), bytes).expect("write a log");
    }
}

/// Recover the data directory `dir`; a refusal must be one that names the damaged file of
/// the directory (and, for a damaged record, an offset inside it).
fn recover_checked(dir: &Path, truncate_corrupt_tail: bool) -> Result<State, StorageError> {
    let result = recover(dir, truncate_corrupt_tail);
    if let Err(error) = &result {
        let (file, offset) = match error {
            StorageError::Corrupt { path, offset, .. } => (path, Some(*offset)),
            StorageError::NotALog { path } | StorageError::Gap { path, .. } => (path, None),
            other => panic!("recovery failed without naming damage: {other}"),
        };
        assert_eq!(file.parent(), Some(dir), "{error}");
        let len = std::fs::metadata(file).map_or(0, |m| m.len());
        assert!(offset.is_none_or(|offset| offset < len), "{error}");
    }
    result
}

/// Recover once more what a recovery kept: it must come to the same, with nothing to cut.
fn recover_again(path: &Path) -> State {
    recover(path, false).expect("recovering again what recovery kept")
}

/// Open the data directory `path` and recover it, as a node starting up would.
fn recover(path: &Path, truncate_corrupt_tail: bool) -> Result<State, StorageError> {
    let dir = DataDir::open(path)?;
    let log = slog::Logger::root(slog::Discard, slog::o!());
    let options = RecoveryOptions {
        truncate_corrupt_tail,
    };
    let recovered = recovery::recover(&dir, options, &log)?;
    Ok(State {
        model: gen::model_of(recovered.keyspace.iter()),
        last_seq: recovered.last_seq,
        snapshot_seq: recovered.snapshot_seq,
        logs: recovered
            .logs
            .iter()
            .map(|l| (l.first_seq, l.len))
            .collect(),
        tail: recovered.tail.iter().map(|m| m.seq).collect(),
    })
}
