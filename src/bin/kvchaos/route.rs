//! Where the primary of a failover cluster is, as a client learns it from the members'
//! answers: a write refused by a replica names the primary (`READONLY: ... write to the
//! primary at ADDR`), and `ROLE` says `primary ...` or `replica primary=ADDR ...`. And which
//! node answered a read, for the checker: a read is a primary read only if the node that
//! answered it said, in the same batch and after it, that it was the primary.

use std::net::SocketAddr;

use kvstore::chaos::history::Node;

/// The checker's name for a read answered by member `member` whose batch's `ROLE` answer was
/// `role` (`None`: it did not come). A member checks its lease before it answers a batch as
/// the primary, so a read followed by `primary` is the primary's; anything else is a
/// replica's, held only to what replicas promise (written values, never back in time on a
/// connection).
pub fn read_by(member: usize, role: Option<&str>) -> Node {
    match role {
        Some(role) if role.starts_with("primary") => Node::Primary,
        _ => Node::Replica(member + 1),
    }
}

/// The member a `ROLE` answer from `member` says is the primary: itself, or the one it names.
pub fn primary_from_role(member: usize, role: &str, members: &[SocketAddr]) -> Option<usize> {
    match role.starts_with("primary") {
        true => Some(member),
        false => named_primary(role, members),
    }
}

/// The member `text` names as the primary (`primary at ADDR` or `primary=ADDR`), if it names
/// one of `members`.
pub fn named_primary(text: &str, members: &[SocketAddr]) -> Option<usize> {
    let (_, rest) = text
        .split_once("primary at ")
        .or_else(|| text.split_once("primary="))?;
    let addr = rest.split_whitespace().next()?;
    members.iter().position(|m| m.to_string() == addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_and_roles_name_the_primary() {
        let members: Vec<SocketAddr> = ["127.0.0.1:1000", "127.0.0.1:2000"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let refusal = "READONLY: this node is a replica; write to the primary at 127.0.0.1:2000";
        assert_eq!(named_primary(refusal, &members), Some(1));
        let role = "replica primary=127.0.0.1:1000 link=up offset=7";
        assert_eq!(primary_from_role(1, role, &members), Some(0));
        assert_eq!(
            primary_from_role(1, "primary offset=7 replicas=", &members),
            Some(1)
        );
        assert_eq!(
            primary_from_role(0, "replica primary=?:0 link=down", &members),
            None
        );
        let election = "READONLY: no primary right now (an election is under way)";
        assert_eq!(named_primary(election, &members), None);
        assert_eq!(read_by(1, Some("primary offset=3")), Node::Primary);
        assert_eq!(read_by(1, Some("replica primary=x")), Node::Replica(2));
        assert_eq!(read_by(1, None), Node::Replica(2));
    }
}
