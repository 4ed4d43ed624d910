//! The keyspace commands end to end: `SCAN` returns every key present throughout while
//! another client writes, `KEYS` and `SCAN` never return an expired key, `FLUSHALL` is
//! replicated, persisted and refused on a replica, `INCRBYFLOAT`, `GETRANGE` and `SETRANGE`
//! answer as Redis does, and redis-py's `scan_iter`, `flushdb` and `incrbyfloat` work.

mod common;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use common::{redis_cli, wait_until, NodeProcess};

fn cli(node: &NodeProcess, args: &[&str]) -> String {
    redis_cli(node, args).trim_end().to_string()
}

/// A connection with the `redis` crate, for commands sent many at a time.
fn connect(node: &NodeProcess) -> redis::Connection {
    let url = format!("redis://127.0.0.1:{}/", node.addr.port());
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

/// Set `n` keys named `{prefix}{i}`, in one pipeline.
fn fill(conn: &mut redis::Connection, prefix: &str, n: usize) {
    let mut pipe = redis::pipe();
    for i in 0..n {
        pipe.cmd("SET")
            .arg(format!("{prefix}{i}"))
            .arg("v")
            .ignore();
    }
    let () = pipe.query(conn).unwrap();
}

/// A node's `DIGEST` of its data, without the offset.
fn digest(node: &NodeProcess) -> String {
    let line = cli(node, &["DIGEST"]);
    line.split(' ').next().unwrap_or_default().to_string()
}

#[test]
fn flushall_reaches_the_replica_and_a_replica_refuses_it() {
    let replica = NodeProcess::start(&["--role", "replica"]);
    let pdir = tempfile::tempdir().unwrap();
    let primary = NodeProcess::start_in(pdir.path(), &["--replica", &replica.addr.to_string()]);
    let mut conn = connect(&primary);
    fill(&mut conn, "before", 5_000);
    assert_eq!(cli(&primary, &["FLUSHALL", "ASYNC"]), "OK");
    fill(&mut conn, "after", 10);
    assert_eq!(cli(&primary, &["WAIT", "1", "60000"]), "1");
    assert_eq!(cli(&replica, &["DBSIZE"]), "10");
    assert_eq!(digest(&replica), digest(&primary));
    assert!(cli(&replica, &["FLUSHDB"]).starts_with("READONLY"));
    assert_eq!(cli(&replica, &["DBSIZE"]), "10");
    assert_eq!(cli(&primary, &["FLUSHDB", "SYNC"]), "OK");
    assert_eq!(cli(&primary, &["WAIT", "1", "60000"]), "1");
    assert_eq!(cli(&replica, &["DBSIZE"]), "0");
    assert_eq!(digest(&replica), digest(&primary));
}

#[test]
fn flushall_survives_kill_9_and_what_follows_it_too() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--fsync", "always"];
    let mut node = NodeProcess::start_in(dir.path(), &flags);
    let mut conn = connect(&node);
    fill(&mut conn, "old", 1_000);
    assert_eq!(cli(&node, &["FLUSHALL"]), "OK");
    fill(&mut conn, "new", 3);
    node.signal("KILL");
    node.wait_exit();

    let node = NodeProcess::start_in(dir.path(), &flags);
    assert_eq!(cli(&node, &["DBSIZE"]), "3");
    assert_eq!(cli(&node, &["GET", "old0"]), "");
    assert_eq!(cli(&node, &["GET", "new2"]), "v");
}

/// One `SCAN` call: the next cursor and the keys.
fn scan(conn: &mut redis::Connection, cursor: u64, args: &[&str]) -> (u64, Vec<String>) {
    redis::cmd("SCAN")
        .arg(cursor)
        .arg(args)
        .query(conn)
        .unwrap()
}

#[test]
fn scan_returns_every_key_present_throughout_while_a_writer_adds_and_deletes_others() {
    let node = NodeProcess::start(&[]);
    let mut conn = connect(&node);
    fill(&mut conn, "stay", 5_000);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, mut conn) = (stop.clone(), connect(&node));
        thread::spawn(move || {
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                fill(&mut conn, &format!("churn{round}-"), 100);
                if round > 0 {
                    let old: Vec<String> = (0..100)
                        .map(|i| format!("churn{}-{i}", round - 1))
                        .collect();
                    let _: i64 = redis::cmd("DEL").arg(&old).query(&mut conn).unwrap();
                }
                round += 1;
            }
            round
        })
    };
    let (mut cursor, mut seen, mut calls) = (0, BTreeSet::new(), 0);
    loop {
        let (next, keys) = scan(&mut conn, cursor, &["COUNT", "10"]);
        seen.extend(keys);
        calls += 1;
        if next == 0 {
            break;
        }
        cursor = next;
    }
    stop.store(true, Ordering::Relaxed);
    let rounds = writer.join().unwrap();
    let missing: Vec<String> = (0..5_000)
        .map(|i| format!("stay{i}"))
        .filter(|k| !seen.contains(k))
        .collect();
    assert!(missing.is_empty(), "never returned: {missing:?}");
    assert!(
        calls > 1 && rounds > 0,
        "{calls} calls, {rounds} writer rounds"
    );
}

#[test]
fn keys_and_scan_never_return_an_expired_key() {
    let node = NodeProcess::start(&[]);
    let mut conn = connect(&node);
    let mut pipe = redis::pipe();
    for i in 0..200 {
        pipe.cmd("SET")
            .arg(format!("short{i}"))
            .arg("v")
            .arg("PX")
            .arg(200)
            .ignore();
        pipe.cmd("SET").arg(format!("long{i}")).arg("v").ignore();
    }
    let () = pipe.query(&mut conn).unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("short*").query(&mut conn).unwrap();
    assert!(keys.len() <= 200);
    // From the deadline on (the last key set has the latest), not one of them is answered,
    // whether or not it was deleted yet.
    wait_until("the short keys expired", || {
        cli(&node, &["PTTL", "short199"]) == "-2"
    });
    for i in 0..20 {
        let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut conn).unwrap();
        assert_eq!(keys.len(), 200, "round {i}");
        assert!(keys.iter().all(|k| k.starts_with("long")));
        let (mut cursor, mut scanned) = (0, Vec::new());
        loop {
            let (next, keys) = scan(&mut conn, cursor, &["MATCH", "s*", "COUNT", "50"]);
            scanned.extend(keys);
            if next == 0 {
                break;
            }
            cursor = next;
        }
        assert!(scanned.is_empty(), "{scanned:?}");
        let random: String = redis::cmd("RANDOMKEY").query(&mut conn).unwrap();
        assert!(random.starts_with("long"), "{random}");
    }
    assert_eq!(cli(&node, &["KEYS", "long1[0-2]"]).lines().count(), 3);
    assert_eq!(cli(&node, &["KEYS", "long\\1"]), "long1");
}

/// redis-py from PyPI: `scan_iter` and `flushdb`, as a new user would call them.
#[test]
fn redis_py_scan_iter_and_flushdb() {
    let node = NodeProcess::start(&[]);
    let script = format!(
        r#"
import redis
r = redis.Redis(port={port})
r.mset({{f"user:{{i}}": i for i in range(3000)}})
r.set("other", 1)
keys = set(r.scan_iter(match="user:*", count=100))
assert keys == {{f"user:{{i}}".encode() for i in range(3000)}}, len(keys)
assert set(r.scan_iter(_type="STRING")) == keys | {{b"other"}}
assert list(r.scan_iter(_type="hash")) == []
assert sorted(r.keys("user:1?")) == [f"user:1{{i}}".encode() for i in range(10)]
assert r.randomkey() is not None
assert r.incrbyfloat("f", 10.5) == 10.5 and r.incrbyfloat("f", 0.1) == 10.6
assert r.setrange("s", 6, "Redis") == 11 and r.getrange("s", 6, -1) == b"Redis"
assert r.flushdb(asynchronous=True) and r.dbsize() == 0
assert list(r.scan_iter()) == [] and r.randomkey() is None
print("ok", redis.__version__)
"#,
        port = node.addr.port()
    );
    let stdout = common::redis_py(&script);
    assert!(stdout.starts_with("ok"), "{stdout}");
}

#[test]
fn incrbyfloat_getrange_and_setrange_answer_as_redis_over_resp() {
    let node = NodeProcess::start(&[]);
    assert_eq!(cli(&node, &["SET", "f", "10.50", "EX", "100"]), "OK");
    assert_eq!(cli(&node, &["INCRBYFLOAT", "f", "0.1"]), "10.6");
    let ttl: u64 = cli(&node, &["TTL", "f"]).parse().unwrap();
    assert!((1..=100).contains(&ttl), "the deadline is kept: {ttl}");
    assert_eq!(cli(&node, &["INCRBYFLOAT", "f", "-5.0e3"]), "-4989.4");
    assert_eq!(
        cli(&node, &["INCRBYFLOAT", "f", "x"]),
        "ERR value is not a valid float"
    );
    assert_eq!(
        cli(&node, &["INCRBYFLOAT", "f", "inf"]),
        "ERR increment would produce NaN or Infinity"
    );
    assert_eq!(cli(&node, &["SET", "s", "This is a string"]), "OK");
    assert_eq!(cli(&node, &["GETRANGE", "s", "-3", "-1"]), "ing");
    assert_eq!(cli(&node, &["SUBSTR", "s", "0", "3"]), "This");
    assert_eq!(cli(&node, &["GETRANGE", "nothing", "0", "-1"]), "");
    assert_eq!(cli(&node, &["SETRANGE", "s", "10", "thing!"]), "16");
    assert_eq!(cli(&node, &["GET", "s"]), "This is a thing!");
    assert_eq!(cli(&node, &["SETRANGE", "z", "2", "x"]), "3");
    assert_eq!(cli(&node, &["STRLEN", "z"]), "3");
    assert_eq!(
        cli(&node, &["SETRANGE", "s", "-1", "x"]),
        "ERR offset is out of range"
    );
    assert_eq!(
        cli(&node, &["SETRANGE", "s", "536870912", "x"]),
        "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
    );
    assert_eq!(
        cli(&node, &["GETRANGE", "s", "a", "1"]),
        "ERR value is not an integer or out of range"
    );
}
