//! The Store's whole-keyspace ops: `FLUSHDB`/`FLUSHALL` (one `Clear` mutation, however many
//! keys). Part of the Store (`mod.rs`); no I/O.

use super::mutation::Change;
use super::op::{Op, Outcome};
use super::Store;

impl Store {
    /// The keyspace ops.
    pub(super) fn keyspace_op(&mut self, op: Op) -> Outcome {
        match op {
            Op::Clear => Outcome::Applied(self.clear()),
            _ => Outcome::Refused("ERR internal: not a keyspace op"),
        }
    }

    /// Remove every key as one logged `Clear`. The old keys are freed on another thread when
    /// there are many ([`super::keyspace::Keyspace::drop_in_background`]), so the Store keeps
    /// answering while a million pairs are freed.
    fn clear(&mut self) -> super::mutation::Seq {
        self.clear_data();
        self.record(Change::Clear)
    }

    /// Empty the keyspace, freeing the old keys off this thread when there are many: what a
    /// `Clear` does, from a client here or from the primary's stream on a replica.
    pub(super) fn clear_data(&mut self) {
        self.data.take().drop_in_background();
    }
}
