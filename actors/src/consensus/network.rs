//! The client side of Raft RPCs: openraft's `RaftNetworkFactory` and `RaftNetwork` over TCP,
//! and the switch that cuts a node off for tests.
//!
//! Each `RaftNetwork` (one per peer) keeps one pooled connection and drops it on any error, or
//! when openraft cancels a call by timeout, since a half-read reply would desynchronise framing.
//! Every vote request carries this node's [`DataPosition`], for the data-aware vote.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use slog::{debug, warn, Logger};

use crate::consensus::cluster_state::ClusterState;
use crate::consensus::cluster_state::{Member, NodeId};
use crate::consensus::handshake;
use crate::consensus::position::{DataPosition, PositionFn};
use crate::consensus::stand_aside::StandAside;
use crate::consensus::type_config::TypeConfig;
use crate::consensus::wire::{read_frame, write_frame, NetError, RpcRequest, RpcResponse};
use crate::replication::auth::ClusterSecret;
use crate::tls::dial::dial;
use crate::tls::{Stream, TlsContext};
use tokio::sync::watch;

/// How often a peer's failed handshakes are logged at warning level (the rest at debug).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// A switch that cuts a node off the network in both directions, to test partitions without
/// root or iptables: outgoing calls fail as unreachable, incoming requests are dropped with
/// their connections.
#[derive(Debug, Default)]
pub struct NetControl {
    /// Whether the node is cut off.
    isolated: AtomicBool,
}

impl NetControl {
    /// Cuts the node off (`true`) or reconnects it (`false`).
    pub fn set_isolated(&self, isolated: bool) {
        self.isolated.store(isolated, Ordering::SeqCst);
    }

    /// Whether the node is currently cut off.
    pub fn is_isolated(&self) -> bool {
        self.isolated.load(Ordering::SeqCst)
    }
}

/// Creates one [`TcpNetwork`] per peer, all sharing the node's switch, position and logger.
#[derive(Clone)]
pub struct TcpNetworkFactory {
    /// The node's partition switch.
    control: Arc<NetControl>,
    /// This node's data position, sent with every vote request.
    position: PositionFn,
    /// Told when a voter refuses this node's candidacy because its data is ahead.
    stand_aside: Arc<StandAside>,
    /// The applied cluster state: the newest epoch this node knows, sent with its votes.
    state: watch::Receiver<ClusterState>,
    /// The cluster secret each new connection proves before its first request.
    secret: Option<ClusterSecret>,
    /// The node's TLS, which every new connection is made with, if it has any.
    tls: Option<TlsContext>,
    /// Where connection trouble is logged (at debug: openraft retries on its own).
    log: Logger,
}

impl TcpNetworkFactory {
    /// A factory whose clients obey `control`, send `position` with their vote requests, tell
    /// `stand_aside` of refusals and prove `secret` on each new connection.
    pub fn new(
        control: Arc<NetControl>,
        position: PositionFn,
        stand_aside: Arc<StandAside>,
        state: watch::Receiver<ClusterState>,
        (secret, tls): (Option<ClusterSecret>, Option<TlsContext>),
        log: Logger,
    ) -> Self {
        TcpNetworkFactory {
            control,
            position,
            stand_aside,
            state,
            secret,
            tls,
            log,
        }
    }
}

impl RaftNetworkFactory<TypeConfig> for TcpNetworkFactory {
    /// One client per peer.
    type Network = TcpNetwork;

    /// A client for `target` at the address its membership entry publishes; it connects
    /// lazily, on its first call.
    async fn new_client(&mut self, target: NodeId, node: &Member) -> TcpNetwork {
        TcpNetwork {
            target,
            addr: match node.control.is_empty() {
                true => node.addr.clone(),
                false => node.control.clone(),
            },
            conn: None,
            control: self.control.clone(),
            position: self.position.clone(),
            stand_aside: self.stand_aside.clone(),
            state: self.state.clone(),
            secret: self.secret.clone(),
            tls: self.tls.clone(),
            refusal_logged: None,
            log: self.log.new(slog::o!("peer" => target)),
        }
    }
}

/// The client side of the Raft RPCs to one peer, with a single pooled connection.
pub struct TcpNetwork {
    /// The peer's id, for its errors.
    target: NodeId,
    /// The peer's address, from the membership.
    addr: String,
    /// The pooled connection, absent while a call uses it or after an error.
    conn: Option<Stream>,
    /// The node's partition switch.
    control: Arc<NetControl>,
    /// This node's data position.
    position: PositionFn,
    /// Told of refusals by voters whose data is ahead.
    stand_aside: Arc<StandAside>,
    /// The applied cluster state, for the newest epoch known.
    state: watch::Receiver<ClusterState>,
    /// The cluster secret each new connection proves.
    secret: Option<ClusterSecret>,
    /// The node's TLS, which each new connection is made with, if it has any.
    tls: Option<TlsContext>,
    /// When a failed handshake was last logged, to log one per [`REFUSAL_LOG_EVERY`].
    refusal_logged: Option<Instant>,
    /// Logger with the peer's id.
    log: Logger,
}

/// The error type openraft expects from an RPC returning `E` on the remote side.
type RpcResult<T, E = RaftError<NodeId>> = Result<T, RPCError<NodeId, Member, E>>;

impl TcpNetwork {
    /// Sends one request and reads its reply. The connection is taken out of the pool for the
    /// call and only put back after a complete reply, so a cancelled call cannot leave a
    /// stale reply on a pooled connection. A new connection first runs the handshake (both ends
    /// prove the cluster secret).
    async fn call(&mut self, req: RpcRequest) -> Result<RpcResponse, NetError> {
        if self.control.is_isolated() {
            self.conn = None;
            return Err(NetError::Isolated);
        }
        let mut stream = match self.conn.take() {
            Some(s) => s,
            None => {
                // With no delay: latency matters more than packet count for a heartbeat.
                let mut s = dial(&self.addr, self.tls.as_ref())
                    .await
                    .map_err(|source| NetError::Connect {
                        addr: self.addr.clone(),
                        source,
                    })?;
                if let Err(e) = handshake::call(&mut s, self.secret.as_ref()).await {
                    self.note_refusal(&e);
                    return Err(e);
                }
                s
            }
        };
        write_frame(&mut stream, false, &req).await?;
        let resp = read_frame(&mut stream).await?.ok_or_else(|| {
            NetError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "peer closed before replying",
            ))
        })?;
        self.conn = Some(stream);
        Ok(resp)
    }

    /// Logs a failed handshake at warning level, at most once per [`REFUSAL_LOG_EVERY`]: a
    /// misconfigured secret stops failover, so it must not hide at debug level, and openraft
    /// would otherwise have it logged on every retry.
    fn note_refusal(&mut self, e: &NetError) {
        if !matches!(e, NetError::Unauthenticated(_)) {
            return;
        }
        let now = Instant::now();
        if self
            .refusal_logged
            .is_some_and(|at| now.duration_since(at) < REFUSAL_LOG_EVERY)
        {
            return;
        }
        self.refusal_logged = Some(now);
        warn!(self.log, "control-plane handshake failed: a member refused this one, or failed to prove the cluster secret";
            "addr" => &self.addr, "error" => %e);
    }

    /// Maps a transport error to openraft's kinds: unreachable peers are backed off, other
    /// failures (a refused vote among them) are plain network errors.
    fn rpc_err<E: std::error::Error>(&self, e: NetError) -> RPCError<NodeId, Member, E> {
        debug!(self.log, "raft rpc failed"; "addr" => &self.addr, "error" => %e);
        match e {
            // A peer that refuses this member (or fails to prove the secret) will not change
            // its mind soon: back off as from an unreachable one.
            NetError::Isolated | NetError::Connect { .. } | NetError::Unauthenticated(_) => {
                RPCError::Unreachable(Unreachable::new(&e))
            }
            _ => RPCError::Network(NetworkError::new(&e)),
        }
    }

    /// Sends `req` and picks the expected answer out of the reply with `pick`.
    async fn round_trip<T, E: std::error::Error>(
        &mut self,
        req: RpcRequest,
        pick: impl FnOnce(RpcResponse) -> Result<Result<T, E>, NetError>,
    ) -> RpcResult<T, E> {
        let reply = self.call(req).await.and_then(pick);
        match reply {
            Ok(answer) => {
                answer.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            Err(e) => Err(self.rpc_err(e)),
        }
    }
}

impl RaftNetwork<TypeConfig> for TcpNetwork {
    /// Replication and heartbeats.
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<AppendEntriesResponse<NodeId>> {
        self.round_trip(RpcRequest::Append(rpc), RpcResponse::into_append)
            .await
    }

    /// One chunk of a snapshot (openraft's default `full_snapshot` sends the chunks).
    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> RpcResult<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>> {
        self.round_trip(RpcRequest::Snapshot(rpc), RpcResponse::into_snapshot)
            .await
    }

    /// Sends the vote request with this node's data position. A voter whose data is ahead
    /// answers [`RpcResponse::VoteRefused`], which becomes an RPC error: the candidate simply
    /// does not get that vote, and stands aside for a while so the voter can win.
    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> RpcResult<VoteResponse<NodeId>> {
        let candidate: DataPosition = (self.position)();
        let known = {
            let state = self.state.borrow();
            (state.epoch > 0).then_some((state.epoch, state.primary_since_offset))
        };
        let req = RpcRequest::Vote {
            request: rpc,
            position: candidate,
            known,
        };
        let stand_aside = self.stand_aside.clone();
        self.round_trip(req, |resp| match resp {
            RpcResponse::Vote(r) => Ok(r),
            RpcResponse::VoteRefused { voter } => {
                stand_aside.refused(voter, candidate);
                Err(NetError::VoteRefused { voter, candidate })
            }
            _ => Err(NetError::Mismatch),
        })
        .await
    }
}
