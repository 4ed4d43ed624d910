//! The serving side of Raft RPCs, where the data-aware vote is decided.
//!
//! Raft elects the node with the most up-to-date Raft log; the store also needs that a node
//! whose *data* is behind is never elected over one that is ahead, or a failover could lose
//! acknowledged writes. Every vote request carries the candidate's [`DataPosition`]; a voter
//! whose own position is strictly greater does not pass the request to Raft at all and answers
//! a refusal, so the candidate does not get its vote. Otherwise Raft decides as usual.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::raft::VoteRequest;
use slog::{debug, info, warn, Logger};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::consensus::cluster_state::NodeId;
use crate::consensus::handshake;
use crate::consensus::lease::PrimaryLease;
use crate::consensus::network::NetControl;
use crate::consensus::position::{DataPosition, PositionFn};
use crate::consensus::type_config::Raft;
use crate::consensus::wire::{read_frame, write_frame, NetError, RpcRequest, RpcResponse};
use crate::replication::auth::ClusterSecret;
use crate::tls::{Stream, TlsContext};

/// How long a connection may take to send its opening line and prove the cluster secret, so
/// that a stalled or stray connection does not hold a task for ever.
const OPENING_TIMEOUT: Duration = Duration::from_secs(10);

/// How often refused connections are logged at warning level (the rest at debug).
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

/// Everything needed to answer Raft RPCs for one node; cheap to clone into each connection.
#[derive(Clone)]
pub struct RpcServer {
    /// The local Raft, which answers the requests.
    pub raft: Raft,
    /// The node's partition switch: while it is set, requests are dropped with their connection.
    pub control: Arc<NetControl>,
    /// This node's data position, compared with each candidate's.
    pub position: PositionFn,
    /// Cancelled at shutdown, which closes every served connection.
    pub stop: CancellationToken,
    /// The node's logger.
    pub log: Logger,
    /// This node's lease, fenced before Raft may grant a vote.
    pub lease: Arc<PrimaryLease>,
    /// Told when this node grants a vote (set by the node assembly; see
    /// [`crate::consensus::Consensus::on_vote_granted`]).
    pub on_vote_granted: Arc<std::sync::OnceLock<VoteGranted>>,
    /// The cluster secret every caller must prove before its first request (`handshake.rs`).
    pub secret: Option<ClusterSecret>,
    /// The node's TLS: with it, a caller must set up TLS with a certificate from `--tls-ca`
    /// before anything else.
    pub tls: Option<TlsContext>,
    /// When the server started, the origin of `refusal_logged`.
    pub started: Instant,
    /// Seconds after `started`, plus [`REFUSAL_LOG_EVERY`], at which a refusal was last
    /// logged at warning level (0: never).
    pub refusal_logged: Arc<AtomicU64>,
}

/// The connection as it is without TLS (`acceptor` `None`), or after a TLS handshake that
/// requires the caller's certificate (`Some(None)`: TLS without an authority, refused).
async fn secure(
    stream: TcpStream,
    acceptor: Option<Option<TlsAcceptor>>,
) -> Result<Stream, NetError> {
    match acceptor {
        None => Ok(Stream::Plain(stream)),
        Some(None) => Err(NetError::Unauthenticated(
            "TLS on the control plane needs --tls-ca".into(),
        )),
        Some(Some(acceptor)) => match acceptor.accept(stream).await {
            Ok(tls) => Ok(Stream::Tls(Box::new(tls.into()))),
            Err(e) => Err(NetError::Unauthenticated(format!(
                "TLS handshake failed: {e}"
            ))),
        },
    }
}

/// What the data plane does when this node grants a vote: stop applying the current epoch's
/// stream, since its primary may be replaced by the candidate.
pub type VoteGranted = Box<dyn Fn() + Send + Sync>;

impl RpcServer {
    /// Serves one connection whose opening line has not been read yet, in a task of its own,
    /// until the peer closes it, an error occurs, or the node stops.
    pub fn serve(&self, stream: TcpStream) {
        let server = self.clone();
        tokio::spawn(async move {
            let peer = stream
                .peer_addr()
                .map(|a| a.to_string())
                .unwrap_or_default();
            let result = tokio::select! {
                result = server.serve_conn(stream) => result,
                () = server.stop.cancelled() => Ok(()),
            };
            match result {
                Err(e @ NetError::Unauthenticated(_)) if server.refusal_log_due() => {
                    warn!(server.log, "refused a control-plane connection (further refusals in the next 10 s are logged at debug level)";
                        "peer" => peer, "error" => %e);
                }
                Err(e) => {
                    debug!(server.log, "raft connection closed"; "peer" => peer, "error" => %e)
                }
                Ok(()) => {}
            }
        });
    }

    /// Whether a refused connection should be logged at warning level now: at most once per
    /// [`REFUSAL_LOG_EVERY`] for the whole node, so a scanner cannot flood the log.
    fn refusal_log_due(&self) -> bool {
        let now = self.started.elapsed().as_secs() + REFUSAL_LOG_EVERY.as_secs();
        let last = self.refusal_logged.load(Ordering::Relaxed);
        now >= last + REFUSAL_LOG_EVERY.as_secs()
            && self
                .refusal_logged
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    /// Checks the opening and the caller's proof of the cluster secret, then answers requests
    /// in order.
    async fn serve_conn(&self, stream: TcpStream) -> Result<(), NetError> {
        // Heartbeat latency matters more than packet count; a failure only costs latency.
        let _ = stream.set_nodelay(true);
        // Taken now: a connection gets the certificates current when it arrives.
        let acceptor = self.tls.as_ref().map(TlsContext::peer_acceptor);
        let mut stream = tokio::time::timeout(OPENING_TIMEOUT, secure(stream, acceptor))
            .await
            .map_err(|_| NetError::Unauthenticated("no TLS handshake in time".into()))??;
        let greeted = handshake::accept(&mut stream, self.secret.as_ref());
        tokio::time::timeout(OPENING_TIMEOUT, greeted)
            .await
            .map_err(|_| NetError::BadOpening)??;
        while let Some(req) = read_frame::<_, RpcRequest>(&mut stream).await? {
            if self.control.is_isolated() {
                return Err(NetError::Isolated);
            }
            let resp = match req {
                RpcRequest::Append(r) => RpcResponse::Append(self.raft.append_entries(r).await),
                RpcRequest::Vote {
                    request,
                    position,
                    known,
                } => self.vote(request, position, known).await,
                RpcRequest::Snapshot(r) => {
                    RpcResponse::Snapshot(self.raft.install_snapshot(r).await)
                }
                RpcRequest::Elect { from, term } => self.elect(from, term).await,
            };
            write_frame(&mut stream, false, &resp).await?;
        }
        Ok(())
    }

    /// A switchover: stand for election now, if the leader this node follows in its current
    /// term asked (a stale or stray request must not start elections).
    async fn elect(&self, from: NodeId, term: u64) -> RpcResponse {
        let (leader, current) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            (m.current_leader, m.current_term)
        };
        if leader != Some(from) || current != term {
            return RpcResponse::Elect(Err(format!(
                "asked by {from} in term {term}, but this node follows {leader:?} in term {current}"
            )));
        }
        info!(self.log, "asked to stand for election (a planned switchover)"; "from" => from);
        let started = self.raft.trigger().elect().await;
        RpcResponse::Elect(started.map_err(|e| e.to_string()))
    }

    /// The data-aware vote: refuses a candidate whose data is behind this node's, before Raft
    /// sees the request (so the refusal changes no Raft state, not even the term).
    /// `known` is the newest epoch the candidate knows a primary was named for, and where that
    /// primary's history starts: this node's data of an older epoch counts only up to there
    /// (past it, it is a deposed primary's tail the current history discards), or a node
    /// holding such a tail could block every election while the new primary is away.
    async fn vote(
        &self,
        request: VoteRequest<NodeId>,
        candidate: DataPosition,
        known: Option<(u64, u64)>,
    ) -> RpcResponse {
        let mut own = (self.position)();
        if let Some((epoch, since)) = known {
            if own.epoch < epoch {
                own.offset = own.offset.min(since);
            }
        }
        if own > candidate {
            info!(self.log, "refusing a vote: this node's data is ahead of the candidate's";
                "peer" => request.vote.leader_id().node_id, "term" => request.vote.leader_id().term,
                "own_epoch" => own.epoch, "own_offset" => own.offset,
                "candidate_epoch" => candidate.epoch, "candidate_offset" => candidate.offset);
            return RpcResponse::VoteRefused { voter: own };
        }
        // A leader grants votes regardless of its lease: end the lease first, so that no reply
        // this node sends as primary can follow a vote that may elect another.
        self.lease.fence();
        let answer = self.raft.vote(request).await;
        if answer.as_ref().is_ok_and(|r| r.vote_granted) {
            // A new leader may be elected with this vote: the current epoch's stream must stop
            // being applied here now, not when the naming reaches this node.
            if let Some(granted) = self.on_vote_granted.get() {
                granted();
            }
        }
        RpcResponse::Vote(answer)
    }
}
