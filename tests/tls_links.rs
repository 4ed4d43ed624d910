//! TLS on the links between nodes: a primary streams to its replica over TLS (its own
//! certificate as client certificate, the replica's checked against `--tls-ca`), a replica
//! whose certificate the primary does not trust (another authority, another name) is not
//! streamed to until it is given a good one, a replica takes a stream only from a primary
//! whose certificate its authority signed, and a failover cluster with TLS on every link
//! (clients, replication, control plane) elects a primary that replicates.

mod common;

use std::path::PathBuf;

use common::certs::CertFiles;
use common::tls::{node_flags, python, tls_cli, tls_line, TlsWorld};
use common::{free_ports, wait_until, NodeProcess};
use tempfile::TempDir;

/// The cluster secret every node of these tests shares: it stays on top of TLS.
const SECRET: &str = "tls-links-secret";

/// A node with `identity`, trusting `ca`, with `extra` flags and the cluster secret.
fn start(identity: &CertFiles, ca: &TlsWorld, extra: &[&str]) -> NodeProcess {
    let mut flags = node_flags(identity, Some(&ca.ca_file));
    flags.extend(["--cluster-secret", SECRET].map(String::from));
    flags.extend(extra.iter().map(|s| s.to_string()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    NodeProcess::start(&flags)
}

/// `redis-cli --tls` against `node` as a client of `world`.
fn cli(node: &NodeProcess, world: &TlsWorld, client: &CertFiles, args: &[&str]) -> String {
    let port = node.tls_port.expect("a TLS node");
    tls_cli(port, &world.ca_file, Some(client), args)
}

#[test]
fn a_primary_streams_to_its_replica_over_tls() {
    let world = TlsWorld::new("ca");
    let client = world.issue("client");
    let replica = start(&world.issue("replica"), &world, &["--role", "replica"]);
    let to = replica.addr.to_string();
    let primary = start(&world.issue("primary"), &world, &["--replica", &to]);
    assert_eq!(
        cli(&primary, &world, &client, &["SET", "k", "v"]).trim(),
        "OK"
    );
    wait_until("the replica has the write", || {
        cli(&replica, &world, &client, &["GET", "k"]).trim() == "v"
    });
    let info = cli(&primary, &world, &client, &["INFO"]);
    assert!(info.contains("replica0_state:streaming"), "{info}");
}

#[test]
fn a_replica_with_an_untrusted_certificate_is_not_streamed_to_until_it_reloads_a_good_one() {
    let world = TlsWorld::new("ca");
    let other = TlsWorld::new("other-ca");
    let client = world.issue("client");
    let replica_files = other.issue("replica");
    let replica = start(&replica_files, &world, &["--role", "replica"]);
    let to = replica.addr.to_string();
    let primary = start(&world.issue("primary"), &world, &["--replica", &to]);
    assert_eq!(
        cli(&primary, &world, &client, &["SET", "k", "v"]).trim(),
        "OK"
    );
    // Refused for the certificate, not for anything else on the way.
    primary.wait_for_log("UnknownIssuer");
    // The replica serves on, without the write; its clients trust its certificate's authority.
    let port = replica.tls_port.unwrap();
    let reply = tls_cli(port, &other.ca_file, Some(&client), &["GET", "k"]);
    assert_eq!(reply.trim(), "");

    let good = world.issue("replica-renewed");
    std::fs::copy(&good.cert, &replica_files.cert).unwrap();
    std::fs::copy(&good.key, &replica_files.key).unwrap();
    let reload = tls_cli(port, &other.ca_file, Some(&client), &["TLS", "RELOAD"]);
    assert_eq!(reload.trim(), "OK");
    wait_until("the replica attaches and has the write", || {
        cli(&replica, &world, &client, &["GET", "k"]).trim() == "v"
    });
    let info = cli(&primary, &world, &client, &["INFO"]);
    assert!(info.contains("connected_replicas:1"), "{info}");
}

#[test]
fn a_replica_whose_certificate_does_not_name_the_address_it_is_dialed_by_is_not_streamed_to() {
    let world = TlsWorld::new("ca");
    let replica = start(
        &world.issue_for("replica", &["db2.example"]),
        &world,
        &["--role", "replica"],
    );
    let to = replica.addr.to_string();
    let primary = start(&world.issue("primary"), &world, &["--replica", &to]);
    primary.wait_for_log("not valid for name");
    assert!(
        !primary.log().contains("replica connected"),
        "{}",
        primary.log()
    );
}

/// docs/security.md: "a certificate from the CA is not enough to replicate, and the secret is
/// not enough without a certificate", whatever `--tls-auth-clients` says: an impostor whose
/// certificate comes from another authority, knowing the secret, cannot replace the data of
/// a replica whose clients need no certificate.
#[test]
fn a_replica_takes_a_stream_only_from_a_primary_its_ca_signed_even_with_tls_auth_clients_no() {
    let world = TlsWorld::new("ca");
    let other = TlsWorld::new("attacker-ca");
    let client = world.issue("client");
    let no = ["--tls-auth-clients", "no"];
    let replica = start(
        &world.issue("replica"),
        &world,
        &[&["--role", "replica"], &no[..]].concat(),
    );
    // The impostor trusts the replica's authority (to dial it) but shows its own's certificate.
    let to = replica.addr.to_string();
    let impostor = start(
        &other.issue("impostor"),
        &world,
        &[&["--replica", &to], &no[..]].concat(),
    );
    let port = impostor.tls_port.unwrap();
    assert_eq!(
        tls_cli(port, &other.ca_file, None, &["SET", "k", "forged"]).trim(),
        "OK"
    );
    replica.wait_for_log("UnknownIssuer");
    impostor.wait_for_log("replica unreachable");
    assert!(
        !impostor.log().contains("replica connected"),
        "{}",
        impostor.log()
    );
    assert_eq!(cli(&replica, &world, &client, &["GET", "k"]).trim(), "");
}

/// A replication stream over TLS from a caller that shows no certificate is refused with a
/// line that says why, even on a replica without a cluster secret and whose clients need no
/// certificate: otherwise anyone who reaches its port could replace its data.
#[test]
fn a_primary_without_a_certificate_from_the_ca_is_refused_with_a_clear_line() {
    let world = TlsWorld::new("ca");
    let mut flags = node_flags(&world.issue("replica"), Some(&world.ca_file));
    flags.extend(["--role", "replica", "--tls-auth-clients", "no"].map(String::from));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let replica = NodeProcess::start(&flags);
    let port = replica.tls_port.unwrap();
    let reply = tls_line(
        port,
        &world.ca_file,
        "REPLICATE 00112233445566778899aabbccddeeff",
    );
    assert_eq!(
        reply,
        "ERROR: replication refused: a primary must show a certificate from this node's --tls-ca"
    );
    replica.wait_for_log("replication handshake refused");
}

/// With `--tls-port`, the plain port still takes plain clients, but not a plain replication
/// stream: the link is not downgraded.
#[test]
fn a_plain_primary_is_refused_on_the_plain_port_of_a_tls_replica() {
    let world = TlsWorld::new("ca");
    let replica = start(
        &world.issue("replica"),
        &world,
        &["--role", "replica", "--tls-port", "0"],
    );
    let to = replica.addr.to_string();
    let primary = NodeProcess::start(&["--replica", &to, "--cluster-secret", SECRET]);
    replica.wait_for_log("takes replication only over TLS");
    primary.wait_for_log("replica unreachable");
    assert!(
        !primary.log().contains("replica connected"),
        "{}",
        primary.log()
    );
}

/// Every reply is flushed through the TLS session: a pipeline of thousands of commands and a
/// multi-MiB value come back whole, and reach a replica over the TLS replication stream.
#[test]
fn pipelined_and_large_replies_and_the_replication_stream_arrive_whole_over_tls() {
    let world = TlsWorld::new("ca");
    let client = world.issue("client");
    let replica = start(&world.issue("replica"), &world, &["--role", "replica"]);
    let to = replica.addr.to_string();
    let primary = start(&world.issue("primary"), &world, &["--replica", &to]);
    let script = |port: u16, write: bool| {
        format!(
            r#"
import redis
r = redis.Redis(host="localhost", port={port}, ssl=True, ssl_ca_certs={ca:?},
                ssl_certfile={cert:?}, ssl_keyfile={key:?}, socket_timeout=60)
big = b"x" * (6 * 1024 * 1024)
if {write}:
    p = r.pipeline(transaction=False)
    for i in range(5000):
        p.set(f"k{{i}}", i)
    p.set("big", big)
    assert all(p.execute())
p = r.pipeline(transaction=False)
for i in range(5000):
    p.get(f"k{{i}}")
values = p.execute()
print(sum(1 for i, v in enumerate(values) if v == str(i).encode()), len(r.get("big") or b""))
"#,
            ca = world.ca_file.display().to_string(),
            cert = client.cert.display().to_string(),
            key = client.key.display().to_string(),
            write = if write { "True" } else { "False" },
        )
    };
    let on_primary = python(&script(primary.tls_port.unwrap(), true));
    assert_eq!(on_primary.trim(), "5000 6291456");
    wait_until("the replica has everything", || {
        python(&script(replica.tls_port.unwrap(), false)).trim() == "5000 6291456"
    });
}

/// A three-member failover cluster with TLS on every link.
struct TlsCluster {
    world: TlsWorld,
    client: CertFiles,
    addrs: Vec<String>,
    nodes: Vec<NodeProcess>,
    _dirs: Vec<TempDir>,
}

impl TlsCluster {
    fn start() -> TlsCluster {
        let world = TlsWorld::new("cluster-ca");
        let client = world.issue("client");
        let addrs: Vec<String> = free_ports(3)
            .into_iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let peers = addrs.join(",");
        let dirs: Vec<TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
        let nodes = (0..3)
            .map(|i| {
                let mut flags =
                    node_flags(&world.issue(&format!("member{i}")), Some(&world.ca_file));
                let more = ["--peers", &peers, "--failover-timeout-ms", "600"];
                flags.extend(more.map(String::from));
                flags.extend(["--cluster-secret", SECRET].map(String::from));
                let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
                let dir: PathBuf = dirs[i].path().to_path_buf();
                NodeProcess::start_at(&addrs[i], &dir, &flags)
            })
            .collect();
        TlsCluster {
            world,
            client,
            addrs,
            nodes,
            _dirs: dirs,
        }
    }

    fn cli(&self, i: usize, args: &[&str]) -> String {
        let port = self.nodes[i].tls_port.expect("a TLS member");
        let output =
            common::tls::redis_cli_tls(port, &self.world.ca_file, Some(&self.client), args);
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// The member all three agree is the primary, once they do.
    fn wait_for_primary(&self) -> usize {
        let mut primary = None;
        wait_until("the members agree on a primary over TLS", || {
            let infos: Vec<String> = (0..3).map(|i| self.cli(i, &["INFO"])).collect();
            let primaries: Vec<usize> = (0..3)
                .filter(|i| infos[*i].contains("role:primary"))
                .collect();
            let [p] = primaries[..] else { return false };
            primary = Some(p);
            let named = format!("primary:{}", self.addrs[p]);
            infos.iter().all(|info| info.contains(&named))
        });
        primary.expect("a primary")
    }
}

#[test]
fn a_failover_cluster_with_tls_on_every_link_elects_a_primary_that_replicates() {
    let cluster = TlsCluster::start();
    let primary = cluster.wait_for_primary();
    wait_until("a write is acknowledged", || {
        cluster.cli(primary, &["SET", "greeting", "hello"]).trim() == "OK"
    });
    for i in (0..3).filter(|i| *i != primary) {
        wait_until("the member has the write", || {
            cluster.cli(i, &["GET", "greeting"]).trim() == "hello"
        });
    }
    // The control plane speaks TLS and wants a certificate from the authority.
    let control = cluster.nodes[primary].addr.port() + common::CONTROL_OFFSET;
    assert_eq!(control_plane_tls(&cluster, control, true), "TLSv1.3");
    assert_eq!(control_plane_tls(&cluster, control, false), "refused");
}

/// Open TLS to a control port with Python's `ssl`, with the cluster's client certificate or
/// without; answers the protocol version, or `refused` when the member refuses it.
fn control_plane_tls(cluster: &TlsCluster, port: u16, with_cert: bool) -> String {
    let cert = match with_cert {
        true => format!(
            "context.load_cert_chain({:?}, {:?})",
            cluster.client.cert.display().to_string(),
            cluster.client.key.display().to_string()
        ),
        false => String::new(),
    };
    common::tls::python(&format!(
        r#"
import socket, ssl
context = ssl.create_default_context(cafile={ca:?})
{cert}
try:
    with socket.create_connection(("127.0.0.1", {port})) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            if {probe}:
                # Without a certificate, the member's refusal arrives as the first read.
                tls.settimeout(30)
                tls.recv(1)
            print(tls.version())
except (ssl.SSLError, ConnectionError):
    print("refused")
"#,
        ca = cluster.world.ca_file.display().to_string(),
        probe = if with_cert { "False" } else { "True" },
    ))
    .trim()
    .to_string()
}
