//! The failover-cluster topology (`--target cluster`): `kvnode` members started with
//! `--peers`, which elect their primary themselves.
//!
//! Every member is known by an address fixed for the whole run, its front proxy (clients and
//! the other members use it; a `kill -9` and restart does not change it), with a second proxy
//! on that port + 10000 in front of its control plane, since members reach each other's Raft
//! RPCs there. The member itself listens on ports of its own, fresh at every start; both
//! proxies are pointed there. Each member dials the others from a loopback address of its
//! own (`--source-addr 127.0.0.(10 + i)`), so the proxies can cut it off from the others,
//! both ways, while the clients (dialling from 127.0.0.1) still reach it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use kvstore::chaos::proxy::Proxy;

use crate::cluster::{above, Cluster, SECRET};
use crate::node::{free_pair, Member, Node, Program, Spec, CONTROL_OFFSET};

/// How long the members get to elect their first primary.
const FIRST_ELECTION: Duration = Duration::from_secs(30);

/// How a failover cluster's members are started.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// `--failover-timeout-ms` of every member.
    pub failover_timeout_ms: u64,
    /// `--min-replicas-to-write` of every member (1: no acknowledged write lost by a single
    /// failure; 0: asynchronous replication).
    pub min_replicas_to_write: u64,
}

/// Start `members` members of `program` (a kvnode), data and logs under `out`, and wait for
/// their first primary.
pub fn start(
    program: &Program,
    fsync: &str,
    members: usize,
    options: Options,
    out: &Path,
) -> Result<Cluster, String> {
    // New connections go nowhere (refused at once) until the member behind is started.
    let nowhere = SocketAddr::from(([127, 0, 0, 1], 1));
    let mut fronts = Vec::new();
    let mut controls = Vec::new();
    while fronts.len() < members {
        let front = free_pair()?;
        // Either port may be taken between the check and the bind: draw again.
        let (Ok(f), Ok(c)) = (
            Proxy::start_on(front, nowhere),
            Proxy::start_on(above(front, CONTROL_OFFSET), nowhere),
        ) else {
            continue;
        };
        fronts.push(f);
        controls.push(c);
    }
    let peers: Vec<String> = fronts.iter().map(|f| f.addr.to_string()).collect();
    let sources: Vec<IpAddr> = (0..members)
        .map(|i| IpAddr::V4(Ipv4Addr::new(127, 0, 0, 10 + i as u8)))
        .collect();
    let mut nodes = Vec::new();
    for i in 0..members {
        let name = format!("member{i}");
        let spec = Spec {
            data_dir: out.join(&name).join("data"),
            name,
            program: program.clone(),
            fsync: fsync.to_string(),
            links: Vec::new(),
            replica: false,
            secret: SECRET.to_string(),
            member: Some(Member {
                peers: peers.join(","),
                advertise: fronts[i].addr,
                source: sources[i],
                failover_timeout_ms: options.failover_timeout_ms,
                min_replicas_to_write: options.min_replicas_to_write,
            }),
        };
        let node = Node::start(spec, out)?;
        fronts[i].retarget(node.addr);
        controls[i].retarget(above(node.addr, CONTROL_OFFSET));
        nodes.push(node);
    }
    let cluster = Cluster {
        nodes,
        fronts,
        links: Vec::new(),
        controls,
        sources,
    };
    cluster
        .wait_primary(FIRST_ELECTION)
        .ok_or_else(|| format!("the members elected no primary within {FIRST_ELECTION:?}"))?;
    Ok(cluster)
}
