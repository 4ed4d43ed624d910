//! Persistence, end to end: real `kvnode` processes restarted, killed, and given damaged,
//! imported or full data directories.

mod common;

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::{log_files, pipeline, stop, wait_until, NodeProcess};

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum()
}

#[test]
fn a_restart_keeps_100k_keys_with_their_overwrites_and_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_in(dir.path(), &[]);
    let mut model: HashMap<String, String> = HashMap::new();
    let mut requests = Vec::new();
    for i in 0..100_000 {
        requests.push(format!("PUT key{i} value {i}"));
        model.insert(format!("key{i}"), format!("value {i}"));
    }
    for i in (0..100_000).step_by(3) {
        requests.push(format!("PUT key{i} second value {i}"));
        model.insert(format!("key{i}"), format!("second value {i}"));
    }
    for i in (0..100_000).step_by(7) {
        requests.push(format!("DEL key{i}"));
        model.remove(&format!("key{i}"));
    }
    let replies = pipeline(&node, &requests);
    assert!(replies.iter().all(|r| r == "OK"));
    stop(node);

    let node = NodeProcess::start_in(dir.path(), &[]);
    assert!(node.log().contains(&format!("keys: {}", model.len())));
    let gets: Vec<String> = (0..100_000).map(|i| format!("GET key{i}")).collect();
    let replies = pipeline(&node, &gets);
    for (i, reply) in replies.iter().enumerate() {
        let expected = model
            .get(&format!("key{i}"))
            .map_or("NOT_FOUND", String::as_str);
        assert_eq!(reply, expected, "key{i}");
    }
}

#[test]
fn with_fsync_everysec_a_node_starts_cleanly_after_sigkill_with_a_prefix_of_its_writes() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_in(dir.path(), &[]);
    let stop_writing = Arc::new(AtomicBool::new(false));
    let written = Arc::new(Mutex::new(0usize));
    let writer = {
        let mut client = node.client();
        let (stop_writing, written) = (stop_writing.clone(), written.clone());
        thread::spawn(move || {
            for i in 0.. {
                if stop_writing.load(Ordering::SeqCst)
                    || client.put(format!("k{i}").as_bytes(), b"v").is_err()
                {
                    return;
                }
                *written.lock().unwrap() = i + 1;
            }
        })
    };
    wait_until("some writes are done", || *written.lock().unwrap() >= 2000);
    node.signal("KILL");
    stop_writing.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    drop(node);

    let node = NodeProcess::start_in(dir.path(), &[]);
    let total = *written.lock().unwrap();
    let gets: Vec<String> = (0..total).map(|i| format!("GET k{i}")).collect();
    let replies = pipeline(&node, &gets);
    let present = replies.iter().take_while(|r| *r == "v").count();
    assert!(
        replies[present..].iter().all(|r| r == "NOT_FOUND"),
        "what survived is a prefix of the writes"
    );
    // Only the process died: a write is acknowledged once the writer has handed it to the
    // kernel, so every acknowledged write survives (and perhaps the one in flight).
    assert!(
        present >= total,
        "only {present} of {total} acknowledged writes survived"
    );
    assert!(node.answers_ping());
}

#[test]
fn a_torn_tail_is_truncated_with_a_warning_naming_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_in(dir.path(), &[]);
    let requests: Vec<String> = (0..50)
        .map(|i| format!("PUT k{i:02} value-{i:02}"))
        .collect();
    pipeline(&node, &requests);
    stop(node);
    let log = log_files(dir.path()).pop().unwrap();
    let full = fs::read(&log).unwrap();
    // Every record has the same size here (fixed-width keys and values).
    let record = (full.len() - 8) / 50;
    for cut_into_last in [1, record / 2, record - 1] {
        fs::write(&log, &full[..full.len() - cut_into_last]).unwrap();
        let node = NodeProcess::start_in(dir.path(), &[]);
        let offset = full.len() - record;
        let warning = node
            .log()
            .lines()
            .find(|l| l.contains("truncating the log at a damaged record"))
            .map(str::to_string)
            .unwrap_or_else(|| panic!("no truncation warning:\n{}", node.log()));
        assert!(
            warning.contains(&log.display().to_string())
                && warning.contains(&format!("offset: {offset}")),
            "{warning}"
        );
        let gets: Vec<String> = (0..50).map(|i| format!("GET k{i:02}")).collect();
        let replies = pipeline(&node, &gets);
        assert!(replies[..49]
            .iter()
            .enumerate()
            .all(|(i, r)| *r == format!("value-{i:02}")));
        assert_eq!(replies[49], "NOT_FOUND");
        // Put the last key back for the next cut.
        pipeline(&node, &["PUT k49 value-49".to_string()]);
        stop(node);
        assert_eq!(fs::read(&log).unwrap(), full, "the log is whole again");
    }
}

#[test]
fn damage_in_the_middle_of_the_log_stops_start_up_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_in(dir.path(), &[]);
    let requests: Vec<String> = (0..50).map(|i| format!("PUT k{i} value-{i}")).collect();
    pipeline(&node, &requests);
    stop(node);
    let log = log_files(dir.path()).pop().unwrap();
    let mut bytes = fs::read(&log).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x20;
    fs::write(&log, &bytes).unwrap();

    let failure = NodeProcess::try_start_in(dir.path(), &[])
        .err()
        .expect("start-up must stop");
    assert_eq!(failure.status.code(), Some(1));
    let line = failure
        .log
        .lines()
        .find(|l| l.contains("cannot start"))
        .unwrap_or_else(|| panic!("no error line:\n{}", failure.log));
    assert!(line.contains(&log.display().to_string()), "{line}");
    assert!(line.contains("byte offset"), "{line}");
    assert!(line.contains("--truncate-corrupt-tail"), "{line}");

    let node = NodeProcess::start_in(dir.path(), &["--truncate-corrupt-tail"]);
    let replies = pipeline(&node, &["GET k0".to_string(), "GET k49".to_string()]);
    assert_eq!(replies, ["value-0", "NOT_FOUND"]);
}

#[test]
fn compaction_under_write_load_keeps_every_latest_value_and_shrinks_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--compact-min-bytes", "65536", "--compact-ratio", "1"];
    let node = NodeProcess::start_in(dir.path(), &flags);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let mut client = node.client();
            thread::spawn(move || {
                let mut last = HashMap::new();
                for i in 0..4000 {
                    let key = format!("w{w}-k{}", i % 100);
                    let value = format!("{i}-{}", "x".repeat(80));
                    client.put(key.as_bytes(), value.as_bytes()).unwrap();
                    last.insert(key, value);
                }
                last
            })
        })
        .collect();
    let mut model = HashMap::new();
    for writer in writers {
        model.extend(writer.join().unwrap());
    }
    node.wait_for_log("compaction finished");
    // On a loaded machine compaction may still be behind the writers when they finish: a
    // write now and then lets it catch up (it is started by the log's growth).
    let written_bytes = 4 * 4000 * 100;
    let mut client = node.client();
    wait_until("compaction shrinks the files", || {
        client.put(b"w0-k0", b"nudge").unwrap();
        model.insert("w0-k0".to_string(), "nudge".to_string());
        dir_bytes(dir.path()) < written_bytes / 4
    });
    stop(node);
    let on_disk = dir_bytes(dir.path());
    assert!(
        on_disk < written_bytes / 4,
        "{on_disk} bytes on disk for {written_bytes} written"
    );

    let node = NodeProcess::start_in(dir.path(), &flags);
    let keys: Vec<&String> = model.keys().collect();
    let replies = pipeline(
        &node,
        &keys.iter().map(|k| format!("GET {k}")).collect::<Vec<_>>(),
    );
    for (key, reply) in keys.iter().zip(&replies) {
        assert_eq!(reply, &model[*key], "{key}");
    }
}

#[test]
fn a_seed_file_of_the_cpp_store_imports() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.txt");
    let data = dir.path().join("data");
    let mut text = String::new();
    for i in 0..1000 {
        text.push_str(&format!("user{i}=name {i} = still the value\n"));
    }
    text.push_str("\nuser7=overwritten\r\n");
    fs::write(&seed, &text).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_kvnode"))
        .args(["import", "--seed-file"])
        .arg(&seed)
        .arg("--data-dir")
        .arg(&data)
        .status()
        .unwrap();
    assert!(status.success());
    let node = NodeProcess::start_in(&data, &[]);
    let replies = pipeline(
        &node,
        &["GET user0".into(), "GET user999".into(), "GET user7".into()],
    );
    assert_eq!(
        replies,
        [
            "name 0 = still the value",
            "name 999 = still the value",
            "overwritten"
        ]
    );
    stop(node);

    // A bad line changes nothing and says where it is.
    fs::write(&seed, "good=1\nbad line\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kvnode"))
        .args(["import", "--seed-file"])
        .arg(&seed)
        .arg("--data-dir")
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("seed.txt:2: no '=' in the line"),
        "{stderr}"
    );
    let node = NodeProcess::start_in(&data, &[]);
    assert_eq!(pipeline(&node, &["GET good".into()]), ["NOT_FOUND"]);
}

#[test]
fn a_second_node_on_the_same_data_dir_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let _first = NodeProcess::start_in(dir.path(), &[]);
    let failure = NodeProcess::try_start_in(dir.path(), &[])
        .err()
        .expect("must refuse");
    assert_eq!(failure.status.code(), Some(1));
    assert!(
        failure.log.contains("is in use by another kvnode process"),
        "{}",
        failure.log
    );
}

/// A node that cannot have its port says why in words that fit the cause, and leaves no data
/// directory behind (it takes the port before it creates anything).
#[test]
fn a_port_in_use_fails_clearly_and_creates_no_data_dir() {
    let first = NodeProcess::start(&[]);
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("never-created");
    let failure = NodeProcess::try_start_at(&first.addr.to_string(), &data, &[])
        .err()
        .expect("the port is taken");
    assert_eq!(failure.status.code(), Some(1));
    assert!(
        failure
            .log
            .contains("is another node already using that port?"),
        "{}",
        failure.log
    );
    assert!(!data.exists(), "a failed start left {}", data.display());
    // An address that is not the machine's gets another hint.
    let failure = NodeProcess::try_start_at("192.0.2.1:0", &data, &[])
        .err()
        .expect("not a local address");
    assert!(
        failure.log.contains("not one of this machine's"),
        "{}",
        failure.log
    );
    assert!(!data.exists());
}
