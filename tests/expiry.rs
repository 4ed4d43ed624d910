//! Keys with a time to live, end to end: a key is never answered after its deadline, the
//! primary deletes it (and only the primary), and its deadline survives a crash, a compaction
//! and a full resync.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{redis_cli, wait_until, NodeProcess};

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// One field of a node's `INFO` line.
fn info_field(node: &NodeProcess, field: &str) -> String {
    let info = redis_cli(node, &["INFO"]);
    let prefix = format!("{field}:");
    info.split_whitespace()
        .find_map(|f| f.strip_prefix(&prefix).map(str::to_string))
        .unwrap_or_else(|| panic!("no {field} in INFO: {info}"))
}

fn cli(node: &NodeProcess, args: &[&str]) -> String {
    redis_cli(node, args).trim_end().to_string()
}

#[test]
fn the_primary_deletes_expired_keys_whether_or_not_anyone_reads_them() {
    let node = NodeProcess::start(&[]);
    assert_eq!(cli(&node, &["SET", "read", "v", "PX", "300"]), "OK");
    assert_eq!(cli(&node, &["SET", "unread", "v", "PX", "300"]), "OK");
    assert_eq!(cli(&node, &["SETEX", "long", "1000", "v"]), "OK");
    assert_eq!(cli(&node, &["SET", "plain", "v"]), "OK");
    let set_at = Instant::now();
    assert_eq!(cli(&node, &["GET", "read"]), "v");
    let pttl: u64 = cli(&node, &["PTTL", "read"]).parse().unwrap();
    assert!(pttl <= 300, "{pttl}");
    wait_until("the deadline passed", || {
        set_at.elapsed() > Duration::from_millis(300)
    });
    assert_eq!(cli(&node, &["GET", "read"]), "");
    assert_eq!(cli(&node, &["TTL", "read"]), "-2");
    assert_eq!(cli(&node, &["EXISTS", "read", "unread"]), "0");
    // The key nobody read is deleted by active expiry.
    wait_until("active expiry deleted the unread key", || {
        cli(&node, &["DBSIZE"]) == "2"
    });
    assert_eq!(info_field(&node, "expired_keys"), "2");
    assert_eq!(info_field(&node, "expires"), "1");
}

#[test]
fn deadlines_survive_a_crash_and_a_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let flags = ["--fsync", "always", "--compact-min-bytes", "4096"];
    let mut node = NodeProcess::start_in(dir.path(), &flags);
    let soon = (now_ms() + 1_500).to_string();
    assert_eq!(cli(&node, &["SET", "early", "v", "EX", "1000"]), "OK");
    assert_eq!(cli(&node, &["SET", "soon", "v", "PXAT", &soon]), "OK");
    // Enough data for a compaction: the keys above are then in a snapshot.
    let filler = "x".repeat(1000);
    for i in 0..20 {
        assert_eq!(cli(&node, &["SET", &format!("fill{i}"), &filler]), "OK");
    }
    node.wait_for_log("compaction finished");
    assert_eq!(cli(&node, &["SET", "late", "v", "EX", "1000"]), "OK");
    assert_eq!(cli(&node, &["EXPIRE", "fill0", "1000"]), "1");
    node.signal("KILL");
    node.wait_exit();

    let node = NodeProcess::start_in(dir.path(), &flags);
    for key in ["early", "late", "fill0"] {
        let ttl: u64 = cli(&node, &["TTL", key]).parse().unwrap();
        // Not a timing check: the deadline is absolute, a loaded machine only makes it nearer.
        assert!((900..=1000).contains(&ttl), "{key}: {ttl}");
    }
    assert_eq!(cli(&node, &["TTL", "fill1"]), "-1");
    assert_eq!(cli(&node, &["PEXPIRETIME", "soon"]), soon);
    wait_until("the key whose deadline passed is gone", || {
        cli(&node, &["GET", "soon"]).is_empty()
    });
    wait_until("and deleted", || info_field(&node, "expired_keys") == "1");
}

#[test]
fn a_replica_hides_an_expired_key_until_the_primary_deletes_it() {
    let replica = NodeProcess::start(&["--role", "replica"]);
    let pdir = tempfile::tempdir().unwrap();
    let primary = NodeProcess::start_in(pdir.path(), &["--replica", &replica.addr.to_string()]);
    // Far enough that the key is still live on the replica when the primary is stopped, even
    // on a loaded machine.
    let deadline = now_ms() + 10_000;
    let at = deadline.to_string();
    assert_eq!(cli(&primary, &["SET", "k", "v", "PXAT", &at]), "OK");
    assert_eq!(cli(&primary, &["SET", "kept", "v", "EX", "1000"]), "OK");
    assert_eq!(cli(&primary, &["WAIT", "1", "60000"]), "1");
    assert_eq!(cli(&replica, &["PEXPIRETIME", "k"]), at);
    assert_eq!(cli(&replica, &["GET", "k"]), "v");
    // A full resync carries deadlines too.
    assert_eq!(cli(&replica, &["RESYNC"]), "OK");
    wait_until("the replica resynced", || {
        cli(&replica, &["PEXPIRETIME", "k"]) == at
            && cli(&replica, &["TTL", "kept"])
                .parse::<u64>()
                .is_ok_and(|t| t > 990)
    });

    // The primary cannot send its delete while it is stopped: the replica hides the key on its
    // own clock, and keeps it until the delete arrives.
    assert!(
        now_ms() < deadline,
        "the setup took longer than the key lived"
    );
    primary.signal("STOP");
    wait_until("the deadline passed", || now_ms() > deadline);
    assert_eq!(cli(&replica, &["GET", "k"]), "");
    assert_eq!(cli(&replica, &["TTL", "k"]), "-2");
    assert_eq!(cli(&replica, &["DBSIZE"]), "2");
    assert_eq!(info_field(&replica, "expired_keys"), "0");
    primary.signal("CONT");
    wait_until("the primary's delete reached the replica", || {
        cli(&replica, &["DBSIZE"]) == "1"
    });
    assert_eq!(info_field(&primary, "expired_keys"), "1");
    assert_eq!(info_field(&replica, "expired_keys"), "0");
    assert_eq!(
        cli(&primary, &["DIGEST"]).split(' ').next(),
        cli(&replica, &["DIGEST"]).split(' ').next()
    );
}

#[test]
fn the_line_protocol_sets_reads_and_clears_times_to_live() {
    let node = NodeProcess::start(&[]);
    let mut client = node.client();
    let mut ask = |line: &str| {
        let reply = client.request(line.as_bytes());
        String::from_utf8(reply.expect(line)).unwrap()
    };
    assert_eq!(ask("PUTEX session 100 user=ann; cart=3"), "OK");
    assert_eq!(ask("GET session"), "user=ann; cart=3");
    assert_eq!(ask("TTL session"), "100");
    assert_eq!(ask("EXPIRE session 500"), "OK");
    assert_eq!(ask("TTL session"), "500");
    assert_eq!(ask("PERSIST session"), "OK");
    assert_eq!(ask("TTL session"), "-1");
    assert_eq!(ask("TTL nothing"), "NOT_FOUND");
    assert_eq!(ask("EXPIRE nothing 5"), "NOT_FOUND");
    assert_eq!(ask("PERSIST nothing"), "NOT_FOUND");
    assert_eq!(ask("EXPIRE session 0"), "OK");
    assert_eq!(ask("GET session"), "NOT_FOUND");
    // Over RESP the same keys answer as Redis's commands do.
    assert_eq!(ask("PUTEX k 100 v"), "OK");
    assert_eq!(cli(&node, &["TTL", "k"]), "100");
}

#[test]
fn many_keys_expiring_at_once_are_all_deleted_and_the_node_keeps_serving() {
    const KEYS: usize = 200_000;
    let node = NodeProcess::start(&[]);
    let deadline = (now_ms() + 5_000).to_string();
    let mut script = String::new();
    for n in 0..KEYS {
        let key = format!("key:{n}");
        script.push_str(&format!(
            "*5\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$1\r\nv\r\n$4\r\nPXAT\r\n${}\r\n{deadline}\r\n",
            key.len(),
            deadline.len()
        ));
    }
    let mut child = std::process::Command::new("redis-cli")
        .args(["-p", &node.addr.port().to_string(), "--pipe"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("run redis-cli (CI installs redis-tools)");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), script.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let expiring: usize = info_field(&node, "expires").parse().unwrap();
    let expired: usize = info_field(&node, "expired_keys").parse().unwrap();
    assert_eq!(expiring + expired, KEYS);
    wait_until("every key expired and was deleted", || {
        cli(&node, &["PING"]) == "PONG" && cli(&node, &["DBSIZE"]) == "0"
    });
    assert_eq!(info_field(&node, "expires"), "0");
    assert_eq!(info_field(&node, "expired_keys"), KEYS.to_string());
}
