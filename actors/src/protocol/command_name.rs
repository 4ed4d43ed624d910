//! The Redis name of a parsed command: what `CLIENT LIST` shows as a connection's last
//! command (`cmd=`). Kept apart from the command table (`command.rs`), which it reads; the
//! match is exhaustive, so a new command cannot be added without a name.

use super::command::{AclCommand, Command, TlsCommand};
use super::command_table::TableQuery;
use super::expiry_commands::LineExpiry;
use crate::store::expiry::{Expiry, TtlQuery};
use crate::store::Op;

impl Command {
    /// The command's name as Redis spells it (lower case; `client|list` for a subcommand).
    /// Where one variant serves several names (`DEL` and `UNLINK`, `PING msg` and `ECHO`), the
    /// first is given.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Put { .. } => "set",
            Command::Get { .. } => "get",
            Command::Del { .. } | Command::DelMany(_) => "del",
            Command::Ping => "ping",
            Command::Exit => "quit",
            Command::Info => "info",
            Command::Digest => "digest",
            Command::Wait { .. } => "wait",
            Command::Exists(_) => "exists",
            Command::MGet(_) => "mget",
            Command::MSet(_) => "mset",
            Command::DbSize => "dbsize",
            Command::Echo(_) => "echo",
            Command::CommandTable(query) => match query {
                TableQuery::All => "command",
                TableQuery::Count => "command|count",
                TableQuery::List => "command|list",
                TableQuery::Info(_) => "command|info",
                TableQuery::Docs => "command|docs",
                TableQuery::Help => "command|help",
            },
            Command::Client(sub) => sub.name(),
            Command::Accept => "select",
            Command::Hello { .. } => "hello",
            Command::Auth(_) => "auth",
            Command::Acl(AclCommand::Load) => "acl|load",
            Command::Acl(AclCommand::WhoAmI) => "acl|whoami",
            Command::Acl(AclCommand::Help) => "acl|help",
            Command::Tls(TlsCommand::Reload) => "tls|reload",
            Command::Tls(TlsCommand::Help) => "tls|help",
            Command::Type(_) => "type",
            Command::Time => "time",
            Command::ConfigGet(_) => "config|get",
            Command::Multi => "multi",
            Command::Exec => "exec",
            Command::Discard => "discard",
            Command::StringOp(op) => op_name(op),
            Command::Role => "role",
            Command::Failover { .. } => "failover",
            Command::Sentinel(_) => "sentinel",
            Command::Resync => "resync",
            Command::Watch(_) => "watch",
            Command::Unwatch => "unwatch",
            Command::LineExpiry(LineExpiry::Expire(_)) => "expire",
            Command::LineExpiry(LineExpiry::Ttl(_)) => "ttl",
            Command::LineExpiry(LineExpiry::Persist(_)) => "persist",
            Command::LastPos => "lastpos",
            Command::WaitPos(_) => "waitpos",
            Command::After(_, command) => command.name(),
        }
    }
}

/// The name of the string command that became `op`.
fn op_name(op: &Op) -> &'static str {
    match op {
        Op::Get(_) => "get",
        Op::Put(..) => "set",
        Op::Del(_) => "del",
        Op::Incr(_, 1) => "incr",
        Op::Incr(_, -1) => "decr",
        Op::Incr(_, delta) if *delta < 0 => "decrby",
        Op::Incr(..) => "incrby",
        Op::Append(..) => "append",
        Op::StrLen(_) => "strlen",
        Op::SetNx(..) => "setnx",
        Op::GetSet(..) => "getset",
        Op::GetDel(_) => "getdel",
        Op::Rename(_, _, false) => "rename",
        Op::Rename(_, _, true) => "renamenx",
        Op::Copy(..) => "copy",
        Op::MSetNx(_) => "msetnx",
        Op::MSet(_) => "mset",
        Op::DelMany(_) => "del",
        Op::Set(_) => "set",
        Op::Expire(_, Expiry::At(_), _) => "expireat",
        Op::Expire(..) => "expire",
        Op::Persist(_) => "persist",
        Op::Ttl(_, TtlQuery::Seconds) => "ttl",
        Op::Ttl(_, TtlQuery::Millis) => "pttl",
        Op::Ttl(_, TtlQuery::AtSeconds) => "expiretime",
        Op::Ttl(_, TtlQuery::AtMillis) => "pexpiretime",
        Op::GetEx(..) => "getex",
        Op::Watch(..) => "watch",
        Op::Unwatch(_) => "unwatch",
        Op::Exec(..) => "exec",
        Op::IncrByFloat(..) => "incrbyfloat",
        Op::GetRange(..) => "getrange",
        Op::SetRange(..) => "setrange",
        Op::Keys(_) => "keys",
        Op::Scan(_) => "scan",
        Op::RandomKey => "randomkey",
        Op::Clear => "flushall",
    }
}
