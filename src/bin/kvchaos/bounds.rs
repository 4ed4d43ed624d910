//! The bound of an operation whose answer never came: the latest instant it can have taken
//! effect, from the faults (the death of the process its connection reached) and, in a
//! failover cluster, from the next primary's acknowledgements.

use std::collections::HashMap;

use kvstore::chaos::history::{Node, Operation, Outcome};

use crate::clients::Opened;
use crate::faults::FaultRecord;

/// Give each operation sent to the primary whose answer never came the latest time it can
/// have taken effect: the moment the process its connection reached (the primary's, or in a
/// failover cluster the member's it was sent to) was certainly dead, if it was killed. A
/// connection through a proxy reaches one process, the one running when it was opened, and
/// is never dialled again, so nothing sent on it can reach the node that starts after. One
/// sent after that process was already dead did not happen at all. In a failover cluster,
/// also the first write another member acknowledged after it was sent (a paused or cut-off
/// primary that comes back has been deposed; see below). Without the bound an old unanswered
/// write could be "maybe applied later" forever and explain away any later loss.
pub fn bound_unknowns(
    history: &mut [Operation],
    opened: &HashMap<u64, Opened>,
    faults: &[FaultRecord],
) {
    let deaths: Vec<(usize, u64)> = faults.iter().filter_map(|fault| fault.killed).collect();
    let member_of = |op: &Operation| opened.get(&op.connection).map_or(0, |o| o.member);
    // Writes a primary acknowledged, by when and on which member. A member acknowledges only
    // while it holds its lease, and a new primary is named only after the old one's has
    // ended; so once another member has acknowledged a write, a write sent earlier to member
    // m either took effect before that (m applied it while it still led, and the new
    // primary's history forks after it) or never will (m's tail past the fork is discarded).
    let mut acknowledged: Vec<(u64, usize)> = history
        .iter()
        .filter(|op| op.node == Node::Primary)
        .filter(|op| matches!(op.outcome, Outcome::Written | Outcome::Deleted(_)))
        .map(|op| (op.completed, member_of(op)))
        .collect();
    acknowledged.sort_unstable();
    for op in history
        .iter_mut()
        .filter(|op| op.outcome == Outcome::Unknown)
    {
        let Node::Primary = op.node else {
            // Reads have no effect; their bound does not matter, and none is claimed.
            op.completed = u64::MAX;
            continue;
        };
        // A connection not in the map reached the primary of a run without failover.
        let Opened { at: since, member } = opened.get(&op.connection).copied().unwrap_or(Opened {
            at: op.invoked,
            member: 0,
        });
        let death = deaths
            .iter()
            .filter(|&&(node, _)| node == member)
            .map(|&(_, dead)| dead)
            .find(|&dead| dead > since);
        let elsewhere = acknowledged
            .iter()
            .find(|&&(at, by)| at > op.invoked && by != member)
            .map(|&(at, _)| at);
        match death {
            Some(dead) if dead < op.invoked => op.outcome = Outcome::Failed,
            Some(dead) => op.completed = dead.min(elsewhere.unwrap_or(u64::MAX)),
            None => op.completed = elsewhere.unwrap_or(u64::MAX),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvstore::chaos::history::Call;

    fn unknown(node: Node, invoked: u64, connection: u64) -> Operation {
        Operation {
            client: 0,
            connection,
            node,
            key: "k".into(),
            call: Call::Put("v".into()),
            invoked,
            completed: invoked + 1,
            outcome: Outcome::Unknown,
            token: None,
        }
    }

    fn kill(node: usize, dead: u64) -> FaultRecord {
        FaultRecord {
            from: dead - 1,
            to: dead + 10,
            what: String::new(),
            killed: Some((node, dead)),
            primary: None,
        }
    }

    #[test]
    fn an_unanswered_write_is_bounded_by_the_death_of_the_primary_its_connection_reached() {
        let mut history = vec![
            unknown(Node::Primary, 5, 1),
            unknown(Node::Primary, 25, 2),
            unknown(Node::Primary, 45, 3),
            unknown(Node::Replica(1), 5, 4),
            // Sent at 22 on a connection opened at 15, to the process that died at 20.
            unknown(Node::Primary, 22, 5),
        ];
        let opened = HashMap::from([(1, 4), (2, 24), (3, 44), (4, 4), (5, 15)])
            .into_iter()
            .map(|(connection, at)| (connection, Opened { at, member: 0 }))
            .collect();
        // The primary died at 20 and 40; a replica's death at 30 bounds nothing.
        let faults = [kill(0, 20), kill(1, 30), kill(0, 40)];
        bound_unknowns(&mut history, &opened, &faults);
        let bounds: Vec<u64> = history[..4].iter().map(|op| op.completed).collect();
        assert_eq!(bounds, [20, 40, u64::MAX, u64::MAX]);
        // It never reached a live process: it did not happen.
        assert_eq!(history[4].outcome, Outcome::Failed);
    }

    /// In a failover cluster, a write sent to a primary that was then paused or cut off is
    /// bounded by the first write another member acknowledged after it was sent.
    #[test]
    fn an_unanswered_write_is_bounded_by_the_next_primary_acknowledging() {
        let acked = |invoked, completed, connection| Operation {
            completed,
            outcome: Outcome::Written,
            ..unknown(Node::Primary, invoked, connection)
        };
        let mut history = vec![
            unknown(Node::Primary, 10, 1),
            acked(11, 12, 1),
            acked(40, 50, 2),
            unknown(Node::Primary, 60, 2),
        ];
        let opened = HashMap::from([(1, (1, 0)), (2, (30, 1))])
            .into_iter()
            .map(|(connection, (at, member))| (connection, Opened { at, member }))
            .collect();
        bound_unknowns(&mut history, &opened, &[]);
        // Member 0's own acknowledgement bounds nothing; member 1's, at 50, does.
        assert_eq!(history[0].completed, 50);
        // Nothing acknowledged elsewhere after it: no bound.
        assert_eq!(history[3].completed, u64::MAX);
    }
}
