//! Persistence, end to end: real `kvnode` processes restarted, killed, and given damaged,
//! imported or full data directories.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use common::{wait_until, NodeProcess};

/// Send `requests` pipelined on one connection and answer the reply lines, in order.
fn pipeline(node: &NodeProcess, requests: &[String]) -> Vec<String> {
    let stream = node.raw();
    let mut writer = stream.try_clone().unwrap();
    let body: String = requests.iter().map(|r| format!("{r}\n")).collect();
    let sender = thread::spawn(move || writer.write_all(body.as_bytes()).unwrap());
    let mut reader = BufReader::new(stream);
    let replies = (0..requests.len())
        .map(|_| {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            line.trim_end_matches('\n').to_string()
        })
        .collect();
    sender.join().unwrap();
    replies
}

fn stop(mut node: NodeProcess) {
    node.signal("TERM");
    assert!(node.wait_exit().success());
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut logs: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "kvl"))
        .collect();
    logs.sort();
    logs
}

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

/// Writers that record every write the node acknowledged, until the node dies.
fn write_until_killed(
    node: &NodeProcess,
    round: usize,
    acked: &Arc<Mutex<Vec<String>>>,
) -> Vec<thread::JoinHandle<()>> {
    let addr = node.addr;
    (0..4)
        .map(|writer| {
            let acked = acked.clone();
            thread::spawn(move || {
                let Ok(stream) = TcpStream::connect(addr) else {
                    return;
                };
                let mut out = stream.try_clone().unwrap();
                let mut replies = BufReader::new(stream);
                for chunk in 0.. {
                    // Writers 0 and 1 send one request at a time; 2 and 3 pipeline 50.
                    let depth = if writer < 2 { 1 } else { 50 };
                    let keys: Vec<String> = (0..depth)
                        .map(|i| format!("r{round}-w{writer}-{}", chunk * depth + i))
                        .collect();
                    let body: String = keys.iter().map(|k| format!("PUT {k} {k}\n")).collect();
                    if out.write_all(body.as_bytes()).is_err() {
                        return;
                    }
                    for key in keys {
                        let mut line = String::new();
                        match replies.read_line(&mut line) {
                            Ok(n) if n > 0 && line == "OK\n" => acked.lock().unwrap().push(key),
                            _ => return,
                        }
                    }
                }
            })
        })
        .collect()
}

#[test]
fn with_fsync_always_every_acknowledged_write_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let acked = Arc::new(Mutex::new(Vec::new()));
    for (round, kill_after) in [50usize, 400, 1500].into_iter().enumerate() {
        let node = NodeProcess::start_in(dir.path(), &["--fsync", "always"]);
        let before = acked.lock().unwrap().len();
        let writers = write_until_killed(&node, round, &acked);
        wait_until("enough writes are acknowledged", || {
            acked.lock().unwrap().len() >= before + kill_after
        });
        node.signal("KILL");
        for writer in writers {
            writer.join().unwrap();
        }
        drop(node);
        // Every write acknowledged in this round and the ones before is there.
        let node = NodeProcess::start_in(dir.path(), &["--fsync", "always"]);
        let keys = acked.lock().unwrap().clone();
        let gets: Vec<String> = keys.iter().map(|k| format!("GET {k}")).collect();
        let replies = pipeline(&node, &gets);
        for (key, reply) in keys.iter().zip(&replies) {
            assert_eq!(
                reply, key,
                "acknowledged write of {key} was lost (round {round})"
            );
        }
        stop(node);
    }
}

/// `strace` attached to a running node, recording its `fdatasync`, `write` and `sendto`
/// calls; detached and reaped when dropped.
struct Strace {
    child: Child,
    /// Kept open until strace has exited, so that its last lines (detaching) have a reader.
    _stderr: Option<BufReader<ChildStderr>>,
}

impl Strace {
    /// Attach to every thread of `pid`, writing the trace to `output`; answers once attached.
    fn attach(pid: u32, output: &Path) -> Strace {
        let mut child = Command::new("strace")
            .args(["-f", "-e", "trace=fdatasync,write,sendto", "-o"])
            .arg(output)
            .args(["-p", &pid.to_string()])
            .stderr(Stdio::piped())
            .spawn()
            .expect("start strace (the tests need it: .ci/run installs it)");
        let stderr = child.stderr.take().map(BufReader::new);
        // Owned from here on, so that it is reaped on every path.
        let mut strace = Strace {
            child,
            _stderr: stderr,
        };
        let mut first = String::new();
        if let Some(stderr) = strace._stderr.as_mut() {
            stderr.read_line(&mut first).expect("read strace's stderr");
        }
        assert!(first.contains("attached"), "strace did not attach: {first}");
        strace
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        // SIGINT makes strace detach and exit, leaving the node running.
        let _ = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

#[test]
fn with_fsync_always_a_write_is_acknowledged_only_after_an_fdatasync() {
    let node = NodeProcess::start(&["--fsync", "always"]);
    let trace_dir = tempfile::tempdir().unwrap();
    let trace = trace_dir.path().join("trace");
    let strace = Strace::attach(node.pid(), &trace);
    // One client writing in sequence: write i is sent only once write i - 1 was
    // acknowledged, so no fdatasync that came before that acknowledgement can cover it.
    const WRITES: usize = 20;
    let mut client = node.client();
    for i in 0..WRITES {
        client.put(format!("k{i}").as_bytes(), b"v").unwrap();
    }
    drop(strace);
    let trace = fs::read_to_string(&trace).unwrap();
    // The log is the file the node fdatasyncs.
    let log_fd: String = trace
        .lines()
        .find_map(|line| line.split("fdatasync(").nth(1))
        .map(|rest| rest.chars().take_while(char::is_ascii_digit).collect())
        .expect("the node fdatasyncs its log");
    let log_write = format!("write({log_fd}, ");
    // Replay the trace in order: a write to the log leaves it dirty until an fdatasync
    // completes; every `OK` must find this client's record written and the log clean.
    let (mut dirty, mut written, mut acks) = (false, false, 0);
    for line in trace.lines() {
        if line.contains(&log_write) {
            (dirty, written) = (true, true);
        } else if line.contains("fdatasync") && line.contains("= 0") {
            dirty = false;
        } else if line.contains("sendto(") && line.contains(r#""OK\n""#) {
            assert!(
                written && !dirty,
                "OK number {} sent before its record was written and fdatasynced:\n{trace}",
                acks + 1
            );
            written = false;
            acks += 1;
        }
    }
    assert_eq!(acks, WRITES, "every acknowledgement traced:\n{trace}");
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
    // Only the process died: what the writer had handed to the kernel survives, which is
    // all but the writes still queued in the node when it was killed.
    assert!(
        present * 2 >= total,
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
    stop(node);
    let written_bytes = 4 * 4000 * 100;
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

#[test]
fn a_disk_that_fills_up_refuses_writes_serves_reads_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_in(dir.path(), &["--fsync", "always"]);
    let mut client = node.client();
    client.put(b"before", b"safe").unwrap();
    // Let the log grow by only a few hundred bytes more: the file size limit stands in for a
    // full disk (writes fail with EFBIG).
    let log = log_files(dir.path()).pop().unwrap();
    let limit = fs::metadata(&log).unwrap().len() + 300;
    let prlimit = |value: String| {
        let status = Command::new("prlimit")
            .args([
                "--pid",
                &node.pid().to_string(),
                &format!("--fsize={value}"),
            ])
            .status()
            .expect("run prlimit (util-linux)");
        assert!(status.success());
    };
    prlimit(format!("{limit}:unlimited"));
    let big = "b".repeat(1000);
    let reply = client.request(format!("PUT big {big}").as_bytes()).unwrap();
    let reply = String::from_utf8(reply).unwrap();
    assert!(reply.starts_with("ERROR: persistence failed: "), "{reply}");
    let refused = String::from_utf8(client.request(b"PUT other 1").unwrap()).unwrap();
    assert!(
        refused.starts_with("ERROR: persistence failed: "),
        "{refused}"
    );
    assert_eq!(
        client.get(b"before").unwrap(),
        Some(b"safe".to_vec()),
        "reads go on"
    );
    node.wait_for_log("persistence failed");

    prlimit("unlimited:unlimited".into());
    wait_until("writes are accepted again", || {
        client.request(b"PUT after 2").is_ok_and(|r| r == b"OK")
    });
    stop(node);
    let node = NodeProcess::start_in(dir.path(), &[]);
    let replies = pipeline(&node, &["GET before".into(), "GET after".into()]);
    assert_eq!(replies, ["safe", "2"]);
}
