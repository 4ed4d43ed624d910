//! What each failover cost, as the clients saw it, for the table in docs/reliability.md: for
//! every fault that hit a failover cluster's primary, how long until a primary acknowledged a
//! write again (another member, elected; or the old one, once the fault was over: a killed
//! primary that restarts before the others have elected one may lead again in its own term,
//! and a cut that heals before the election leaves it in place), and the longest stretch
//! without any acknowledged write around it (the write unavailability).

use std::collections::HashMap;

use kvstore::chaos::history::{Call, Operation, Outcome};

use crate::clients::Opened;
use crate::faults::FaultRecord;

/// One fault of the primary, measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failover {
    /// The fault, in words, with its time span.
    pub fault: String,
    /// From the fault's start to the first write a primary acknowledged after it (ns): another
    /// member's, or the old primary's once the fault was over; `None`: none before the next
    /// fault.
    pub new_primary_after: Option<u64>,
    /// Whether that primary was another member (a failover) rather than the old one.
    pub moved: bool,
    /// The longest gap between acknowledged writes from the last before the fault to the next
    /// fault (or the end of the run), in ns.
    pub unavailable: u64,
}

/// Measure every fault that hit the primary; `end` is when the clients stopped.
pub fn measure(
    history: &[Operation],
    opened: &HashMap<u64, Opened>,
    faults: &[FaultRecord],
    end: u64,
) -> Vec<Failover> {
    // Every acknowledged write: when its answer came, and which member gave it.
    let mut acks: Vec<(u64, usize)> = history
        .iter()
        .filter(|op| op.call != Call::Get)
        .filter(|op| matches!(op.outcome, Outcome::Written | Outcome::Deleted(_)))
        .filter_map(|op| Some((op.completed, opened.get(&op.connection)?.member)))
        .collect();
    acks.sort_unstable();
    let mut measured = Vec::new();
    for (k, fault) in faults.iter().enumerate() {
        let Some(old) = fault.primary else { continue };
        let until = faults.get(k + 1).map_or(end, |next| next.from);
        let resumed = acks.iter().find(|&&(at, member)| {
            at >= fault.from && at < until && (member != old || at >= fault.to)
        });
        let new_primary_after = resumed.map(|&(at, _)| at - fault.from);
        let moved = resumed.is_some_and(|&(_, member)| member != old);
        let before = acks
            .iter()
            .rev()
            .find(|&&(at, _)| at < fault.from)
            .map_or(fault.from, |&(at, _)| at);
        let mut last = before;
        let mut unavailable = 0;
        for &(at, _) in acks
            .iter()
            .filter(|&&(at, _)| at >= fault.from && at < until)
        {
            unavailable = unavailable.max(at - last);
            last = at;
        }
        unavailable = unavailable.max(until.saturating_sub(last));
        measured.push(Failover {
            fault: fault.to_string(),
            new_primary_after,
            moved,
            unavailable,
        });
    }
    measured
}

/// The median and the largest of `values`, in ms (`-` when there are none).
fn median_and_worst(mut values: Vec<u64>) -> String {
    values.sort_unstable();
    match (values.get(values.len() / 2), values.last()) {
        (Some(median), Some(worst)) => format!("{}/{}", median / 1_000_000, worst / 1_000_000),
        _ => "-/-".into(),
    }
}

/// One line per failover, then the summary line (`kvchaos: failovers=...`).
pub fn report(failovers: &[Failover]) -> String {
    let mut text = String::new();
    for failover in failovers {
        let after = match (failover.new_primary_after, failover.moved) {
            (Some(ns), true) => format!(
                "a new primary acknowledged a write after {} ms",
                ns / 1_000_000
            ),
            (Some(ns), false) => format!(
                "the old primary, in place again, acknowledged a write after {} ms",
                ns / 1_000_000
            ),
            (None, _) => "no primary acknowledged a write before the next fault".into(),
        };
        text.push_str(&format!(
            "failover: {}: {after}; writes unavailable for {} ms\n",
            failover.fault,
            failover.unavailable / 1_000_000
        ));
    }
    let times: Vec<u64> = failovers
        .iter()
        .filter_map(|f| f.new_primary_after)
        .collect();
    let moved = failovers.iter().filter(|f| f.moved).count();
    let none = failovers.len() - times.len();
    let gaps: Vec<u64> = failovers.iter().map(|f| f.unavailable).collect();
    text.push_str(&format!(
        "kvchaos: primary_faults={} primary_again_ms(median/worst)={} moved={moved} \
         none={none} write_unavailability_ms(median/worst)={}\n",
        failovers.len(),
        median_and_worst(times),
        median_and_worst(gaps)
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(completed: u64, connection: u64) -> Operation {
        Operation {
            client: 0,
            connection,
            node: kvstore::chaos::history::Node::Primary,
            key: "k".into(),
            call: Call::Put("v".into()),
            invoked: completed - 1,
            completed,
            outcome: Outcome::Written,
            token: None,
        }
    }

    #[test]
    fn a_failover_is_timed_from_the_fault_to_the_new_primarys_first_acknowledgement() {
        const MS: u64 = 1_000_000;
        let opened = HashMap::from([
            (1, Opened { at: 0, member: 0 }),
            (2, Opened { at: 0, member: 1 }),
        ]);
        let history = vec![ack(90 * MS, 1), ack(1500 * MS, 2), ack(1600 * MS, 2)];
        let fault = FaultRecord {
            from: 100 * MS,
            to: 2000 * MS,
            what: "kill -9 member0 (the primary)".into(),
            killed: Some((0, 100 * MS)),
            primary: Some(0),
        };
        let measured = measure(&history, &opened, &[fault], 3000 * MS);
        assert_eq!(measured[0].new_primary_after, Some(1400 * MS));
        // From the last acknowledgement before the fault (90 ms) to the run's end (3000 ms).
        assert_eq!(measured[0].unavailable, 1410 * MS);
        assert!(measured[0].moved);
        assert!(report(&measured).contains("primary_again_ms(median/worst)=1400/1400"));
    }
}
