//! What a reply promises, by `--fsync` policy, proved against real `kvnode` processes with
//! injected faults (docs/storage.md, "What a reply promises"):
//!
//! - under `always`, a mutation a reply shows (a write acknowledged, a value read) is on disk:
//!   no reply leaves before the `fdatasync` that covers it, even when that `fdatasync` is slow;
//! - under `everysec` (and `no`), it has been handed to the operating system: a `kill -9` of
//!   the process never loses it;
//! - a write that could not be persisted (a full disk) is never shown to anyone.
//!
//! The faults: `kill -9`, a file size limit standing in for a full disk (`prlimit`), and
//! `strace`, to watch the order of system calls and to delay `fdatasync`.

mod common;

use std::fs;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::strace::Strace;
use common::{log_files, pipeline, stop, wait_until, NodeProcess};

/// Make every `fdatasync` of `node` take `by` (strace's fault injection), from now until the
/// answer is dropped; the trace goes to `trace_dir`.
fn delay_every_fdatasync(node: &NodeProcess, trace_dir: &std::path::Path, by: Duration) -> Strace {
    let inject = format!("inject=fdatasync:delay_enter={}", by.as_micros());
    Strace::attach(
        node.pid(),
        &trace_dir.join("trace"),
        &["-e", "trace=fdatasync", "-e", &inject],
    )
}

/// Set the file size limit of process `pid` (`prlimit --fsize`): a limit stands in for a
/// full disk, as writes past it fail with `EFBIG`.
fn limit_file_size(pid: u32, limit: &str) {
    let status = Command::new("prlimit")
        .args(["--pid", &pid.to_string(), &format!("--fsize={limit}")])
        .status()
        .expect("run prlimit (util-linux)");
    assert!(status.success(), "prlimit --fsize={limit} failed");
}

/// How many writes [`traced_sequential_writes`] makes.
const WRITES: usize = 20;

/// The `strace` trace (of the `calls` given as `trace=...`) of one client writing [`WRITES`]
/// keys in sequence: write i is sent only once write i - 1 was acknowledged.
fn traced_sequential_writes(node: &NodeProcess, calls: &str) -> String {
    let trace_dir = tempfile::tempdir().unwrap();
    let trace = trace_dir.path().join("trace");
    let strace = Strace::attach(node.pid(), &trace, &["-e", calls]);
    let mut client = node.client();
    for i in 0..WRITES {
        client.put(format!("k{i}").as_bytes(), b"v").unwrap();
    }
    drop(strace);
    fs::read_to_string(&trace).unwrap()
}

/// The file descriptor of `pid`'s open log file, from /proc.
fn log_fd(pid: u32) -> String {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read the node's file descriptors")
        .filter_map(Result::ok)
        .find(|fd| {
            fs::read_link(fd.path())
                .is_ok_and(|target| target.extension().is_some_and(|e| e == "kvl"))
        })
        .map(|fd| fd.file_name().to_string_lossy().into_owned())
        .expect("the node has its log open")
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
fn every_acknowledged_write_survives_a_kill_9_under_always_and_everysec() {
    for fsync in ["always", "everysec"] {
        let dir = tempfile::tempdir().unwrap();
        let acked = Arc::new(Mutex::new(Vec::new()));
        for (round, kill_after) in [50usize, 400, 1500].into_iter().enumerate() {
            let node = NodeProcess::start_in(dir.path(), &["--fsync", fsync]);
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
            // Only the process died, not the machine: under either policy, every write
            // acknowledged in this round and the ones before is there.
            let node = NodeProcess::start_in(dir.path(), &["--fsync", fsync]);
            let keys = acked.lock().unwrap().clone();
            let gets: Vec<String> = keys.iter().map(|k| format!("GET {k}")).collect();
            let replies = pipeline(&node, &gets);
            for (key, reply) in keys.iter().zip(&replies) {
                assert_eq!(
                    reply, key,
                    "--fsync {fsync}: acknowledged write of {key} was lost (round {round})"
                );
            }
            stop(node);
        }
    }
}

#[test]
fn with_fsync_always_a_write_is_acknowledged_only_after_an_fdatasync() {
    let node = NodeProcess::start(&["--fsync", "always"]);
    // No fdatasync that came before write i - 1's acknowledgement can cover write i.
    let trace = traced_sequential_writes(&node, "trace=fdatasync,write,sendto");
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
fn with_fsync_everysec_a_write_is_acknowledged_only_after_its_record_is_written() {
    let node = NodeProcess::start(&["--fsync", "everysec"]);
    let log_write = format!("write({}, ", log_fd(node.pid()));
    // Only a record written after write i - 1's acknowledgement can be write i's.
    let trace = traced_sequential_writes(&node, "trace=write,sendto");
    // Replay the trace in order: every `OK` must find this client's record handed to the
    // operating system (a kill -9 of the process then cannot lose it).
    let (mut written, mut acks) = (false, 0);
    for line in trace.lines() {
        if line.contains(&log_write) {
            written = true;
        } else if line.contains("sendto(") && line.contains(r#""OK\n""#) {
            assert!(
                written,
                "OK number {} sent before its record was written:\n{trace}",
                acks + 1
            );
            written = false;
            acks += 1;
        }
    }
    assert_eq!(acks, WRITES, "every acknowledgement traced:\n{trace}");
}

/// A write whose fdatasync is stalled: every fdatasync of the node takes the delay while
/// this lives (fields drop in order: the tracer detaches, then its folder goes).
struct Stalled {
    _strace: Strace,
    _trace_dir: tempfile::TempDir,
    /// The connection the write was sent on; its reply has not come.
    stream: TcpStream,
}

/// Make every fdatasync of `node` (data in `dir`) take `delay`, then send `request` (a write)
/// on a connection of its own and wait until its record is in the log: the writer is then in
/// the delayed fdatasync that covers it.
fn stall_fsync_after(
    node: &NodeProcess,
    dir: &std::path::Path,
    request: &str,
    delay: Duration,
) -> Stalled {
    let trace_dir = tempfile::tempdir().unwrap();
    let strace = delay_every_fdatasync(node, trace_dir.path(), delay);
    let log = log_files(dir).pop().unwrap();
    let before = fs::metadata(&log).unwrap().len();
    let mut stream = node.raw();
    send(&mut stream, &format!("{request}\n"));
    wait_until("the writer has written the record", || {
        fs::metadata(&log).unwrap().len() > before
    });
    Stalled {
        _strace: strace,
        _trace_dir: trace_dir,
        stream,
    }
}

/// Send `request` on `stream` without waiting for its reply.
fn send(stream: &mut TcpStream, request: &str) {
    stream.write_all(request.as_bytes()).unwrap();
}

/// The reply line on `stream`, or `None` if none arrives within `wait`.
fn reply_within(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    let mut line = Vec::new();
    loop {
        match stream.read(&mut byte) {
            Ok(0) => return None,
            Ok(_) if byte[0] == b'\n' => return Some(String::from_utf8_lossy(&line).into()),
            Ok(_) => line.push(byte[0]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return None
            }
            Err(e) => panic!("read failed: {e}"),
        }
    }
}

#[test]
fn with_fsync_always_no_read_shows_a_write_that_is_not_yet_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_in(dir.path(), &["--fsync", "always"]);
    let mut writer = node.client();
    writer.put(b"x", b"v1").unwrap();
    // From now on every fdatasync takes 10 s (long enough for the steps below on a loaded
    // machine, where strace slows every system call): y's is stalled.
    let stalled = stall_fsync_after(&node, dir.path(), "PUT y 1", Duration::from_secs(10));
    // v2 is applied in memory and written to the log while that fdatasync runs, but it is
    // not on disk before the next one.
    let mut a = node.raw();
    send(&mut a, "PUT x v2\n");
    let mut b = node.raw();
    send(&mut b, "GET x\n");
    let seen = reply_within(&mut b, Duration::from_millis(500));
    assert_eq!(seen, None, "a read showed a write that is not on disk");
    node.signal("KILL");
    drop(stalled);
    drop(node);
    // Neither v2 nor a read of it was acknowledged, so whether it survives (here the page
    // cache outlives the process, and it may) breaks no promise; what must hold is the read
    // above, which said nothing.
    let node = NodeProcess::start_in(dir.path(), &["--fsync", "always"]);
    let x = node.client().get(b"x").unwrap();
    assert!(
        x == Some(b"v1".to_vec()) || x == Some(b"v2".to_vec()),
        "x is {x:?}"
    );
}

#[test]
fn a_full_disk_refuses_writes_shows_no_write_it_could_not_persist_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_in(dir.path(), &["--fsync", "always"]);
    let mut client = node.client();
    client.put(b"before", b"safe").unwrap();
    // Let the log grow by only a few hundred bytes more: the file size limit stands in for a
    // full disk (writes fail with EFBIG).
    let log = log_files(dir.path()).pop().unwrap();
    let limit = fs::metadata(&log).unwrap().len() + 300;
    limit_file_size(node.pid(), &format!("{limit}:unlimited"));
    let big = "b".repeat(1000);
    let reply = client.request(format!("PUT big {big}").as_bytes()).unwrap();
    let reply = String::from_utf8(reply).unwrap();
    assert!(reply.starts_with("ERROR: persistence failed: "), "{reply}");
    // The writer has failed: the next write is refused before it is applied, and says so.
    let refused = String::from_utf8(client.request(b"PUT other 1").unwrap()).unwrap();
    assert!(
        refused.starts_with("ERROR: writes refused until the disk recovers (not applied): "),
        "{refused}"
    );
    // The failed write is applied in memory but not on disk: no read may show it. The node
    // cannot tell which keys such writes touched, so every read waits for the disk, and is
    // refused while it fails.
    let mut reader = node.client();
    for key in [&b"big"[..], b"before"] {
        let read = String::from_utf8(reader.request(&[b"GET ", key].concat()).unwrap()).unwrap();
        assert!(read.starts_with("ERROR: persistence failed: "), "{read}");
    }
    node.wait_for_log("persistence failed");

    limit_file_size(node.pid(), "unlimited:unlimited");
    wait_until("writes are accepted again", || {
        client.request(b"PUT after 2").is_ok_and(|r| r == b"OK")
    });
    // Recovered: the writer wrote what it had kept, so what a read shows now is on disk.
    let shown = client.get(b"big").unwrap();
    assert_eq!(client.get(b"before").unwrap(), Some(b"safe".to_vec()));
    stop(node);
    let node = NodeProcess::start_in(dir.path(), &[]);
    let replies = pipeline(&node, &["GET before".into(), "GET after".into()]);
    assert_eq!(replies, ["safe", "2"]);
    assert_eq!(
        node.client().get(b"big").unwrap(),
        shown,
        "what was read survived"
    );
}

#[test]
fn with_fsync_everysec_a_stalled_fsync_makes_new_writes_wait() {
    let node = NodeProcess::start(&["--fsync", "everysec"]);
    // Every fdatasync takes 4 s: the writer's next once-a-second fsync stalls.
    let trace_dir = tempfile::tempdir().unwrap();
    let strace = delay_every_fdatasync(&node, trace_dir.path(), Duration::from_secs(4));
    // One client writing in sequence, noting when each write is acknowledged.
    let mut client = node.client();
    let start = std::time::Instant::now();
    let mut acks = Vec::new();
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(8) {
        client.put(format!("k{i}").as_bytes(), b"v").unwrap();
        acks.push(start.elapsed());
        i += 1;
    }
    drop(strace);
    // Writes go on while an fsync runs, but not once the oldest write it has not covered is
    // two seconds old: then nothing new is written until it ends, so nothing new is
    // acknowledged. What an everysec crash can lose stays about two seconds, however long
    // the disk stalls, and what waits in memory is one batch per client.
    let longest = acks
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or_default();
    assert!(
        longest >= Duration::from_millis(1500),
        "writes went on being acknowledged during a 4 s fsync stall (longest gap {longest:?})"
    );
    assert!(node.answers_ping());
}

#[test]
fn a_replica_that_cannot_store_a_full_resync_stops_until_restarted_then_resyncs() {
    let replica_dir = tempfile::tempdir().unwrap();
    let replica = NodeProcess::start_at("127.0.0.1:0", replica_dir.path(), &["--role", "replica"]);
    let addr = replica.addr.to_string();
    let primary = NodeProcess::start(&["--replica", &addr]);
    let mut client = primary.client();
    // The replica holds 1 MB of data, and has made it durable.
    let value = "v".repeat(1000);
    let puts: Vec<String> = (0..1000).map(|i| format!("PUT k{i} {value}")).collect();
    assert!(pipeline(&primary, &puts).iter().all(|reply| reply == "OK"));
    assert_eq!(client.request(b"WAIT 1 60000").unwrap(), b"1");
    let durable = |client: &mut kvstore::client::Client| -> u64 {
        let info = String::from_utf8(client.request(b"INFO").unwrap()).unwrap();
        info.split(' ')
            .find_map(|f| f.strip_prefix("replica0_durable=")?.parse().ok())
            .unwrap_or(0)
    };
    wait_until("the replica's data is durable", || {
        durable(&mut client) >= 1000
    });
    // Its disk now takes no file over 64 KiB, and it is told to take a full copy: the copy's
    // snapshot (about 1 MB) cannot be stored, after its old files are gone.
    limit_file_size(replica.pid(), "65536:unlimited");
    assert_eq!(replica.client().request(b"RESYNC").unwrap(), b"OK");
    replica.wait_for_log("could not store a full resync");
    // Nothing it holds is known to be on disk: it answers no read, and acknowledges nothing
    // as durable, even once the disk has room again.
    limit_file_size(replica.pid(), "unlimited:unlimited");
    let read = String::from_utf8(replica.client().request(b"GET k1").unwrap()).unwrap();
    assert!(read.starts_with("ERROR: persistence failed: "), "{read}");
    client.put(b"more", b"1").unwrap();
    wait_until(
        "the primary hears that nothing is durable on the replica",
        || durable(&mut client) == 0,
    );
    // A restart finds the directory mid-resync and asks for everything again.
    replica.signal("KILL");
    drop(replica);
    let replica = NodeProcess::start_at(&addr, replica_dir.path(), &["--role", "replica"]);
    assert_eq!(client.request(b"WAIT 1 60000").unwrap(), b"1");
    assert_eq!(
        replica.client().get(b"k999").unwrap(),
        Some(value.into_bytes())
    );
}

#[test]
fn with_fsync_everysec_writes_acknowledged_before_the_disk_filled_survive_a_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeProcess::start_in(dir.path(), &["--fsync", "everysec"]);
    // A burst of acknowledged writes: handed to the operating system, most likely not yet
    // fsynced (that happens once a second).
    let value = "v".repeat(100);
    let puts: Vec<String> = (0..500).map(|i| format!("PUT b{i} {value}")).collect();
    assert!(pipeline(&node, &puts).iter().all(|reply| reply == "OK"));
    // The disk is full from now on: the next write fails, and so do the writer's retries.
    let log = log_files(dir.path()).pop().unwrap();
    let full = fs::metadata(&log).unwrap().len();
    limit_file_size(node.pid(), &format!("{full}:unlimited"));
    let mut client = node.client();
    // The first write after the disk filled is applied but fails to persist, or, if the
    // writer already failed on its own, is refused.
    let refused = String::from_utf8(client.request(b"PUT after 1").unwrap()).unwrap();
    assert!(
        refused.starts_with("ERROR: persistence failed: ")
            || refused.starts_with("ERROR: writes refused until the disk recovers"),
        "{refused}"
    );
    node.wait_for_log("persistence still failing");
    // The process dies (the machine does not): what was acknowledged is still in the file.
    node.signal("KILL");
    drop(node);
    let node = NodeProcess::start_in(dir.path(), &[]);
    let gets: Vec<String> = (0..500).map(|i| format!("GET b{i}")).collect();
    assert!(
        pipeline(&node, &gets).iter().all(|reply| *reply == value),
        "a write acknowledged before the disk filled was lost"
    );
}

#[test]
fn shutdown_during_a_stalled_fsync_finishes_cleanly_and_keeps_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut node = NodeProcess::start_in(dir.path(), &["--fsync", "always"]);
    node.client().put(b"before", b"1").unwrap();
    // Every fdatasync now takes 2 s: the next write's sync job stalls on the fsync thread.
    let mut stalled = stall_fsync_after(&node, dir.path(), "PUT during 2", Duration::from_secs(2));
    // The final sync of a shutdown waits for the running one (two fsyncs of one file at once
    // could leave the one that says "done" not knowing of the other's error), then syncs.
    // What this shows from outside: shutdown in the middle of a stalled fsync neither hangs
    // nor fails, and loses nothing.
    node.signal("TERM");
    let status = node.wait_exit();
    assert!(
        status.success(),
        "shutdown during a stalled fsync: {status}"
    );
    assert_eq!(
        reply_within(&mut stalled.stream, Duration::from_secs(5)).as_deref(),
        Some("OK"),
        "the write was acknowledged before the node stopped"
    );
    let node = NodeProcess::start_in(dir.path(), &["--fsync", "always"]);
    assert_eq!(node.client().get(b"during").unwrap(), Some(b"2".to_vec()));
    assert_eq!(node.client().get(b"before").unwrap(), Some(b"1".to_vec()));
}
