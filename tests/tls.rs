//! TLS on the client port, as users meet it: `redis-cli --tls` and redis-py with `ssl`
//! against a node whose client port speaks TLS only, a TLS port beside a plain one, mutual
//! TLS (client certificates from `--tls-ca`), plain-text clients refused cleanly, and
//! certificates reloaded without a restart (`TLS RELOAD`, SIGHUP).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;

use common::tls::{node_flags, pongs, python, tls_cli, tls_line, TlsWorld};
use common::{redis_cli, wait_until, NodeProcess, DEADLINE};

/// A node showing a certificate from `world`, with `extra` flags.
fn start(world: &TlsWorld, ca: Option<&TlsWorld>, extra: &[&str]) -> NodeProcess {
    let identity = world.issue("node");
    let mut flags = node_flags(&identity, ca.map(|w| w.ca_file.as_path()));
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    NodeProcess::start(&flags)
}

#[test]
fn a_tls_only_node_serves_redis_cli_over_tls() {
    let world = TlsWorld::new("ca");
    let node = start(&world, None, &[]);
    let port = node.tls_port.expect("the node reports its TLS port");
    assert_eq!(
        port,
        node.addr.port(),
        "without --tls-port the client port is TLS"
    );
    let ca = &world.ca_file;
    assert_eq!(tls_cli(port, ca, None, &["PING"]).trim(), "PONG");
    assert_eq!(
        tls_cli(port, ca, None, &["SET", "city", "Paris"]).trim(),
        "OK"
    );
    assert_eq!(tls_cli(port, ca, None, &["GET", "city"]).trim(), "Paris");
    let info = tls_cli(port, ca, None, &["INFO"]);
    assert!(info.contains("tls:yes"), "{info}");
    assert!(info.contains(&format!("tls_port:{port}")), "{info}");
    assert!(info.contains("tls_auth_clients:no"), "{info}");
    // The line protocol works over TLS too.
    assert_eq!(tls_line(port, ca, "GET city"), "Paris");
}

#[test]
fn redis_py_with_ssl_reads_and_writes() {
    let world = TlsWorld::new("ca");
    let node = start(&world, None, &[]);
    let port = node.tls_port.unwrap();
    let out = python(&format!(
        r#"
import redis
r = redis.Redis(host="localhost", port={port}, ssl=True, ssl_ca_certs={ca:?})
r.set("greeting", "hello")
print(r.get("greeting").decode(), r.ping())
"#,
        ca = world.ca_file.display().to_string()
    ));
    assert_eq!(out.trim(), "hello True");
}

#[test]
fn a_plain_text_client_on_a_tls_only_port_is_told_to_use_tls_and_the_node_stays_up() {
    let world = TlsWorld::new("ca");
    let node = start(&world, None, &[]);
    let mut raw = TcpStream::connect(node.addr).unwrap();
    raw.set_read_timeout(Some(DEADLINE)).unwrap();
    raw.write_all(b"PING\n").unwrap();
    let mut reply = String::new();
    let _ = raw.read_to_string(&mut reply);
    assert_eq!(
        reply,
        "ERROR: this port speaks TLS only; connect with TLS\n"
    );
    let plain = Command::new("redis-cli")
        .args(["-p", &node.addr.port().to_string(), "PING"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&plain.stdout);
    assert!(shown.contains("speaks TLS only"), "{shown}");
    node.wait_for_log("did not set up TLS");
    assert!(node.log().contains("peer: 127.0.0.1:"), "{}", node.log());
    assert!(pongs(node.addr.port(), &world.ca_file, None));
}

#[test]
fn a_tls_port_beside_the_plain_port_both_work() {
    let world = TlsWorld::new("ca");
    let node = start(&world, None, &["--tls-port", "0"]);
    let port = node.tls_port.expect("a TLS port");
    assert_ne!(port, node.addr.port());
    assert_eq!(redis_cli(&node, &["SET", "k", "plain"]).trim(), "OK");
    assert_eq!(
        tls_cli(port, &world.ca_file, None, &["GET", "k"]).trim(),
        "plain"
    );
    assert!(node.answers_ping());
    let info = redis_cli(&node, &["INFO"]);
    assert!(info.contains(&format!("tls_port:{port}")), "{info}");
}

#[test]
fn with_a_ca_only_clients_with_a_certificate_from_it_are_let_in() {
    let world = TlsWorld::new("ca");
    let other = TlsWorld::new("other-ca");
    let node = start(&world, Some(&world), &[]);
    let port = node.tls_port.unwrap();
    let ca = &world.ca_file;
    assert!(!pongs(port, ca, None), "a client without a certificate");
    assert!(pongs(port, ca, Some(&world.issue("client"))));
    assert!(
        !pongs(port, ca, Some(&other.issue("stranger"))),
        "another CA's client"
    );
    node.wait_for_log("TLS handshake failed");
    assert!(
        pongs(port, ca, Some(&world.issue("client2"))),
        "the node still serves"
    );
}

#[test]
fn tls_auth_clients_no_lets_clients_in_without_a_certificate() {
    let world = TlsWorld::new("ca");
    let node = start(&world, Some(&world), &["--tls-auth-clients", "no"]);
    let port = node.tls_port.unwrap();
    assert!(pongs(port, &world.ca_file, None));
    let info = tls_cli(port, &world.ca_file, None, &["INFO"]);
    assert!(info.contains("tls_auth_clients:no"), "{info}");
}

/// Replace the node's certificate files with a certificate from `world`.
fn renew(node_files: &common::certs::CertFiles, world: &TlsWorld, name: &str) {
    let fresh = world.issue(name);
    std::fs::copy(&fresh.cert, &node_files.cert).unwrap();
    std::fs::copy(&fresh.key, &node_files.key).unwrap();
}

#[test]
fn tls_reload_and_sighup_put_new_certificates_in_force_for_new_connections() {
    let (first, second, third) = (
        TlsWorld::new("first"),
        TlsWorld::new("second"),
        TlsWorld::new("third"),
    );
    let files = first.issue("node");
    let flags = node_flags(&files, None);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let node = NodeProcess::start(&flags);
    let port = node.tls_port.unwrap();
    assert!(!pongs(port, &second.ca_file, None), "not before the reload");
    renew(&files, &second, "node2");
    let reload = tls_cli(port, &first.ca_file, None, &["TLS", "RELOAD"]);
    assert_eq!(reload.trim(), "OK");
    node.wait_for_log("TLS certificates reloaded");
    assert!(pongs(port, &second.ca_file, None), "after TLS RELOAD");
    assert!(!pongs(port, &first.ca_file, None));

    assert!(!pongs(port, &third.ca_file, None), "not before SIGHUP");
    renew(&files, &third, "node3");
    node.signal("HUP");
    wait_until("the certificate SIGHUP reloaded is in force", || {
        pongs(port, &third.ca_file, None)
    });
    assert!(node.log().contains("by: SIGHUP"), "{}", node.log());
    // The line protocol answers in its words.
    assert_eq!(tls_line(port, &third.ca_file, "TLS RELOAD"), "OK");
}

#[test]
fn a_bad_file_at_reload_keeps_the_old_certificate_and_says_why() {
    let world = TlsWorld::new("ca");
    let files = world.issue("node");
    let flags = node_flags(&files, None);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let node = NodeProcess::start(&flags);
    let port = node.tls_port.unwrap();
    std::fs::write(&files.key, "not a key\n").unwrap();
    let reload = tls_cli(port, &world.ca_file, None, &["TLS", "RELOAD"]);
    assert!(reload.starts_with("ERR TLS reload failed: "), "{reload}");
    assert!(
        reload.contains(&files.key.display().to_string()),
        "{reload}"
    );
    let line = tls_line(port, &world.ca_file, "TLS RELOAD");
    assert!(line.starts_with("ERROR: TLS reload failed: "), "{line}");
    node.wait_for_log("TLS reload failed; keeping the certificates in use");
    assert!(
        pongs(port, &world.ca_file, None),
        "the old certificate is still shown"
    );
}

#[test]
fn a_node_without_tls_says_so_at_tls_reload() {
    let node = NodeProcess::start(&[]);
    let reply = redis_cli(&node, &["TLS", "RELOAD"]);
    assert!(reply.contains("TLS is not enabled on this node"), "{reply}");
    assert!(redis_cli(&node, &["INFO"]).contains("tls:no"));
}

/// A load balancer's health check or a port scanner opens and closes TCP connections on the
/// TLS port all day: each is closed quietly, and other failures are warned of at most once
/// per 10 s, with a count of the quiet ones.
#[test]
fn connections_that_close_before_the_tls_handshake_do_not_each_log_a_warning() {
    let world = TlsWorld::new("ca");
    let node = start(&world, Some(&world), &["--tls-auth-clients", "no"]);
    let port = node.tls_port.unwrap();
    for _ in 0..30 {
        drop(TcpStream::connect(("127.0.0.1", port)).unwrap());
    }
    for _ in 0..5 {
        let mut garbage = TcpStream::connect(("127.0.0.1", port)).unwrap();
        garbage.write_all(b"\x16\x03\x01\x00\x05hello").unwrap();
    }
    // Every probe has been handled once only the INFO connection itself is left.
    wait_until("the probes are closed", || {
        tls_cli(port, &world.ca_file, None, &["INFO"])
            .lines()
            .any(|l| l.trim() == "connected_clients:1")
    });
    let warnings = node.log().matches("did not set up TLS").count();
    assert!(
        warnings <= 1,
        "{warnings} warnings for 35 probes:\n{}",
        node.log()
    );
    assert!(pongs(port, &world.ca_file, None), "the node still serves");
}

/// How long `node` takes to exit after SIGTERM while a silent TCP connection to `port` is
/// open (it sends the first byte of a TLS handshake 8 s in, and nothing more), and its log.
fn stop_with_a_silent_connection(
    mut node: NodeProcess,
    port: u16,
    info: impl Fn(&NodeProcess) -> String,
) -> (std::time::Duration, String) {
    let idle = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut late = idle.try_clone().unwrap();
    // Part of the scenario, not a wait for a condition: a handshake that starts late.
    std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_secs(8));
        let _ = late.write_all(&[0x16]);
    });
    wait_until("the node counts the silent connection", || {
        info(&node)
            .lines()
            .any(|l| l.trim() == "connected_clients:2")
    });
    let start = std::time::Instant::now();
    node.signal("TERM");
    node.wait_exit();
    drop(idle);
    (start.elapsed(), node.log())
}

/// A connection that has not finished its TLS handshake (a scanner, a health check that holds
/// the socket, a client that has not typed yet) is not a session yet; shutdown closes it at
/// once, as it closes an idle plain client, and the shutdown stays clean.
#[test]
fn a_silent_connection_on_the_tls_port_does_not_hold_up_a_clean_shutdown() {
    let plain = NodeProcess::start(&[]);
    let port = plain.addr.port();
    let info = |node: &NodeProcess| redis_cli(node, &["INFO"]);
    let (took, log) = stop_with_a_silent_connection(plain, port, info);
    assert!(took.as_secs() < 5, "plain: {took:?}\n{log}");

    let world = TlsWorld::new("ca");
    let node = start(&world, Some(&world), &["--tls-auth-clients", "no"]);
    let port = node.tls_port.unwrap();
    let info = |_: &NodeProcess| tls_cli(port, &world.ca_file, None, &["INFO"]);
    let (took, log) = stop_with_a_silent_connection(node, port, info);
    assert!(
        took.as_secs() < 5 && !log.contains("sessions still open after the grace period"),
        "TLS: shutdown took {took:?}\n{log}"
    );
}
