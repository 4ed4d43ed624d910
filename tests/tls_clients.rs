//! The clients' TLS (`kvbench`, `kvcli`, the client library) against a TLS `redis-server`,
//! which nobody here wrote: they trust the CA they are given and no other, check the name
//! they dial (or `--sni`), prove themselves with a client certificate when asked, and say
//! clearly what is wrong with their options.
//!
//! Redis answers kvcli's and the library's request lines too, as inline commands (`PING` is
//! `+PONG`), so they can be tried against it as well.
//!
//! Then against our own node: a TLS-only client port, a TLS port beside the plain one, a node
//! that asks for client certificates, and a primary and replica read through with position
//! tokens, every connection over TLS.

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::thread;

use common::certs::{CertFiles, TestCa};
use common::redis_server::RedisServer;
use common::NodeProcess;
use kvstore::client::Client;
use kvstore::replica_reads::{ReplicaReadClient, ReplicaReadOptions};
use kvstore::tls_client::{ClientTls, TlsArgs, TlsError};
use tempfile::TempDir;

/// One test's certificates: a CA, a server and a client certificate it signed, and a CA
/// that signed neither.
struct World {
    ca: PathBuf,
    server: CertFiles,
    client: CertFiles,
    stranger_ca: PathBuf,
    _dir: TempDir,
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("ca");
        let stranger = TestCa::new("stranger");
        World {
            ca: ca.write_ca(dir.path()),
            server: ca.issue(dir.path(), "server"),
            client: ca.issue(dir.path(), "client"),
            stranger_ca: stranger.write_ca(dir.path()),
            _dir: dir,
        }
    }
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

fn kvbench(redis: &RedisServer, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvbench"))
        .args(["--proto", "resp", "--port", &redis.port.to_string()])
        .args(["--conns", "4", "--requests", "2000"])
        .args(args)
        .output()
        .expect("run kvbench")
}

fn kvcli(redis: &RedisServer, args: &[&str], stdin: &str) -> Output {
    let port = redis.port.to_string();
    let all: Vec<&str> = ["--port", port.as_str()]
        .into_iter()
        .chain(args.iter().copied())
        .collect();
    common::kvcli(&all, stdin)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn kvbench_drives_redis_over_tls_trusting_the_ca_it_is_given() {
    let world = World::new();
    let redis = RedisServer::start_tls(&world.server, &world.ca, "no");
    for (workload, pipeline) in [("set", "1"), ("get", "16")] {
        let args = ["--tls", "--tls-ca", path(&world.ca), "--workload", workload];
        let output = kvbench(&redis, &[&args[..], &["--pipeline", pipeline]].concat());
        assert!(output.status.success(), "{output:?}\n{}", redis.log());
        assert!(text(&output.stdout).contains("2000 requests"), "{output:?}");
    }
}

#[test]
fn a_server_whose_certificate_another_ca_signed_is_refused_before_anything_is_sent() {
    let world = World::new();
    let redis = RedisServer::start_tls(&world.server, &world.ca, "no");
    let output = kvbench(&redis, &["--tls", "--tls-ca", path(&world.stranger_ca)]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = text(&output.stderr);
    assert!(stderr.contains("TLS handshake with 127.0.0.1:"), "{stderr}");
    assert!(stderr.contains("UnknownIssuer"), "{stderr}");
    // --insecure checks nothing, and says so.
    let output = kvbench(&redis, &["--tls", "--insecure"]);
    assert!(output.status.success(), "{output:?}");
    assert!(text(&output.stderr).contains("warning: --insecure"));
}

#[test]
fn the_certificate_must_name_the_host_dialed_or_the_sni_given() {
    let world = World::new();
    let redis = RedisServer::start_tls(&world.server, &world.ca, "no");
    let tls = ["--tls", "--tls-ca", path(&world.ca)];
    // The certificate names localhost and 127.0.0.1: both work as the host dialed.
    for host in ["localhost", "127.0.0.1"] {
        let output = kvbench(&redis, &[&tls[..], &["--host", host]].concat());
        assert!(output.status.success(), "{host}: {output:?}");
    }
    let output = kvbench(&redis, &[&tls[..], &["--sni", "db.example.com"]].concat());
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(text(&output.stderr).contains("not valid for name \"db.example.com\""));
    let output = kvbench(&redis, &[&tls[..], &["--sni", "localhost"]].concat());
    assert!(output.status.success(), "{output:?}");
}

#[test]
fn a_server_that_asks_for_client_certificates_gets_the_one_given() {
    let world = World::new();
    let redis = RedisServer::start_tls(&world.server, &world.ca, "yes");
    let tls = ["--tls", "--tls-ca", path(&world.ca)];
    let identity = ["--tls-cert", path(&world.client.cert), "--tls-key"];
    let identity = [&identity[..], &[path(&world.client.key)]].concat();
    let output = kvbench(&redis, &[&tls[..], &identity].concat());
    assert!(output.status.success(), "{output:?}\n{}", redis.log());
    let output = kvcli(&redis, &[&tls[..], &identity, &["PING"]].concat(), "");
    assert_eq!(text(&output.stdout), "+PONG\r\n", "{output:?}");
    // Without one, the server hangs up, and kvcli says what it wanted.
    let output = kvcli(&redis, &[&tls[..], &["PING"]].concat(), "");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(text(&output.stderr).contains("asks for a client certificate"));
}

#[test]
fn kvcli_pipes_a_long_script_over_tls() {
    let world = World::new();
    let redis = RedisServer::start_tls(&world.server, &world.ca, "no");
    let script: String = (0..20_000).map(|i| format!("SET k{i} {i}\n")).collect();
    let output = kvcli(&redis, &["--tls", "--tls-ca", path(&world.ca)], &script);
    assert!(output.status.success(), "{output:?}");
    let stdout = text(&output.stdout);
    assert_eq!(stdout.lines().count(), 20_000);
    // (`lines` drops the `\r` of Redis's inline replies with the `\n`.)
    assert!(stdout.lines().all(|line| line == "+OK"));
}

#[test]
fn the_library_client_pipelines_over_tls_from_two_threads() {
    let world = World::new();
    let redis = RedisServer::start_tls(&world.server, &world.ca, "no");
    let tls = TlsArgs {
        tls: true,
        tls_ca: Some(world.ca.clone()),
        ..TlsArgs::default()
    };
    let tls = tls.client_tls().unwrap().unwrap();
    let addr = format!("localhost:{}", redis.port);
    let mut client = Client::connect_with(&addr, common::DEADLINE, Some(&tls), None).unwrap();
    assert_eq!(client.request(b"PING").unwrap(), b"+PONG\r");
    // The halves share the TLS session: one thread writes while the other reads, more than
    // the socket buffers hold, as kvcli does with a script.
    let (mut writer, mut reader) = client.into_split();
    const REQUESTS: usize = 50_000;
    let sender = thread::spawn(move || {
        for i in 0..REQUESTS {
            writer
                .send(format!("SET key{i} {i:0>64}").as_bytes())
                .unwrap();
        }
        writer.flush().unwrap();
        writer
    });
    for _ in 0..REQUESTS {
        assert_eq!(reader.read_reply().unwrap(), b"+OK\r");
    }
    let mut writer = sender.join().unwrap();
    writer.send(b"GET key7").unwrap();
    writer.flush().unwrap();
    assert_eq!(reader.read_reply().unwrap(), b"$64\r");
    assert_eq!(
        reader.read_reply().unwrap(),
        format!("{:0>64}\r", 7).as_bytes()
    );
}

/// `TlsArgs` for `--tls` with `f` applied.
fn options(f: impl FnOnce(&mut TlsArgs)) -> Result<(), TlsError> {
    let mut args = TlsArgs {
        tls: true,
        ..TlsArgs::default()
    };
    f(&mut args);
    args.client_tls().map(drop)
}

#[test]
fn tls_options_that_cannot_work_are_refused_with_the_file_and_the_reason() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap();
    let missing = dir.path().join("missing.crt");

    // TLS with nothing to check the server against is not TLS.
    let error = options(|_| {}).unwrap_err();
    assert!(matches!(error, TlsError::NoCa), "{error}");
    assert!(error.to_string().contains("--tls-ca"));
    assert!(options(|a| a.insecure = true).is_ok());

    let error = options(|a| a.tls_ca = Some(missing.clone())).unwrap_err();
    assert!(error.to_string().contains("missing.crt"), "{error}");
    assert!(error.to_string().contains("No such file"), "{error}");
    let error = options(|a| a.tls_ca = Some(garbage.clone())).unwrap_err();
    assert!(
        error.to_string().contains("garbage.pem: not valid PEM"),
        "{error}"
    );
    // A key is not a CA certificate.
    let error = options(|a| a.tls_ca = Some(world.client.key.clone())).unwrap_err();
    assert!(error.to_string().contains("no PEM section"), "{error}");

    let with_ca = |a: &mut TlsArgs| a.tls_ca = Some(world.ca.clone());
    let error = options(|a| {
        with_ca(a);
        a.tls_key = Some(world.client.key.clone());
    })
    .unwrap_err();
    assert!(matches!(error, TlsError::HalfAClientIdentity), "{error}");
    // A key that is not the certificate's.
    let error = options(|a| {
        with_ca(a);
        a.tls_cert = Some(world.client.cert.clone());
        a.tls_key = Some(world.server.key.clone());
    })
    .unwrap_err();
    assert!(
        matches!(error, TlsError::BadClientIdentity { .. }),
        "{error}"
    );
    assert!(options(|a| {
        with_ca(a);
        a.tls_cert = Some(world.client.cert.clone());
        a.tls_key = Some(world.client.key.clone());
    })
    .is_ok());

    // An IP address is a server name; a name with a blank is none.
    assert!(options(|a| {
        with_ca(a);
        a.sni = Some("10.0.0.1".into());
    })
    .is_ok());
    let error = options(|a| {
        with_ca(a);
        a.sni = Some("no such".into());
    })
    .unwrap_err();
    assert!(matches!(error, TlsError::ServerName { .. }), "{error}");
}

#[test]
fn tls_flags_without_tls_are_a_usage_error() {
    let output = common::kvcli(&["--tls-ca", "ca.crt", "PING"], "");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(text(&output.stderr).contains("--tls"));
    let output = common::kvcli(&["--tls", "--insecure", "--tls-ca", "ca.crt", "PING"], "");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
}

// ---- Against our own node (kvnode --tls-cert/--tls-key, --tls-port, --tls-ca).

/// The node's TLS port, as its listening line logs it.
fn tls_port(node: &NodeProcess) -> u16 {
    let log = node.log();
    let start = log.find("tls_port: ").expect("a tls_port in the log") + "tls_port: ".len();
    let digits: String = log[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().unwrap()
}

/// The flags of a node serving `world.server`'s certificate, and more.
fn node_tls<'a>(world: &'a World, more: &[&'a str]) -> Vec<&'a str> {
    let server = ["--tls-cert", path(&world.server.cert), "--tls-key"];
    [&server[..], &[path(&world.server.key)], more].concat()
}

fn client_tls(world: &World, identity: bool) -> ClientTls {
    let args = TlsArgs {
        tls: true,
        tls_ca: Some(world.ca.clone()),
        tls_cert: identity.then(|| world.client.cert.clone()),
        tls_key: identity.then(|| world.client.key.clone()),
        ..TlsArgs::default()
    };
    args.client_tls().unwrap().unwrap()
}

#[test]
fn kvcli_talks_to_a_tls_only_node_and_a_plain_kvcli_cannot() {
    let world = World::new();
    let node = NodeProcess::start(&node_tls(&world, &[]));
    let port = node.addr.port().to_string();
    let tls = ["--port", &port, "--tls", "--tls-ca", path(&world.ca)];
    let output = common::kvcli(&tls, "PUT city Oslo\nGET city\n");
    assert_eq!(text(&output.stdout), "OK\nOslo\n", "{output:?}");
    let output = common::kvcli(
        &[&tls[..], &["--host", "localhost", "GET", "city"]].concat(),
        "",
    );
    assert_eq!(text(&output.stdout), "Oslo\n", "{output:?}");
    // A plain client is told, in the one line it can read, to use TLS.
    let output = common::kvcli(&["--port", &port, "GET", "city"], "");
    let shown = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(shown.contains("TLS only"), "{output:?}");
    assert!(
        !output.status.success(),
        "an error, not an answer: {output:?}"
    );
    let output = common::kvcli(
        &[
            "--port",
            &port,
            "--tls",
            "--tls-ca",
            path(&world.stranger_ca),
            "GET",
            "city",
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(text(&output.stderr).contains("UnknownIssuer"), "{output:?}");
}

#[test]
fn kvcli_proves_itself_to_a_node_that_asks_for_client_certificates() {
    let world = World::new();
    let node = NodeProcess::start(&node_tls(&world, &["--tls-ca", path(&world.ca)]));
    let port = node.addr.port().to_string();
    let tls = ["--port", &port, "--tls", "--tls-ca", path(&world.ca)];
    let identity = [
        "--tls-cert",
        path(&world.client.cert),
        "--tls-key",
        path(&world.client.key),
    ];
    let output = common::kvcli(&[&tls[..], &identity, &["PING"]].concat(), "");
    assert_eq!(text(&output.stdout), "PONG\n", "{output:?}");
    let output = common::kvcli(&[&tls[..], &["PING"]].concat(), "");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(
        text(&output.stderr).contains("client certificate"),
        "{output:?}"
    );
}

#[test]
fn the_library_client_uses_a_tls_port_beside_the_plain_one() {
    let world = World::new();
    let node = NodeProcess::start(&node_tls(&world, &["--tls-port", "0"]));
    let tls = client_tls(&world, false);
    let addr = format!("127.0.0.1:{}", tls_port(&node));
    let mut client = Client::connect_with(&addr, common::DEADLINE, Some(&tls), None).unwrap();
    client.put(b"k", b"over tls").unwrap();
    assert_eq!(node.client().get(b"k").unwrap(), Some(b"over tls".to_vec()));
    let (mut writer, mut reader) = client.into_split();
    let sender = thread::spawn(move || {
        for i in 0..20_000 {
            writer
                .send(format!("PUT k{i} {i:0>100}").as_bytes())
                .unwrap();
        }
        writer.flush().unwrap();
    });
    for _ in 0..20_000 {
        assert_eq!(reader.read_reply().unwrap(), b"OK");
    }
    sender.join().unwrap();
    assert_eq!(
        node.client().get(b"k7").unwrap(),
        Some(format!("{:0>100}", 7).into_bytes())
    );
}

#[test]
fn kvbench_drives_a_tls_node_over_both_protocols() {
    let world = World::new();
    let node = NodeProcess::start(&node_tls(&world, &[]));
    for proto in ["line", "resp"] {
        let output = Command::new(env!("CARGO_BIN_EXE_kvbench"))
            .args(["--port", &node.addr.port().to_string(), "--proto", proto])
            .args([
                "--tls",
                "--tls-ca",
                path(&world.ca),
                "--conns",
                "4",
                "--requests",
                "2000",
            ])
            .args([
                "--workload",
                "mixed",
                "--pipeline",
                "8",
                "--prefill",
                "--keyspace",
                "500",
            ])
            .output()
            .unwrap();
        assert!(output.status.success(), "{proto}: {output:?}");
        assert!(text(&output.stdout).contains("2000 requests"), "{output:?}");
    }
}

#[test]
fn replica_reads_go_over_tls_to_the_primary_and_its_replica() {
    let world = World::new();
    let peers = ["--tls-ca", path(&world.ca)];
    let replica = NodeProcess::start(&node_tls(
        &world,
        &[&peers[..], &["--role", "replica"]].concat(),
    ));
    let replica_addr = replica.addr.to_string();
    let primary = NodeProcess::start(&node_tls(
        &world,
        &[&peers[..], &["--replica", &replica_addr]].concat(),
    ));
    let tls = client_tls(&world, true);
    let options = ReplicaReadOptions {
        wait: common::DEADLINE,
        tls: Some(tls),
        ..ReplicaReadOptions::default()
    };
    let mut client = ReplicaReadClient::discover(&primary.addr.to_string(), options).unwrap();
    client.put(b"city", b"Oslo").unwrap();
    assert_eq!(client.get(b"city").unwrap(), Some(b"Oslo".to_vec()));
    assert_eq!(client.stats().from_replicas, 1);
}
