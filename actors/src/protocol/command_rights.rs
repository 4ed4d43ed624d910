//! Which rights each command needs (`auth/rights.rs`): what a user must hold for the session to
//! run it, else `NOPERM`; and which commands are logins, which the session answers alone.
//! Kept apart from the command table (`command.rs`), which it reads; the match is exhaustive,
//! so a new command cannot be added without deciding its rights.
//!
//! - `read`: commands that show keys or values (`GET`, `MGET`, `EXISTS`, `TTL`, `SCAN`,
//!   `KEYS`, `DBSIZE`, `WATCH`, ...).
//! - `write`: commands that change them. One that also answers a stored value (`GETSET`,
//!   `GETDEL`, `GETEX` with an expiry, `SET ... GET`) needs `read` too.
//! - `admin`: commands about the node: `INFO`, `DIGEST`, `FAILOVER`, `CONFIG`, `RESYNC`,
//!   `CLIENT LIST` and `CLIENT KILL` (other connections' addresses and names), `ACL LOAD`;
//!   `FLUSHALL`/`FLUSHDB` need `admin` and `write`.
//! - none: what concerns only the connection itself or finding the primary (`PING`, `ECHO`,
//!   `QUIT`, `HELLO`, `AUTH`, `SELECT 0`, `CLIENT ID`/`SETNAME`/..., `MULTI`/`EXEC`, `WAIT`,
//!   `LASTPOS`, `WAITPOS`, `ROLE`, `SENTINEL`, `COMMAND`, `TIME`). A connection must still
//!   have logged in for them, where the node asks for it.

use super::client_commands::ClientCommand;
use super::command::{AclCommand, Command, TlsCommand};
use super::expiry_commands::LineExpiry;
use crate::auth::rights::Rights;
use crate::store::Op;

impl Command {
    /// Whether the command changes who the connection is, or the node's users: `AUTH`,
    /// `HELLO ... AUTH`, `ACL LOAD`. The session answers it apart from the commands around it
    /// (the ones after it are planned once it is decided).
    pub fn is_login(&self) -> bool {
        matches!(
            self,
            Command::Auth(_)
                | Command::Acl(AclCommand::Load)
                | Command::Hello { auth: Some(_), .. }
        )
    }

    /// The rights a user must hold to run this command.
    pub fn rights(&self) -> Rights {
        match self {
            Command::Get { .. }
            | Command::Exists(_)
            | Command::MGet(_)
            | Command::DbSize
            | Command::Type(_)
            | Command::Watch(_)
            | Command::LineExpiry(LineExpiry::Ttl(_)) => Rights::READ,
            Command::Put { .. }
            | Command::Del { .. }
            | Command::DelMany(_)
            | Command::MSet(_)
            | Command::LineExpiry(_) => Rights::WRITE,
            Command::StringOp(op) => op_rights(op),
            Command::After(_, command) => command.rights(),
            Command::Info
            | Command::Digest
            | Command::Failover { .. }
            | Command::ConfigGet(_)
            | Command::Resync
            | Command::Client(ClientCommand::List(_) | ClientCommand::Kill { .. })
            | Command::Acl(AclCommand::Load)
            | Command::Tls(TlsCommand::Reload) => Rights::ADMIN,
            Command::Ping
            | Command::Exit
            | Command::Wait { .. }
            | Command::Echo(_)
            | Command::CommandTable(_)
            | Command::Client(_)
            | Command::Accept
            | Command::Hello { .. }
            | Command::Auth(_)
            | Command::Acl(_)
            | Command::Tls(TlsCommand::Help)
            | Command::Time
            | Command::Multi
            | Command::Exec
            | Command::Discard
            | Command::Unwatch
            | Command::Role
            | Command::Sentinel(_)
            | Command::LastPos
            | Command::WaitPos(_) => Rights::NONE,
        }
    }
}

/// The rights of the string command that became `op`.
fn op_rights(op: &Op) -> Rights {
    let read_write = Rights::READ.and(Rights::WRITE);
    match op {
        Op::Clear => Rights::WRITE.and(Rights::ADMIN),
        Op::GetSet(..) | Op::GetDel(_) | Op::GetEx(_, Some(_)) => read_write,
        Op::Set(args) if args.get => read_write,
        op if op.is_write() => Rights::WRITE,
        _ => Rights::READ,
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::protocol::command::from_resp;
    use crate::protocol::line_commands::parse;

    fn resp(request: &str) -> Rights {
        let mut args = request
            .split(' ')
            .map(|w| Bytes::from(w.to_string()))
            .collect();
        match from_resp(&mut args) {
            Some(Ok(command)) => command.rights(),
            other => panic!("{request}: {other:?}"),
        }
    }

    fn line(request: &str) -> Rights {
        match parse(&Bytes::from(request.to_string())) {
            Some(Ok(command)) => command.rights(),
            other => panic!("{request}: {other:?}"),
        }
    }

    #[test]
    fn each_command_needs_the_rights_its_effect_calls_for() {
        let (read, write, admin) = (Rights::READ, Rights::WRITE, Rights::ADMIN);
        for (request, rights) in [
            ("GET k", read),
            ("GET k AFTER 0:-:0 10", read),
            ("MGET a b", read),
            ("SCAN 0", read),
            ("TTL k", read),
            ("SET k v", write),
            ("SET k v EX 10", write),
            ("INCR k", write),
            ("DEL a b", write),
            ("GETSET k v", read.and(write)),
            ("GETDEL k", read.and(write)),
            ("SET k v GET", read.and(write)),
            ("GETEX k", read),
            ("GETEX k EX 5", read.and(write)),
            ("FLUSHALL", write.and(admin)),
            ("INFO", admin),
            ("DIGEST", admin),
            ("CONFIG GET maxmemory", admin),
            ("CLIENT LIST", admin),
            ("CLIENT KILL ID 7", admin),
            ("FAILOVER", admin),
            ("ACL LOAD", admin),
            ("CLIENT SETNAME me", Rights::NONE),
            ("ACL WHOAMI", Rights::NONE),
            ("PING", Rights::NONE),
            ("ROLE", Rights::NONE),
            ("WAIT 1 0", Rights::NONE),
        ] {
            assert_eq!(resp(request), rights, "{request}");
        }
        assert_eq!(line("PUT k v w"), write);
        assert_eq!(line("PUTEX k 10 v"), write);
        assert_eq!(line("TTL k"), read);
        assert_eq!(line("RESYNC"), admin);
        assert_eq!(line("AUTH pw"), Rights::NONE);
    }
}
