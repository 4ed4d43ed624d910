//! A primary never overwrites a replica's data with a history that is behind it: a primary
//! started on an empty or older data directory, or a second primary pointed at a replica by
//! mistake, is refused, loudly, and the replica keeps its data until an operator says
//! otherwise (`RESYNC` on the replica). A history that does continue the replica's (a primary
//! restarted after a crash, a replica promoted by hand) goes on by partial resync.

mod common;

use std::net::SocketAddr;
use std::path::Path;

use common::{stop, wait_until, NodeProcess};

/// Start a replica on `dir`, on `listen` (port 0: any).
fn replica_at(listen: &str, dir: &Path) -> NodeProcess {
    NodeProcess::start_at(listen, dir, &["--role", "replica"])
}

/// Start a primary on `dir` streaming to `replicas`, with `extra` flags.
fn primary(dir: &Path, replicas: &[SocketAddr], extra: &[&str]) -> NodeProcess {
    let mut flags: Vec<String> = replicas
        .iter()
        .flat_map(|r| ["--replica".to_string(), r.to_string()])
        .collect();
    flags.extend(extra.iter().map(|f| f.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    NodeProcess::start_at("127.0.0.1:0", dir, &flags)
}

/// `field=value` of a node's `INFO`.
fn info(node: &NodeProcess, field: &str) -> String {
    let line = String::from_utf8(node.client().request(b"INFO").unwrap()).unwrap();
    line.split(' ')
        .find_map(|f| f.strip_prefix(&format!("{field}=")).map(str::to_string))
        .unwrap_or_default()
}

/// The `DIGEST` of a node's data, without the offset.
fn data(node: &NodeProcess) -> String {
    let line = String::from_utf8(node.client().request(b"DIGEST").unwrap()).unwrap();
    line.split(' ')
        .filter(|f| !f.starts_with("offset="))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Write `n` keys to `node` under `prefix` and wait until `replicas` replicas have them.
fn write(node: &NodeProcess, prefix: &str, n: usize, replicas: usize) {
    let mut client = node.client();
    for i in 0..n {
        client
            .put(format!("{prefix}{i}").as_bytes(), b"value")
            .unwrap();
    }
    let wait = format!("WAIT {replicas} 60000");
    assert_eq!(
        client.request(wait.as_bytes()).unwrap(),
        replicas.to_string().as_bytes()
    );
}

#[test]
fn a_primary_restarted_on_an_empty_data_dir_wipes_no_replica_until_told_to() {
    let (r1, r2, old, new) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let replicas = [
        replica_at("127.0.0.1:0", r1.path()),
        replica_at("127.0.0.1:0", r2.path()),
    ];
    let addrs = [replicas[0].addr, replicas[1].addr];
    let first = primary(old.path(), &addrs, &[]);
    write(&first, "k", 2000, 2);
    let before = data(&replicas[0]);
    stop(first);

    // The same flags, the wrong (empty) data directory.
    let empty = primary(new.path(), &addrs, &[]);
    empty.client().put(b"new", b"history").unwrap();
    for i in 0..2 {
        wait_until("the primary refuses the replica", || {
            info(&empty, &format!("replica{i}_state")) == "refused"
        });
        assert_eq!(
            info(&empty, &format!("replica{i}_refused")),
            "replica_is_ahead"
        );
    }
    empty.wait_for_log("refusing to overwrite a replica");
    for replica in &replicas {
        assert_eq!(data(replica), before, "a replica lost its data");
        assert_eq!(replica.client().get(b"new").unwrap(), None);
    }

    // The operator decides: replica 1 takes the new primary's data; replica 2 keeps its own.
    assert_eq!(replicas[0].client().request(b"RESYNC").unwrap(), b"OK");
    wait_until("replica 1 takes the new history", || {
        data(&replicas[0]) == data(&empty)
    });
    assert_eq!(info(&empty, "replica0_state"), "streaming");
    assert_eq!(info(&empty, "replica1_state"), "refused");
    assert_eq!(data(&replicas[1]), before);
}

#[test]
fn a_second_primary_pointed_at_a_replica_by_mistake_is_refused_and_disturbs_nothing() {
    let (r, a, b) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let replica = replica_at("127.0.0.1:0", r.path());
    let right = primary(a.path(), &[replica.addr], &[]);
    write(&right, "a", 100, 1);
    let wrong = primary(b.path(), &[replica.addr], &[]);
    wrong.client().put(b"wrong", b"1").unwrap();
    wait_until("the second primary is refused", || {
        info(&wrong, "replica0_state") == "refused"
    });
    // The right primary's stream goes on, undisturbed.
    write(&right, "b", 100, 1);
    assert_eq!(data(&replica), data(&right));
    assert_eq!(replica.client().get(b"wrong").unwrap(), None);
}

#[test]
fn a_primary_that_lost_the_tail_its_replica_holds_does_not_overwrite_it() {
    let (r, p) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let replica = replica_at("127.0.0.1:0", r.path());
    let first = primary(p.path(), &[replica.addr], &[]);
    let listen = first.addr.to_string();
    write(&first, "k", 100, 1);
    first.signal("KILL");
    drop(first);
    // The primary's disk lost the tail of its log (as a machine crash under everysec can);
    // the replica has it all: acknowledged writes that exist nowhere else.
    let log = common::log_files(p.path()).pop().unwrap();
    let bytes = std::fs::read(&log).unwrap();
    std::fs::write(&log, &bytes[..bytes.len() - 200]).unwrap();
    let kept = data(&replica);

    let restarted =
        NodeProcess::start_at(&listen, p.path(), &["--replica", &replica.addr.to_string()]);
    wait_until("the primary refuses the replica", || {
        info(&restarted, "replica0_state") == "refused"
    });
    assert_eq!(info(&restarted, "replica0_refused"), "replica_is_ahead");
    assert_eq!(
        data(&replica),
        kept,
        "the replica kept the writes the primary lost"
    );
    assert_ne!(info(&restarted, "keys"), "100", "the primary lost its tail");
    // Told to, the replica takes the primary's (shorter) history.
    assert_eq!(replica.client().request(b"RESYNC").unwrap(), b"OK");
    wait_until("the replica converges", || {
        data(&replica) == data(&restarted)
    });
}

#[test]
fn a_replica_promoted_by_hand_feeds_the_other_by_partial_resync() {
    let (p, r1, r2) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let one = replica_at("127.0.0.1:0", r1.path());
    let two = replica_at("127.0.0.1:0", r2.path());
    let first = primary(p.path(), &[one.addr, two.addr], &[]);
    write(&first, "k", 500, 2);
    stop(first);
    stop(one);
    // Replica one becomes the primary, on its own data, streaming to replica two.
    let promoted = primary(r1.path(), &[two.addr], &[]);
    promoted.wait_for_log("resuming the stream (partial resync)");
    write(&promoted, "after", 50, 1);
    assert_eq!(data(&two), data(&promoted));
    two.wait_for_log("the primary continues this replica's history under a new id");
}

#[test]
fn a_primary_restarted_after_a_crash_continues_its_replicas_by_partial_resync() {
    let (r, p) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let replica = replica_at("127.0.0.1:0", r.path());
    let first = primary(p.path(), &[replica.addr], &[]);
    let listen = first.addr.to_string();
    write(&first, "k", 300, 1);
    first.signal("KILL");
    drop(first);
    // A replica is only ever sent what its primary has written, so it is never ahead of a
    // primary that only crashed: the new history continues it.
    let restarted =
        NodeProcess::start_at(&listen, p.path(), &["--replica", &replica.addr.to_string()]);
    restarted.wait_for_log("resuming the stream (partial resync)");
    write(&restarted, "after", 10, 1);
    assert_eq!(data(&replica), data(&restarted));
}

#[test]
fn a_history_forged_under_the_primarys_id_is_refused_not_continued() {
    forged_history_is_refused(false);
}

#[test]
fn a_forged_history_is_still_refused_after_the_replica_restarts() {
    forged_history_is_refused(true);
}

/// Someone who knows the cluster secret streams a forged history under the primary's id
/// while the primary is cut off (and the replica restarts afterwards, if `restart`): when the
/// primary comes back past those offsets, it refuses instead of continuing.
fn forged_history_is_refused(restart: bool) {
    use kv_actors::replication::auth::{ClusterSecret, Side};
    use kv_actors::storage::record;
    use kv_actors::store::{Change, Mutation};
    use kvstore::chaos::proxy::{Mode, Proxy};
    use std::io::{BufRead, BufReader, Write};

    const SECRET: &str = "s3cret-s3cret-s3cret";
    let (r, p) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let flags = ["--role", "replica", "--cluster-secret", SECRET];
    let mut replica = NodeProcess::start_at("127.0.0.1:0", r.path(), &flags);
    let proxy = Proxy::start(replica.addr).expect("start a proxy");
    let primary = primary(p.path(), &[proxy.addr], &["--cluster-secret", SECRET]);
    write(&primary, "k", 100, 1);
    // The primary is cut off; someone who knows the secret streams a forged history under the
    // primary's id, continuing right where the replica stands.
    proxy.set(Mode::Drop);
    let stream = std::net::TcpStream::connect(replica.addr).unwrap();
    stream.set_read_timeout(Some(common::DEADLINE)).unwrap();
    let mut lines = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    let nonce = "f".repeat(32);
    (&stream)
        .write_all(format!("REPLICATE {nonce}\n").as_bytes())
        .unwrap();
    lines.read_line(&mut line).unwrap();
    let replica_nonce = line.split(' ').nth(1).unwrap().to_string();
    let proof = ClusterSecret::new(SECRET).proof(Side::Primary, &nonce, &replica_nonce);
    (&stream)
        .write_all(format!("PROVE {proof} 0\n").as_bytes())
        .unwrap();
    line.clear();
    lines.read_line(&mut line).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[0], "POSITION", "{line}");
    let (id, offset): (String, u64) = (words[1].to_string(), words[2].parse().unwrap());
    let mut forged = format!("CONTINUE {id} {offset}\n").into_bytes();
    for seq in offset + 1..=offset + 5 {
        let change = Change::put(format!("forged{seq}").as_bytes(), b"x");
        record::encode_mutation(&Mutation::new(seq, change), &mut forged);
    }
    (&stream).write_all(&forged).unwrap();
    wait_until("the replica applied the forged records", || {
        line.clear();
        lines.read_line(&mut line).is_ok() && line.starts_with(&format!("ACK {} ", offset + 5))
    });
    drop((stream, lines));
    if restart {
        // It recovers its fingerprints from its log.
        replica.signal("TERM");
        assert!(replica.wait_exit().success());
        replica = NodeProcess::start_at(&replica.addr.to_string(), r.path(), &flags);
    }
    // The real primary goes on, past the forged offsets, and comes back.
    write(&primary, "more", 20, 0);
    proxy.set(Mode::Forward);
    wait_until("the primary refuses the forged history", || {
        info(&primary, "replica0_state") == "refused"
    });
    assert_eq!(
        info(&primary, "replica0_refused"),
        "replica_has_another_history"
    );
    // Told to, the replica takes the real history, and the forgery is gone.
    assert_eq!(replica.client().request(b"RESYNC").unwrap(), b"OK");
    wait_until("the replica converges", || data(&replica) == data(&primary));
    assert_eq!(replica.client().get(b"forged101").unwrap(), None);
}
