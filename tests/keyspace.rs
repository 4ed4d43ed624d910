//! The keyspace commands end to end: `FLUSHALL` replicated, persisted and refused on a
//! replica.

mod common;

use common::{redis_cli, NodeProcess};

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
