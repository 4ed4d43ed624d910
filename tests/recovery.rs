//! Start-up recovery, driven in-process on data directories the tests build and damage.

mod common;

use std::fs::{self, OpenOptions};
use std::path::Path;

use bytes::Bytes;
use kv_actors::storage::data_dir::{DataDir, StorageError};
use kv_actors::storage::record;
use kv_actors::storage::recovery::{recover, RecoveryOptions};
use kv_actors::storage::segment::{Segment, LOG_MAGIC};
use kv_actors::storage::snapshot_file;
use kv_actors::store::keyspace::Keyspace;
use kv_actors::store::pair::Pair;
use kv_actors::store::{Change, Mutation};
use slog::{o, Discard, Logger};

fn quiet() -> Logger {
    Logger::root(Discard, o!())
}

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The mutations the tests write: puts, overwrites and deletes over a few keys.
fn history(n: u64) -> Vec<Mutation> {
    (1..=n)
        .map(|seq| Mutation {
            more: false,
            seq,
            change: if seq % 5 == 0 {
                Change::Del {
                    key: b(&format!("k{}", (seq - 1) % 7)),
                }
            } else {
                Change::put(
                    format!("k{}", seq % 7).as_bytes(),
                    format!("value {seq}").as_bytes(),
                )
            },
        })
        .collect()
}

/// Apply `mutations` to a map, as the Store would.
fn model(mutations: &[Mutation]) -> Vec<(Bytes, Bytes)> {
    let mut map = std::collections::BTreeMap::new();
    for m in mutations {
        match &m.change {
            Change::Put(pair) => {
                map.insert(Bytes::copy_from_slice(pair.key()), pair.value_bytes());
            }
            Change::Del { key } => {
                map.remove(key);
            }
            Change::Clear => map.clear(),
        }
    }
    map.into_iter().collect()
}

fn contents(keyspace: &Keyspace) -> Vec<(Bytes, Bytes)> {
    common::sorted_pairs(&keyspace.snapshot())
}

/// Write `mutations` as one log in `dir`; answers the log's path and each record's end offset.
fn write_log(dir: &Path, mutations: &[Mutation]) -> (std::path::PathBuf, Vec<u64>) {
    let data = DataDir::open(dir).unwrap();
    let mut segment = Segment::create(&data, 1).unwrap();
    let mut ends = Vec::new();
    for m in mutations {
        let mut buf = Vec::new();
        record::encode_mutation(m, &mut buf);
        segment.append(&buf).unwrap();
        ends.push(segment.len());
    }
    segment.sync().unwrap();
    (segment.path().to_path_buf(), ends)
}

#[test]
fn replay_returns_exactly_what_was_written() {
    let tmp = tempfile::tempdir().unwrap();
    let mutations = history(500);
    write_log(tmp.path(), &mutations);
    let recovered = recover(
        &DataDir::open(tmp.path()).unwrap(),
        RecoveryOptions::default(),
        &quiet(),
    )
    .unwrap();
    assert_eq!(recovered.last_seq, 500);
    assert_eq!(contents(&recovered.keyspace), model(&mutations));
}

#[test]
fn a_log_cut_at_any_offset_keeps_every_complete_record() {
    assert_every_cut_keeps_whole_groups(&history(40));
}

#[test]
fn a_log_cut_inside_a_group_keeps_none_of_that_group() {
    // Three atomic groups (a transaction, a RENAME, a large MSET) among single mutations.
    let groups = [3..=7, 10..=11, 20..=29];
    let mut mutations = history(40);
    for m in &mut mutations {
        m.more = groups
            .iter()
            .any(|g| g.contains(&m.seq) && m.seq != *g.end());
    }
    assert_every_cut_keeps_whole_groups(&mutations);
}

/// Write `mutations` as a log, cut it at every offset, and recover each cut: what comes back
/// is every whole record, back to the start of a group the cut ends inside, and the torn part
/// is gone from disk, so appends continue from a clean end.
fn assert_every_cut_keeps_whole_groups(mutations: &[Mutation]) {
    let tmp = tempfile::tempdir().unwrap();
    let (log, ends) = write_log(tmp.path(), mutations);
    let full = fs::read(&log).unwrap();
    for cut in LOG_MAGIC.len()..=full.len() {
        let case = tempfile::tempdir().unwrap();
        let copy = case.path().join(log.file_name().unwrap());
        fs::write(&copy, &full[..cut]).unwrap();
        let dir = DataDir::open(case.path()).unwrap();
        let recovered = recover(&dir, RecoveryOptions::default(), &quiet())
            .unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let mut kept = ends.iter().filter(|&&end| end <= cut as u64).count();
        while kept > 0 && mutations[kept - 1].more {
            kept -= 1;
        }
        assert_eq!(recovered.last_seq, kept as u64, "cut at {cut}");
        assert_eq!(
            contents(&recovered.keyspace),
            model(&mutations[..kept]),
            "cut at {cut}"
        );
        let len = ends
            .get(kept.wrapping_sub(1))
            .copied()
            .unwrap_or(LOG_MAGIC.len() as u64);
        assert_eq!(fs::metadata(&copy).unwrap().len(), len, "cut at {cut}");
    }
}

#[test]
fn zeros_after_the_last_record_are_a_torn_tail() {
    // A file system may extend a file before the data reaches it: zeros at the end.
    assert_tail_is_cut_away(&[0u8; 300]);
}

/// Append `tail` to a log of ten good records: recovery keeps all ten and cuts the tail off.
fn assert_tail_is_cut_away(tail: &[u8]) {
    let tmp = tempfile::tempdir().unwrap();
    let (log, ends) = write_log(tmp.path(), &history(10));
    let mut file = OpenOptions::new().append(true).open(&log).unwrap();
    std::io::Write::write_all(&mut file, tail).unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let recovered = recover(&dir, RecoveryOptions::default(), &quiet()).unwrap();
    assert_eq!(recovered.last_seq, 10);
    assert_eq!(fs::metadata(&log).unwrap().len(), *ends.last().unwrap());
}

#[test]
fn a_flipped_byte_before_the_tail_stops_recovery_naming_file_and_offset() {
    let tmp = tempfile::tempdir().unwrap();
    let mutations = history(30);
    let (log, ends) = write_log(tmp.path(), &mutations);
    let mut bytes = fs::read(&log).unwrap();
    let damaged_record = 10;
    let offset = ends[damaged_record - 1];
    bytes[offset as usize + 20] ^= 0x01; // inside record 11's body
    fs::write(&log, &bytes).unwrap();

    let dir = DataDir::open(tmp.path()).unwrap();
    let error = match recover(&dir, RecoveryOptions::default(), &quiet()) {
        Err(error) => error,
        Ok(_) => panic!("recovery accepted a damaged log"),
    };
    assert!(
        matches!(&error, StorageError::Corrupt { path, offset: at, .. } if *path == log && *at == offset),
        "unexpected error: {error}"
    );
    let message = error.to_string();
    assert!(
        message.contains(&log.display().to_string())
            && message.contains(&format!("offset {offset}"))
    );
    assert!(
        message.contains("--truncate-corrupt-tail"),
        "says what to do: {message}"
    );
    assert_eq!(fs::read(&log).unwrap(), bytes, "nothing is changed on disk");

    // The operator may accept the loss explicitly.
    let options = RecoveryOptions {
        truncate_corrupt_tail: true,
    };
    let recovered = recover(&dir, options, &quiet()).unwrap();
    assert_eq!(recovered.last_seq, damaged_record as u64);
    assert_eq!(
        contents(&recovered.keyspace),
        model(&mutations[..damaged_record])
    );
}

/// Found by the `log_recovery` fuzz target: a log that is not the newest, cut inside an atomic
/// group, was refused naming the end of the file, not where `--truncate-corrupt-tail` cuts.
#[test]
fn an_older_log_cut_inside_a_group_names_the_start_of_the_group() {
    let tmp = tempfile::tempdir().unwrap();
    let mut mutations = history(6);
    mutations[1].more = true;
    mutations[2].more = true;
    let (log, ends) = write_log(tmp.path(), &mutations[..4]);
    let dir = DataDir::open(tmp.path()).unwrap();
    let mut newer = Segment::create(&dir, 5).unwrap();
    let mut buf = Vec::new();
    for m in &mutations[4..] {
        record::encode_mutation(m, &mut buf);
    }
    newer.append(&buf).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(ends[2])
        .unwrap();
    let error = match recover(&dir, RecoveryOptions::default(), &quiet()) {
        Err(error) => error,
        Ok(_) => panic!("recovery accepted a log cut inside a group before the newest log"),
    };
    assert!(
        matches!(&error, StorageError::Corrupt { path, offset, .. } if *path == log && *offset == ends[0]),
        "unexpected error: {error}"
    );
    assert!(
        error
            .to_string()
            .contains(&format!("at byte offset {}, in an atomic group", ends[2])),
        "{error}"
    );
    let options = RecoveryOptions {
        truncate_corrupt_tail: true,
    };
    let recovered = recover(&dir, options, &quiet()).unwrap();
    assert_eq!(recovered.last_seq, 1);
    assert_eq!(fs::metadata(&log).unwrap().len(), ends[0]);
}

#[test]
fn a_damaged_length_is_not_mistaken_for_a_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let (log, ends) = write_log(tmp.path(), &history(30));
    let mut bytes = fs::read(&log).unwrap();
    // Make record 6 claim to run far past the end of the file.
    bytes[ends[4] as usize + 3] = 0x7f;
    fs::write(&log, &bytes).unwrap();
    let error = recover(
        &DataDir::open(tmp.path()).unwrap(),
        RecoveryOptions::default(),
        &quiet(),
    );
    assert!(matches!(error, Err(StorageError::Corrupt { offset, .. }) if offset == ends[4]));
}

#[test]
fn a_snapshot_and_the_logs_after_it_make_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let mutations = history(100);
    let dir = DataDir::open(tmp.path()).unwrap();
    // A snapshot as of 60, an old log it covers, and a log from 41 on (partly covered).
    let keyspace: Keyspace = model(&mutations[..60])
        .iter()
        .map(|(key, value)| Pair::new(key, value))
        .collect();
    snapshot_file::write(&dir, &keyspace.snapshot(), 60, None).unwrap();
    let mut old = Segment::create(&dir, 1).unwrap();
    let mut newer = Segment::create(&dir, 41).unwrap();
    for m in &mutations {
        let mut buf = Vec::new();
        record::encode_mutation(m, &mut buf);
        if m.seq < 41 {
            old.append(&buf).unwrap();
        } else {
            newer.append(&buf).unwrap();
        }
    }
    let old_path = old.path().to_path_buf();
    drop((old, newer));
    let recovered = recover(&dir, RecoveryOptions::default(), &quiet()).unwrap();
    assert_eq!(recovered.last_seq, 100);
    assert_eq!(recovered.snapshot_seq, 60);
    assert_eq!(contents(&recovered.keyspace), model(&mutations));
    assert!(!old_path.exists(), "a log the snapshot covers is removed");
}

#[test]
fn a_missing_log_is_a_gap_not_silent_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let mutations = history(20);
    let mut first = Segment::create(&dir, 1).unwrap();
    let mut third = Segment::create(&dir, 15).unwrap();
    for m in &mutations {
        let mut buf = Vec::new();
        record::encode_mutation(m, &mut buf);
        match m.seq {
            1..=9 => first.append(&buf).unwrap(),
            15.. => third.append(&buf).unwrap(),
            _ => {} // the log holding 10..=14 is lost
        }
    }
    drop((first, third));
    let error = recover(&dir, RecoveryOptions::default(), &quiet());
    assert!(matches!(
        error,
        Err(StorageError::Gap {
            expected_after: 9,
            found: 15,
            ..
        })
    ));
}

#[test]
fn a_partly_written_header_at_the_end_is_a_torn_tail() {
    // A header whose length reached the disk, then zeros: a write-back cut by power loss.
    let mut tail = vec![0x28, 0, 0, 0];
    tail.extend_from_slice(&[0u8; 100]);
    assert_tail_is_cut_away(&tail);
}

#[test]
fn a_snapshot_of_a_replaced_generation_is_not_put_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::open(tmp.path()).unwrap();
    let keyspace: Keyspace = [Pair::new(b"old", b"data")].into_iter().collect();
    let generation = snapshot_file::Generation::default();
    let taken_in = generation.current();
    // The data is replaced (a full resync) while the snapshot is being written.
    generation.bump();
    let result = snapshot_file::write(&dir, &keyspace.snapshot(), 7, Some((&generation, taken_in)));
    assert!(
        matches!(result, Err(StorageError::Superseded)),
        "{result:?}"
    );
    let files: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.contains("snapshot") || name.ends_with(".tmp"))
        .collect();
    assert!(files.is_empty(), "left behind: {files:?}");
    // Taken in the current generation, it goes into place.
    let current = generation.current();
    snapshot_file::write(&dir, &keyspace.snapshot(), 7, Some((&generation, current))).unwrap();
    assert!(dir.snapshot_path(7).exists());
}
