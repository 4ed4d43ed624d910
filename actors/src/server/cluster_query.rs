//! `ROLE` and the `SENTINEL` discovery commands: how clients learn which node is the primary.
//!
//! `ROLE` answers as Redis does (`master` with its replicas, or `slave` with its primary).
//! Every member of a failover cluster also answers the Sentinel commands Redis clients use to
//! find a master (`SENTINEL MASTERS`, `MASTER`, `GET-MASTER-ADDR-BY-NAME`, `REPLICAS`), from
//! the cluster state the consensus layer replicates, so a client given the members' addresses
//! as its "sentinels" (redis-py's `Sentinel`, Jedis, redis-rs, ...) finds the primary and,
//! after a failover, the new one.

use bytes::Bytes;

use super::node_context::NodeContext;
use crate::cluster::view::RoleState;
use crate::protocol::command::{CommandError, SentinelQuery};
use crate::protocol::reply::{ErrorReply, Protocol, Reply};
use crate::replication::follower::FollowerInfo;
use crate::replication::progress::LinkState;
use crate::store::Seq;

/// A bulk string.
fn text(s: &str) -> Reply {
    Reply::Value(Bytes::copy_from_slice(s.as_bytes()))
}

/// `host` and `port` of a `host:port` address (`?` and 0 when it is not one).
fn split(addr: &str) -> (&str, u16) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (host, port.parse().unwrap_or(0)),
        None => ("?", 0),
    }
}

/// `ROLE`, for a node at `offset`; `follower` is the replica's link state, if it has one.
pub fn role(
    node: &NodeContext,
    offset: Seq,
    follower: Option<FollowerInfo>,
    protocol: Protocol,
) -> Reply {
    let primary_addr = node
        .cluster
        .as_ref()
        .and_then(|c| c.state().primary_addr)
        .unwrap_or_else(|| "?:0".into());
    if node.shown_role() == "primary" {
        let replicas: Vec<(String, Seq)> = node
            .current_replicas()
            .iter()
            .map(|r| {
                let p = r.borrow();
                (p.addr.clone(), p.acked)
            })
            .collect();
        if protocol == Protocol::Line {
            let list: Vec<String> = replicas.iter().map(|(a, o)| format!("{a}@{o}")).collect();
            return Reply::Text(format!(
                "primary offset={offset} replicas={}",
                list.join(",")
            ));
        }
        let replicas = replicas
            .iter()
            .map(|(addr, acked)| {
                let (host, port) = split(addr);
                Reply::Array(vec![
                    text(host),
                    text(&port.to_string()),
                    text(&acked.to_string()),
                ])
            })
            .collect();
        return Reply::Array(vec![
            text("master"),
            Reply::Integer(offset as i64),
            Reply::Array(replicas),
        ]);
    }
    let linked = follower.is_some_and(|f| f.linked);
    if protocol == Protocol::Line {
        let link = if linked { "up" } else { "down" };
        return Reply::Text(format!(
            "replica primary={primary_addr} link={link} offset={offset}"
        ));
    }
    let (host, port) = split(&primary_addr);
    Reply::Array(vec![
        text("slave"),
        text(host),
        Reply::Integer(i64::from(port)),
        text(if linked { "connected" } else { "connect" }),
        Reply::Integer(offset as i64),
    ])
}

/// A Redis-style error reply.
fn error(message: String) -> Reply {
    Reply::Error(ErrorReply::Command(CommandError::Redis(message)))
}

/// The address of the primary of the cluster now, as this node knows it.
fn primary_of(node: &NodeContext, state: &RoleState) -> Option<String> {
    match state.primary {
        true => (node.shown_role() == "primary").then(|| state.me.clone()),
        false => state.primary_addr.clone(),
    }
}

/// `SENTINEL ...`, answered from this node's view of its failover cluster.
pub fn sentinel(node: &NodeContext, query: SentinelQuery) -> Reply {
    let Some(cluster) = &node.cluster else {
        return error(
            "ERR SENTINEL is answered by members of a failover cluster (kvnode --peers)".into(),
        );
    };
    let state = cluster.state();
    let name = &*node.sentinel_name;
    let ours = |asked: &Bytes| asked.as_ref() == name.as_bytes();
    let no_such = || error("ERR No such master with that name".into());
    let primary = primary_of(node, &state);
    match query {
        SentinelQuery::Masters => Reply::Array(
            primary
                .map(|p| master_entry(name, &p, &state))
                .into_iter()
                .collect(),
        ),
        SentinelQuery::Master(asked) => match (ours(&asked), primary) {
            (true, Some(p)) => master_entry(name, &p, &state),
            _ => no_such(),
        },
        SentinelQuery::GetMasterAddr(asked) => match (ours(&asked), primary) {
            (true, Some(p)) => {
                let (host, port) = split(&p);
                Reply::Array(vec![text(host), text(&port.to_string())])
            }
            _ => Reply::NotFound,
        },
        SentinelQuery::Replicas(asked) if !ours(&asked) => no_such(),
        SentinelQuery::Replicas(_) => {
            let primary = primary.unwrap_or_default();
            let (primary_host, primary_port) = split(&primary);
            // The primary knows which replicas stream; other members report them as alive.
            let streaming: Vec<String> = state
                .replicas
                .iter()
                .filter(|r| r.borrow().state == LinkState::Streaming)
                .map(|r| r.borrow().addr.clone())
                .collect();
            let replicas = state
                .members
                .iter()
                .filter(|m| m.addr != primary)
                .map(|m| {
                    let (host, port) = split(&m.addr);
                    let down = state.primary && !streaming.contains(&m.addr);
                    let flags = if down { "slave,s_down" } else { "slave" };
                    flat(&[
                        ("name", m.addr.clone()),
                        ("ip", host.to_string()),
                        ("port", port.to_string()),
                        ("flags", flags.to_string()),
                        ("master-host", primary_host.to_string()),
                        ("master-port", primary_port.to_string()),
                        ("master-link-status", if down { "err" } else { "ok" }.into()),
                    ])
                })
                .collect();
            Reply::Array(replicas)
        }
    }
}

/// A flat array of field names and values, as Sentinel describes a node.
fn flat(fields: &[(&str, String)]) -> Reply {
    Reply::Array(
        fields
            .iter()
            .flat_map(|(k, v)| [text(k), text(v)])
            .collect(),
    )
}

/// The primary as `SENTINEL MASTERS` describes a master.
fn master_entry(name: &str, primary: &str, state: &RoleState) -> Reply {
    let (host, port) = split(primary);
    let members = state.members.len().max(1);
    flat(&[
        ("name", name.to_string()),
        ("ip", host.to_string()),
        ("port", port.to_string()),
        ("flags", "master".into()),
        ("num-slaves", (members - 1).to_string()),
        // Every member answers for the cluster; the others count as other sentinels.
        ("num-other-sentinels", (members - 1).to_string()),
        ("quorum", (members / 2 + 1).to_string()),
        ("config-epoch", state.epoch.to_string()),
    ])
}
