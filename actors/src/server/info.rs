//! `INFO`: the node's role, replication state and counters, as one line of `field=value`
//! pairs (or, over RESP, `field:value` lines as Redis clients expect).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use actix::prelude::*;

use super::node_context::NodeContext;
use crate::cluster::view::RoleState;
use crate::replication::follower::{Follower, FollowerInfo, Peek};
use crate::replication::progress::LinkState;
use crate::store::StoreStats;

/// The one-line `INFO` reply: space-separated `field=value` pairs.
pub fn line(node: &NodeContext, stats: StoreStats, follower: Option<FollowerInfo>) -> String {
    let mut line = String::new();
    let _ = write!(line, "role={}", node.shown_role());
    match follower.filter(|_| node.role_now() != "primary") {
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
            let id = match &node.cluster {
                Some(cluster) => cluster.state().replication_id,
                None => node.replication_id.clone(),
            };
            let _ = write!(line, " replication_id={id} offset={}", stats.last_seq);
        }
    }
    let _ = write!(
        line,
        " keys={} expires={} expired_keys={} connected_clients={} blocked_clients={}",
        stats.keys,
        stats.expiring_keys,
        stats.expired_keys,
        node.clients.load(Ordering::Relaxed),
        node.blocked.load(Ordering::Relaxed)
    );
    // Redis's names: what client buffers hold, the cap, and the clients evicted for it.
    let memory = node.client_registry.memory();
    let _ = write!(
        line,
        " mem_clients_normal={} mem_clients_peak={} maxmemory_clients={} evicted_clients={}",
        memory.total(),
        memory.peak(),
        memory.limit(),
        memory.evicted()
    );
    match &node.tls {
        Some(tls) => {
            let port = node.tls_port.unwrap_or(0);
            let auth = tls.auth_clients().as_str();
            let _ = write!(line, " tls=yes tls_port={port} tls_auth_clients={auth}");
        }
        None => line.push_str(" tls=no"),
    }
    if let Some(cluster) = &node.cluster {
        cluster_fields(&mut line, &cluster.state());
    }
    let replicas = node.current_replicas();
    if node.role_now() == "primary" {
        let connected = replicas
            .iter()
            .filter(|r| r.borrow().state == LinkState::Streaming)
            .count();
        // Replicators share the Store's batches and every backlog ends at the latest one, so
        // the node holds the largest backlog, not the sum.
        let backlog = replicas.iter().map(|r| r.borrow().backlog_bytes).max();
        let _ = write!(
            line,
            " connected_replicas={connected} configured_replicas={} repl_backlog_bytes={}",
            replicas.len(),
            backlog.unwrap_or(0)
        );
        for (i, replica) in replicas.iter().enumerate() {
            let p = replica.borrow().clone();
            let _ = write!(
                line,
                " replica{i}_addr={} replica{i}_state={} replica{i}_acked={} replica{i}_durable={} replica{i}_lag_offsets={} replica{i}_lag_ms={} replica{i}_backlog_bytes={}",
                p.addr,
                p.state.as_str(),
                p.acked,
                p.durable,
                p.lag_offsets,
                p.lag_ms,
                p.backlog_bytes
            );
            if let Some(reason) = p.refused {
                let _ = write!(line, " replica{i}_refused={reason}");
            }
            if p.discarded > 0 {
                let _ = write!(line, " replica{i}_discarded_offsets={}", p.discarded);
            }
        }
    }
    line
}

/// A failover-cluster member's fields: the epoch, the primary, the members, the last failover.
fn cluster_fields(line: &mut String, state: &RoleState) {
    let primary = match state.primary {
        true => state.me.as_str(),
        false => state.primary_addr.as_deref().unwrap_or("-"),
    };
    let members: Vec<String> = state
        .members
        .iter()
        .map(|m| {
            format!(
                "{}:{}",
                m.addr,
                if m.primary { "primary" } else { "replica" }
            )
        })
        .collect();
    let _ = write!(
        line,
        " epoch={} primary={primary} members={} discarded_offsets={}",
        state.epoch,
        members.join(","),
        state.discarded
    );
    if let Some(f) = &state.last_failover {
        let at =
            f.at.duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis());
        let _ = write!(
            line,
            " last_failover_at_ms={at} last_failover_epoch={} last_failover_primary={} \
             last_failover_reason={} last_failover_election_ms={} last_failover_offset={}",
            f.epoch, f.primary, f.reason, f.election_ms, f.offset
        );
        if let Some(unavailable) = f.unavailable_ms {
            let _ = write!(line, " last_failover_unavailable_ms={unavailable}");
        }
    }
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
