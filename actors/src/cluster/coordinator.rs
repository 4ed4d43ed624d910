//! The Coordinator actor: turns the control plane's decisions into this node's role.
//!
//! The consensus layer (Raft) elects a leader and records, in its replicated state, which node
//! is primary for which epoch. The Coordinator watches both and acts, one transition at a
//! time:
//! - **Take over**, when this node leads and is not serving: fence the follower against the
//!   current epoch's stream (so nothing of a deposed primary arrives after this node's history
//!   forks from it), have the cluster name this node primary for a new epoch (which confirms
//!   the leadership with a majority first), make that epoch durable, start a new history that
//!   continues the one it held (its replicas resume with a partial resync where their data
//!   allows), start a replicator per other member, and only then accept writes.
//! - **Step down**, when the state names another primary or a newer epoch: refuse writes at
//!   once, stop the replicators, and offer this node's data to the new primary, which continues
//!   it or replaces what it does not contain.
//! - **Follow**: keep the follower fenced at the current epoch, and the [`ClusterView`] (what
//!   sessions, `INFO`, `ROLE` and `SENTINEL` read) up to date.
//!
//! Elections compare data, not just Raft logs: a node refuses its vote to a candidate whose
//! data position (epoch, durable offset) is behind its own (see `consensus`), so with
//! `--min-replicas-to-write` at least a majority's worth of copies, the elected node holds
//! every acknowledged write.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use actix::prelude::*;
use slog::{info, warn, Logger};

pub use super::switchover::Failover;
use super::view::{ClusterView, FailoverRecord, MemberInfo};
use crate::consensus::{ClusterState, Consensus, Leadership, NodeId};
use crate::replication::data_epoch::DataEpoch;
use crate::replication::follower::{Fence, Follower, Rebase};
use crate::replication::node_position::NodePosition;
use crate::replication::position_token::History;
use crate::replication::progress::LinkState;
use crate::replication::replication_id::{self, Previous, ReplicationState};
use crate::replication::replicator::{Replicator, ReplicatorConfig, StopReplicating};
pub use crate::replication::replicator_config::ReplicationSettings;
use crate::storage::durability::Durability;
use crate::storage::writer::{Follow, Writer};
use crate::store::{Seq, SetWrites, Store, Subscribe};

/// How often the Coordinator looks at the control plane's state (besides being woken by it).
const TICK: Duration = Duration::from_millis(20);
/// The mutations this node applied as a replica (after the first, the batches), which seed
/// its replicators' backlogs when it is elected.
type AppliedHistory = (Seq, Vec<Arc<[crate::store::Mutation]>>);

/// After this many take-overs failed in a row, the leader gives its leadership away.
const GIVE_UP_AFTER: u32 = 3;
/// A handover waits this much past the leader's vote lease, for the clocks' sake.
const ELECTABLE_MARGIN: Duration = Duration::from_millis(50);

/// What the Coordinator works with: the node's actors and the control plane.
pub struct CoordinatorParts {
    /// The control plane.
    pub consensus: Consensus,
    /// What sessions read; the Coordinator writes it.
    pub view: ClusterView,
    /// The node's Store.
    pub store: Addr<Store>,
    /// The node's follower, which takes a primary's stream while this node is a replica.
    pub follower: Addr<Follower>,
    /// The node's persistence, which replicators send behind.
    pub durability: Durability,
    /// The persistence writer, which records a new history in the data directory.
    pub writer: Addr<Writer>,
    /// The epoch of this node's data.
    pub data_epoch: DataEpoch,
    /// How to replicate as a primary.
    pub replication: ReplicationSettings,
    /// Where `WAITPOS` reads the node's history: this node's own while it is primary.
    pub position: NodePosition,
}

/// Keeps this node's role in step with the cluster's decisions.
pub struct Coordinator {
    parts: CoordinatorParts,
    /// Logs with `actor=coordinator`.
    log: Logger,
    /// The epoch this node serves as primary, and its history's id.
    serving: Option<(u64, Arc<str>)>,
    /// This node's replicators while it is primary.
    replicators: Vec<Addr<Replicator>>,
    /// A transition is under way: no other starts until it ends.
    busy: bool,
    /// Take-overs that failed in a row, or since when this primary's disk has failed: past
    /// a limit, this node gives its leadership to another member rather than hold it uselessly.
    failures: u32,
    /// Since when this node, as primary, has been unable to persist (writes refused).
    disk_failed_since: Option<Instant>,
    /// The leader this node last saw, and since when it has had none or a new one: how long
    /// writes were unavailable, for the failover record.
    leader: (Option<NodeId>, Instant),
    /// The cluster state the view was last updated from: the view (whose lock every session
    /// takes per batch) is written only when the state changes, not on every tick.
    shown: Option<ClusterState>,
}

impl Coordinator {
    /// A coordinator for the node made of `parts`.
    pub fn new(parts: CoordinatorParts, log: &Logger) -> Coordinator {
        Coordinator {
            log: log.new(slog::o!("actor" => "coordinator", "node" => parts.consensus.id())),
            parts,
            serving: None,
            replicators: Vec::new(),
            busy: false,
            failures: 0,
            disk_failed_since: None,
            leader: (None, Instant::now()),
            shown: None,
        }
    }

    /// Look at the control plane and start whatever transition it calls for.
    fn reconcile(&mut self, ctx: &mut Context<Self>) {
        let state = self.parts.consensus.state().borrow().clone();
        let lead = *self.parts.consensus.leadership().borrow();
        if lead.leader != self.leader.0 {
            self.leader = (lead.leader, Instant::now());
        }
        if self.shown.as_ref() != Some(&state) {
            self.show(&state);
            self.shown = Some(state.clone());
        }
        if let Some(why) = self.parts.consensus.failure() {
            return self.control_plane_down(why, ctx);
        }
        if self.busy {
            return;
        }
        let me = self.parts.consensus.id();
        match &self.serving {
            // Serving the current epoch: sessions check the lease on every reply.
            Some((epoch, _)) if state.epoch == *epoch && state.primary == Some(me) => {
                // A primary that cannot persist refuses every write: let another serve.
                let failed = self.parts.durability.failure().is_some();
                let since = *self.disk_failed_since.get_or_insert_with(Instant::now);
                if !failed {
                    self.disk_failed_since = None;
                } else if since.elapsed() >= self.parts.consensus.election_timeout() {
                    warn!(
                        self.log,
                        "this primary cannot persist; handing leadership over"
                    );
                    self.disk_failed_since = None;
                    self.give_up_leadership(ctx);
                    return;
                }
                if lead.is_self && state.named_in_term != lead.term {
                    // Elected again in a later term: the lease is per term, so a new epoch
                    // must be named; step down first, take over at the next look.
                    self.step_down(&state, ctx);
                }
            }
            Some(_) => self.step_down(&state, ctx),
            None if lead.is_self => self.take_over(&state, lead, ctx),
            None => {
                if state.epoch > 0 {
                    self.parts.follower.do_send(Fence { epoch: state.epoch });
                }
            }
        }
    }

    /// Keep the view's members, epoch and primary address as the state says.
    fn show(&self, state: &ClusterState) {
        let me = self.parts.consensus.id();
        let members: Vec<MemberInfo> = state
            .members
            .iter()
            .map(|(id, member)| MemberInfo {
                id: *id,
                addr: member.addr.clone(),
                primary: state.primary == Some(*id),
            })
            .collect();
        let primary_addr = state
            .primary
            .filter(|p| *p != me)
            .and_then(|p| state.members.get(&p))
            .map(|m| m.addr.clone());
        let since_leader = self.leader.1.elapsed();
        self.parts.view.update(|view| {
            view.members = members;
            if !view.primary {
                // Another member was named: that is this node's record of the failover.
                if let (true, Some(addr)) = (state.epoch > view.epoch, &primary_addr) {
                    view.last_failover = Some(FailoverRecord {
                        at: SystemTime::now(),
                        epoch: state.epoch,
                        primary: addr.clone(),
                        reason: if view.epoch == 0 { "start" } else { "election" },
                        election_ms: since_leader.as_millis() as u64,
                        unavailable_ms: None,
                        offset: state.primary_since_offset,
                    });
                }
                view.primary_addr = primary_addr;
            }
            view.epoch = view.epoch.max(state.epoch);
        });
    }

    /// This node leads: become the primary of a new epoch (see the module's documentation).
    fn take_over(&mut self, state: &ClusterState, lead: Leadership, ctx: &mut Context<Self>) {
        self.busy = true;
        let consensus = self.parts.consensus.clone();
        let follower = self.parts.follower.clone();
        let store = self.parts.store.clone();
        let data_epoch = self.parts.data_epoch.clone();
        let old_epoch = state.epoch;
        let had_primary = state.primary;
        let log = self.log.clone();
        let writer = self.parts.writer.clone();
        let work = async move {
            // The state must be current (a `SetPrimary` committed but not applied here would
            // name a newer epoch than this node fences).
            let state = consensus
                .catch_up()
                .await
                .map_err(|e| format!("not confirmed as leader: {e}"))?;
            // Nothing of the current epoch's stream is applied from here on...
            let fenced = follower
                .send(Fence {
                    epoch: state.epoch + 1,
                })
                .await
                .map_err(|e| format!("the follower is gone: {e}"))?;
            // ...and no client write (the Store stays closed until this node serves): the
            // offset is exactly where this node's history will fork.
            let offset = store
                .send(SetWrites { open: false })
                .await
                .map_err(|e| format!("the store is gone: {e}"))?;
            let epoch = consensus
                .name_self_primary(offset)
                .await
                .map_err(|e| format!("not named primary: {e}"))?;
            data_epoch.raise_async(epoch).await?;
            let previous = fenced.replication_id.map(|id| Previous { id, offset });
            let id = replication_id::generate();
            let history = ReplicationState::Dirty {
                id: id.clone(),
                previous: previous.clone(),
            };
            writer
                .send(Follow(history))
                .await
                .map_err(|e| format!("the writer is gone: {e}"))?
                .map_err(|e| format!("recording the new history failed: {e}"))?;
            info!(log, "named primary"; "epoch" => epoch, "offset" => offset,
                "replication_id" => &id, "term" => lead.term,
                "continues" => previous.as_ref().map_or("-", |p| p.id.as_str()));
            let history = (Arc::<str>::from(id), previous, fenced.history);
            Ok::<_, String>((epoch, offset, history, fenced.last_frame))
        };
        ctx.spawn(work.into_actor(self).map(move |result, act, ctx| {
            act.busy = false;
            match result {
                Ok((epoch, offset, (id, previous, applied), last_frame)) => {
                    act.failures = 0;
                    let reason = if had_primary.is_some() {
                        "election"
                    } else {
                        "start"
                    };
                    let unavailable = last_frame.map(|t| t.elapsed().as_millis() as u64);
                    let history = (id, previous, applied);
                    act.serve(epoch, offset, history, (reason, unavailable), ctx);
                }
                Err(error) => {
                    act.failures += 1;
                    warn!(act.log, "could not take over as primary; will try again while leader";
                        "error" => error, "epoch" => old_epoch, "failures" => act.failures);
                    if act.failures >= GIVE_UP_AFTER {
                        act.failures = 0;
                        act.give_up_leadership(ctx);
                    }
                }
            }
        }));
    }

    /// Start serving as primary of `epoch`: replicators to every other member, then writes.
    fn serve(
        &mut self,
        epoch: u64,
        offset: Seq,
        (id, previous, applied): (Arc<str>, Option<Previous>, Option<AppliedHistory>),
        (reason, unavailable_ms): (&'static str, Option<u64>),
        ctx: &mut Context<Self>,
    ) {
        let state = self.parts.consensus.state().borrow().clone();
        let me = self.parts.consensus.id();
        let settings = &self.parts.replication;
        let mut replicas = Vec::new();
        for (_, member) in state.members.iter().filter(|(m, _)| **m != me) {
            let config = ReplicatorConfig {
                replica: member.addr.clone(),
                secret: settings.secret.clone(),
                replication_id: id.clone(),
                previous: previous.clone(),
                backlog_bytes: settings.backlog_bytes,
                backlog_min_bytes: settings.backlog_min_bytes,
                full_sync_buffer_bytes: settings.full_sync_buffer_bytes,
                timeout: settings.timeout,
                epoch,
                authoritative: true,
                tls: settings.tls.clone(),
            };
            let (replicator, progress) = Replicator::new(
                config,
                self.parts.store.clone(),
                self.parts.durability.clone(),
                offset,
                &self.log,
            );
            let replicator = match &applied {
                Some((before, batches)) => replicator.with_history(*before, batches.clone()),
                None => replicator,
            };
            let replicator = replicator.start();
            // The Store is closed to writes and the follower fenced, so the replicator's
            // backlog starts exactly at `offset`; writes open only after every subscription.
            self.parts
                .store
                .do_send(Subscribe(replicator.clone().recipient()));
            self.replicators.push(replicator);
            replicas.push(progress);
        }
        // Streams of older epochs end; then client writes open (after the subscriptions), in
        // this node's own history.
        self.parts.follower.do_send(Fence { epoch });
        let history = History::new(Some(&id), previous.clone(), epoch);
        self.parts.position.set_history(history);
        self.parts.store.do_send(SetWrites { open: true });
        let election_ms = self.leader.1.elapsed().as_millis() as u64;
        let me_addr = state.members.get(&me).map(|m| m.addr.clone());
        self.parts.view.update(|view| {
            view.primary = true;
            view.epoch = epoch;
            view.primary_addr = None;
            view.replication_id = id.clone();
            view.replicas = replicas;
            view.last_failover = Some(FailoverRecord {
                at: SystemTime::now(),
                epoch,
                primary: me_addr.unwrap_or_else(|| view.me.clone()),
                reason,
                election_ms,
                unavailable_ms,
                offset,
            });
        });
        info!(self.log, "serving as primary"; "epoch" => epoch, "offset" => offset,
            "replicas" => self.replicators.len(), "election_ms" => election_ms);
        self.serving = Some((epoch, id));
        self.reconcile(ctx);
    }

    /// Raft stopped (its storage failed): this member no longer knows the cluster's state, so
    /// it stops serving anything (a primary stops at once; its lease ends with Raft) until an
    /// operator restarts it.
    fn control_plane_down(&mut self, why: String, ctx: &mut Context<Self>) {
        if self.parts.view.state().control_down.is_some() {
            return;
        }
        slog::error!(self.log, "the control plane stopped; this member serves nothing until restarted";
            "error" => &why);
        self.parts.view.update(|view| view.control_down = Some(why));
        if self.serving.is_some() {
            let state = self.parts.consensus.state().borrow().clone();
            self.step_down(&state, ctx);
        }
    }

    /// Stop serving as primary: refuse writes now, stop replicating, and offer this node's
    /// data to whoever is primary next.
    fn step_down(&mut self, state: &ClusterState, ctx: &mut Context<Self>) {
        let Some((epoch, id)) = self.serving.take() else {
            return;
        };
        self.parts.view.update(|view| {
            view.primary = false;
            view.handing_over = false;
            view.replicas.clear();
        });
        // Shown again at the next look: as a replica, the view names the primary.
        self.shown = None;
        for replicator in self.replicators.drain(..) {
            replicator.do_send(StopReplicating);
        }
        warn!(self.log, "stepping down: another node is primary or a new epoch began";
            "epoch" => epoch, "new_epoch" => state.epoch);
        self.busy = true;
        let store = self.parts.store.clone();
        let follower = self.parts.follower.clone();
        let new_epoch = state.epoch;
        let since = state.primary_since_offset;
        let work = async move {
            // Closed first: the answer is exactly where this node's history as primary ends.
            let applied = store.send(SetWrites { open: false }).await.unwrap_or(0);
            follower.do_send(Rebase {
                id: id.to_string(),
                applied,
            });
            follower.do_send(Fence { epoch: new_epoch });
            applied
        };
        ctx.spawn(work.into_actor(self).map(move |applied, act, _| {
            act.busy = false;
            // What this node wrote past the point where the new primary's history begins is
            // not in it: the new primary replaces it.
            if new_epoch > epoch && applied > since {
                act.parts
                    .view
                    .update(|view| view.discarded += applied - since);
            }
        }));
    }
}

impl Coordinator {
    /// Give this node's Raft leadership to another member (asking each in turn to stand),
    /// when it leads but cannot serve: openraft 0.9 never steps a healthy leader down by
    /// itself, so without this no other member could be elected. The data-aware vote still
    /// decides whether the member asked may win.
    fn give_up_leadership(&mut self, ctx: &mut Context<Self>) {
        let consensus = self.parts.consensus.clone();
        let me = consensus.id();
        let others: Vec<NodeId> = consensus
            .state()
            .borrow()
            .members
            .keys()
            .copied()
            .filter(|id| *id != me)
            .collect();
        self.busy = true;
        let log = self.log.clone();
        let work = async move {
            for other in others {
                match consensus.hand_over(other).await {
                    Ok(()) => return info!(log, "asked another member to lead"; "to" => other),
                    Err(e) => {
                        warn!(log, "could not hand leadership over"; "to" => other, "error" => %e)
                    }
                }
            }
        };
        ctx.spawn(work.into_actor(self).map(|(), act, _| act.busy = false));
    }
}

impl Handler<Failover> for Coordinator {
    type Result = ResponseActFuture<Self, Result<String, String>>;

    fn handle(&mut self, msg: Failover, _: &mut Self::Context) -> Self::Result {
        let target = self.switchover_target(msg.to.as_deref());
        let (id, addr) = match target {
            Ok(target) if !self.busy => target,
            Ok(_) => return Box::pin(fut::ready(Err("a role change is under way".into()))),
            Err(e) => return Box::pin(fut::ready(Err(e))),
        };
        let Some(progress) = self
            .parts
            .view
            .replicas()
            .into_iter()
            .find(|r| r.borrow().addr == addr)
        else {
            return Box::pin(fut::ready(Err(format!(
                "{addr} is not a replica of this primary"
            ))));
        };
        let epoch = self.serving.as_ref().map_or(0, |(e, _)| *e);
        self.busy = true;
        let store = self.parts.store.clone();
        let consensus = self.parts.consensus.clone();
        let view = self.parts.view.clone();
        let deadline = tokio::time::Instant::now() + msg.timeout;
        // openraft 0.9's leader refuses votes within one election timeout of being elected:
        // until then, handing over would only fail. Writes go on while waiting.
        let electable = tokio::time::Instant::from_std(self.leader.1)
            + consensus.election_timeout()
            + ELECTABLE_MARGIN;
        let log = self.log.clone();
        let work = async move {
            tokio::time::sleep_until(electable).await;
            // From here on writes are refused (not applied): the target catches up on a
            // still log.
            view.update(|view| view.handing_over = true);
            info!(log, "FAILOVER: handing over"; "to" => &addr, "epoch" => epoch);
            // Closed: in-flight writes accepted before are applied first, nothing after.
            let last = store
                .send(SetWrites { open: false })
                .await
                .map_err(|e| e.to_string())?;
            let mut progress = progress;
            let caught_up = progress.wait_for(|p| p.durable >= last);
            tokio::time::timeout_at(deadline, caught_up)
                .await
                .map_err(|_| format!("{addr} did not catch up to offset {last} in time"))?
                .map_err(|_| format!("the link to {addr} closed"))?;
            consensus.hand_over(id).await.map_err(|e| e.to_string())?;
            let mut state = consensus.state();
            let named = state.wait_for(|s| s.epoch > epoch && s.primary == Some(id));
            tokio::time::timeout_at(deadline, named)
                .await
                .map_err(|_| format!("{addr} was not elected in time"))?
                .map_err(|_| "the control plane stopped".to_string())?;
            Ok(addr)
        };
        Box::pin(work.into_actor(self).map(|result, act, ctx| {
            act.busy = false;
            act.parts.view.update(|view| view.handing_over = false);
            match &result {
                Ok(addr) => info!(act.log, "FAILOVER: handed over"; "to" => addr),
                Err(e) => {
                    warn!(act.log, "FAILOVER failed; still the primary"; "error" => e);
                    if act.serving.is_some() {
                        act.parts.store.do_send(SetWrites { open: true });
                    }
                }
            }
            act.reconcile(ctx);
            result
        }))
    }
}

impl Coordinator {
    /// The member a switchover hands over to: `to`, which must be another member, or the
    /// streaming replica with the most durable data.
    fn switchover_target(&self, to: Option<&str>) -> Result<(NodeId, String), String> {
        if self.serving.is_none() {
            return Err("FAILOVER is sent to the primary; this node is not the primary".into());
        }
        let state = self.parts.consensus.state().borrow().clone();
        let me = self.parts.consensus.id();
        let others = state.members.iter().filter(|(id, _)| **id != me);
        let chosen = match to {
            Some(to) => others
                .into_iter()
                .find(|(_, m)| m.addr == to)
                .ok_or_else(|| format!("{to} is not another member of this cluster"))?,
            None => {
                let replicas = self.parts.view.replicas();
                let durable = |addr: &str| {
                    replicas
                        .iter()
                        .map(|r| r.borrow().clone())
                        .find(|p| p.addr == addr && p.state == LinkState::Streaming)
                        .map(|p| p.durable)
                };
                others
                    .filter_map(|(id, m)| durable(&m.addr).map(|d| (d, id, m)))
                    .max_by_key(|(d, _, _)| *d)
                    .map(|(_, id, m)| (id, m))
                    .ok_or("no replica is streaming: nothing to hand over to")?
            }
        };
        Ok((*chosen.0, chosen.1.addr.clone()))
    }
}

impl Actor for Coordinator {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(TICK, |act, ctx| act.reconcile(ctx));
        self.reconcile(ctx);
    }
}

/// The members of a cluster given as `--peers`, by id (1-based position in the list).
pub fn members_by_id(peers: &[String]) -> BTreeMap<NodeId, String> {
    peers
        .iter()
        .enumerate()
        .map(|(i, addr)| (i as NodeId + 1, addr.clone()))
        .collect()
}
