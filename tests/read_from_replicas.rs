//! Reading from replicas with position tokens, as a user does it: `kvcli --read-from-replicas`
//! and the library's `ReplicaReadClient` against a primary and replicas that are behind on
//! purpose (a slowed replication link), stopped, or of another history.

mod common;

use std::time::{Duration, Instant};

use common::{wait_until, NodeProcess, DEADLINE};
use kvstore::chaos::proxy::Proxy;
use kvstore::client::{ClientError, PositionToken};
use kvstore::replica_reads::{ReplicaReadClient, ReplicaReadOptions};

/// A replica with a data dir of its own.
fn replica() -> NodeProcess {
    NodeProcess::start(&["--role", "replica"])
}

/// A primary streaming to `replicas` (addresses, maybe proxies in front of the replicas).
fn primary_of(replicas: &[String]) -> NodeProcess {
    let flags: Vec<&str> = replicas
        .iter()
        .flat_map(|r| ["--replica", r.as_str()])
        .collect();
    NodeProcess::start(&flags)
}

/// Wait until `replica` streams from its primary and has applied a first write, so that it
/// holds the primary's history.
fn wait_linked(primary: &NodeProcess, replica: &NodeProcess) {
    primary.client().put(b"linked", b"yes").unwrap();
    let mut probe = replica.client();
    wait_until("the replica holds the primary's history", || {
        probe.get(b"linked").unwrap().is_some()
    });
}

/// Options whose reads wait for the replicas as long as a test may take: a read that goes to
/// the primary is then one a replica could not have answered, not one a loaded machine made
/// slow.
fn patient() -> ReplicaReadOptions {
    ReplicaReadOptions {
        wait: DEADLINE,
        ..ReplicaReadOptions::default()
    }
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn kvcli_reads_every_write_back_through_a_replica_that_lags() {
    let replica = replica();
    let link = Proxy::start(replica.addr).expect("start a proxy");
    let primary = primary_of(&[link.addr.to_string()]);
    wait_linked(&primary, &replica);
    link.set_delay(Duration::from_millis(40));

    // Without a token, a read on the replica right after a write misses it.
    let (mut writer, mut plain) = (primary.client(), replica.client());
    let stale = (0..50).any(|i| {
        let value = format!("s{i}");
        writer.put(b"probe", value.as_bytes()).unwrap();
        plain.get(b"probe").unwrap() != Some(value.into_bytes())
    });
    assert!(stale, "the replica never lagged: the test proves nothing");

    // With one, every read shows the write just made.
    let script: String = (0..50).map(|i| format!("PUT k v{i}\nGET k\n")).collect();
    let replicas = replica.addr.to_string();
    let port = primary.addr.port().to_string();
    let args = [
        "--port",
        &port,
        "--read-from-replicas",
        "--replicas",
        &replicas,
    ];
    let output = common::kvcli(&args, &script);
    let expected: String = (0..50).map(|i| format!("OK\nv{i}\n")).collect();
    assert_eq!(stdout(&output), expected);
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn the_library_reads_from_the_replicas_the_primary_lists() {
    let replica = replica();
    let mut primary = primary_of(&[replica.addr.to_string()]);
    wait_linked(&primary, &replica);
    let mut client = ReplicaReadClient::discover(&primary.addr.to_string(), patient()).unwrap();
    assert_eq!(client.replicas(), [replica.addr.to_string()]);
    // Named as the primary, a replica is refused with a clear word.
    let port = replica.addr.port().to_string();
    let wrong = common::kvcli(&["--port", &port, "--read-from-replicas", "GET", "k"], "");
    assert_eq!(wrong.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert!(stderr.contains("not a primary"), "{stderr}");
    for i in 0..20 {
        let (key, value) = (format!("k{i}"), format!("v{i}"));
        client.put(key.as_bytes(), value.as_bytes()).unwrap();
        assert_eq!(
            client.get(key.as_bytes()).unwrap(),
            Some(value.into_bytes())
        );
    }
    assert_eq!(client.get(b"nobody").unwrap(), None);
    let stats = client.stats();
    assert_eq!((stats.from_replicas, stats.from_primary), (21, 0));
    // The replica saw the reads: a line-protocol client whose last command was LASTPOS.
    let clients = common::redis_cli(&replica, &["CLIENT", "LIST"]);
    assert!(
        clients
            .lines()
            .any(|c| c.contains("cmd=lastpos") && c.contains("resp=0")),
        "{clients}"
    );
    // With the primary gone, reads still show every write: the replica serves them.
    primary.signal("KILL");
    primary.wait_exit();
    for i in 0..20 {
        let value = client.get(format!("k{i}").as_bytes()).unwrap();
        assert_eq!(value, Some(format!("v{i}").into_bytes()));
    }
    assert!(client.put(b"k0", b"lost").is_err(), "the primary is down");
}

#[test]
fn stopped_replicas_make_reads_fall_back_without_an_error() {
    let mut replicas = [replica(), replica()];
    let addrs: Vec<String> = replicas.iter().map(|r| r.addr.to_string()).collect();
    let primary = primary_of(&addrs);
    wait_linked(&primary, &replicas[0]);
    wait_linked(&primary, &replicas[1]);
    let options = ReplicaReadOptions {
        wait: Duration::from_secs(2),
        ..ReplicaReadOptions::default()
    };
    let mut client =
        ReplicaReadClient::connect(&primary.addr.to_string(), addrs.clone(), options).unwrap();
    let round = |client: &mut ReplicaReadClient, name: &str| {
        for i in 0..10 {
            let value = format!("{name}{i}");
            client.put(b"k", value.as_bytes()).unwrap();
            assert_eq!(client.get(b"k").unwrap(), Some(value.into_bytes()));
        }
    };
    round(&mut client, "both");
    replicas[0].signal("KILL");
    replicas[0].wait_exit();
    round(&mut client, "one");
    replicas[1].signal("KILL");
    replicas[1].wait_exit();
    let before = client.stats();
    round(&mut client, "none");
    assert_eq!(client.stats().from_primary, before.from_primary + 10);

    // kvcli too, told of replicas that are all down.
    let port = primary.addr.port().to_string();
    let list = addrs.join(",");
    let args = ["--port", &port, "--read-from-replicas", "--replicas", &list];
    let output = common::kvcli(&args, "PUT a 1\nGET a\n");
    assert_eq!(stdout(&output), "OK\n1\n");
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn a_token_of_an_unknown_history_is_refused_at_once_and_a_late_one_times_out() {
    let replica = replica();
    let primary = primary_of(&[replica.addr.to_string()]);
    wait_linked(&primary, &replica);
    let mut writer = primary.client();
    writer.put(b"k", b"v").unwrap();
    let written = writer.last_pos().unwrap();
    let mut reader = replica.client();
    reader.wait_pos(&written, 60_000).unwrap();
    assert_eq!(
        reader.get_after(b"k", &written, 60_000).unwrap(),
        Some(b"v".to_vec())
    );

    // Another history of the same epoch: the replica never holds it, and says so at once,
    // long before the wait asked for.
    let unknown: PositionToken = format!("0:{}:5", "ab".repeat(20)).parse().unwrap();
    let asked = Instant::now();
    let refused = reader.wait_pos(&unknown, 60_000).unwrap_err();
    assert!(matches!(refused, ClientError::NoHistory(_)), "{refused}");
    let refused = reader.get_after(b"k", &unknown, 60_000).unwrap_err();
    assert!(matches!(refused, ClientError::NoHistory(_)), "{refused}");
    assert!(
        asked.elapsed() < Duration::from_secs(30),
        "{:?}",
        asked.elapsed()
    );

    // A position of the right history that nobody has reached: a timeout, after the wait.
    let ahead = PositionToken {
        offset: written.offset + 1_000_000,
        ..written
    };
    let asked = Instant::now();
    let late = reader.wait_pos(&ahead, 200).unwrap_err();
    assert!(matches!(late, ClientError::Timeout(_)), "{late}");
    assert!(asked.elapsed() >= Duration::from_millis(200));
}
