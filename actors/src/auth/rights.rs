//! The rights a user can hold. Three are enough for the commands a node has, and keep the
//! users file readable: `read` (commands that show keys or values), `write` (commands that
//! change them), `admin` (commands about the node itself: `INFO`, `DIGEST`, `FAILOVER`,
//! `CONFIG`, `CLIENT LIST`/`KILL`, `FLUSHALL`, `RESYNC`, `ACL LOAD`). Which command needs
//! which is `protocol/command_rights.rs`.

use std::fmt;

/// A set of rights: what a user holds, or what a command needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rights(
    /// One bit per right: [`Rights::READ`], [`Rights::WRITE`], [`Rights::ADMIN`].
    u8,
);

/// Each right with its name in the users file, in the order they are shown.
const NAMES: [(Rights, &str); 3] = [
    (Rights::READ, "read"),
    (Rights::WRITE, "write"),
    (Rights::ADMIN, "admin"),
];

impl Rights {
    /// No right: what a command that only concerns its own connection needs (`PING`).
    pub const NONE: Rights = Rights(0);
    /// Commands that show keys or values.
    pub const READ: Rights = Rights(1);
    /// Commands that change keys or values.
    pub const WRITE: Rights = Rights(2);
    /// Commands about the node rather than its data.
    pub const ADMIN: Rights = Rights(4);
    /// Every right: the `default` user of `--requirepass`, and every connection of a node
    /// without authentication.
    pub const ALL: Rights = Rights(7);

    /// Both sets together.
    pub const fn and(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }

    /// What of `needed` this set does not hold ([`Rights::NONE`] when it holds all of it).
    pub const fn missing(self, needed: Rights) -> Rights {
        Rights(needed.0 & !self.0)
    }

    /// Whether the set is empty.
    pub const fn is_none(self) -> bool {
        self.0 == 0
    }

    /// The rights a users file names, comma-separated (`read,write`); `all` is every right.
    pub fn parse(text: &str) -> Result<Rights, String> {
        if text == "all" {
            return Ok(Rights::ALL);
        }
        let mut rights = Rights::NONE;
        for word in text.split(',') {
            match NAMES.iter().find(|(_, name)| *name == word) {
                Some((right, _)) => rights = rights.and(*right),
                None => {
                    return Err(format!(
                        "unknown right {word:?} (the rights are read, write and admin, \
                         comma-separated, or all)"
                    ))
                }
            }
        }
        Ok(rights)
    }
}

impl fmt::Display for Rights {
    /// Comma-separated, as the users file writes them (`none` for the empty set).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (right, name) in NAMES {
            if self.missing(right).is_none() {
                if !first {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if first {
            f.write_str("none")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rights_parse_and_show_as_the_users_file_writes_them() {
        assert_eq!(Rights::parse("read"), Ok(Rights::READ));
        assert_eq!(
            Rights::parse("write,read"),
            Ok(Rights::READ.and(Rights::WRITE))
        );
        assert_eq!(Rights::parse("all"), Ok(Rights::ALL));
        assert!(Rights::parse("read,").is_err());
        assert!(Rights::parse("root").is_err());
        assert_eq!(Rights::ALL.to_string(), "read,write,admin");
        assert_eq!(Rights::WRITE.and(Rights::ADMIN).to_string(), "write,admin");
        assert_eq!(Rights::NONE.to_string(), "none");
        assert_eq!(Rights::READ.missing(Rights::READ), Rights::NONE);
        assert_eq!(
            Rights::READ.missing(Rights::ALL),
            Rights::WRITE.and(Rights::ADMIN)
        );
        assert!(Rights::ALL.missing(Rights::ADMIN).is_none());
    }
}
