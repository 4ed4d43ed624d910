//! Answers to the commands about the node rather than its data: `DBSIZE`, `INFO`, `DIGEST`,
//! `WAIT`, `RESYNC`, `TLS RELOAD` ([`NodeQuery`]), and `HELLO`. They are rare, so a session clones what they need only
//! when a client asks one, and their futures are boxed, keeping the future of an ordinary
//! batch small.

use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use thiserror::Error;

use super::cluster_query;
use super::digest::{self, DigestError};
use super::info;
use super::node_context::NodeContext;
use crate::protocol::command::{CommandError, NodeQuery};
use crate::protocol::reply::{ErrorReply, Protocol, Reply};
use crate::replication::follower::Resync;
use crate::store::glob::Glob;
use crate::store::{Seq, Stats, Store};
use crate::tls::TlsError;

/// Why a node query could not be answered; ends the session that asked.
#[derive(Debug, Error)]
pub enum QueryError {
    /// The Store stopped (the node is shutting down).
    #[error("the store is gone: {0}")]
    Store(#[from] MailboxError),
    /// `DIGEST` failed.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// The reply to `query`, asked on a connection whose latest write is `last_write` (what `WAIT`
/// waits for), for a client speaking `protocol`. `HELLO` is answered by [`hello`] instead,
/// since it needs nothing but the session.
pub async fn answer(
    query: NodeQuery,
    store: &Addr<Store>,
    node: &NodeContext,
    last_write: Seq,
    protocol: Protocol,
) -> Result<Reply, QueryError> {
    let reply = match query {
        NodeQuery::DbSize => Reply::Integer(store.send(Stats).await?.keys as i64),
        NodeQuery::Info => {
            let stats = store.send(Stats).await?;
            let follower = match &node.follower {
                Some(follower) => info::follower_info(follower).await,
                None => None,
            };
            let line = info::line(node, stats, follower);
            Reply::Text(match protocol {
                Protocol::Line => line,
                // Redis clients read INFO as `field:value` lines under a heading.
                Protocol::Resp | Protocol::Resp3 => info::redis_style(&line),
            })
        }
        NodeQuery::Digest => Reply::Text(digest::answer(store, &node.digest_turn).await?),
        NodeQuery::Role => {
            let offset = store.send(Stats).await?.last_seq;
            let follower = match &node.follower {
                Some(follower) => info::follower_info(follower).await,
                None => None,
            };
            cluster_query::role(node, offset, follower, protocol)
        }
        NodeQuery::Sentinel(query) => cluster_query::sentinel(node, query),
        NodeQuery::TlsReload => match &node.tls {
            // Off the session's thread (the Store's, usually): it reads files.
            Some(tls) => match tokio::task::spawn_blocking({
                let tls = tls.clone();
                move || tls.reload("TLS RELOAD")
            })
            .await
            .unwrap_or_else(|e| Err(TlsError::Config(e.to_string())))
            {
                Ok(()) => Reply::Ok,
                Err(error) => Reply::Error(ErrorReply::Command(CommandError::Invalid(format!(
                    "TLS reload failed: {error}"
                )))),
            },
            None => Reply::Error(ErrorReply::Command(CommandError::Invalid(
                "TLS is not enabled on this node (start it with --tls-cert and --tls-key)".into(),
            ))),
        },
        NodeQuery::ConfigGet(patterns) => {
            // Redis's glob, case-insensitive for parameter names, as Redis matches them.
            let globs: Vec<Glob> = patterns.iter().map(|p| Glob::nocase(p)).collect();
            let matches = |name: &str| globs.iter().any(|g| g.matches(name.as_bytes()));
            let text = |s: &str| Reply::Value(Bytes::copy_from_slice(s.as_bytes()));
            Reply::Map(
                node.settings
                    .iter()
                    .filter(|(name, _)| matches(name))
                    .map(|(name, value)| (text(name), text(value)))
                    .collect(),
            )
        }
        NodeQuery::Failover { to, timeout_ms } => {
            let Some(cluster) = &node.cluster else {
                return Ok(Reply::Error(ErrorReply::FailoverFailed(
                    "FAILOVER needs a failover cluster (kvnode --peers)".into(),
                )));
            };
            match cluster
                .fail_over(to, Duration::from_millis(timeout_ms))
                .await
            {
                Ok(_) => Reply::Ok,
                Err(e) => Reply::Error(ErrorReply::FailoverFailed(e.into())),
            }
        }
        // In a failover cluster the elected primary replaces a replica's data when it must; a
        // replica giving its data up on its own could lose the only copy of a write.
        NodeQuery::Resync if node.cluster.is_some() => {
            Reply::Error(ErrorReply::Command(CommandError::Redis(
                "RESYNC is not for a failover-cluster member: the elected primary replaces a \
                 replica's data when it must"
                    .into(),
            )))
        }
        NodeQuery::Resync => match node.follower.as_ref() {
            Some(follower) => {
                follower.send(Resync).await?;
                Reply::Ok
            }
            None => Reply::Error(ErrorReply::ResyncOnPrimary),
        },
        NodeQuery::Wait { .. } if node.role_now() != "primary" => {
            Reply::Error(ErrorReply::WaitOnReplica)
        }
        NodeQuery::Wait {
            replicas,
            timeout_ms,
        } => {
            // As in Redis, a timeout of 0 waits for as long as it takes.
            let timeout = (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms));
            let count = node
                .wait_for_replicas(last_write, replicas as usize, timeout)
                .await;
            // An integer reply over RESP (`:2`), as Redis answers; a decimal line otherwise.
            Reply::Integer(count as i64)
        }
    };
    Ok(reply)
}

/// `HELLO`: the server's description, as Redis gives it, for session `id` of a node that is
/// a replica when `read_only`; for RESP2 or RESP3 (the session switches to the one asked for),
/// and `NOPROTO` for another version.
pub fn hello(version: Option<u64>, id: u64, read_only: bool) -> Reply {
    if version.is_some_and(|v| v != 2 && v != 3) {
        let text = "NOPROTO unsupported protocol version".to_string();
        return Reply::Error(ErrorReply::Command(CommandError::Redis(text)));
    }
    let text = |s: &str| Reply::Value(Bytes::copy_from_slice(s.as_bytes()));
    let role = if read_only { "replica" } else { "master" };
    Reply::Map(vec![
        (text("server"), text("kvstore")),
        (text("version"), text(env!("CARGO_PKG_VERSION"))),
        (text("proto"), Reply::Integer(version.unwrap_or(2) as i64)),
        (text("id"), Reply::Integer(id as i64)),
        (text("mode"), text("standalone")),
        (text("role"), text(role)),
        (text("modules"), Reply::Array(Vec::new())),
    ])
}

/// The protocol a connection speaking `now` speaks after `HELLO version` (answered in it):
/// RESP3 for 3, RESP2 for 2, as it was without a version.
pub fn hello_protocol(version: Option<u64>, now: Protocol) -> Protocol {
    match version {
        Some(3) => Protocol::Resp3,
        Some(2) => Protocol::Resp,
        _ => now,
    }
}
