//! `kvnode --role cluster`: a primary and two replicas in one process, for one machine.
//!
//! The three nodes recover their data side by side, each on its own port and data directory
//! under the cluster's `--data-dir`; the primary is told where the replicas listen. One Ctrl-C
//! stops all three.

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
    /// Start a cluster from a `--role cluster` configuration. The three nodes recover their
    /// data side by side; the primary is told where the replicas listen, so when they take
    /// any free port (`--listen` port 0) it starts once they have one.
    pub async fn start(config: &NodeConfig, log: &Logger) -> Result<Cluster, NodeError> {
        let root = &config.data_dir;
        let replica_configs: Vec<NodeConfig> = (0..REPLICAS)
            .map(|index| NodeConfig {
                role: Role::Replica,
                listen: replica_addr(config.listen, index),
                data_dir: root.join(format!("replica{}", index + 1)),
                replicas: Vec::new(),
                // A fixed TLS port moves along with the client port.
                tls: config.tls.clone().map(|mut tls| {
                    tls.port = tls
                        .port
                        .map(|p| replica_addr(([0, 0, 0, 0], p).into(), index).port());
                    tls
                }),
                ..config.clone()
            })
            .collect();
        let start_replicas = futures::future::try_join_all(replica_configs.iter().enumerate().map(
            |(index, replica)| {
                let log = log.new(slog::o!("node" => format!("replica{}", index + 1)));
                async move { Node::start(replica, &log).await }
            },
        ));
        let primary_config = |replicas: Vec<String>| NodeConfig {
            role: Role::Primary,
            data_dir: root.join("primary"),
            replicas,
            ..config.clone()
        };
        let primary_log = log.new(slog::o!("node" => "primary"));
        if config.listen.port() == 0 {
            let replicas = start_replicas.await?;
            let addrs = replicas.iter().map(|r| r.addr.to_string()).collect();
            let primary = Node::start(&primary_config(addrs), &primary_log).await?;
            return Ok(Cluster { primary, replicas });
        }
        // Fixed ports: all three at once (the primary's replicators retry until the replicas
        // listen).
        let addrs = replica_configs
            .iter()
            .map(|r| r.listen.to_string())
            .collect();
        let primary = primary_config(addrs);
        let (replicas, primary) =
            futures::future::try_join(start_replicas, Node::start(&primary, &primary_log)).await?;
        Ok(Cluster { primary, replicas })
    }

    /// Stop the primary first (so its last writes reach the replicas' logs), then the replicas.
    /// Read the TLS files again in every node (SIGHUP); answers the first failure, if any
    /// (every node keeps its certificates then). `None` without TLS.
    pub fn reload_tls(&self) -> Option<Result<(), kv_actors::tls::TlsError>> {
        let nodes = std::iter::once(&self.primary).chain(&self.replicas);
        let results: Vec<_> = nodes.filter_map(Node::reload_tls).collect();
        match results.is_empty() {
            true => None,
            false => Some(results.into_iter().collect()),
        }
    }

    pub async fn shutdown(self, grace: Duration) {
        self.primary.shutdown(grace).await;
        for replica in self.replicas {
            replica.shutdown(grace).await;
        }
    }
}
