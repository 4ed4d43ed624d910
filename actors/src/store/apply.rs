//! How the Store applies one [`super::Batch`]: each op in turn, a transaction's ops skipped
//! whole when a key it watched changed, and the mutations grouped so that the log and the
//! replicas take each command (and each transaction) whole or not at all. Part of the Store
//! (`mod.rs`); no I/O.

use super::{Op, Outcome, Store};

impl Store {
    /// Apply `ops` in order; answers one outcome per op.
    ///
    /// The mutations of one op (a `RENAME`'s delete and put, an `MSET`'s puts), and those of
    /// one transaction (the ops an `Op::Exec` runs), are one atomic group: every one but the
    /// last says another follows ([`super::Mutation::more`]), and recovery and replicas apply a
    /// group only whole. Independent commands of one pipeline stay separate, so a log torn
    /// inside a large pipeline keeps the commands before the tear.
    pub(super) fn apply_ops(&mut self, ops: Vec<Op>) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(ops.len());
        // The ops of a transaction whose watched keys changed: answered, not applied.
        let mut skip = 0;
        // The ops of a running transaction still to come, and where its mutations start.
        let mut transaction = 0;
        let mut transaction_start = 0;
        for op in ops {
            let op_start = self.pending.len();
            let in_transaction = transaction > 0;
            let outcome = match op {
                _ if skip > 0 => {
                    skip -= 1;
                    Outcome::NotFound
                }
                Op::Get(key) => self.lookup(&key).map_or(Outcome::NotFound, Outcome::Value),
                Op::Put(key, value) => Outcome::Applied(self.put(&key, &value)),
                Op::Del(key) => self.del(&key).map_or(Outcome::NotFound, Outcome::Applied),
                Op::Exec(client, ops) => match self.exec_may_run(client) {
                    true => {
                        transaction = ops;
                        Outcome::Number(1, None)
                    }
                    false => {
                        skip = ops;
                        Outcome::Number(0, None)
                    }
                },
                op @ (Op::Watch(..) | Op::Unwatch(_)) => self.watch_op(op),
                op @ (Op::Set(_)
                | Op::Expire(..)
                | Op::Persist(_)
                | Op::Ttl(..)
                | Op::GetEx(..)) => self.ttl_op(op),
                op @ (Op::Clear
                | Op::Keys(_)
                | Op::Scan(_)
                | Op::RandomKey
                | Op::IncrByFloat(..)
                | Op::GetRange(..)
                | Op::SetRange(..)) => self.keyspace_op(op),
                other => self.read_modify_write(other),
            };
            outcomes.push(outcome);
            match in_transaction {
                true => {
                    transaction -= 1;
                    if transaction == 0 {
                        self.group(transaction_start);
                    }
                }
                false => {
                    self.group(op_start);
                    transaction_start = self.pending.len();
                }
            }
        }
        outcomes
    }

    /// Make the mutations pending from `start` on one atomic group (all but the last say
    /// another follows).
    fn group(&mut self, start: usize) {
        let group = self
            .pending
            .get_mut(start..)
            .and_then(|g| g.split_last_mut());
        if let Some((_, all_but_last)) = group {
            for mutation in all_but_last {
                mutation.more = true;
            }
        }
    }
}
