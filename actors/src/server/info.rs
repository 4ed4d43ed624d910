//! `INFO`: the node's role, replication state and counters, as one line of `field=value`
//! pairs (or, over RESP, `field:value` lines as Redis clients expect).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use actix::prelude::*;

use super::node_context::NodeContext;
use crate::replication::follower::{Follower, FollowerInfo, Peek};
use crate::replication::progress::LinkState;
use crate::store::StoreStats;

/// The one-line `INFO` reply: space-separated `field=value` pairs.
pub fn line(node: &NodeContext, stats: StoreStats, follower: Option<FollowerInfo>) -> String {
    let mut line = String::new();
    let _ = write!(line, "role={}", node.role);
    match follower {
        Some(f) => {
            let id = f.replication_id.as_deref().unwrap_or("-");
            let _ = write!(line, " replication_id={id} offset={}", stats.last_seq);
            let _ = write!(
                line,
                " primary_link={}",
                if f.linked { "up" } else { "down" }
            );
        }
        None => {
            let _ = write!(
                line,
                " replication_id={} offset={}",
                node.replication_id, stats.last_seq
            );
        }
    }
    let _ = write!(
        line,
        " keys={} connected_clients={} blocked_clients={}",
        stats.keys,
        node.clients.load(Ordering::Relaxed),
        node.blocked.load(Ordering::Relaxed)
    );
    if node.follower.is_none() {
        let connected = node
            .replicas
            .iter()
            .filter(|r| r.borrow().state == LinkState::Streaming)
            .count();
        let _ = write!(
            line,
            " connected_replicas={connected} configured_replicas={}",
            node.replicas.len()
        );
        for (i, replica) in node.replicas.iter().enumerate() {
            let p = replica.borrow().clone();
            let _ = write!(
                line,
                " replica{i}_addr={} replica{i}_state={} replica{i}_acked={} replica{i}_durable={} replica{i}_lag_offsets={} replica{i}_lag_ms={}",
                p.addr,
                p.state.as_str(),
                p.acked,
                p.durable,
                p.lag_offsets,
                p.lag_ms
            );
            if let Some(reason) = p.refused {
                let _ = write!(line, " replica{i}_refused={reason}");
            }
        }
    }
    line
}

/// The `INFO` line as Redis clients expect it over RESP: a heading, then one `field:value`
/// line per field.
pub fn redis_style(line: &str) -> String {
    let mut text = String::from("# kvstore\r\n");
    for field in line.split(' ') {
        text.push_str(&field.replacen('=', ":", 1));
        text.push_str("\r\n");
    }
    text
}

/// A replica's replication state, or `None` if its follower is gone.
pub async fn follower_info(follower: &Addr<Follower>) -> Option<FollowerInfo> {
    follower.send(Peek).await.ok()
}
