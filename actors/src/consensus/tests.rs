//! The control plane's storage: openraft's own conformance suite, plus crash-recovery cases
//! it does not cover.

use std::fs::OpenOptions;
use std::io::Write;

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, StorageError, Vote};
use tempfile::TempDir;

use super::cluster_state::{Command, NodeId};
use super::log_store::FileLogStore;
use super::state_machine::StateMachineStore;
use super::type_config::TypeConfig;

/// A logger that drops everything: these tests check files, not log lines.
fn quiet() -> slog::Logger {
    slog::Logger::root(slog::Discard, slog::o!())
}

/// Opens the log in `dir`, which the test knows is openable.
fn open(dir: &TempDir) -> (FileLogStore, super::log_store::OpenReport) {
    FileLogStore::open(dir.path(), &quiet()).unwrap()
}

/// Builds a fresh log and state machine in a temporary directory for each suite case.
struct Builder;

impl StoreBuilder<TypeConfig, FileLogStore, StateMachineStore, TempDir> for Builder {
    async fn build(
        &self,
    ) -> Result<(TempDir, FileLogStore, StateMachineStore), StorageError<NodeId>> {
        let dir = TempDir::new().expect("tempdir");
        let (log, _) = FileLogStore::open(dir.path(), &quiet()).expect("open log");
        let sm = StateMachineStore::open(dir.path()).expect("open sm");
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    Suite::test_all(Builder).expect("suite");
}

/// A log entry of `term` at `index`, carrying a command.
fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
    Entry {
        log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
        payload: EntryPayload::Normal(Command::SetPrimary {
            epoch: index,
            node: 1,
            offset: 0,
        }),
    }
}

/// The indexes of the entries the log holds.
async fn indexes(log: &mut FileLogStore) -> Vec<u64> {
    log.try_get_log_entries(0..u64::MAX)
        .await
        .unwrap()
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

/// The log file's length on disk.
fn log_len(dir: &TempDir) -> u64 {
    std::fs::metadata(dir.path().join("raft.log"))
        .unwrap()
        .len()
}

#[tokio::test]
async fn torn_and_corrupt_tails_are_truncated_on_open() {
    let dir = TempDir::new().unwrap();
    let (mut log, report) = open(&dir);
    assert_eq!(report.entries, 0);
    for i in 1..=5 {
        log.blocking_append([entry(1, i)]).await.unwrap();
    }
    let full = log_len(&dir);
    drop(log);

    // Garbage after the last record (a torn append that extended the file).
    OpenOptions::new()
        .append(true)
        .open(dir.path().join("raft.log"))
        .unwrap()
        .write_all(&[7u8; 13])
        .unwrap();
    let (mut log, report) = open(&dir);
    assert_eq!((report.entries, report.truncated_bytes), (5, 13));
    assert_eq!(log_len(&dir), full, "tail cut on disk, not just ignored");
    assert_eq!(indexes(&mut log).await, vec![1, 2, 3, 4, 5]);
    drop(log);

    // A record cut in the middle: the last entry is lost, the rest survive.
    let f = OpenOptions::new()
        .write(true)
        .open(dir.path().join("raft.log"))
        .unwrap();
    f.set_len(full - 3).unwrap();
    drop(f);
    let (mut log, report) = open(&dir);
    assert_eq!(report.entries, 4);
    assert_eq!(indexes(&mut log).await, vec![1, 2, 3, 4]);

    // Appending after recovery continues a clean file.
    log.blocking_append([entry(2, 5), entry(2, 6)])
        .await
        .unwrap();
    drop(log);
    let (mut log, report) = open(&dir);
    assert_eq!((report.entries, report.truncated_bytes), (6, 0));
    let last = log.get_log_state().await.unwrap().last_log_id.unwrap();
    assert_eq!((last.leader_id.term, last.index), (2, 6));
    drop(log);

    // A flipped bit inside the last record fails its CRC and is dropped.
    let mut bytes = std::fs::read(dir.path().join("raft.log")).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0x40;
    std::fs::write(dir.path().join("raft.log"), &bytes).unwrap();
    let (mut log, report) = open(&dir);
    assert_eq!(report.entries, 5);
    assert_eq!(indexes(&mut log).await, vec![1, 2, 3, 4, 5]);
}

#[tokio::test]
async fn truncate_purge_and_vote_survive_reopen() {
    let dir = TempDir::new().unwrap();
    let (mut log, _) = open(&dir);
    log.blocking_append((1..=10).map(|i| entry(1, i)))
        .await
        .unwrap();
    log.save_vote(&Vote::new_committed(3, 2)).await.unwrap();
    log.truncate(LogId::new(CommittedLeaderId::new(1, 1), 8))
        .await
        .unwrap();
    log.purge(LogId::new(CommittedLeaderId::new(1, 1), 6))
        .await
        .unwrap();
    drop(log);

    let (mut log, _) = open(&dir);
    assert_eq!(indexes(&mut log).await, vec![7]);
    let state = log.get_log_state().await.unwrap();
    assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(6));
    assert_eq!(state.last_log_id.map(|l| l.index), Some(7));
    assert_eq!(
        log.read_vote().await.unwrap(),
        Some(Vote::new_committed(3, 2))
    );

    // The purge rewrote the file (dead prefix > live part), so it holds one record now.
    let one_record = log_len(&dir);
    log.blocking_append([entry(3, 8)]).await.unwrap();
    assert!(log_len(&dir) < 3 * one_record);

    // Purging past the last entry empties the log but keeps the last log id.
    log.purge(LogId::new(CommittedLeaderId::new(3, 1), 20))
        .await
        .unwrap();
    drop(log);
    let (mut log, _) = open(&dir);
    assert!(indexes(&mut log).await.is_empty());
    assert_eq!(
        log.get_log_state()
            .await
            .unwrap()
            .last_log_id
            .map(|l| l.index),
        Some(20)
    );
}

#[tokio::test]
async fn corrupt_vote_file_is_an_error_not_a_reset() {
    let dir = TempDir::new().unwrap();
    let (mut log, _) = open(&dir);
    log.save_vote(&Vote::new(5, 1)).await.unwrap();
    drop(log);
    let mut bytes = std::fs::read(dir.path().join("vote")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(dir.path().join("vote"), &bytes).unwrap();
    // Forgetting a vote could let this node vote twice in one term: refuse to start instead.
    assert!(FileLogStore::open(dir.path(), &quiet()).is_err());
}
