//! Answering one planned batch of a session: its Store operations sent (after its position
//! waits, if it has any), every step resolved in request order, the safety of the replies
//! checked (durability, replicas, the primary's lease), and the replies written; the session
//! reads nothing meanwhile. Kept apart from the planning (`session.rs`), which calls it.

use std::future::Future;
use std::pin::Pin;

use actix::prelude::*;

use super::Session;
use crate::protocol::reply::{ErrorReply, Reply};
use crate::replication::node_position::{NodePosition, Observed};
use crate::server::batch::{Answered, BatchError, BatchSafety, Step};
use crate::server::node_query;
use crate::server::output;
use crate::server::transaction::gather_exec_replies;
use crate::store::{Batch, Op};

impl Session {
    /// Send `ops` to the Store, resolve every step in order, write the replies, and only then
    /// let the session read again.
    pub(super) fn answer(
        &mut self,
        steps: Vec<Step>,
        ops: Vec<Op>,
        close: bool,
        ctx: &mut Context<Self>,
    ) {
        let Some(mut writer) = self.writer.take() else {
            // Unreachable by construction: batches never overlap.
            ctx.stop();
            return;
        };
        let mut out = std::mem::take(&mut self.out);
        // A batch refused whole (closed to writes meanwhile) must still forget the watches its
        // EXEC or UNWATCH would have: the transaction state already has.
        let releases = ops
            .iter()
            .any(|op| matches!(op, Op::Unwatch(_) | Op::Exec(..)))
            .then(|| (self.store.clone(), self.id));
        // A batch with position waits goes to the Store once they are over; any other at once.
        let waits = self.waits.take().map(Box::new);
        let touches_store = !ops.is_empty();
        let (store_reply, deferred) = match (touches_store, &waits) {
            (false, _) => (None, None),
            (true, None) => (Some(self.store.send(Batch { ops })), None),
            (true, Some(_)) => (None, Some((self.store.clone(), ops))),
        };
        let limit = self.config.output_limit;
        // Only a batch the Store answers waits for the writer.
        let mut durability = touches_store.then(|| self.config.durability.clone());
        let confirm = (touches_store && self.config.node.confirms())
            .then(|| Box::new(self.config.node.clone()));
        let mut observed = self.observed;
        let position = touches_store.then(|| self.config.node.position.clone());
        let serving = self.serving;
        let exec_groups = std::mem::take(&mut self.exec_groups);
        let mut last_write = self.last_write;
        let protocol = self.protocol;
        // Not cloned for every batch: it travels with the batch and comes back in `Answered`.
        let buffers = self.buffers.take();
        // Under a cap, an eviction ends the batch wherever it is (a `WAIT`, a durability wait,
        // a write its client does not read), so that what it holds is let go at once.
        let guard = buffers.as_ref().filter(|b| b.capped()).cloned();
        let work = async move {
            let (waited, refusal) = match waits {
                Some(waits) => {
                    let waited = Box::pin(waits.run()).await;
                    (waited.outcomes, waited.refusal)
                }
                None => (Vec::new(), None),
            };
            let store_reply = match deferred {
                Some((store, ops)) => Some(store.send(Batch { ops })),
                None => store_reply,
            };
            let (outcomes, seen, refused) = match store_reply {
                Some(reply) => {
                    let result = reply.await?;
                    if let (true, Some((store, id))) = (result.refused, releases) {
                        store.do_send(Batch {
                            ops: vec![Op::Unwatch(id)],
                        });
                    }
                    (result.outcomes, result.seen, result.refused)
                }
                None => (Vec::new(), 0, false),
            };
            let safety = BatchSafety {
                durability: durability.as_mut(),
                confirm: confirm.as_deref(),
                serving,
            };
            let mut not_safe = match safety.settled(seen, refused) {
                true => None,
                false => Box::pin(safety.check(seen, refused)).await,
            };
            // A node that may no longer serve reads after the batch's waits (see `Waited`).
            not_safe = not_safe.or(refusal);
            // What `LASTPOS` names: what replies before it showed (the batch's state, in the
            // history of now, once a reply of the batch has shown it).
            let version = position.as_ref().map_or(0, NodePosition::version);
            let batch_seen = if not_safe.is_none() { seen } else { 0 };
            let note = |observed: &mut Observed| {
                if batch_seen > 0 {
                    observed.saw(version, batch_seen);
                }
            };
            let mut store_replies = Vec::new();
            let mut outcomes = outcomes.into_iter();
            let mut replies = Vec::with_capacity(steps.len());
            for step in steps {
                let reply = match step {
                    Step::Reply(reply) => reply,
                    Step::AfterOne(reply) => {
                        outcomes.next();
                        reply
                    }
                    Step::WaitPos(i) => match waited.get(i) {
                        Some(Err(error)) => Reply::Error(error.clone()),
                        _ => Reply::Ok,
                    },
                    Step::LastPos(position) => {
                        Reply::Value(position.token_of(observed).to_string().into())
                    }
                    Step::Store { ops, fold, after } => {
                        note(&mut observed);
                        let mine = &outcomes.as_slice()[..ops.min(outcomes.len())];
                        for outcome in mine {
                            if let Some(seq) = outcome.applied() {
                                last_write = last_write.max(seq);
                            }
                        }
                        if confirm.is_some() {
                            store_replies.push(replies.len());
                        }
                        let unreached = after.and_then(|i| waited.get(i)?.clone().err());
                        // This step's outcomes, taken in place (no allocation per step); what
                        // the fold leaves is dropped, so the next step starts at its own.
                        let mut taken = outcomes.by_ref().take(ops);
                        let reply = match (&not_safe, unreached) {
                            // A write whose durability is unknown, or a read that could show
                            // such a write, is answered with the failure instead.
                            (Some(error), _) => Reply::Error(error.clone()),
                            // A read whose position was not reached shows nothing.
                            (None, Some(error)) => Reply::Error(error),
                            (None, None) => fold.reply(&mut taken),
                        };
                        taken.for_each(drop);
                        reply
                    }
                    // Boxed, so that the common batch's future (allocated for every batch)
                    // stays small.
                    Step::Node(query, store, config) => {
                        let answer =
                            node_query::answer(query, &store, &config.node, last_write, protocol);
                        Box::pin(answer).await?
                    }
                };
                replies.push(reply);
            }
            // A later step (a WAIT) may have outlasted the lease: check it again as they leave.
            if let (None, Some(node)) = (&not_safe, &confirm) {
                if let Err(error) = node.still_serving(serving) {
                    for i in store_replies {
                        replies[i] = Reply::Error(error.clone());
                    }
                }
            }
            note(&mut observed);
            if protocol.is_resp() {
                gather_exec_replies(&mut replies, &exec_groups);
            }
            let mut close = close;
            let mut bytes = output::reply_bytes(&replies);
            if bytes > limit {
                replies = vec![Reply::Error(ErrorReply::OutputLimit { limit })];
                bytes = 0;
                close = true;
            }
            match (bytes >= output::FLUSH_BYTES, &buffers) {
                // Large replies count against `--maxmemory-clients` until written.
                (true, Some(buffers)) => {
                    buffers.writing(bytes);
                    output::write(&mut writer, &mut out, &replies, bytes, protocol).await?;
                    buffers.writing(0);
                }
                _ => output::write(&mut writer, &mut out, &replies, bytes, protocol).await?,
            }
            Ok::<_, BatchError>(Answered {
                writer,
                out,
                close,
                last_write,
                observed,
                buffers,
            })
        };
        // Allocated at its size: the batch's future is the one allocation every batch pays
        // for by size (a copy of it is most of what boxing costs), so the rare parts it
        // carries (the position waits, the node for a confirmation) are boxed apart, and the
        // eviction guard wraps it only when there is a cap. (An `Either` of the two, boxed
        // once by the context, measured 2% more instructions per GET than this.)
        let batch: Pin<Box<dyn Future<Output = Result<Answered, BatchError>>>> = match guard {
            Some(guard) => Box::pin(async move {
                tokio::select! {
                    answered = work => answered,
                    () = guard.until_evicted() => Err(BatchError::Evicted),
                }
            }),
            None => Box::pin(work),
        };
        ctx.wait(
            batch
                .into_actor(self)
                .map(|result, act, ctx| act.answered(result, ctx)),
        );
    }
}
