//! `kvnode --role cluster`: a primary and two replicas in one process, for one machine.
//!
//! The replicas start first (so the primary's first connection attempts find them), each on
//! its own port and data directory under the cluster's `--data-dir`; then the primary, told
//! where they really listen. One Ctrl-C stops all three.

use std::net::SocketAddr;
use std::time::Duration;

use slog::Logger;

use crate::config::{NodeConfig, Role};
use crate::node::{Node, NodeError};

/// How many replicas a local cluster has.
pub const REPLICAS: usize = 2;

/// The three nodes of a local cluster.
pub struct Cluster {
    pub primary: Node,
    pub replicas: Vec<Node>,
}

/// The address of replica `index` (0-based): the primary's port plus `index + 1`, or port 0
/// (any free port) when the primary's is 0.
fn replica_addr(primary: SocketAddr, index: usize) -> SocketAddr {
    let mut addr = primary;
    if primary.port() != 0 {
        addr.set_port(primary.port() + 1 + index as u16);
    }
    addr
}

impl Cluster {
    /// Start a cluster from a `--role cluster` configuration.
    pub async fn start(config: &NodeConfig, log: &Logger) -> Result<Cluster, NodeError> {
        let root = &config.data_dir;
        let mut replicas = Vec::with_capacity(REPLICAS);
        for index in 0..REPLICAS {
            let replica = NodeConfig {
                role: Role::Replica,
                listen: replica_addr(config.listen, index),
                data_dir: root.join(format!("replica{}", index + 1)),
                replicas: Vec::new(),
                ..config.clone()
            };
            let log = log.new(slog::o!("node" => format!("replica{}", index + 1)));
            replicas.push(Node::start(&replica, &log).await?);
        }
        let primary = NodeConfig {
            role: Role::Primary,
            data_dir: root.join("primary"),
            replicas: replicas.iter().map(|r| r.addr.to_string()).collect(),
            ..config.clone()
        };
        let log = log.new(slog::o!("node" => "primary"));
        let primary = Node::start(&primary, &log).await?;
        Ok(Cluster { primary, replicas })
    }

    /// Stop the primary first (so its last writes reach the replicas' logs), then the replicas.
    pub async fn shutdown(self, grace: Duration) {
        self.primary.shutdown(grace).await;
        for replica in self.replicas {
            replica.shutdown(grace).await;
        }
    }
}
