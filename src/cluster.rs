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

/// Where the primary dials a replica listening on `addr`: the loopback address when it
/// listens on every address (`0.0.0.0`, `::`), which is no address to dial and which no
/// certificate names (the replica's must name `127.0.0.1` or `::1` then).
fn dialable(addr: SocketAddr) -> String {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    addr.to_string()
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
            let addrs = replicas.iter().map(|r| dialable(r.addr)).collect();
            let primary = Node::start(&primary_config(addrs), &primary_log).await?;
            return Ok(Cluster { primary, replicas });
        }
        // Fixed ports: all three at once (the primary's replicators retry until the replicas
        // listen).
        let addrs = replica_configs.iter().map(|r| dialable(r.listen)).collect();
        let primary = primary_config(addrs);
        let (replicas, primary) =
            futures::future::try_join(start_replicas, Node::start(&primary, &primary_log)).await?;
        Ok(Cluster { primary, replicas })
    }

    /// Read the TLS files again in every node (SIGHUP), one node after the other; answers the
    /// first failure, if any. Each node reads the files itself: one that fails keeps its
    /// certificates while the others take the new ones, and files changed while the nodes
    /// reload may reach some nodes and not others (reload again once they are complete).
    /// `None` without TLS.
    pub async fn reload_tls(&self) -> Option<Result<(), kv_actors::tls::TlsError>> {
        let mut results = Vec::new();
        for node in std::iter::once(&self.primary).chain(&self.replicas) {
            results.extend(node.reload_tls().await);
        }
        match results.is_empty() {
            true => None,
            false => Some(results.into_iter().collect()),
        }
    }

    /// Stop the primary first (so its last writes reach the replicas' logs), then the replicas.
    pub async fn shutdown(self, grace: Duration) {
        self.primary.shutdown(grace).await;
        for replica in self.replicas {
            replica.shutdown(grace).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_listening_on_every_address_is_dialed_on_the_loopback_address() {
        assert_eq!(dialable("0.0.0.0:7001".parse().unwrap()), "127.0.0.1:7001");
        assert_eq!(dialable("[::]:7001".parse().unwrap()), "[::1]:7001");
        assert_eq!(dialable("10.0.0.2:7001".parse().unwrap()), "10.0.0.2:7001");
    }
}
