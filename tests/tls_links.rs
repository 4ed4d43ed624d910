//! TLS on the links between nodes: a primary streams to its replica over TLS (its own
//! certificate as client certificate, the replica's checked against `--tls-ca`), a replica
//! whose certificate the primary does not trust is not streamed to until it is given a good
//! one, and a failover cluster with TLS on every link (clients, replication, control plane)
//! elects a primary that replicates.

mod common;

use std::path::PathBuf;

use common::certs::CertFiles;
use common::tls::{node_flags, tls_cli, TlsWorld};
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
    primary.wait_for_log("connect failed");
    let info = cli(&primary, &world, &client, &["INFO"]);
    assert!(info.contains("connected_replicas:0"), "{info}");
    assert!(!info.contains("replica0_state:streaming"), "{info}");
    // The replica serves on; its clients trust the authority of its certificate.
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
