//! How a replica is brought to its primary's data, decided when it says where it stands: by a
//! partial resync, by a full one, or not at all. A primary never overwrites a replica's data
//! with a history that does not contain it (docs/replication.md, "No silent wipe").

use super::backlog::Backlog;
use super::replication_id::Lineage;
use crate::store::Seq;

/// How a replica holding history `id` up to `offset` can be brought to the data of a primary
/// with `lineage` and `backlog`: `Ok(true)` by a partial resync, `Ok(false)` by a full one; or
/// why it must not be overwritten. Only a replica whose data is a prefix of the primary's
/// history (or that holds nothing) is resynced: anything else holds writes the primary does
/// not have.
///
/// A replica's `window` (its fingerprint of its last mutations) must match the primary's own:
/// the same id and offset over different mutations (a history forged under this id by someone
/// who knew the cluster secret) is another history. A window the backlog no longer holds
/// cannot be checked: the replica then gets a full copy, which replaces its data with a
/// history that contains it if its claim was true.
pub fn decide(
    lineage: &Lineage,
    backlog: &Backlog,
    id: Option<&str>,
    offset: Seq,
    window: Option<(Seq, u64)>,
) -> Result<bool, &'static str> {
    let last = backlog.last_seq();
    match id {
        Some(id) if lineage.contains(id, offset, last) => match window {
            None => Ok(backlog.covers(offset)),
            Some((start, theirs)) => match backlog.fingerprint(start, offset) {
                Some(ours) if ours == theirs => Ok(backlog.covers(offset)),
                Some(_) => Err("replica_has_another_history"),
                None => Ok(false),
            },
        },
        None if offset == 0 => Ok(false),
        _ if offset > last => Err("replica_is_ahead"),
        _ => Err("replica_has_another_history"),
    }
}
