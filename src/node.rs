//! Node assembly: the actors of one node, started on their threads and wired together.
//!
//! Start-up: lock the data directory, recover its data, start the Store with it, start the
//! persistence writer and subscribe it to the Store, and only then accept clients.
//!
//! Threads: the Store runs alone on its own arbiter, and so does the persistence writer;
//! sessions are spread over `io_threads` arbiters; the Listener runs on the arbiter that calls
//! [`Node::start`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::Arbiter;
use kv_actors::data_dir::{DataDir, StorageError};
use kv_actors::listener::{ClientCount, Listener, ListenerConfig, StopAccepting};
use kv_actors::recovery;
use kv_actors::session::SessionConfig;
use kv_actors::store::{Store, Subscribe};
use kv_actors::writer::{SyncNow, Writer};
use slog::{info, warn, Logger};
use thiserror::Error;
use tokio::net::TcpListener;

use crate::config::{NodeConfig, Role};

/// Why a node could not start; each says what the operator can do about it.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error("cannot listen on {addr}: {source} (is another node already using that port?)")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the {0} stopped during start-up")]
    ActorGone(&'static str),
}

/// A running node.
pub struct Node {
    /// The address the node really listens on (useful when it was asked for port 0).
    pub addr: SocketAddr,
    /// The node's Store, for tests and in-process tools.
    pub store: Addr<Store>,
    /// The node's persistence writer.
    pub writer: Addr<Writer>,
    listener: Addr<Listener>,
    arbiters: Vec<Arbiter>,
    log: Logger,
}

impl Node {
    /// Start a node inside the running actix System.
    pub async fn start(config: &NodeConfig, log: &Logger) -> Result<Node, NodeError> {
        let log = log.new(slog::o!("role" => config.role.as_str()));
        let dir = Arc::new(DataDir::open(&config.data_dir)?);
        let mut recovered = recovery::recover(&dir, config.recovery, &log)?;
        let data = std::mem::take(&mut recovered.keyspace);
        let keys = data.len();
        let last_seq = recovered.last_seq;
        let socket =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| NodeError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let addr = socket.local_addr().map_err(|source| NodeError::Listen {
            addr: config.listen,
            source,
        })?;

        let store_arbiter = Arbiter::new();
        let store = Store::start_in_arbiter(&store_arbiter.handle(), move |_| {
            Store::with_data(data, last_seq)
        });
        let writer_arbiter = Arbiter::new();
        let (writer, durability) =
            Writer::new(dir.clone(), &recovered, config.writer, store.clone(), &log)?;
        let writer = Writer::start_in_arbiter(&writer_arbiter.handle(), move |_| writer);
        // Subscribed before any client can write, so the log misses nothing.
        let from = store
            .send(Subscribe(writer.clone().recipient()))
            .await
            .map_err(|_| NodeError::ActorGone("store"))?;
        debug_assert_eq!(from, last_seq);
        let io_arbiters: Vec<Arbiter> = (0..config.io_threads.max(1))
            .map(|_| Arbiter::new())
            .collect();
        let listener_config = ListenerConfig {
            arbiters: io_arbiters.iter().map(Arbiter::handle).collect(),
            max_clients: config.max_clients,
            session: Arc::new(SessionConfig {
                read_only: config.role == Role::Replica,
                max_line_bytes: config.max_line_bytes,
                output_limit: config.client_output_limit,
                durability,
                ..SessionConfig::default()
            }),
        };
        let listener = Listener::start(socket, store.clone(), listener_config, &log);
        if !config.replicas.is_empty() {
            warn!(log, "replication is not available in this version; --replica is ignored";
                "replicas" => format!("{:?}", config.replicas));
        }
        info!(log, "listening"; "addr" => %addr, "data_dir" => %config.data_dir.display(),
            "fsync" => %config.writer.fsync, "keys" => keys,
            "io_threads" => io_arbiters.len());

        let mut arbiters = io_arbiters;
        arbiters.push(store_arbiter);
        arbiters.push(writer_arbiter);
        Ok(Node {
            addr,
            store,
            writer,
            listener,
            arbiters,
            log,
        })
    }

    /// How many clients are connected.
    pub async fn clients(&self) -> usize {
        self.listener.send(ClientCount).await.unwrap_or(0)
    }

    /// Stop accepting, let every session answer what it has read, write and fsync the log,
    /// then stop the node's threads. Sessions still busy after `grace` are abandoned.
    pub async fn shutdown(self, grace: Duration) {
        info!(self.log, "shutting down");
        let drained = self.listener.send(StopAccepting);
        if tokio::time::timeout(grace, drained).await.is_err() {
            warn!(self.log, "sessions still open after the grace period; closing anyway";
                "grace_ms" => grace.as_millis() as u64);
        }
        match self.writer.send(SyncNow).await {
            Ok(Ok(seq)) => info!(self.log, "log flushed and synced"; "synced_seq" => seq),
            Ok(Err(error)) => {
                slog::error!(self.log, "could not flush the log at shutdown"; "error" => error)
            }
            Err(_) => slog::error!(
                self.log,
                "the persistence writer is gone; the log may be behind"
            ),
        }
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        info!(self.log, "stopped");
    }
}
