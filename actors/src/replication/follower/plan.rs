//! How the Follower turns a part of the primary's stream into steps for the Store and the
//! writer: a new stream's start (a full resync begins, or the stream continues, maybe under a
//! new id), and records held back until their atomic group is whole.

use slog::info;

use super::Follower;
use crate::replication::follower_parts::{Loading, Step};
use crate::replication::replication_id::{Previous, ReplicationState};
use crate::replication::wire::SyncStart;
use crate::storage::record::Entry;
use crate::storage::writer::Follow;
use crate::store::keyspace::Keyspace;
use crate::store::{Change, Seq};

impl Follower {
    /// Turn a part of the stream into steps, keeping a full resync's keys as they arrive.
    pub(super) fn plan(
        &mut self,
        start: Option<SyncStart>,
        records: Vec<Entry>,
    ) -> Result<Vec<Step>, String> {
        if start.is_some() {
            // A new stream: the primary sends again whatever group the last one cut short.
            self.partial.clear();
        }
        match start {
            Some(SyncStart::Full { seq, .. }) if seq >= Seq::MAX - 1 => {
                return Err(format!("impossible snapshot offset {seq}"));
            }
            Some(SyncStart::Full { id, seq, previous }) => {
                info!(self.log, "full resync started"; "primary_id" => &id, "seq" => seq);
                self.data_epoch.set_disposable(true);
                self.loading = Some(Loading {
                    id,
                    seq,
                    previous,
                    keyspace: Keyspace::new(),
                    count: 0,
                });
            }
            Some(SyncStart::Continue {
                id,
                offset,
                previous,
            }) => {
                if offset != self.applied || self.discard {
                    return Err(format!(
                        "the primary continues history {id} after {offset}; this replica holds {:?} up to {}",
                        self.replication_id, self.applied
                    ));
                }
                if self.replication_id.as_deref() != Some(id.as_str()) {
                    // The primary's history continues the one this replica holds (its primary
                    // crashed and took a new id, or another replica was promoted): follow it.
                    info!(self.log, "partial resync: the primary continues this replica's history under a new id";
                        "primary_id" => &id, "replica_id" => self.replication_id.as_deref().unwrap_or("-"),
                        "offset" => offset);
                    let following = ReplicationState::Following { id: id.clone() };
                    self.writer.do_send(Follow(following));
                    // Its history continues this replica's at least up to where it stands.
                    let offset = self.applied;
                    self.previous = self
                        .replication_id
                        .replace(id)
                        .map(|id| Previous { id, offset });
                } else {
                    info!(self.log, "partial resync: continuing the stream"; "offset" => offset);
                }
                // This replica's data is a prefix of the primary's history: that history's
                // lineage is its own. Published before anything of it is applied.
                if previous.is_some() {
                    self.previous = previous;
                }
                self.publish_history();
            }
            None => {}
        }
        let mut steps = Vec::new();
        let mut mutations = Vec::new();
        for entry in records {
            match (entry, self.loading.as_mut()) {
                (Entry::Mutation(mutation), Some(loading)) => match mutation.change {
                    Change::Put(pair) if mutation.seq == loading.seq => {
                        loading.keyspace.insert(pair);
                        loading.count += 1;
                    }
                    _ => return Err("unexpected record in a snapshot".into()),
                },
                (Entry::End { seq, count }, Some(loading)) => {
                    if seq != loading.seq || count != loading.count {
                        return Err(format!(
                            "snapshot ends with {count} keys at {seq}; received {} at {}",
                            loading.count, loading.seq
                        ));
                    }
                    let Some(loading) = self.loading.take() else {
                        break;
                    };
                    if !mutations.is_empty() {
                        steps.push(Step::Apply(std::mem::take(&mut mutations)));
                    }
                    steps.push(Step::Install {
                        keyspace: loading.keyspace,
                        seq: loading.seq,
                        id: loading.id,
                        previous: loading.previous,
                    });
                }
                (Entry::Mutation(mutation), None) => {
                    // Held back until its group's last mutation: a replica never applies (nor
                    // serves) part of a transaction, whatever cuts its stream.
                    let last_of_group = !mutation.more;
                    self.partial.push(mutation);
                    if last_of_group {
                        for mutation in self.partial.drain(..) {
                            self.recent.push(&mutation);
                            mutations.push(mutation);
                        }
                    }
                }
                (Entry::Heartbeat { .. }, _) => {}
                (Entry::End { .. }, None) => return Err("snapshot end outside a snapshot".into()),
            }
        }
        if !mutations.is_empty() {
            steps.push(Step::Apply(mutations));
        }
        Ok(steps)
    }
}
