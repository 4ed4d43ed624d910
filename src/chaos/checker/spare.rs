//! The operations a way of the sweep has left pending: they may still take effect (their
//! outcome is unknown, or they lie outside the window checked), each until its bound.

/// Pending operations, counted by the state they would leave and their bound (the latest
/// instant they may take effect; `u64::MAX`: none). Those leaving the same state with the
/// same bound are interchangeable once invoked, so only their number matters. Sorted by
/// state, then bound; no zero counts.
///
/// Among those leaving the same state, the one used (taking effect) is always the one with
/// the earliest bound: any way that uses another, keeping that one pending, can swap the two
/// (the one kept is still offered when the other was used, and the one used then was offered
/// and lasts at least as long). So a way is never worse off, which keeps the sweep exact.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Spare(Vec<(u32, u64, u32)>);

impl Spare {
    /// `count` more that would leave `state`, until `bound`.
    pub fn add(&mut self, state: u32, bound: u64, count: u32) {
        match self
            .0
            .binary_search_by_key(&(state, bound), |&(s, b, _)| (s, b))
        {
            Ok(at) => self.0[at].2 += count,
            Err(at) => self.0.insert(at, (state, bound, count)),
        }
    }

    /// The entries that would leave `state`, by bound.
    fn run(&self, state: u32) -> &[(u32, u64, u32)] {
        let start = self.0.partition_point(|&(s, _, _)| s < state);
        let end = self.0.partition_point(|&(s, _, _)| s <= state);
        &self.0[start..end]
    }

    /// Whether any would leave `state`.
    pub fn has(&self, state: u32) -> bool {
        !self.run(state).is_empty()
    }

    /// The states some would leave, each once, in order.
    pub fn states(&self) -> impl Iterator<Item = u32> + '_ {
        self.0.chunk_by(|a, b| a.0 == b.0).map(|run| run[0].0)
    }

    /// The earliest bound of those that would leave `state`, if any.
    pub fn earliest(&self, state: u32) -> Option<u64> {
        self.run(state).first().map(|&(_, bound, _)| bound)
    }

    /// A copy with one fewer that would leave `state` (which has some): the one with the
    /// earliest bound, as the type's doc explains.
    pub fn without_one(&self, state: u32) -> Spare {
        let mut spare = self.clone();
        let at = spare.0.partition_point(|&(s, _, _)| s < state);
        if spare.0.get(at).is_some_and(|&(s, _, _)| s == state) {
            spare.0[at].2 -= 1;
            if spare.0[at].2 == 0 {
                spare.0.remove(at);
            }
        }
        spare
    }

    /// Counts those leaving `from` as leaving `to` instead, keeping their bounds.
    pub fn relabel(&mut self, from: u32, to: u32) {
        let start = self.0.partition_point(|&(s, _, _)| s < from);
        let end = self.0.partition_point(|&(s, _, _)| s <= from);
        let moved: Vec<(u32, u64, u32)> = self.0.drain(start..end).collect();
        for (_, bound, count) in moved {
            self.add(to, bound, count);
        }
    }

    /// Drops those whose bound is `at` or earlier: they can no longer take effect after it.
    /// Answers whether any were dropped.
    pub fn expire(&mut self, at: u64) -> bool {
        let before = self.0.len();
        self.0.retain(|&(_, bound, _)| bound > at);
        self.0.len() != before
    }

    /// Whether this can do anything `other` can: for every state, and every instant, at least
    /// as many that would leave that state may still take effect at that instant (then each
    /// of `other`'s can be matched with one of these lasting at least as long; an operation
    /// left pending may still take effect later, or never). It is enough to compare at the
    /// bounds of `other`, from the latest down.
    pub fn covers(&self, other: &Spare) -> bool {
        other.0.chunk_by(|a, b| a.0 == b.0).all(|theirs| {
            let mut mine = self.run(theirs[0].0).iter().rev().peekable();
            let (mut have, mut need) = (0u32, 0u32);
            theirs.iter().rev().all(|&(_, bound, count)| {
                need += count;
                while let Some(&(_, _, c)) = mine.next_if(|&&(_, b, _)| b >= bound) {
                    have += c;
                }
                have >= need
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A spare of `(state, bound, count)` entries.
    fn spare(entries: &[(u32, u64, u32)]) -> Spare {
        let mut spare = Spare::default();
        for &(state, bound, count) in entries {
            spare.add(state, bound, count);
        }
        spare
    }

    #[test]
    fn one_covers_another_if_it_has_as_many_lasting_as_long_for_every_state() {
        let other = spare(&[(2, 10, 1), (2, 20, 1), (3, 5, 1)]);
        assert!(spare(&[(2, 20, 2), (3, 5, 1)]).covers(&other));
        assert!(spare(&[(2, 10, 1), (2, 30, 1), (3, 9, 1), (4, 1, 1)]).covers(&other));
        // Two as long-lasting, but of one only one.
        assert!(!spare(&[(2, 10, 2), (3, 5, 1)]).covers(&other));
        assert!(!spare(&[(2, 20, 2)]).covers(&other));
        assert!(!spare(&[(2, 20, 2), (3, 4, 1)]).covers(&other));
        assert!(other.covers(&Spare::default()));
    }

    #[test]
    fn the_one_used_is_the_earliest_bound_and_expired_ones_go() {
        let mut pending = spare(&[(2, 20, 1), (2, 10, 1), (3, 5, 2)]);
        assert_eq!(pending.earliest(2), Some(10));
        assert_eq!(pending.without_one(2), spare(&[(2, 20, 1), (3, 5, 2)]));
        assert_eq!(pending.states().collect::<Vec<_>>(), [2, 3]);
        pending.relabel(3, 2);
        assert_eq!(pending, spare(&[(2, 5, 2), (2, 10, 1), (2, 20, 1)]));
        assert!(pending.expire(10));
        assert_eq!(pending, spare(&[(2, 20, 1)]));
        assert!(!pending.expire(19));
        assert!(!pending.has(3));
    }
}
