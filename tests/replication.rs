//! Replication, end to end: a primary and replicas as real `kvnode` processes, killed,
//! restarted, cut off and healed, always converging to the primary's data.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;

use common::{wait_until, NodeProcess};
use kvstore::chaos::proxy::{Mode, Proxy};
use tempfile::TempDir;

/// A replica that can be stopped and started again on the same port and data dir.
struct Replica {
    dir: TempDir,
    addr: SocketAddr,
    node: Option<NodeProcess>,
    flags: Vec<String>,
}

impl Replica {
    fn start(flags: &[&str]) -> Replica {
        let dir = tempfile::tempdir().unwrap();
        let mut all = vec!["--role", "replica"];
        all.extend_from_slice(flags);
        let node = NodeProcess::start_at("127.0.0.1:0", dir.path(), &all);
        Replica {
            addr: node.addr,
            dir,
            node: Some(node),
            flags: all.iter().map(|f| f.to_string()).collect(),
        }
    }

    fn node(&self) -> &NodeProcess {
        self.node.as_ref().expect("replica running")
    }

    fn kill(&mut self, signal: &str) {
        if let Some(mut node) = self.node.take() {
            node.signal(signal);
            node.wait_exit();
        }
    }

    fn restart(&mut self) {
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        let node = NodeProcess::start_at(&self.addr.to_string(), self.dir.path(), &flags);
        self.node = Some(node);
    }
}

/// Start a primary replicating to `replicas` with `extra` flags.
fn primary_for(dir: &Path, replicas: &[SocketAddr], extra: &[&str]) -> NodeProcess {
    primary_at("127.0.0.1:0", dir, replicas, extra)
}

fn primary_at(listen: &str, dir: &Path, replicas: &[SocketAddr], extra: &[&str]) -> NodeProcess {
    let replica_flags: Vec<String> = replicas
        .iter()
        .flat_map(|r| ["--replica".to_string(), r.to_string()])
        .collect();
    let mut flags: Vec<&str> = replica_flags.iter().map(String::as_str).collect();
    flags.extend_from_slice(extra);
    NodeProcess::start_at(listen, dir, &flags)
}

/// A node's `DIGEST` reply.
fn digest(node: &NodeProcess) -> String {
    String::from_utf8(node.client().request(b"DIGEST").unwrap()).unwrap()
}

/// Wait until every replica's digest (data and offset) equals the primary's.
fn wait_converged(primary: &NodeProcess, replicas: &[&NodeProcess]) {
    wait_until("the replicas hold exactly the primary's data", || {
        let expected = digest(primary);
        replicas.iter().all(|r| digest(r) == expected)
    });
}

/// Count lines of a node's log that contain `needle`.
fn count_log(node: &NodeProcess, needle: &str) -> usize {
    node.log().lines().filter(|l| l.contains(needle)).count()
}

/// Clients writing mixed PUTs and DELs until stopped; they reconnect if the primary restarts.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<usize>>,
}

impl Load {
    fn start(addr: SocketAddr, writers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..writers)
            .map(|w| {
                let stop = stop.clone();
                thread::spawn(move || {
                    let mut done = 0;
                    let mut client = None;
                    while !stop.load(Ordering::SeqCst) {
                        let c = match client.as_mut() {
                            Some(c) => c,
                            None => match kvstore::client::Client::connect(
                                &addr.to_string(),
                                common::DEADLINE,
                            ) {
                                Ok(c) => client.insert(c),
                                Err(_) => continue,
                            },
                        };
                        let key = format!("w{w}-k{}", done % 300);
                        let result = if done % 5 == 4 {
                            c.del(key.as_bytes()).map(|_| ())
                        } else {
                            c.put(key.as_bytes(), format!("value {done}").as_bytes())
                        };
                        match result {
                            Ok(()) => done += 1,
                            Err(_) => client = None,
                        }
                    }
                    done
                })
            })
            .collect();
        Load { stop, threads }
    }

    fn wait_for(&self, what: &str, condition: impl FnMut() -> bool) {
        wait_until(what, condition);
    }

    fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        self.threads.into_iter().map(|t| t.join().unwrap()).sum()
    }
}

#[test]
fn puts_and_dels_reach_both_replicas() {
    let replicas = [Replica::start(&[]), Replica::start(&[])];
    let pdir = tempfile::tempdir().unwrap();
    let primary = primary_for(pdir.path(), &[replicas[0].addr, replicas[1].addr], &[]);
    let mut client = primary.client();
    client.put(b"name", b"John Smith").unwrap();
    client.put(b"gone", b"soon").unwrap();
    client.del(b"gone").unwrap();
    for replica in &replicas {
        let mut reader = replica.node().client();
        wait_until("the replica has the writes", || {
            reader.get(b"name").unwrap() == Some(b"John Smith".to_vec())
                && reader.get(b"gone").unwrap().is_none()
        });
        // Still read-only for clients.
        let refused = reader.request(b"PUT x y").unwrap();
        assert!(refused.starts_with(b"ERROR: READONLY"));
    }
    let info = String::from_utf8(client.request(b"INFO").unwrap()).unwrap();
    assert!(info.starts_with("role=primary replication_id="), "{info}");
    assert!(info.contains("connected_replicas=2"), "{info}");
    wait_until("both replicas stream", || {
        let info = String::from_utf8(primary.client().request(b"INFO").unwrap()).unwrap();
        info.contains("replica0_state=streaming") && info.contains("replica1_state=streaming")
    });
}

#[test]
fn replica_digests_equal_the_primarys_after_load_and_wait_counts_them() {
    let replicas = [Replica::start(&[]), Replica::start(&[])];
    let pdir = tempfile::tempdir().unwrap();
    let primary = primary_for(pdir.path(), &[replicas[0].addr, replicas[1].addr], &[]);
    let load = Load::start(primary.addr, 4);
    let mut probe = primary.client();
    load.wait_for("some load", || {
        probe.request(b"INFO").is_ok_and(|i| {
            String::from_utf8_lossy(&i).split(' ').any(|f| {
                f.strip_prefix("offset=")
                    .and_then(|o| o.parse::<u64>().ok())
                    .is_some_and(|o| o > 3000)
            })
        })
    });
    assert!(load.stop() > 0);
    let mut client = primary.client();
    client.put(b"last", b"write").unwrap();
    assert_eq!(client.request(b"WAIT 2 60000").unwrap(), b"2");
    wait_converged(&primary, &[replicas[0].node(), replicas[1].node()]);
}

#[test]
fn a_replica_killed_under_load_catches_up_by_partial_resync() {
    let mut replicas = [Replica::start(&[]), Replica::start(&[])];
    let pdir = tempfile::tempdir().unwrap();
    let primary = primary_for(pdir.path(), &[replicas[0].addr, replicas[1].addr], &[]);
    wait_until("both replicas stream", || {
        count_log(&primary, "streaming") >= 2
    });
    let load = Load::start(primary.addr, 3);
    let mut probe = primary.client();
    // Durable load on the replica means its writer has also recorded whose history it
    // follows; killed before that, it would rightly need a full resync.
    load.wait_for("the replica persists some of the load", || {
        let info = String::from_utf8_lossy(&probe.request(b"INFO").unwrap()).into_owned();
        info.split(' ')
            .find_map(|f| f.strip_prefix("replica0_durable="))
            .is_some_and(|durable| durable != "0")
    });
    let partial_before = count_log(&primary, "partial resync");
    replicas[0].kill("KILL");
    replicas[0].restart();
    wait_until("the primary resumes the replica's stream", || {
        count_log(&primary, "partial resync") > partial_before
    });
    load.stop();
    wait_converged(&primary, &[replicas[0].node(), replicas[1].node()]);
}

#[test]
fn a_replica_down_while_more_than_the_backlog_is_written_catches_up_by_full_resync() {
    let mut replica = Replica::start(&[]);
    let pdir = tempfile::tempdir().unwrap();
    let primary = primary_for(
        pdir.path(),
        &[replica.addr],
        &["--repl-backlog-bytes", "4096"],
    );
    let mut client = primary.client();
    client.put(b"before", b"1").unwrap();
    assert_eq!(client.request(b"WAIT 1 60000").unwrap(), b"1");
    replica.kill("TERM");
    let value = "v".repeat(100);
    for i in 0..500 {
        client
            .put(format!("down{i}").as_bytes(), value.as_bytes())
            .unwrap();
    }
    let full_before = count_log(&primary, "full resync sent");
    replica.restart();
    wait_until("the primary sends a full resync", || {
        count_log(&primary, "full resync sent") > full_before
    });
    wait_converged(&primary, &[replica.node()]);
}

#[test]
fn a_primary_restarted_under_load_keeps_its_replicas_converging() {
    let replicas = [Replica::start(&[]), Replica::start(&[])];
    let pdir = tempfile::tempdir().unwrap();
    let addrs = [replicas[0].addr, replicas[1].addr];
    let primary = primary_for(pdir.path(), &addrs, &[]);
    let listen = primary.addr.to_string();
    let load = Load::start(primary.addr, 3);
    let mut probe = replicas[1].node().client();
    load.wait_for("the replicas receive load", || {
        String::from_utf8_lossy(&probe.request(b"INFO").unwrap()).contains("primary_link=up")
    });
    // A crash: the restarted primary takes a new replication id, and its replicas follow it.
    primary.signal("KILL");
    drop(primary);
    let primary = primary_at(&listen, pdir.path(), &addrs, &[]);
    let mut check = primary.client();
    let offset = |c: &mut kvstore::client::Client| -> u64 {
        let info = String::from_utf8(c.request(b"INFO").unwrap()).unwrap();
        info.split(' ')
            .find_map(|f| f.strip_prefix("offset=")?.parse().ok())
            .unwrap_or(0)
    };
    let at_restart = offset(&mut check);
    wait_until("writes continue after the restart", || {
        offset(&mut check) > at_restart + 200
    });
    load.stop();
    wait_converged(&primary, &[replicas[0].node(), replicas[1].node()]);
}

#[test]
fn a_link_dropped_then_blackholed_converges_after_it_heals() {
    let timeout = ["--repl-timeout-ms", "1000"];
    let replica = Replica::start(&timeout);
    let proxy = Proxy::start(replica.addr).expect("start a proxy");
    let pdir = tempfile::tempdir().unwrap();
    let primary = primary_for(pdir.path(), &[proxy.addr], &timeout);
    let mut client = primary.client();
    let mut write = |from: usize| {
        for i in from..from + 200 {
            client
                .put(
                    format!("k{}", i % 150).as_bytes(),
                    format!("v{i}").as_bytes(),
                )
                .unwrap();
        }
    };
    write(0);
    wait_converged(&primary, &[replica.node()]);

    // Cut: every connection closed, and new ones refused, while writes go on.
    proxy.set(Mode::Drop);
    write(200);
    proxy.set(Mode::Forward);
    wait_converged(&primary, &[replica.node()]);

    // Stall: the established link passes nothing, until both sides notice the silence.
    let lost_before = count_log(&primary, "replication link lost");
    proxy.set(Mode::Blackhole);
    write(400);
    wait_until("the primary gives up on the stalled link", || {
        count_log(&primary, "replication link lost") > lost_before
    });
    write(600);
    proxy.set(Mode::Forward);
    wait_converged(&primary, &[replica.node()]);
}

#[test]
fn a_replica_that_stops_reading_leaves_the_primarys_memory_bounded() {
    // A fake replica: it answers the handshake, then never reads again.
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_addr = fake.local_addr().unwrap();
    let hold = thread::spawn(move || {
        let (stream, _) = fake.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("REPLICATE"));
        let challenge = format!("CHALLENGE {} -\n", "0".repeat(32));
        (&stream).write_all(challenge.as_bytes()).unwrap();
        line.clear();
        reader.read_line(&mut line).unwrap();
        assert!(line.starts_with("PROVE - "), "{line}");
        (&stream).write_all(b"POSITION - 0\n").unwrap();
        stream // held open, unread, until the test ends
    });
    let good = Replica::start(&[]);
    let pdir = tempfile::tempdir().unwrap();
    let primary = primary_for(
        pdir.path(),
        &[fake_addr, good.addr],
        &["--repl-backlog-bytes", "1048576"],
    );
    let _stalled = hold.join().unwrap();
    let mut client = primary.client();
    let before = primary.rss_kib();
    // 100 MB of writes to one key: only the backlog could hold them, and it is bounded.
    let value = "x".repeat(100 * 1024);
    for _ in 0..1000 {
        client.put(b"big", value.as_bytes()).unwrap();
    }
    primary.wait_for_log("fell out of the backlog");
    let growth = primary.rss_kib().saturating_sub(before);
    assert!(
        growth < 64 * 1024,
        "primary grew by {growth} KiB for a stalled replica"
    );
    // The healthy replica was not slowed down or dropped.
    assert_eq!(client.request(b"WAIT 1 60000").unwrap(), b"1");
    wait_converged(&primary, &[good.node()]);
}

#[test]
fn wait_counts_acknowledging_replicas_and_gives_zero_after_its_timeout_when_they_are_gone() {
    let mut replicas = [Replica::start(&[]), Replica::start(&[])];
    let pdir = tempfile::tempdir().unwrap();
    let primary = primary_for(pdir.path(), &[replicas[0].addr, replicas[1].addr], &[]);
    let mut client = primary.client();
    client.put(b"a", b"1").unwrap();
    assert_eq!(client.request(b"WAIT 2 60000").unwrap(), b"2");
    assert_eq!(
        client.request(b"WAIT 0 0").unwrap(),
        b"2",
        "no write since: both have it"
    );
    for replica in &mut replicas {
        replica.kill("KILL");
    }
    client.put(b"b", b"2").unwrap();
    let started = std::time::Instant::now();
    assert_eq!(client.request(b"WAIT 1 300").unwrap(), b"0");
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    let usage = client.request(b"WAIT one 10").unwrap();
    assert_eq!(usage, b"ERROR: usage: WAIT <numreplicas> <timeout-ms>");
}

#[test]
fn a_wrong_cluster_secret_is_refused() {
    let replica = Replica::start(&["--cluster-secret", "right"]);
    let pdir = tempfile::tempdir().unwrap();
    let primary = primary_for(pdir.path(), &[replica.addr], &["--cluster-secret", "wrong"]);
    primary.client().put(b"k", b"v").unwrap();
    // The replica proves itself first; the primary sees it does not share its secret and
    // sends nothing.
    primary.wait_for_log("did not prove it knows the cluster secret");
    assert_eq!(replica.node().client().get(b"k").unwrap(), None);
    assert_eq!(primary.client().request(b"WAIT 1 200").unwrap(), b"0");
    // With the right secret it streams.
    let pdir2 = tempfile::tempdir().unwrap();
    let good = primary_for(
        pdir2.path(),
        &[replica.addr],
        &["--cluster-secret", "right"],
    );
    good.client().put(b"k", b"v").unwrap();
    wait_converged(&good, &[replica.node()]);
}

#[test]
fn a_wait_without_timeout_ends_when_the_node_shuts_down() {
    // A replica that is never there: WAIT 1 0 would block forever.
    let nobody = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let pdir = tempfile::tempdir().unwrap();
    let mut primary = primary_for(pdir.path(), &[nobody], &[]);
    let mut client = primary.client();
    client.put(b"k", b"v").unwrap();
    client.send(b"WAIT 1 0").unwrap();
    client.flush().unwrap();
    let mut observer = primary.client();
    wait_until("the client is blocked in WAIT", || {
        String::from_utf8(observer.request(b"INFO").unwrap())
            .unwrap()
            .contains("blocked_clients=1")
    });
    drop(observer);
    primary.signal("TERM");
    assert_eq!(client.read_reply().unwrap(), b"0");
    assert!(primary.wait_exit().success());
    assert!(
        !primary
            .log()
            .contains("sessions still open after the grace period"),
        "{}",
        primary.log()
    );
}

#[test]
fn a_primarys_stream_is_not_a_client_of_its_replica() {
    let replica = Replica::start(&["--max-clients", "1"]);
    let pdir = tempfile::tempdir().unwrap();
    let primary = primary_for(pdir.path(), &[replica.addr], &[]);
    wait_until("the replica streams", || {
        count_log(&primary, "streaming") >= 1
    });
    // The one client slot is still free, and the stream is not counted in it.
    let mut client = replica.node().client();
    let info = String::from_utf8(client.request(b"INFO").unwrap()).unwrap();
    assert!(info.contains("primary_link=up"), "{info}");
    assert!(info.contains(" connected_clients=1 "), "{info}");
}

#[test]
fn a_replica_whose_client_places_are_full_still_takes_its_primarys_stream() {
    let replica = Replica::start(&["--max-clients", "1"]);
    // A client holds the replica's one place before the primary connects.
    let mut client = replica.node().client();
    assert_eq!(client.request(b"PING").unwrap(), b"PONG");
    let pdir = tempfile::tempdir().unwrap();
    let primary = primary_for(pdir.path(), &[replica.addr], &[]);
    wait_until("the replica streams", || {
        count_log(&primary, "streaming") >= 1
    });
    primary.client().put(b"k", b"v").unwrap();
    wait_until("the write reaches the replica", || {
        client.get(b"k").unwrap() == Some(b"v".to_vec())
    });
    let info = String::from_utf8(client.request(b"INFO").unwrap()).unwrap();
    assert!(info.contains(" connected_clients=1 "), "{info}");
    assert!(
        count_log(replica.node(), "admitting it") >= 1,
        "the stream came in over the limit"
    );
}

#[test]
fn a_full_resync_under_load_converges_though_the_backlog_is_tiny() {
    // 40 MB of data to copy, and writers that go on throughout, each second far more than the
    // 1 KiB backlog: what is written during the copy is held for the replica, not lost, so
    // the resync ends instead of starting over forever.
    let pdir = tempfile::tempdir().unwrap();
    let loading = NodeProcess::start_in(pdir.path(), &[]);
    // 40 MB: more than the socket buffers take at once, so the copy interleaves with writes.
    let value = "v".repeat(1000);
    for chunk in 0..40 {
        let puts: Vec<String> = (0..1000)
            .map(|i| format!("PUT seed{chunk}-{i} {value}"))
            .collect();
        assert!(common::pipeline(&loading, &puts).iter().all(|r| r == "OK"));
    }
    loading.signal("TERM");
    drop(loading);
    let replica = Replica::start(&[]);
    let primary = primary_for(
        pdir.path(),
        &[replica.addr],
        &["--repl-backlog-bytes", "1024"],
    );
    let load = Load::start(primary.addr, 3);
    let mut probe = primary.client();
    load.wait_for("the replica streams while the load goes on", || {
        String::from_utf8_lossy(&probe.request(b"INFO").unwrap())
            .contains("replica0_state=streaming")
    });
    load.stop();
    wait_converged(&primary, &[replica.node()]);
    // One copy was enough: it never started over.
    assert_eq!(count_log(&primary, "sending a full snapshot"), 1);
    assert_eq!(
        count_log(&primary, "backlog overflowed during the full resync"),
        0
    );
}

/// The primary's backlog for a replica, as INFO counts it.
fn backlog_bytes(primary: &NodeProcess) -> u64 {
    let info = String::from_utf8(primary.client().request(b"INFO").unwrap()).unwrap();
    info.split(' ')
        .find_map(|f| f.strip_prefix("repl_backlog_bytes="))
        .and_then(|n| n.trim().parse().ok())
        .expect("INFO has repl_backlog_bytes")
}

/// A replica that made everything durable costs its primary the backlog's margin
/// (`--repl-backlog-min-bytes`), not its limit; one that drops out still resumes where it
/// stopped, since what it had not acknowledged is kept up to the limit (docs/replication.md).
#[test]
fn a_caught_up_replica_costs_the_margin_and_one_that_drops_out_still_resumes() {
    let durable = ["--fsync", "always"];
    let mut replicas = [Replica::start(&durable), Replica::start(&durable)];
    let pdir = tempfile::tempdir().unwrap();
    let addrs = [replicas[0].addr, replicas[1].addr];
    let primary = primary_for(pdir.path(), &addrs, &["--repl-backlog-min-bytes", "65536"]);
    wait_until("both replicas stream", || {
        count_log(&primary, "streaming") >= 2
    });
    let mut client = primary.client();
    let value = "v".repeat(1000);
    // About 8 MiB of overwrites: far past the margin, far below the 64 MiB limit.
    let mut write = |from: usize, count: usize| {
        for i in from..from + count {
            let key = format!("k{}", i % 100);
            client.put(key.as_bytes(), value.as_bytes()).unwrap();
        }
    };
    write(0, 8000);
    wait_until("the backlog is trimmed to about its margin", || {
        backlog_bytes(&primary) < 512 * 1024
    });
    let partial_before = count_log(&primary, "partial resync");
    let full_before = count_log(&primary, "full resync sent");
    replicas[0].kill("KILL");
    write(8000, 2000);
    replicas[0].restart();
    wait_until("the primary resumes the replica's stream", || {
        count_log(&primary, "partial resync") > partial_before
    });
    wait_converged(&primary, &[replicas[0].node(), replicas[1].node()]);
    assert_eq!(count_log(&primary, "full resync sent"), full_before);
}
