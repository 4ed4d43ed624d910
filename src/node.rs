//! Node assembly: the actors of one node, started on their threads and wired together.
//!
//! Start-up: lock the data directory, recover its data, start the Store with it, start the
//! persistence writer and subscribe it to the Store, and only then accept clients.
//!
//! Threads: the Store, the sessions, and the replicators (or the follower) share one arbiter,
//! as Redis serves everything from one thread: on a small machine, waking another thread costs
//! more than the work handed to it. The persistence writer shares it too (its `write`s go to
//! the page cache); its fsyncs run on a `kv-fsync` thread. TLS handshakes, whose cryptography
//! would hold up the Store, have an arbiter of their own. `io_threads` above 1 adds arbiters that take sessions too. The Listener runs on the
//! arbiter that calls [`Node::start`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use actix_rt::Arbiter;
use kv_actors::auth::accounts::Accounts;
use kv_actors::auth::users::UsersError;
use kv_actors::replication::auth::ClusterSecret;
use kv_actors::replication::data_epoch::DataEpoch;
use kv_actors::replication::follower::Follower;
use kv_actors::replication::node_position::NodePosition;
use kv_actors::replication::position_token::History;
use kv_actors::replication::replication_id::{self, Lineage, ReplicationState};
use kv_actors::replication::replicator::{Replicator, ReplicatorConfig};
use kv_actors::server::listener::{ClientCount, Listener, ListenerConfig, StopAccepting};
use kv_actors::server::node_context::NodeContext;
use kv_actors::server::session_config::SessionConfig;
use kv_actors::storage::data_dir::{DataDir, StorageError};
use kv_actors::storage::recovery;
use kv_actors::storage::writer::{SyncNow, Writer};
use kv_actors::store::{SetWrites, Stats, Store, Subscribe};
use kv_actors::tls::accept::PortMode;
use kv_actors::tls::{TlsContext, TlsError};
use slog::{info, warn, Logger};
use std::sync::atomic::AtomicUsize;
use thiserror::Error;
use tokio::net::TcpListener;

use crate::config::{NodeConfig, Role};
use crate::failover;

/// Why a node could not start; each says what the operator can do about it.
#[derive(Debug, Error)]
pub enum NodeError {
    #[error("cannot listen on {addr}: {source}{hint}")]
    Listen {
        addr: SocketAddr,
        source: io::Error,
        /// What the operator can do about it, when the error says.
        hint: &'static str,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("the {0} stopped during start-up")]
    ActorGone(&'static str),
    #[error("--role cluster is started with kvstore::cluster, not Node::start")]
    ClusterRole,
    #[error(transparent)]
    Failover(#[from] failover::FailoverError),
    #[error("--source-addr: {0}")]
    Source(#[from] kv_actors::outgoing::AlreadySet),
    #[error(transparent)]
    Users(#[from] UsersError),
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
}

impl NodeError {
    /// A listen error, with the hint that fits its cause.
    fn listen(addr: SocketAddr, source: io::Error) -> NodeError {
        let hint = match source.kind() {
            io::ErrorKind::AddrInUse => " (is another node already using that port?)",
            io::ErrorKind::AddrNotAvailable => {
                " (that address is not one of this machine's; use 0.0.0.0 or one of its own)"
            }
            io::ErrorKind::PermissionDenied => " (ports below 1024 need privileges)",
            _ => "",
        };
        NodeError::Listen { addr, source, hint }
    }
}

/// What `CONFIG GET` answers: this node's settings under the names Redis gives them, so
/// clients and tools that read them (redis-benchmark, client libraries) find them.
fn redis_settings(config: &NodeConfig, addr: SocketAddr) -> Vec<(&'static str, String)> {
    let seconds = |d: Duration| d.as_secs().to_string();
    vec![
        ("appendonly", "yes".into()),
        ("appendfsync", config.writer.fsync.to_string()),
        ("save", String::new()),
        ("maxmemory", "0".into()),
        ("maxmemory-policy", "noeviction".into()),
        ("timeout", config.idle_timeout.map_or("0".into(), seconds)),
        ("databases", "1".into()),
        ("maxclients", config.max_clients.to_string()),
        ("maxmemory-clients", config.maxmemory_clients.to_string()),
        ("port", addr.port().to_string()),
        ("bind", addr.ip().to_string()),
        ("dir", config.data_dir.display().to_string()),
        ("proto-max-bulk-len", config.max_value_bytes.to_string()),
        ("repl-backlog-size", config.repl_backlog_bytes.to_string()),
        ("repl-timeout", seconds(config.repl_timeout)),
        (
            "min-replicas-to-write",
            config.min_replicas_to_write.to_string(),
        ),
        ("replica-read-only", "yes".into()),
    ]
}

/// The node's users, from `--requirepass` and `--users-file`; logs what clients must do, and
/// warns of what client passwords do not protect.
fn open_accounts(config: &NodeConfig, log: &Logger) -> Result<Accounts, NodeError> {
    let requirepass = config.auth.requirepass.as_ref().map(|p| p.as_bytes());
    let file = config.auth.users_file.clone();
    let accounts = Accounts::new(requirepass, file.clone())?;
    if !accounts.required() {
        return Ok(accounts);
    }
    info!(log, "clients must log in"; "requirepass" => requirepass.is_some(),
        "users_file" => file.as_ref().map(|f| f.display().to_string()),
        "users" => accounts.users().len());
    if let Some(file) = file.as_ref().filter(|f| crate::auth::readable_by_others(f)) {
        warn!(log, "the users file is readable by every user of this machine: its hashes can be \
            attacked offline; chmod 600 it"; "users_file" => %file.display());
    }
    let follows = config.role != Role::Primary || !config.peers.is_empty();
    if follows && config.cluster_secret.is_none() {
        warn!(
            log,
            "clients must log in, but without --cluster-secret the replication stream is \
            not authenticated: anyone who can reach this port can replace this node's data"
        );
    }
    Ok(accounts)
}

/// The node's TLS, if it has any, and the client sockets with what each speaks: the `--listen`
/// socket, TLS only when there is no `--tls-port`, and the TLS port's (on the same address),
/// with the TLS port clients reach for `INFO`.
async fn open_tls(
    config: &NodeConfig,
    socket: TcpListener,
    addr: SocketAddr,
    log: &Logger,
) -> Result<
    (
        Option<TlsContext>,
        Vec<(TcpListener, PortMode)>,
        Option<u16>,
    ),
    NodeError,
> {
    let Some(tls) = &config.tls else {
        return Ok((None, vec![(socket, PortMode::Plain)], None));
    };
    let context = TlsContext::load(tls.settings.clone(), log)?;
    let Some(port) = tls.port else {
        return Ok((
            Some(context),
            vec![(socket, PortMode::TlsOnly)],
            Some(addr.port()),
        ));
    };
    let wanted = SocketAddr::new(addr.ip(), port);
    let tls_socket = TcpListener::bind(wanted)
        .await
        .map_err(|source| NodeError::listen(wanted, source))?;
    let tls_port = tls_socket
        .local_addr()
        .map_err(|source| NodeError::listen(wanted, source))?
        .port();
    // The plain port takes TLS too, so peers listed by that address still link over TLS.
    let sockets = vec![(socket, PortMode::Either), (tls_socket, PortMode::TlsOnly)];
    Ok((Some(context), sockets, Some(tls_port)))
}

/// How long a stopping primary waits for its streaming replicas to catch up.
const REPLICA_CATCH_UP: Duration = Duration::from_secs(2);

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
    dir: Arc<DataDir>,
    /// A primary's history, recorded as clean at a complete shutdown.
    lineage: Option<Lineage>,
    /// What sessions report and wait on; used at shutdown to let replicas catch up.
    context: NodeContext,
    stopping: tokio::sync::watch::Sender<bool>,
    /// Where clients wait in `WAITPOS`: ended at shutdown as `WAIT`s are.
    position: NodePosition,
    /// A failover-cluster member's control plane.
    member: Option<failover::ControlPlane>,
    /// The node's TLS, reloaded by SIGHUP.
    tls: Option<TlsContext>,
}

impl Node {
    /// Start a node inside the running actix System.
    pub async fn start(config: &NodeConfig, log: &Logger) -> Result<Node, NodeError> {
        if config.role == Role::Cluster {
            return Err(NodeError::ClusterRole);
        }
        let log = log.new(slog::o!("role" => config.role.as_str()));
        if let Some(ip) = config.source_addr {
            kv_actors::outgoing::set_source(ip)?;
        }
        // The port first: a start that fails there leaves no data directory behind. Clients
        // that connect while the data is recovered wait to be accepted.
        let socket = TcpListener::bind(config.listen)
            .await
            .map_err(|source| NodeError::listen(config.listen, source))?;
        let addr = socket
            .local_addr()
            .map_err(|source| NodeError::listen(config.listen, source))?;
        // The TLS files and port before the data too, for the same reason.
        let (tls, sockets, tls_port) = open_tls(config, socket, addr, &log).await?;
        // The users before the data: a users file with a mistake stops the start at once.
        let accounts = Arc::new(open_accounts(config, &log)?);
        let dir = Arc::new(DataDir::open(&config.data_dir)?);
        // Off the System's thread: it blocks on the disk, and the nodes of a local cluster
        // recover side by side.
        let mut recovered = {
            let (dir, options, log) = (dir.clone(), config.recovery, log.clone());
            tokio::task::spawn_blocking(move || recovery::recover(&dir, options, &log))
                .await
                .map_err(|_| NodeError::ActorGone("recovery thread"))??
        };
        let data = std::mem::take(&mut recovered.keyspace);
        let keys = data.len();
        let last_seq = recovered.last_seq;

        let store_arbiter = Arbiter::new();
        // A replica's Store (and a failover member's, until it is named primary) is closed to
        // client writes from its first moment: it must never author a mutation, an expiry's
        // delete included, of its own.
        let follows = config.role == Role::Replica || !config.peers.is_empty();
        let store = Store::start_in_arbiter(&store_arbiter.handle(), move |_| {
            let store = Store::with_data(data, last_seq);
            match follows {
                true => store.closed(),
                false => store,
            }
        });
        // The writer shares the Store's thread: a batch is applied, logged and answered in one
        // turn of it; its fsyncs run on a thread of its own (`storage/syncer.rs`).
        let (writer, durability) =
            Writer::new(dir.clone(), &recovered, config.writer, store.clone(), &log)?;
        let writer = Writer::start_in_arbiter(&store_arbiter.handle(), move |_| writer);
        // Subscribed before any client can write, so the log misses nothing.
        let from = store
            .send(Subscribe(writer.clone().recipient()))
            .await
            .map_err(|_| NodeError::ActorGone("store"))?;
        debug_assert_eq!(from, last_seq);

        let (stopping, stopping_watch) = tokio::sync::watch::channel(false);
        let mut node_context = NodeContext {
            role: config.role.as_str(),
            stopping: Some(stopping_watch),
            clients: Arc::new(AtomicUsize::new(0)),
            cluster_secret: config.cluster_secret.as_deref().map(ClusterSecret::new),
            replication_timeout: config.repl_timeout,
            handshake_timeout: config.repl_handshake_timeout,
            min_replicas_to_write: config.min_replicas_to_write,
            min_replicas_timeout: config.min_replicas_timeout,
            sentinel_name: config.sentinel_name.as_str().into(),
            settings: Arc::new(redis_settings(config, addr)),
            accounts,
            tls: tls.clone(),
            tls_port,
            ..NodeContext::default()
        };
        node_context
            .client_registry
            .memory()
            .set_limit(config.maxmemory_clients);
        // How far the node's history is safe, for `WAITPOS`; its history is set below.
        node_context
            .position
            .track(durability.clone(), &store_arbiter.handle());
        let mut lineage = None;
        let mut member = None;
        let role = match config.peers.is_empty() {
            true => config.role,
            false => {
                let parts = failover::MemberParts {
                    config,
                    dir: &dir,
                    store: &store,
                    writer: &writer,
                    durability: &durability,
                    tail: &recovered.tail,
                    last_seq,
                    arbiter: &store_arbiter,
                };
                member = Some(failover::start_member(parts, &mut node_context, &log).await?);
                Role::Cluster
            }
        };
        match role {
            Role::Primary => {
                if replication_id::load(&dir)? == ReplicationState::Resyncing {
                    warn!(log, "this data directory holds a replica's unfinished full resync: \
                        its data is a partial copy, and serving it as a primary's is probably wrong";
                        "offset" => last_seq);
                }
                let (history, kept) = replication_id::primary_id(&dir, last_seq)?;
                let previous = history.previous.as_ref();
                info!(log, "replication id"; "replication_id" => &history.id,
                    "kept" => kept, "offset" => last_seq,
                    "continues" => previous.map_or("-", |p| p.id.as_str()),
                    "continues_to" => previous.map_or(0, |p| p.offset));
                let id: Arc<str> = history.id.as_str().into();
                for replica in &config.replicas {
                    let replicator_config = ReplicatorConfig {
                        replica: replica.clone(),
                        secret: config.cluster_secret.as_deref().map(ClusterSecret::new),
                        replication_id: id.clone(),
                        previous: history.previous.clone(),
                        backlog_bytes: config.repl_backlog_bytes,
                        backlog_min_bytes: config.repl_backlog_min_bytes,
                        full_sync_buffer_bytes: config.repl_full_sync_buffer_bytes,
                        timeout: config.repl_timeout,
                        epoch: 0,
                        authoritative: false,
                        tls: tls.clone(),
                    };
                    let (replicator, progress) = Replicator::new(
                        replicator_config,
                        store.clone(),
                        durability.clone(),
                        last_seq,
                        &log,
                    );
                    // On the Store's thread: a batch reaches the replicators without waking
                    // another thread, and their socket writes never block it.
                    let replicator =
                        Replicator::start_in_arbiter(&store_arbiter.handle(), move |_| replicator);
                    store
                        .send(Subscribe(replicator.recipient()))
                        .await
                        .map_err(|_| NodeError::ActorGone("store"))?;
                    node_context.replicas.push(progress);
                }
                node_context.replication_id = id.clone();
                let previous = history.previous.clone();
                let own = History::new(Some(&history.id), previous, 0);
                node_context.position.set_history(own);
                lineage = Some(history);
            }
            Role::Replica => {
                if !config.replicas.is_empty() {
                    warn!(log, "--replica is for a primary; a replica ignores it");
                }
                if config.cluster_secret.is_none() && !config.listen.ip().is_loopback() {
                    warn!(
                        log,
                        "no --cluster-secret: the replication link is not authenticated, and \
                        anyone who can reach this port can replace this replica's data"
                    );
                }
                // A replica's Store follows its primary's history and authors none: closed to
                // client writes, it never deletes a key whose deadline passed either, but hides
                // it until the primary's delete arrives (as a Redis replica does).
                store
                    .send(SetWrites { open: false })
                    .await
                    .map_err(|_| NodeError::ActorGone("store"))?;
                let state = replication_id::load(&dir)?;
                // A full resync cut short: the data is disposable, and a full resync is due.
                let discard = state == ReplicationState::Resyncing;
                let following = match state {
                    ReplicationState::Following { id } => Some(id),
                    _ => None,
                };
                info!(log, "replica position"; "replication_id" => following.as_deref().unwrap_or("-"),
                    "offset" => last_seq, "disposable" => discard);
                let follower = Follower::new(
                    store.clone(),
                    writer.clone(),
                    durability.clone(),
                    following,
                    last_seq,
                    discard,
                    &recovered.tail,
                    DataEpoch::default(),
                    &log,
                );
                let follower = follower.publish_position(node_context.position.clone());
                node_context.follower = Some(Follower::start_in_arbiter(
                    &store_arbiter.handle(),
                    move |_| follower,
                ));
            }
            // A member of a failover cluster: assembled above.
            Role::Cluster => {}
        }

        // The first thread that serves clients is the Store's own: a request then reaches the
        // Store and comes back without waking another thread, which on a small machine costs
        // more than the work itself. Further I/O threads spread parsing and reply encoding
        // over more cores, at the price of a cross-thread hop per batch.
        let io_arbiters: Vec<Arbiter> = (1..config.io_threads.max(1))
            .map(|_| Arbiter::new())
            .collect();
        let session_arbiters = std::iter::once(store_arbiter.handle())
            .chain(io_arbiters.iter().map(Arbiter::handle))
            .collect();
        // TLS handshakes' cryptography gets a thread of its own, off the Store's.
        let handshake_arbiter = tls.as_ref().map(|_| Arbiter::new());
        let listener_config = ListenerConfig {
            arbiters: session_arbiters,
            max_clients: config.max_clients,
            session: Arc::new(SessionConfig {
                read_only: role == Role::Replica,
                max_line_bytes: config.max_line_bytes,
                max_value_bytes: config.max_value_bytes,
                output_limit: config.client_output_limit,
                durability,
                node: node_context.clone(),
                idle_timeout: config.idle_timeout,
                ..SessionConfig::default()
            }),
            clients: node_context.clients.clone(),
            tls: tls.clone(),
            handshake_arbiter: handshake_arbiter.as_ref().map(Arbiter::handle),
        };
        let listener = Listener::start(sockets, store.clone(), listener_config, &log);
        info!(log, "listening"; "addr" => %addr,
            "tls_port" => tls_port.map_or("-".to_string(), |p| p.to_string()),
            "tls_only" => tls.is_some() && config.tls.as_ref().is_some_and(|t| t.port.is_none()),
            "data_dir" => %config.data_dir.display(),
            "fsync" => %config.writer.fsync, "keys" => keys,
            "io_threads" => io_arbiters.len() + 1);

        let mut arbiters = io_arbiters;
        arbiters.extend(handshake_arbiter);
        arbiters.push(store_arbiter);
        Ok(Node {
            addr,
            store,
            writer,
            listener,
            arbiters,
            log,
            dir,
            lineage,
            position: node_context.position.clone(),
            context: node_context,
            stopping,
            member,
            tls,
        })
    }

    /// Read the TLS files again for new connections (SIGHUP), off the caller's thread; `None`
    /// for a node without TLS. A failure keeps the certificates in use; either way it is
    /// logged.
    pub async fn reload_tls(&self) -> Option<Result<(), TlsError>> {
        match &self.tls {
            Some(tls) => Some(tls.reload_off_thread("SIGHUP").await),
            None => None,
        }
    }

    /// Give streaming replicas a moment to acknowledge everything up to `seq` before the
    /// replicators stop, so a clean restart finds them up to date.
    async fn let_replicas_catch_up(&self, seq: u64) {
        if self.context.replicas.is_empty() {
            return;
        }
        let waiting = NodeContext {
            stopping: None,
            ..self.context.clone()
        };
        let streaming = waiting.replicas_at(0);
        let caught_up = waiting
            .wait_for_replicas(seq, streaming, Some(REPLICA_CATCH_UP))
            .await;
        info!(self.log, "replicas at the final offset"; "replicas" => caught_up,
            "streaming" => streaming, "offset" => seq);
    }

    /// How many clients are connected.
    pub async fn clients(&self) -> usize {
        self.listener.send(ClientCount).await.unwrap_or(0)
    }

    /// Stop accepting, let every session answer what it has read, write and fsync the log,
    /// then stop the node's threads. Sessions still busy after `grace` are abandoned.
    pub async fn shutdown(self, grace: Duration) {
        info!(self.log, "shutting down");
        if let Some(member) = &self.member {
            // Stop taking part in elections first: a stopping node must not be elected.
            member.shutdown().await;
        }
        // Ends every WAIT, so its session can finish.
        self.stopping.send_replace(true);
        self.position.stop();
        let drained = self.listener.send(StopAccepting);
        let mut complete = true;
        if tokio::time::timeout(grace, drained).await.is_err() {
            warn!(self.log, "sessions still open after the grace period; closing anyway";
                "grace_ms" => grace.as_millis() as u64);
            complete = false;
        }
        // The Store publishes what is still pending when asked where it stands, so every
        // applied mutation is in the writer's mailbox before the sync request.
        let _ = self.store.send(Stats).await;
        match self.writer.send(SyncNow).await {
            Ok(Ok(seq)) => {
                info!(self.log, "log flushed and synced"; "synced_seq" => seq);
                self.let_replicas_catch_up(seq).await;
                // A primary whose every write is on disk keeps its replication id across
                // the restart, so its replicas can resume rather than resync.
                let applied = self.store.send(Stats).await.map(|s| s.last_seq).ok();
                if let (Some(history), true, Some(applied)) = (&self.lineage, complete, applied) {
                    if applied == seq {
                        let clean = ReplicationState::Clean {
                            id: history.id.clone(),
                            offset: seq,
                            previous: history.previous.clone(),
                        };
                        if let Err(error) = replication_id::save(&self.dir, &clean) {
                            warn!(self.log, "cannot record the clean shutdown"; "error" => %error);
                        }
                    }
                }
            }
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
