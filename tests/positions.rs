//! Reading your own writes from a replica (docs/protocol.md, "Reading your writes from a
//! replica"): a write hands the client a position token (`LASTPOS`), and a read anywhere can
//! wait for that position first (`WAITPOS`, `GET key AFTER token timeout`). Real `kvnode`
//! processes, with the replication link held or slowed by the test proxy.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{redis_cli, wait_until, NodeProcess};
use kvstore::chaos::proxy::{Mode, Proxy};
use kvstore::client::Client;

/// A replica, and a primary that streams to it through a proxy the test controls.
struct Pair {
    primary: NodeProcess,
    replica: NodeProcess,
    proxy: Proxy,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

impl Pair {
    fn start(primary_flags: &[&str]) -> Pair {
        let rdir = tempfile::tempdir().unwrap();
        let replica = NodeProcess::start_at("127.0.0.1:0", rdir.path(), &["--role", "replica"]);
        let proxy = Proxy::start(replica.addr).expect("start a proxy");
        let pdir = tempfile::tempdir().unwrap();
        let primary = primary_for(pdir.path(), proxy.addr, primary_flags);
        Pair {
            primary,
            replica,
            proxy,
            _dirs: (pdir, rdir),
        }
    }
}

fn primary_for(dir: &Path, replica: SocketAddr, extra: &[&str]) -> NodeProcess {
    let replica = replica.to_string();
    let mut flags = vec!["--replica", replica.as_str()];
    flags.extend_from_slice(extra);
    NodeProcess::start_at("127.0.0.1:0", dir, &flags)
}

/// `PUT key value` and `LASTPOS` in one round trip: the token of the write.
fn put_with_token(client: &mut Client, key: &str, value: &str) -> String {
    client
        .send(format!("PUT {key} {value}").as_bytes())
        .unwrap();
    client.send(b"LASTPOS").unwrap();
    assert_eq!(client.read_reply().unwrap(), b"OK");
    text(client.read_reply().unwrap())
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap()
}

/// A node's `INFO` field, as a number.
fn info_field(node: &NodeProcess, field: &str) -> u64 {
    let info = text(node.client().request(b"INFO").unwrap());
    info.split_whitespace()
        .find_map(|f| f.strip_prefix(&format!("{field}="))?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_read_with_the_token_waits_for_a_held_link_and_then_sees_the_write() {
    let pair = Pair::start(&[]);
    let mut primary = pair.primary.client();
    put_with_token(&mut primary, "k", "old");
    let token = put_with_token(&mut primary, "sync", "1");
    let mut replica = pair.replica.client();
    let ready = format!("WAITPOS {token} 0");
    assert_eq!(text(replica.request(ready.as_bytes()).unwrap()), "OK");

    // The link holds everything from now on: the replica cannot have the next write.
    pair.proxy.set(Mode::Blackhole);
    let token = put_with_token(&mut primary, "k", "new");
    assert_eq!(
        text(replica.request(b"GET k").unwrap()),
        "old",
        "a plain read on the replica is stale while the link is held"
    );
    let addr = pair.replica.addr;
    let read = thread::spawn(move || {
        let mut client = Client::connect(&addr.to_string(), common::DEADLINE).unwrap();
        text(
            client
                .request(format!("GET k AFTER {token} 0").as_bytes())
                .unwrap(),
        )
    });
    wait_until("the read waits on the replica", || {
        info_field(&pair.replica, "blocked_clients") == 1
    });
    pair.proxy.set(Mode::Forward);
    assert_eq!(read.join().unwrap(), "new");
    assert_eq!(info_field(&pair.replica, "blocked_clients"), 0);
}

#[test]
fn under_a_link_that_stalls_and_resumes_every_read_with_the_token_sees_its_write() {
    let pair = Pair::start(&[]);
    // The link is held for a few milliseconds at a time, over and over.
    let stop = AtomicBool::new(false);
    thread::scope(|scope| {
        scope.spawn(|| {
            let mut held = false;
            while !stop.load(Ordering::SeqCst) {
                held = !held;
                pair.proxy
                    .set(if held { Mode::Blackhole } else { Mode::Forward });
                // The rhythm of the stalls, not a wait for a condition.
                thread::sleep(Duration::from_millis(7));
            }
            pair.proxy.set(Mode::Forward);
        });
        let mut primary = pair.primary.client();
        let mut replica = pair.replica.client();
        for i in 0..300 {
            let key = format!("k{}", i % 7);
            let value = format!("v{i}");
            let token = put_with_token(&mut primary, &key, &value);
            let read = format!("GET {key} AFTER {token} 0");
            assert_eq!(text(replica.request(read.as_bytes()).unwrap()), value);
        }
        stop.store(true, Ordering::SeqCst);
    });
}

#[test]
fn waitpos_pipelined_before_reads_gates_them_too() {
    let pair = Pair::start(&[]);
    let mut primary = pair.primary.client();
    pair.proxy.set(Mode::Blackhole);
    put_with_token(&mut primary, "a", "1");
    let token = put_with_token(&mut primary, "b", "2");
    let addr = pair.replica.addr;
    let read = thread::spawn(move || {
        let mut client = Client::connect(&addr.to_string(), common::DEADLINE).unwrap();
        for line in [format!("WAITPOS {token} 0"), "GET a".into(), "GET b".into()] {
            client.send(line.as_bytes()).unwrap();
        }
        (0..3)
            .map(|_| text(client.read_reply().unwrap()))
            .collect::<Vec<_>>()
    });
    wait_until("the batch waits on the replica", || {
        info_field(&pair.replica, "blocked_clients") == 1
    });
    pair.proxy.set(Mode::Forward);
    assert_eq!(read.join().unwrap(), ["OK", "1", "2"]);
}

#[test]
fn a_position_the_replica_cannot_reach_is_an_error_not_a_hang() {
    let pair = Pair::start(&[]);
    let mut primary = pair.primary.client();
    let token = put_with_token(&mut primary, "k", "v");
    let mut replica = pair.replica.client();
    assert_eq!(
        text(
            replica
                .request(format!("WAITPOS {token} 0").as_bytes())
                .unwrap()
        ),
        "OK"
    );
    let id = token.split(':').nth(1).unwrap().to_string();

    // A history this replica does not hold: refused at once, even with no timeout.
    let elsewhere = format!("0:{}:1", "f".repeat(40));
    let started = Instant::now();
    let reply = text(
        replica
            .request(format!("WAITPOS {elsewhere} 0").as_bytes())
            .unwrap(),
    );
    assert!(reply.starts_with("ERROR: NOHISTORY: "), "{reply}");
    let reply = text(
        replica
            .request(format!("GET k AFTER {elsewhere} 0").as_bytes())
            .unwrap(),
    );
    assert!(reply.starts_with("ERROR: NOHISTORY: "), "{reply}");
    assert!(started.elapsed() < common::DEADLINE);

    // Its own history, further than the primary has gone: a timeout that says where it is.
    let ahead = format!("0:{id}:999999");
    let reply = text(
        replica
            .request(format!("WAITPOS {ahead} 50").as_bytes())
            .unwrap(),
    );
    assert!(
        reply.starts_with("ERROR: TIMEOUT: position ") && reply.contains(&id),
        "{reply}"
    );
    let reply = text(replica.request(b"WAITPOS not-a-token 50").unwrap());
    assert!(
        reply.starts_with("ERROR: invalid position token"),
        "{reply}"
    );
}

#[test]
fn resp_clients_get_the_same_commands() {
    let pair = Pair::start(&[]);
    assert_eq!(redis_cli(&pair.primary, &["SET", "k", "v"]), "OK\n");
    // A new connection has seen nothing yet: its token is reached everywhere.
    assert_eq!(redis_cli(&pair.primary, &["LASTPOS"]), "0:-:0\n");
    let mut primary = pair.primary.client();
    let token = put_with_token(&mut primary, "k", "v2");
    assert_eq!(redis_cli(&pair.replica, &["WAITPOS", &token, "0"]), "OK\n");
    assert_eq!(
        redis_cli(&pair.replica, &["GET", "k", "AFTER", &token, "1000"]),
        "v2\n"
    );
    let refused = redis_cli(
        &pair.replica,
        &["WAITPOS", &format!("0:{}:1", "e".repeat(40)), "0"],
    );
    assert!(refused.starts_with("NOHISTORY "), "{refused}");
    let wrong = redis_cli(&pair.replica, &["GET", "k", "BEFORE", &token, "1000"]);
    assert!(wrong.starts_with("ERR syntax error"), "{wrong}");
}

#[test]
fn a_read_after_a_read_on_the_replica_never_goes_back() {
    // LASTPOS after a read on a replica names what the read showed: a later read with that
    // token on another node (here the primary, restarted from its log) shows no less.
    let pair = Pair::start(&[]);
    let mut primary = pair.primary.client();
    let token = put_with_token(&mut primary, "k", "v1");
    let mut replica = pair.replica.client();
    replica
        .send(format!("GET k AFTER {token} 0").as_bytes())
        .unwrap();
    replica.send(b"LASTPOS").unwrap();
    assert_eq!(text(replica.read_reply().unwrap()), "v1");
    let seen = text(replica.read_reply().unwrap());
    let offset = |t: &str| t.rsplit(':').next().unwrap().parse::<u64>().unwrap();
    assert!(offset(&seen) >= offset(&token), "{seen} < {token}");
    assert_eq!(
        text(
            primary
                .request(format!("WAITPOS {seen} 0").as_bytes())
                .unwrap()
        ),
        "OK"
    );
}

#[test]
fn a_token_from_before_a_primary_crash_is_honoured_where_the_history_continues() {
    let rdir = tempfile::tempdir().unwrap();
    let replica = NodeProcess::start_at("127.0.0.1:0", rdir.path(), &["--role", "replica"]);
    let pdir = tempfile::tempdir().unwrap();
    let always = ["--fsync", "always"];
    let mut primary = primary_for(pdir.path(), replica.addr, &always);
    let mut client = primary.client();
    let before = put_with_token(&mut client, "k", "v1");
    let mut on_replica = replica.client();
    let wait = format!("WAITPOS {before} 0");
    assert_eq!(text(on_replica.request(wait.as_bytes()).unwrap()), "OK");
    let old_id = before.split(':').nth(1).unwrap().to_string();

    // kill -9: the restarted primary takes a new id that continues the old history.
    primary.signal("KILL");
    primary.wait_exit();
    let addr = primary.addr.to_string();
    let replica_addr = replica.addr.to_string();
    let flags = ["--replica", replica_addr.as_str(), "--fsync", "always"];
    let primary = NodeProcess::start_at(&addr, pdir.path(), &flags);
    let mut client = primary.client();
    let after = put_with_token(&mut client, "k", "v2");
    assert_ne!(after.split(':').nth(1), Some(old_id.as_str()));

    // The restarted primary honours the old token; the replica follows the new history, and
    // honours both.
    assert_eq!(text(client.request(wait.as_bytes()).unwrap()), "OK");
    let read = format!("GET k AFTER {after} 0");
    assert_eq!(text(on_replica.request(read.as_bytes()).unwrap()), "v2");
    assert_eq!(text(on_replica.request(wait.as_bytes()).unwrap()), "OK");
    // A position of the old history past where the new one continues it never comes.
    let lost = format!("0:{old_id}:999999");
    let reply = text(
        client
            .request(format!("WAITPOS {lost} 0").as_bytes())
            .unwrap(),
    );
    assert!(reply.starts_with("ERROR: NOHISTORY: "), "{reply}");
}

#[test]
fn many_clients_wait_at_once_and_all_wake_when_the_position_arrives() {
    let pair = Pair::start(&[]);
    let mut primary = pair.primary.client();
    pair.proxy.set(Mode::Blackhole);
    let token = put_with_token(&mut primary, "k", "v");
    let waiters: Vec<_> = (0..200)
        .map(|_| {
            let mut client = pair.replica.client();
            client
                .send(format!("GET k AFTER {token} 0").as_bytes())
                .unwrap();
            client.flush().unwrap();
            client
        })
        .collect();
    wait_until("every client waits on the replica", || {
        info_field(&pair.replica, "blocked_clients") == 200
    });
    pair.proxy.set(Mode::Forward);
    for mut client in waiters {
        assert_eq!(text(client.read_reply().unwrap()), "v");
    }
    assert_eq!(info_field(&pair.replica, "blocked_clients"), 0);
}
