//! What one command (a `RENAME`, an `MSET`) or one transaction applied is one atomic group in
//! the log and the replication stream: a replica whose stream breaks inside a group applies none
//! of it, and takes it whole from the next stream; a primary's transaction reaches its replica
//! whole.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use common::{redis_cli, wait_until, NodeProcess};
use kv_actors::storage::record;
use kv_actors::store::{Change, Mutation};

/// A primary's end of a replication stream, spoken by hand to a replica with no secret.
struct HandStream {
    stream: TcpStream,
    lines: BufReader<TcpStream>,
}

impl HandStream {
    /// Open a stream to `replica`; answers it and the offset the replica stands at.
    fn open(replica: &NodeProcess) -> (HandStream, u64) {
        let stream = TcpStream::connect(replica.addr).unwrap();
        stream.set_read_timeout(Some(common::DEADLINE)).unwrap();
        let lines = BufReader::new(stream.try_clone().unwrap());
        let mut hand = HandStream { stream, lines };
        hand.send(format!("REPLICATE {}\n", "a".repeat(32)).as_bytes());
        hand.line();
        hand.send(b"PROVE - 0\n");
        let position = hand.line();
        let words: Vec<&str> = position.split_whitespace().collect();
        assert_eq!(words[0], "POSITION", "{position}");
        let offset = words[2].parse().unwrap();
        (hand, offset)
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.lines.read_line(&mut line).unwrap();
        line
    }

    /// Wait until the replica acknowledges having applied exactly `applied`.
    fn wait_ack(&mut self, applied: u64) {
        wait_until(&format!("the replica acknowledged {applied}"), || {
            self.line().starts_with(&format!("ACK {applied} "))
        });
    }
}

/// A put of `key` at `seq`; `more`: another mutation of its group follows.
fn put(seq: u64, key: &str, more: bool) -> Vec<u8> {
    let mut bytes = Vec::new();
    let mutation = Mutation {
        seq,
        change: Change::put(key.as_bytes(), b"v"),
        more,
    };
    record::encode_mutation(&mutation, &mut bytes);
    bytes
}

fn get(node: &NodeProcess, key: &str) -> String {
    redis_cli(node, &["GET", key]).trim_end().to_string()
}

#[test]
fn a_replica_whose_stream_breaks_inside_a_group_applies_none_of_it() {
    let replica = NodeProcess::start(&["--role", "replica"]);
    let id = "ab".repeat(20);
    let (mut stream, offset) = HandStream::open(&replica);
    assert_eq!(offset, 0);
    let mut start = format!("FULLSYNC {id} 0\n").into_bytes();
    record::encode_end(0, 0, &mut start);
    stream.send(&start);
    // One mutation on its own, then a group of three of which two arrive.
    stream.send(&put(1, "alone", false));
    stream.wait_ack(1);
    stream.send(&[put(2, "t1", true), put(3, "t2", true)].concat());
    // A heartbeat at the offset the primary has sent: the replica answers with what it applied.
    let mut heartbeat = Vec::new();
    record::encode_heartbeat(3, &mut heartbeat);
    stream.send(&heartbeat);
    stream.wait_ack(1);
    assert_eq!(get(&replica, "alone"), "v");
    assert_eq!(get(&replica, "t1"), "", "part of a group was applied");
    drop(stream);

    // The next stream continues after the last whole group and sends the group again, whole.
    let (mut stream, offset) = HandStream::open(&replica);
    assert_eq!(offset, 1);
    stream.send(format!("CONTINUE {id} 1\n").as_bytes());
    stream.send(&[put(2, "t1", true), put(3, "t2", true), put(4, "t3", false)].concat());
    stream.wait_ack(4);
    for key in ["t1", "t2", "t3"] {
        assert_eq!(get(&replica, key), "v", "{key}");
    }
}

#[test]
fn a_transaction_reaches_the_replica_and_survives_a_restart_whole() {
    let replica = NodeProcess::start(&["--role", "replica"]);
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--replica", &replica.addr.to_string(), "--fsync", "always"];
    let mut primary = NodeProcess::start_in(dir.path(), &flags);
    let script = "MULTI\nSET a 1\nSET b 2\nRENAME a c\nEXEC\nWAIT 1 60000\n";
    let output = std::process::Command::new("redis-cli")
        .args(["-p", &primary.addr.port().to_string()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(script.as_bytes())?;
            child.wait_with_output()
        })
        .expect("run redis-cli (CI installs redis-tools)");
    let replies = String::from_utf8_lossy(&output.stdout);
    assert!(replies.trim_end().ends_with('1'), "{replies}");
    assert_eq!(get(&replica, "a"), "");
    assert_eq!(get(&replica, "b"), "2");
    assert_eq!(get(&replica, "c"), "1");
    primary.signal("KILL");
    primary.wait_exit();
    let primary = NodeProcess::start_in(dir.path(), &flags);
    assert_eq!(get(&primary, "c"), "1");
    assert_eq!(get(&primary, "b"), "2");
}

#[test]
fn no_client_sees_part_of_a_transaction_on_the_primary_or_a_replica() {
    let replica = NodeProcess::start(&["--role", "replica"]);
    let dir = tempfile::tempdir().unwrap();
    let primary = NodeProcess::start_in(dir.path(), &["--replica", &replica.addr.to_string()]);
    let url = |node: &NodeProcess| format!("redis://{}/", node.addr);
    let (primary_url, replica_url) = (url(&primary), url(&replica));
    // Writers move two counters together, each step one transaction; readers on both nodes
    // read both in one MGET and must never see them apart.
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let url = primary_url.clone();
            std::thread::spawn(move || {
                let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
                for _ in 0..200 {
                    let (): () = redis::pipe()
                        .atomic()
                        .cmd("INCR")
                        .arg("a")
                        .ignore()
                        .cmd("INCR")
                        .arg("b")
                        .ignore()
                        .query(&mut con)
                        .unwrap();
                }
            })
        })
        .collect();
    let readers: Vec<_> = [primary_url, replica_url]
        .into_iter()
        .map(|url| {
            std::thread::spawn(move || {
                let mut con = redis::Client::open(url).unwrap().get_connection().unwrap();
                let mut reads = 0;
                let started = std::time::Instant::now();
                loop {
                    assert!(
                        started.elapsed() < common::DEADLINE,
                        "the counters never reached 800"
                    );
                    let (a, b): (Option<i64>, Option<i64>) = redis::cmd("MGET")
                        .arg("a")
                        .arg("b")
                        .query(&mut con)
                        .unwrap();
                    assert_eq!(a, b, "a transaction seen in part");
                    reads += 1;
                    if a == Some(800) {
                        return reads;
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
}
