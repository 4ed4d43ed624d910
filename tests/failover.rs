//! Automatic failover, as a user runs it: three `kvnode --peers ...` processes elect a
//! primary, the others replicate it, and when the primary is killed or paused a new one is
//! elected, no acknowledged write is lost, and the old primary rejoins as a replica.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{free_ports, wait_until, NodeProcess};
use kvstore::client::Client;
use kvstore::replica_reads::{ReplicaReadClient, ReplicaReadOptions};
use tempfile::TempDir;

/// A three-member failover cluster of `kvnode` processes, killed when dropped.
struct Cluster {
    addrs: Vec<String>,
    dirs: Vec<TempDir>,
    nodes: Vec<Option<NodeProcess>>,
    extra: Vec<String>,
}

impl Cluster {
    /// Start three members with `extra` flags and a short failover timeout.
    fn start(extra: &[&str]) -> Cluster {
        let addrs: Vec<String> = free_ports(3)
            .into_iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let mut cluster = Cluster {
            dirs: (0..3).map(|_| tempfile::tempdir().unwrap()).collect(),
            nodes: (0..3).map(|_| None).collect(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
            addrs,
        };
        for i in 0..3 {
            cluster.start_member(i);
        }
        cluster
    }

    fn start_member(&mut self, i: usize) {
        let peers = self.addrs.join(",");
        let mut args = vec!["--peers", &peers, "--failover-timeout-ms", "600"];
        args.extend(self.extra.iter().map(String::as_str));
        let dir: PathBuf = self.dirs[i].path().to_path_buf();
        self.nodes[i] = Some(NodeProcess::start_at(&self.addrs[i], &dir, &args));
    }

    fn node(&self, i: usize) -> &NodeProcess {
        self.nodes[i].as_ref().expect("member running")
    }

    /// `INFO` of member `i`, or nothing when it does not answer.
    fn info(&self, i: usize) -> Option<String> {
        let node = self.nodes[i].as_ref()?;
        let mut client = Client::connect(&node.addr.to_string(), common::DEADLINE).ok()?;
        String::from_utf8(client.request(b"INFO").ok()?).ok()
    }

    /// The member every running member agrees is the primary, once they do.
    fn wait_for_primary(&self, excluding: Option<usize>) -> usize {
        let mut primary = None;
        wait_until("the members agree on a primary", || {
            let running: Vec<usize> = (0..3).filter(|i| self.nodes[*i].is_some()).collect();
            let infos: Vec<(usize, String)> = running
                .iter()
                .filter_map(|i| self.info(*i).map(|info| (*i, info)))
                .collect();
            if infos.len() != running.len() {
                return false;
            }
            let primaries: Vec<usize> = infos
                .iter()
                .filter(|(_, info)| info.contains("role=primary"))
                .map(|(i, _)| *i)
                .collect();
            let [p] = primaries[..] else { return false };
            let named = format!("primary={}", self.addrs[p]);
            primary = Some(p);
            Some(p) != excluding && infos.iter().all(|(_, info)| info.contains(&named))
        });
        primary.expect("a primary")
    }

    fn client(&self, i: usize) -> Client {
        self.node(i).client()
    }

    /// Kill member `i` with SIGKILL.
    fn kill(&mut self, i: usize) {
        if let Some(node) = self.nodes[i].take() {
            node.signal("KILL");
            drop(node);
        }
    }
}

/// `PUT` until it is acknowledged: writes refused during an election (`READONLY`) are retried.
fn put_acknowledged(cluster: &Cluster, key: &str, value: &str) {
    wait_until(&format!("PUT {key} is acknowledged"), || {
        let primary = cluster.wait_for_primary(None);
        let mut client = cluster.client(primary);
        client
            .request(format!("PUT {key} {value}").as_bytes())
            .is_ok_and(|reply| reply == b"OK")
    });
}

fn get(client: &mut Client, key: &str) -> String {
    String::from_utf8(client.request(format!("GET {key}").as_bytes()).unwrap()).unwrap()
}

/// With the cluster secret, so both the control plane and the replication links run their
/// challenge and response (a wrong secret is refused: actors/tests/consensus.rs and
/// tests/replication.rs).
#[test]
fn three_members_elect_one_primary_and_the_others_replicate_it() {
    let cluster = Cluster::start(&["--fsync", "always", "--cluster-secret", "s3cret"]);
    put_acknowledged(&cluster, "greeting", "hello");
    let primary = cluster.wait_for_primary(None);
    let mut client = cluster.client(primary);
    for i in (0..3).filter(|i| *i != primary) {
        let mut replica = cluster.client(i);
        wait_until("the replica has the write", || {
            get(&mut replica, "greeting") == "hello"
        });
        // A write to a replica names the primary, so a client knows where to go.
        let refused = String::from_utf8(replica.request(b"PUT greeting bye").unwrap()).unwrap();
        assert_eq!(
            refused,
            format!(
                "ERROR: READONLY: this node is a replica; write to the primary at {}",
                cluster.addrs[primary]
            )
        );
        let role = String::from_utf8(replica.request(b"ROLE").unwrap()).unwrap();
        assert!(
            role.starts_with(&format!("replica primary={}", cluster.addrs[primary])),
            "{role}"
        );
    }
    let info = String::from_utf8(client.request(b"INFO").unwrap()).unwrap();
    assert!(info.contains("epoch="), "{info}");
    assert!(info.contains("connected_replicas=2"), "{info}");
    assert!(info.contains("last_failover_reason="), "{info}");
}

#[test]
fn a_killed_primary_is_replaced_without_losing_an_acknowledged_write_and_rejoins() {
    let mut cluster = Cluster::start(&["--fsync", "always", "--min-replicas-to-write", "1"]);
    let first = cluster.wait_for_primary(None);
    for n in 0..50 {
        put_acknowledged(&cluster, &format!("key{n}"), &format!("v{n}"));
    }
    cluster.kill(first);
    let second = cluster.wait_for_primary(Some(first));
    let mut client = cluster.client(second);
    for n in 0..50 {
        assert_eq!(get(&mut client, &format!("key{n}")), format!("v{n}"));
    }
    // kvcli given the members finds the new primary itself.
    let kvcli = Command::new(env!("CARGO_BIN_EXE_kvcli"))
        .args([
            "--cluster",
            &cluster.addrs.join(","),
            "PUT",
            "after",
            "failover",
        ])
        .output()
        .expect("run kvcli");
    assert!(kvcli.status.success(), "{kvcli:?}");
    assert_eq!(String::from_utf8_lossy(&kvcli.stdout), "OK\n");
    let info = String::from_utf8(client.request(b"INFO").unwrap()).unwrap();
    assert!(info.contains("last_failover_reason=election"), "{info}");
    // The member that took over says how long no primary's stream had reached it.
    assert!(info.contains("last_failover_unavailable_ms="), "{info}");

    // The old primary comes back as a replica of the new one and catches up.
    cluster.start_member(first);
    let primary = cluster.wait_for_primary(None);
    assert_ne!(
        primary, first,
        "a restarted member does not take the primary role back"
    );
    let mut rejoined = cluster.client(first);
    wait_until("the old primary has the new primary's write", || {
        get(&mut rejoined, "after") == "failover"
    });
}

#[test]
fn a_paused_primary_acknowledges_nothing_after_its_successor_is_elected() {
    let mut cluster = Cluster::start(&["--fsync", "always"]);
    let first = cluster.wait_for_primary(None);
    put_acknowledged(&cluster, "before", "pause");
    // A connection to the old primary, opened before it is paused.
    let mut stale = cluster.client(first);
    cluster.node(first).signal("STOP");
    let second = {
        let mut found = None;
        wait_until("the others elect a new primary", || {
            found = (0..3).filter(|i| *i != first).find(|i| {
                cluster
                    .info(*i)
                    .is_some_and(|info| info.contains("role=primary"))
            });
            found.is_some()
        });
        found.unwrap()
    };
    let mut client = cluster.client(second);
    assert_eq!(client.request(b"PUT during pause").unwrap(), b"OK");
    cluster.node(first).signal("CONT");
    // The old primary's lease is long gone: whatever it answers, it is not an acknowledgement.
    let reply = String::from_utf8(stale.request(b"PUT stale write").unwrap()).unwrap();
    assert_ne!(reply, "OK", "a deposed primary acknowledged a write");
    assert!(reply.starts_with("ERROR: "), "{reply}");
    // It steps down and follows the new primary.
    let _ = cluster.wait_for_primary(Some(first));
    let mut old = cluster.client(first);
    wait_until("the old primary follows the new one", || {
        get(&mut old, "during") == "pause"
    });
    assert_eq!(get(&mut client, "stale"), "NOT_FOUND");
    cluster.kill(first);
}

/// redis-py's `Sentinel` class, given the members as its sentinels, finds the primary and,
/// after the primary is killed, the new one: Redis clients follow failovers with no new code.
#[test]
fn redis_py_sentinel_follows_a_failover() {
    let python = "/usr/bin/python3";
    let has_redis = Command::new(python)
        .args(["-c", "import redis.sentinel"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        has_redis,
        "the test needs Debian's python3-redis (apt-get install python3-redis)"
    );
    let mut cluster = Cluster::start(&["--fsync", "always"]);
    let first = cluster.wait_for_primary(None);
    let sentinels: Vec<String> = cluster
        .addrs
        .iter()
        .map(|a| {
            let (h, p) = a.rsplit_once(':').unwrap();
            format!("('{h}', {p})")
        })
        .collect();
    let script = format!(
        r#"
import sys, time
from redis.sentinel import Sentinel
sentinel = Sentinel([{}], socket_timeout=2)
master = sentinel.master_for('kvstore', socket_timeout=2)
print(sentinel.discover_master('kvstore'))
master.set('k', sys.argv[1])
assert master.get('k') == sys.argv[1].encode()
print(sorted(sentinel.discover_slaves('kvstore')))
"#,
        sentinels.join(", ")
    );
    let run = |value: &str| {
        let out = Command::new(python)
            .args(["-c", &script, value])
            .output()
            .expect("run python3");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), stdout, stderr)
    };
    let (ok, stdout, stderr) = run("one");
    assert!(ok, "{stdout}\n{stderr}");
    let addrs = cluster.addrs.clone();
    let port = |i: usize| addrs[i].rsplit_once(':').unwrap().1.to_string();
    assert!(stdout.contains(&port(first)), "{stdout}");

    cluster.kill(first);
    let second = cluster.wait_for_primary(Some(first));
    let (ok, stdout, stderr) = run("two");
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.lines().next().unwrap_or("").contains(&port(second)),
        "{stdout}"
    );
    let mut client = cluster.client(second);
    assert_eq!(get(&mut client, "k"), "two");
}

/// A dead member replaced by a new, empty one at the same address (one command: the same
/// `kvnode --peers ...` on an empty data directory) joins the cluster and receives all the
/// data, while the cluster keeps taking writes.
#[test]
fn a_dead_member_replaced_by_an_empty_one_syncs_and_joins() {
    let mut cluster = Cluster::start(&["--fsync", "always", "--min-replicas-to-write", "1"]);
    let primary = cluster.wait_for_primary(None);
    for n in 0..20 {
        put_acknowledged(&cluster, &format!("key{n}"), &format!("v{n}"));
    }
    let dead = (primary + 1) % 3;
    cluster.kill(dead);
    // Writes go on with the two members left (one replica is enough for the safe mode).
    put_acknowledged(&cluster, "while", "replacing");
    cluster.dirs[dead] = tempfile::tempdir().unwrap();
    cluster.start_member(dead);
    let mut replacement = cluster.client(dead);
    wait_until("the replacement has every key", || {
        get(&mut replacement, "while") == "replacing"
            && (0..20).all(|n| get(&mut replacement, &format!("key{n}")) == format!("v{n}"))
    });
    let info = cluster.info(dead).unwrap();
    assert!(info.contains("role=replica"), "{info}");
}

/// `FAILOVER TO <member>` hands the primary role over while a client keeps writing: every
/// write acknowledged before, during and after is on the new primary.
#[test]
fn failover_hands_over_with_no_acknowledged_write_lost() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let cluster = Cluster::start(&["--fsync", "always", "--min-replicas-to-write", "1"]);
    let first = cluster.wait_for_primary(None);
    let target = (first + 1) % 3;
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let members = cluster.addrs.clone();
        std::thread::spawn(move || {
            let mut client = kvstore::cluster_client::ClusterClient::new(members, common::DEADLINE);
            let mut acknowledged = Vec::new();
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                if let Ok(reply) = client.request(format!("PUT w{n} {n}").as_bytes()) {
                    if reply == b"OK" {
                        acknowledged.push(n);
                    }
                }
            }
            acknowledged
        })
    };
    wait_until("some writes before the handover", || {
        cluster
            .info(first)
            .is_some_and(|i| !i.contains(" offset=0 "))
    });
    let mut client = cluster.client(first);
    let order = format!("FAILOVER TO {}", cluster.addrs[target]);
    assert_eq!(
        String::from_utf8(client.request(order.as_bytes()).unwrap()).unwrap(),
        "OK"
    );
    assert_eq!(cluster.wait_for_primary(Some(first)), target);
    put_acknowledged(&cluster, "after", "handover");
    stop.store(true, Ordering::SeqCst);
    let acknowledged = writer.join().unwrap();
    assert!(!acknowledged.is_empty());
    let mut new_primary = cluster.client(target);
    for n in acknowledged {
        assert_eq!(get(&mut new_primary, &format!("w{n}")), n.to_string());
    }
    // The old primary follows the new one.
    let mut old = cluster.client(first);
    wait_until("the old primary follows the new one", || {
        get(&mut old, "after") == "handover"
    });
}

/// A primary whose disk fails (its file size limit lowered to 0, as the fault suite's
/// disk-full fault does) refuses writes and loses the cluster's leadership to another member,
/// which takes writes: one bad disk does not stop the cluster. Meanwhile the broken member
/// neither shows itself as the primary nor answers reads; once its disk works again it
/// rejoins as a replica and catches up.
#[test]
fn a_primary_whose_disk_fails_is_replaced_and_rejoins_when_it_recovers() {
    let cluster = Cluster::start(&["--fsync", "always", "--min-replicas-to-write", "1"]);
    put_acknowledged(&cluster, "before", "disk");
    let first = cluster.wait_for_primary(None);
    let pid = cluster.node(first).pid().to_string();
    let limit = |size: &str| {
        let status = Command::new("prlimit")
            .args(["--pid", &pid, &format!("--fsize={size}")])
            .status()
            .expect("run prlimit (util-linux)");
        assert!(status.success());
    };
    limit("0:unlimited");
    // The write that meets the full disk is not acknowledged.
    let mut client = cluster.client(first);
    let refused = String::from_utf8(client.request(b"PUT during failure").unwrap()).unwrap();
    assert!(refused.starts_with("ERROR: "), "{refused}");
    // Writes go on through the members, wherever the primary now is.
    let mut members =
        kvstore::cluster_client::ClusterClient::new(cluster.addrs.clone(), common::DEADLINE);
    wait_until("a write is acknowledged after the disk failed", || {
        members.request(b"PUT after disk").is_ok_and(|r| r == b"OK")
    });
    assert_ne!(members.primary(), Some(cluster.addrs[first].as_str()));
    assert_eq!(members.request(b"GET before").unwrap(), b"disk");
    let mut broken = cluster.client(first);
    let role = String::from_utf8(broken.request(b"ROLE").unwrap()).unwrap();
    assert!(role.starts_with("replica"), "{role}");
    let read = String::from_utf8(broken.request(b"GET before").unwrap()).unwrap();
    assert!(
        read.starts_with("ERROR: "),
        "the broken member answered a read: {read}"
    );
    // The disk works again: the member follows the new primary.
    limit("unlimited:unlimited");
    wait_until("the recovered member has the new primary's write", || {
        get(&mut broken, "after") == "disk"
    });
}

/// A replica that was behind when the primary died resumes from the new primary by a partial
/// resync (the new primary kept what it applied as a replica, as Redis's PSYNC2), not a full
/// copy.
#[test]
fn a_replica_behind_at_failover_resumes_from_the_new_primary_without_a_full_resync() {
    let mut cluster = Cluster::start(&["--fsync", "always", "--min-replicas-to-write", "1"]);
    put_acknowledged(&cluster, "first", "1");
    let primary = cluster.wait_for_primary(None);
    let (ahead, behind) = ((primary + 1) % 3, (primary + 2) % 3);
    let mut on_ahead = cluster.client(ahead);
    wait_until("both replicas have the first write", || {
        get(&mut on_ahead, "first") == "1" && get(&mut cluster.client(behind), "first") == "1"
    });
    // The lagging replica is paused while the primary takes writes (acknowledged thanks to the
    // other replica), then the primary dies, and the lagging one comes back to vote.
    cluster.node(behind).signal("STOP");
    let mut client = cluster.client(primary);
    for n in 0..20 {
        assert_eq!(
            client.request(format!("PUT k{n} {n}").as_bytes()).unwrap(),
            b"OK"
        );
    }
    wait_until("the replica ahead has the writes", || {
        get(&mut on_ahead, "k19") == "19"
    });
    cluster.kill(primary);
    cluster.node(behind).signal("CONT");
    let elected = cluster.wait_for_primary(Some(primary));
    assert_eq!(elected, ahead, "the member with the writes is elected");
    let mut lagging = cluster.client(behind);
    wait_until("the lagging replica catches up", || {
        get(&mut lagging, "k19") == "19"
    });
    let log = cluster.node(ahead).log();
    let resumed = "partial resync), primary_offset";
    assert!(
        log.lines()
            .any(|l| l.contains(resumed) && l.contains(&cluster.addrs[behind])),
        "the new primary resumed the lagging replica:\n{log}"
    );
    assert!(
        !log.lines()
            .any(|l| l.contains("full resync") && l.contains(&cluster.addrs[behind])),
        "no full resync of the lagging replica:\n{log}"
    );
}

/// `PUT key value` and `LASTPOS` on the primary, until the write is acknowledged: its token.
fn put_with_token(cluster: &Cluster, key: &str, value: &str) -> String {
    let mut token = String::new();
    wait_until(&format!("PUT {key} is acknowledged"), || {
        let mut client = cluster.client(cluster.wait_for_primary(None));
        let sent = client.send(format!("PUT {key} {value}").as_bytes());
        let sent = sent.and_then(|()| client.send(b"LASTPOS"));
        let (Ok(()), Ok(reply), Ok(last)) = (sent, client.read_reply(), client.read_reply()) else {
            return false;
        };
        token = String::from_utf8(last).unwrap();
        reply == b"OK"
    });
    token
}

#[test]
fn a_position_token_from_the_old_primary_is_honoured_after_a_failover() {
    let mut cluster = Cluster::start(&["--fsync", "always", "--min-replicas-to-write", "1"]);
    let first = cluster.wait_for_primary(None);
    let before = put_with_token(&cluster, "k", "v1");
    cluster.kill(first);
    cluster.wait_for_primary(Some(first));
    // The new primary and the other replica continue the old primary's history: they honour
    // its token, and the read shows the write.
    for i in (0..3).filter(|i| *i != first) {
        let mut client = cluster.client(i);
        let read = format!("GET k AFTER {before} 0");
        wait_until("the member reads with the old token", || {
            client.request(read.as_bytes()).unwrap() == b"v1"
        });
    }
    // A token of the new epoch's history is honoured by the old primary once it has rejoined
    // and caught up: until then it waits for that history rather than refusing it.
    let after = put_with_token(&cluster, "k", "v2");
    let epoch = |token: &str| token.split(':').next().unwrap().parse::<u64>().unwrap();
    assert!(epoch(&after) > epoch(&before), "{before} then {after}");
    assert_ne!(cluster.wait_for_primary(None), first);
    cluster.start_member(first);
    let mut rejoined = cluster.client(first);
    let read = format!("GET k AFTER {after} 0");
    wait_until("the old primary reads with the new token", || {
        // `LOADING` while it joins the new epoch's history.
        rejoined.request(read.as_bytes()).unwrap() == b"v2"
    });
}

#[test]
fn reads_from_replicas_show_every_write_before_and_after_a_failover() {
    let mut cluster = Cluster::start(&[]);
    put_acknowledged(&cluster, "warm", "up");
    let members = cluster.addrs.join(",");
    let script: String = (0..20).map(|i| format!("PUT k v{i}\nGET k\n")).collect();
    let args = ["--cluster", &members, "--read-from-replicas"];
    let output = common::kvcli(&args, &script);
    let expected: String = (0..20).map(|i| format!("OK\nv{i}\n")).collect();
    assert_eq!(String::from_utf8_lossy(&output.stdout), expected);
    assert!(output.status.success(), "{output:?}");

    let options = ReplicaReadOptions {
        wait: common::DEADLINE,
        ..ReplicaReadOptions::default()
    };
    let mut client = ReplicaReadClient::cluster(cluster.addrs.clone(), Vec::new(), options);
    client.put(b"k", b"before").unwrap();
    assert_eq!(client.get(b"k").unwrap(), Some(b"before".to_vec()));
    let first = cluster.wait_for_primary(None);
    cluster.kill(first);
    cluster.wait_for_primary(Some(first));
    // The write's fate is unknown when the connection to the old primary breaks: retried.
    wait_until("a write reaches the new primary", || {
        client.put(b"k", b"after").is_ok()
    });
    // The token now names the new primary's history: the surviving replica shows the write.
    assert_eq!(client.get(b"k").unwrap(), Some(b"after".to_vec()));
    assert!(client.token().epoch > 0, "{}", client.token());
}
