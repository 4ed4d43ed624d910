//! A node's data position, which the data-aware vote compares.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// How the control plane learns this node's current data position: called whenever it must
/// compare positions (every vote request it sends or answers), so it must be cheap and must not
/// block.
pub type PositionFn = Arc<dyn Fn() -> DataPosition + Send + Sync>;

/// Data position of a node: the epoch of the history its data belongs to, and its durable
/// offset in that history.
///
/// Ordered lexicographically (the derive follows field order), like Raft's (last term, last
/// index): data of a later epoch is ahead of any data of an earlier one, whatever the offsets.
/// A voter whose position is strictly greater than a candidate's refuses it its vote, so a
/// node whose data is behind is never elected over one that is ahead.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct DataPosition {
    /// The epoch of the history the node's data belongs to.
    pub epoch: u64,
    /// How far into that history the node's data is durable.
    pub offset: u64,
}

#[cfg(test)]
mod tests {
    use super::DataPosition;

    #[test]
    fn a_later_epoch_is_ahead_whatever_the_offsets() {
        let p = |epoch, offset| DataPosition { epoch, offset };
        assert!(p(2, 0) > p(1, 1_000));
        assert!(p(2, 5) > p(2, 4));
        assert_eq!(p(3, 3), p(3, 3));
    }
}
