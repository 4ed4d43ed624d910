//! Clients log in to nodes with passwords: redis-cli (`-a`, `--user --pass`), redis-py,
//! kvcli and kvbench (`--user`, `--pass`, `KVSTORE_PASSWORD`), the client library; and
//! replication keeps working when clients must log in, on its own secret (`--cluster-secret`):
//! a primary and its replica, a local cluster (`--role cluster`), and a failover cluster
//! (`--peers`).

mod common;

use std::net::TcpListener;
use std::process::Command;

use common::{redis_cli, redis_py, wait_until, NodeProcess};
use kvstore::client::{Client, ClientError, Credentials};
use kvstore::cluster_client::ClusterClient;

/// `--requirepass`'s password in these tests.
const PASS: &str = "s3cret-pw";
/// The replication links' secret.
const SECRET: &str = "link-secret";

/// A client of `addr`, logged in with `PASS`.
fn logged_in(addr: &str) -> Client {
    let credentials = Credentials::new(None, PASS);
    Client::connect_as(addr, common::DEADLINE, Some(&credentials)).unwrap()
}

/// A users file in `dir` with the user `reader` (read), password `reader-pw`.
fn reader_file(dir: &std::path::Path) -> std::path::PathBuf {
    let output = Command::new(env!("CARGO_BIN_EXE_kvnode"))
        .args(["hash-password", "--user", "reader", "--rights", "read"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(b"reader-pw\n")?;
            child.wait_with_output()
        })
        .unwrap();
    let path = dir.join("users");
    std::fs::write(&path, output.stdout).unwrap();
    path
}

#[test]
fn redis_cli_and_redis_py_log_in() {
    let dir = tempfile::tempdir().unwrap();
    let users = reader_file(dir.path());
    let node = NodeProcess::start(&[
        "--requirepass",
        PASS,
        "--users-file",
        users.to_str().unwrap(),
    ]);
    let quiet = "--no-auth-warning";
    // (redis-cli follows an error with a blank line.)
    assert_eq!(
        redis_cli(&node, &["SET", "k", "v"]).trim_end(),
        "NOAUTH Authentication required."
    );
    assert_eq!(
        redis_cli(&node, &["-a", PASS, quiet, "SET", "k", "v"]),
        "OK\n"
    );
    let reader = ["--user", "reader", "--pass", "reader-pw", quiet];
    assert_eq!(
        redis_cli(&node, &[&reader[..], &["GET", "k"]].concat()),
        "v\n"
    );
    assert_eq!(
        redis_cli(&node, &[&reader[..], &["DEL", "k"]].concat()).trim_end(),
        "NOPERM User reader has no permissions to run the 'del' command"
    );
    // redis-py opens with HELLO 3 AUTH (its default protocol), and knows Redis's errors.
    let port = node.addr.port();
    let script = format!(
        r#"
import redis, redis.backoff, redis.retry
from redis.exceptions import AuthenticationError, NoPermissionError
r = redis.Redis(port={port}, password="{PASS}")
r.set("k2", "v2")
print(r.get("k2").decode())
u = redis.Redis(port={port}, username="reader", password="reader-pw", protocol=2)
print(u.get("k2").decode())
try:
    u.set("k2", "x")
except NoPermissionError:
    print("NOPERM")
# (No retries: redis-py retries a refused login with a backoff by default.)
once = redis.retry.Retry(redis.backoff.NoBackoff(), 0)
for password in ["wrong", None]:
    try:
        redis.Redis(port={port}, password=password, retry=once).ping()
    except AuthenticationError:
        print("refused")
"#
    );
    assert_eq!(redis_py(&script), "v2\nv2\nNOPERM\nrefused\nrefused\n");
}

/// Run `kvcli` with `args` and `env`; answers its exit code and output.
fn kvcli(args: &[&str], env: &[(&str, &str)]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_kvcli"))
        .args(args)
        .env_remove("KVSTORE_PASSWORD")
        .env_remove("KVSTORE_USER")
        .envs(env.iter().copied())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (
        output.status.code().unwrap_or(-1),
        text(output.stdout),
        text(output.stderr),
    )
}

#[test]
fn kvcli_and_kvbench_log_in_with_their_flags_or_the_environment() {
    let node = NodeProcess::start(&["--requirepass", PASS]);
    let port = node.addr.port().to_string();
    let at = ["--port", port.as_str()];
    let (code, out, _) = kvcli(&[&at[..], &["--pass", PASS, "PUT", "k", "v"]].concat(), &[]);
    assert_eq!((code, out.as_str()), (0, "OK\n"));
    let env = [("KVSTORE_PASSWORD", PASS)];
    let (code, out, _) = kvcli(&[&at[..], &["GET", "k"]].concat(), &env);
    assert_eq!((code, out.as_str()), (0, "v\n"));
    let (code, out, _) = kvcli(&[&at[..], &["GET", "k"]].concat(), &[]);
    assert_eq!(
        (code, out.as_str()),
        (1, "ERROR: NOAUTH: authentication required\n")
    );
    let (code, _, err) = kvcli(&[&at[..], &["--pass", "wrong", "GET", "k"]].concat(), &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("authentication failed: ERROR: WRONGPASS"),
        "{err}"
    );
    // The password stays off kvcli's command line too.
    let (code, out, _) = kvcli(
        &[&at[..], &["--user", "default", "ACL", "WHOAMI"]].concat(),
        &env,
    );
    assert_eq!((code, out.as_str()), (0, "default\n"));

    for proto in ["line", "resp"] {
        let run = |pass: &str| {
            Command::new(env!("CARGO_BIN_EXE_kvbench"))
                .args(["--port", &port, "--conns", "2", "--requests", "200"])
                .args(["--proto", proto, "--pass", pass])
                .output()
                .unwrap()
        };
        let good = run(PASS);
        assert!(
            good.status.success(),
            "{}",
            String::from_utf8_lossy(&good.stderr)
        );
        let bad = run("wrong");
        assert_eq!(bad.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&bad.stderr).contains("refused the login"));
    }
}

#[test]
fn a_replica_whose_clients_must_log_in_still_takes_its_primarys_stream() {
    let replica = NodeProcess::start(&[
        "--role",
        "replica",
        "--requirepass",
        "replica-pw",
        "--cluster-secret",
        SECRET,
    ]);
    let primary = NodeProcess::start(&[
        "--replica",
        &replica.addr.to_string(),
        "--requirepass",
        PASS,
        "--cluster-secret",
        SECRET,
    ]);
    let mut writer = logged_in(&primary.addr.to_string());
    writer.put(b"k", b"v").unwrap();
    assert_eq!(writer.request(b"WAIT 1 60000").unwrap(), b"1");
    let mut reader = replica.client();
    assert_eq!(
        reader.request(b"GET k").unwrap(),
        b"ERROR: NOAUTH: authentication required"
    );
    reader
        .auth(&Credentials::new(Some("default".into()), "replica-pw"))
        .unwrap();
    assert_eq!(reader.get(b"k").unwrap(), Some(b"v".to_vec()));
    // A client with the primary's password is refused by the replica.
    let mut wrong = replica.client();
    assert!(matches!(
        wrong.auth(&Credentials::new(None, PASS)),
        Err(ClientError::Auth(_))
    ));
}

#[test]
fn a_local_cluster_with_a_password_serves_and_replicates() {
    let data = tempfile::tempdir().unwrap();
    let port = loop {
        let port = fastrand::u16(12_000..30_000);
        if (0..3).all(|i| TcpListener::bind(("127.0.0.1", port + i)).is_ok()) {
            break port;
        }
    };
    let listen = format!("127.0.0.1:{port}");
    let flags = [
        "--role",
        "cluster",
        "--requirepass",
        PASS,
        "--cluster-secret",
        SECRET,
    ];
    let _node = NodeProcess::start_at(&listen, data.path(), &flags);
    logged_in(&listen).put(b"k", b"v").unwrap();
    for n in 1..=2 {
        let replica = format!("127.0.0.1:{}", port + n);
        assert!(Client::connect(&replica, common::DEADLINE)
            .unwrap()
            .request(b"GET k")
            .unwrap()
            .starts_with(b"ERROR: NOAUTH"));
        let mut client = logged_in(&replica);
        wait_until("the replica has the write", || {
            client.get(b"k").unwrap() == Some(b"v".to_vec())
        });
    }
}

#[test]
fn a_failover_cluster_with_a_password_elects_replicates_and_is_found_by_its_clients() {
    let ports: Vec<u16> = std::iter::repeat_with(|| fastrand::u16(12_000..22_000))
        .filter(|p| {
            [*p, p + 10_000]
                .iter()
                .all(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        })
        .take(3)
        .collect();
    let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let peers = addrs.join(",");
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let _members: Vec<NodeProcess> = (0..3)
        .map(|i| {
            let flags = ["--peers", &peers, "--failover-timeout-ms", "600"];
            let auth = ["--requirepass", PASS, "--cluster-secret", SECRET];
            NodeProcess::start_at(&addrs[i], dirs[i].path(), &[&flags[..], &auth[..]].concat())
        })
        .collect();
    // The cluster client finds the primary with ROLE, logged in.
    let credentials = Some(Credentials::new(None, PASS));
    let mut cluster =
        ClusterClient::new(addrs.clone(), common::DEADLINE).with_credentials(credentials);
    wait_until("a primary takes the write", || {
        cluster
            .request(b"PUT k v")
            .is_ok_and(|reply| reply == b"OK")
    });
    let primary = cluster.primary().unwrap().to_string();
    for addr in addrs.iter().filter(|a| **a != primary) {
        let mut client = logged_in(addr);
        wait_until(&format!("{addr} has the write"), || {
            client.request(b"GET k").is_ok_and(|v| v == b"v")
        });
    }
}
