//! What answering one batch of a session's requests is made of: how each request is answered
//! ([`Step`]), what the batch's work hands back ([`Answered`]), and why it can fail
//! ([`BatchError`]), which ends the session.

use std::io;
use std::sync::Arc;

use actix::prelude::*;
use bytes::BytesMut;
use thiserror::Error;

use super::node_context::NodeContext;
use super::node_query::QueryError;
use super::session_config::SessionConfig;
use crate::protocol::command::{Fold, NodeQuery};
use crate::protocol::reply::{ErrorReply, Reply};
use crate::replication::node_position::{NodePosition, Observed};
use crate::replication::replica_link::LinkError;
use crate::storage::durability::Durability;
use crate::store::{Seq, Store};
use crate::tls::WriteHalf;

/// What answers one request.
pub enum Step {
    /// The Store, through the batch's next `ops` outcomes, folded into one reply.
    Store {
        /// How many of the batch's outcomes are this request's.
        ops: usize,
        /// How they become its reply.
        fold: Fold,
        /// The batch's position wait this read waited for (`GET ... AFTER`): if it failed,
        /// its error is the reply instead.
        after: Option<usize>,
    },
    /// `WAITPOS`: the outcome of the batch's position wait with this index.
    WaitPos(usize),
    /// `LASTPOS`: the token of what the connection's replies have shown it, in the node's
    /// history (which it carries).
    LastPos(NodePosition),
    /// The session itself, with this reply.
    Reply(Reply),
    /// This reply, once the batch's next outcome (of an op the session added: `UNWATCH` at
    /// `DISCARD`) is taken.
    AfterOne(Reply),
    /// A question about the node. It carries what it needs, so that a batch of plain reads
    /// and writes clones nothing for it.
    Node(NodeQuery, Addr<Store>, Arc<SessionConfig>),
}

/// Why a batch could not be answered; each ends the session.
#[derive(Debug, Error)]
pub enum BatchError {
    /// The Store stopped (the node is shutting down).
    #[error("the store is gone: {0}")]
    Store(#[from] MailboxError),
    /// A node query failed.
    #[error(transparent)]
    Query(#[from] QueryError),
    /// Writing to the socket failed: the client is gone.
    #[error("write failed: {0}")]
    Io(#[from] io::Error),
    /// The replication stream ended.
    #[error(transparent)]
    Replication(#[from] LinkError),
    /// The client was evicted (`--maxmemory-clients`) while its replies were being written.
    #[error("evicted while its replies were written (it was not reading them)")]
    Evicted,
}
/// What a batch's work hands back to the session.
pub struct Answered {
    /// The socket's write half, back from the batch.
    pub writer: WriteHalf,
    /// The output buffer, back from the batch.
    pub out: BytesMut,
    /// Whether the session ends now (EXIT, an error that closes).
    pub close: bool,
    /// The connection's latest write, including the batch's.
    pub last_write: Seq,
    /// The latest position the connection's replies have shown it, including the batch's.
    pub observed: Observed,
}

/// What must hold before the replies of a batch that reached the Store may leave.
pub struct BatchSafety<'a> {
    /// The writer's progress (none: the batch did not reach the Store).
    pub durability: Option<&'a mut Durability>,
    /// The node, when replies also wait for replicas (`--min-replicas-to-write`) or, in a
    /// failover cluster, for the primary's lease.
    pub confirm: Option<&'a NodeContext>,
    /// The epoch the batch was accepted under, as primary.
    pub serving: Option<u64>,
}

impl BatchSafety<'_> {
    /// Whether the replies may leave at once (the common case, which then costs no
    /// allocation): nothing to wait for.
    pub fn settled(&self, seen: Seq, refused: bool) -> bool {
        !refused
            && self.confirm.is_none()
            && self.durability.as_ref().is_none_or(|d| d.is_safe(seen))
    }

    /// Why the replies of a batch that showed mutation `seen` may not be given (their error
    /// instead), if they may not: `refused` when the Store was closed to writes meanwhile.
    pub async fn check(self, seen: Seq, refused: bool) -> Option<ErrorReply> {
        // No reply may show a mutation before it is as safe as the `--fsync` policy
        // promises: on disk under `always`, handed to the operating system otherwise.
        let not_safe = match self.durability {
            // Closed to writes meanwhile (a failover): nothing was applied.
            _ if refused => Some(ErrorReply::NoPrimary),
            Some(durability) if !durability.is_safe(seen) => durability
                .wait_safe(seen)
                .await
                .err()
                .map(ErrorReply::PersistenceFailed),
            _ => None,
        };
        // Then the replicas `--min-replicas-to-write` asks for, and the primary's lease.
        match (not_safe, self.confirm) {
            (None, Some(node)) => Box::pin(node.confirm(seen, self.serving)).await.err(),
            (not_safe, _) => not_safe,
        }
    }
}
