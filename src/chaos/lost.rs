//! Lost acknowledged writes: a write the store acknowledged whose value a later read does not
//! show, although nothing could have replaced it in between. A stronger statement than "not
//! linearizable", and the one a user cares about most, so it is counted on its own.

use super::history::{Call, Operation, Outcome};

/// The acknowledged writes of one key's history that a later read proves lost: for each, a
/// read invoked after the write completed that shows something else, with no other write or
/// delete (acknowledged, unknown, or pending) that could have taken effect in between.
pub fn lost_writes(history: &[Operation]) -> Vec<&Operation> {
    let mutations: Vec<&Operation> = history
        .iter()
        .filter(|op| !matches!(op.call, Call::Get) && op.outcome != Outcome::Failed)
        .collect();
    history
        .iter()
        .filter(|write| write.outcome == Outcome::Written)
        .filter(|write| {
            let Call::Put(value) = &write.call else {
                return false;
            };
            history.iter().any(|read| {
                let Outcome::Read(seen) = &read.outcome else {
                    return false;
                };
                if read.invoked <= write.completed || seen.as_deref() == Some(value.as_str()) {
                    return false;
                }
                // Could another mutation have taken effect after this write and before the
                // read? Only one invoked before the read completed and not completed before
                // the write was invoked.
                let replaced = mutations.iter().any(|other| {
                    !std::ptr::eq(*other, *write)
                        && other.invoked < read.completed
                        && (other.outcome == Outcome::Unknown || other.completed > write.invoked)
                });
                !replaced
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chaos::history::Node;

    fn op(call: Call, from: u64, to: u64, outcome: Outcome) -> Operation {
        Operation {
            connection: 0,
            node: Node::Primary,
            client: 0,
            key: "k".into(),
            call,
            invoked: from,
            completed: to,
            outcome,
        }
    }

    #[test]
    fn a_write_no_later_read_shows_is_lost_unless_something_could_have_replaced_it() {
        let write = op(Call::Put("a".into()), 0, 1, Outcome::Written);
        let gone = op(Call::Get, 5, 6, Outcome::Read(None));
        assert_eq!(lost_writes(&[write.clone(), gone.clone()]).len(), 1);
        let seen = op(Call::Get, 5, 6, Outcome::Read(Some("a".into())));
        assert!(lost_writes(&[write.clone(), seen]).is_empty());
        // A delete in between (even one whose outcome is unknown) explains the read.
        let del = op(Call::Del, 2, 3, Outcome::Unknown);
        assert!(lost_writes(&[write.clone(), del, gone.clone()]).is_empty());
        // A read that overlaps the write proves nothing.
        let early = op(Call::Get, 0, 6, Outcome::Read(None));
        assert!(lost_writes(&[write, early]).is_empty());
    }
}
