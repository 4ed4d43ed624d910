//! Position tokens: a client's proof of how far a node's history must have been applied before
//! a read there can show it what it has already seen (read-your-writes and monotonic reads on
//! replicas, as MySQL's GTIDs, PostgreSQL's LSNs and MongoDB's cluster times give).
//!
//! A token names a history and a place in it: `<epoch>:<replication id>:<offset>`, then,
//! when that history continues an earlier one, `:<earlier id>:<offset where they part>`. The
//! replication id says which history the offset counts in (offsets of two histories are
//! unrelated numbers). The epoch (in a failover cluster; 0 outside one) and the earlier
//! history let a node tell a history it has not heard of *yet* (a newer epoch's, or one that
//! continues its own: its primary restarted and it has not reconnected yet: wait) from one it
//! never will (refuse).
//!
//! [`decide`] is the whole rule a node applies to a token. It is a pure function of the
//! token and of what the node knows ([`History`], and how far its data is safe), so that the
//! waiters in [`super::node_position`] can re-run it whenever either changes.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use thiserror::Error;

use super::replication_id::Previous;
use crate::store::Seq;

/// Where a connection's view of the data stands: the history, and how far into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionToken {
    /// The epoch of the history's primary (0 outside a failover cluster).
    pub epoch: u64,
    /// The replication id of the history; `None` when the node had none yet (its token's
    /// offset is then 0, which every node has reached).
    pub id: Option<Arc<str>>,
    /// The last mutation the connection's replies have shown it.
    pub offset: Seq,
    /// The earlier history the token's continues, and up to where.
    pub previous: Option<Previous>,
}

/// A token that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("invalid position token '{0}' (LASTPOS gives one)")]
pub struct BadToken(pub String);

impl fmt::Display for PositionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let id = self.id.as_deref().unwrap_or("-");
        write!(f, "{}:{}:{}", self.epoch, id, self.offset)?;
        match &self.previous {
            Some(previous) => write!(f, ":{}:{}", previous.id, previous.offset),
            None => Ok(()),
        }
    }
}

impl FromStr for PositionToken {
    type Err = BadToken;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        // Shown back to the client in one reply line: control characters (a `\r`, or a `\n`
        // that RESP can carry) must not break it or reach a terminal.
        let shown = |c: char| if c.is_control() { '?' } else { c };
        let bad = || BadToken(text.chars().take(100).map(shown).collect());
        // Replication ids are 40 lower-case hex digits; numbers are plain decimal digits.
        let is_id = |id: &str| {
            id.len() == 40
                && id
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        let number = |n: &str| match n.bytes().all(|b| b.is_ascii_digit()) {
            true => n.parse::<u64>().map_err(|_| bad()),
            false => Err(bad()),
        };
        let parts: Vec<&str> = text.split(':').collect();
        let (epoch, id, offset, previous) = match parts.as_slice() {
            [epoch, id, offset] => (*epoch, *id, *offset, None),
            [epoch, id, offset, earlier, to] if is_id(earlier) => {
                let to = number(to)?;
                let earlier = Previous {
                    id: earlier.to_string(),
                    offset: to,
                };
                (*epoch, *id, *offset, Some(earlier))
            }
            _ => return Err(bad()),
        };
        let epoch = number(epoch)?;
        let offset: Seq = number(offset)?;
        let id = match id {
            "-" if offset == 0 && previous.is_none() => None,
            _ if is_id(id) => Some(Arc::from(id)),
            _ => return Err(bad()),
        };
        Ok(PositionToken {
            epoch,
            id,
            offset,
            previous,
        })
    }
}

/// What a node knows of the history its data belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// The replication id of the history it holds (a primary's own; a replica's primary's);
    /// `None` while it holds none (a replica that has never synced, or whose data is
    /// disposable).
    pub id: Option<Arc<str>>,
    /// The earlier history this one continues, and up to where the two are one.
    pub previous: Option<Previous>,
    /// The epoch of the history's primary (0 outside a failover cluster).
    pub epoch: u64,
}

impl History {
    /// History `id` (none: no history), continuing `previous`, of `epoch`.
    pub fn new(id: Option<&str>, previous: Option<Previous>, epoch: u64) -> History {
        History {
            id: id.map(Into::into),
            previous,
            epoch,
        }
    }
}

/// What a node does with a token, now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Its data has reached the token's position: a read now shows everything it names.
    Ready,
    /// Not yet, but it can: wait until its data is safe up to this offset.
    Until(Seq),
    /// It does not know the token's history yet, but may learn it (a newer epoch's primary,
    /// or its first sync): wait until its history changes.
    Unknown,
    /// Never: its history does not contain the position (why, for the client).
    Never(String),
}

/// What a node with history `history`, whose data is safe up to `safe`, does with `token`.
pub fn decide(token: &PositionToken, history: &History, safe: Seq) -> Decision {
    let until = |offset: Seq| match safe >= offset {
        true => Decision::Ready,
        false => Decision::Until(offset),
    };
    if token.offset == 0 {
        return Decision::Ready;
    }
    let Some(wanted) = token.id.as_deref() else {
        return Decision::Never("a token with no history names no position".into());
    };
    if history.id.as_deref() == Some(wanted) {
        return until(token.offset);
    }
    match &history.previous {
        Some(previous) if previous.id == wanted && token.offset <= previous.offset => {
            until(token.offset)
        }
        Some(previous) if previous.id == wanted => Decision::Never(format!(
            "this node's history continues history {wanted} only up to offset {}, and the \
             token names offset {}: that write is not in this node's history (read from the \
             primary)",
            previous.offset, token.offset
        )),
        // Not heard of yet: this node may still learn it (its first sync, a newer epoch's
        // primary, or its primary continued this node's history under a new id).
        _ if history.id.is_none() || token.epoch > history.epoch => Decision::Unknown,
        _ if token
            .previous
            .as_ref()
            .is_some_and(|p| history.id.as_deref() == Some(&*p.id) && safe <= p.offset) =>
        {
            Decision::Unknown
        }
        _ => Decision::Never(format!(
            "this node does not hold history {wanted} (epoch {}); it holds {} of epoch {} \
             (read from the primary)",
            token.epoch,
            history.id.as_deref().unwrap_or("-"),
            history.epoch
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const Y: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn token(epoch: u64, id: &str, offset: Seq) -> PositionToken {
        PositionToken {
            epoch,
            id: Some(id.into()),
            offset,
            previous: None,
        }
    }

    fn history(id: &str, previous: Option<(&str, Seq)>, epoch: u64) -> History {
        History {
            id: Some(id.into()),
            previous: previous.map(|(id, offset)| Previous {
                id: id.into(),
                offset,
            }),
            epoch,
        }
    }

    #[test]
    fn a_token_reads_back_as_it_was_written() {
        let written = token(3, X, 1234);
        assert_eq!(written.to_string(), format!("3:{X}:1234"));
        assert_eq!(written.to_string().parse::<PositionToken>(), Ok(written));
        let empty = PositionToken {
            epoch: 0,
            id: None,
            offset: 0,
            previous: None,
        };
        assert_eq!(empty.to_string().parse::<PositionToken>(), Ok(empty));
        let continuing = PositionToken {
            previous: Some(Previous {
                id: Y.into(),
                offset: 77,
            }),
            ..token(1, X, 80)
        };
        assert_eq!(continuing.to_string(), format!("1:{X}:80:{Y}:77"));
        assert_eq!(
            continuing.to_string().parse::<PositionToken>(),
            Ok(continuing)
        );
    }

    #[test]
    fn a_malformed_token_is_refused() {
        let upper = X.to_ascii_uppercase();
        let short = &X[..39];
        for text in [
            String::new(),
            "1:2".into(),
            format!("x:{X}:1"),
            format!("0:{X}:-1"),
            format!("0:{X}:+1"),
            format!("+0:{X}:1"),
            format!("0:{upper}:1"),
            format!("0:{short}:1"),
            "0:-:5".into(),
            "0::1".into(),
            format!("0:{X}:1:2"),
            format!("0:{X}:1 "),
            format!("0:{X}:1:{Y}"),
            format!("0:{X}:1:{Y}:x"),
            format!("0:-:0:{X}:1"),
        ] {
            assert!(text.parse::<PositionToken>().is_err(), "{text:?} parsed");
        }
    }

    #[test]
    fn the_same_history_waits_until_its_data_is_safe_that_far() {
        let here = history(X, None, 0);
        assert_eq!(decide(&token(0, X, 10), &here, 10), Decision::Ready);
        assert_eq!(decide(&token(0, X, 11), &here, 10), Decision::Until(11));
    }

    #[test]
    fn offset_zero_is_reached_everywhere() {
        let here = history(Y, None, 2);
        assert_eq!(decide(&token(0, X, 0), &here, 0), Decision::Ready);
    }

    #[test]
    fn a_history_this_one_continues_is_honoured_up_to_where_they_are_one() {
        let here = history(Y, Some((X, 100)), 1);
        assert_eq!(decide(&token(0, X, 90), &here, 95), Decision::Ready);
        assert_eq!(decide(&token(0, X, 100), &here, 95), Decision::Until(100));
        assert!(matches!(
            decide(&token(0, X, 101), &here, 500),
            Decision::Never(_)
        ));
    }

    #[test]
    fn an_unknown_history_of_a_newer_epoch_may_still_come() {
        let here = history(X, None, 1);
        assert_eq!(decide(&token(2, Y, 5), &here, 0), Decision::Unknown);
        assert!(matches!(
            decide(&token(1, Y, 5), &here, 0),
            Decision::Never(_)
        ));
        let fresh = History::default();
        assert_eq!(decide(&token(0, Y, 5), &fresh, 0), Decision::Unknown);
    }

    #[test]
    fn a_history_that_continues_this_nodes_is_waited_for() {
        // This replica holds X up to 40; its primary restarted as Y, continuing X up to 50,
        // and the replica has not reconnected yet.
        let here = history(X, None, 0);
        let continuing = PositionToken {
            previous: Some(Previous {
                id: X.into(),
                offset: 50,
            }),
            ..token(0, Y, 60)
        };
        assert_eq!(decide(&continuing, &here, 40), Decision::Unknown);
        // One that holds more of X than Y kept will never be continued by Y.
        assert!(matches!(decide(&continuing, &here, 55), Decision::Never(_)));
    }
}
