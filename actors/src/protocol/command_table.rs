//! The table of the commands a node supports, in one place: what `COMMAND`, `COMMAND COUNT`,
//! `COMMAND INFO` and `COMMAND LIST` answer, in the shape Redis gives them (name, arity, flags,
//! first key, last key, step, ACL categories, ...), so that clients which read it on connect
//! (cluster-aware clients, `redis-cli`'s hints) see what this server really does.
//!
//! The parsers (`command.rs` and the files it delegates to) must accept exactly the commands
//! listed here: the tests in `command_table/tests.rs` check both directions against every
//! command name Redis has, so the table cannot drift from the parsers.

use bytes::Bytes;

use super::error::CommandError;
use super::reply::Reply;
use super::words::printable;

/// One command as `COMMAND INFO` describes it (the fields Redis gives, with the same meaning).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandSpec {
    /// The name, lower case.
    pub name: &'static str,
    /// How many words a request has, the name included; negative: at least that many.
    pub arity: i64,
    /// Redis's command flags (`write`, `readonly`, `fast`, `admin`, ...).
    pub flags: &'static [&'static str],
    /// The position of the first key argument (0: the command takes no key).
    pub first_key: i64,
    /// The position of the last key argument (-1: the last argument).
    pub last_key: i64,
    /// The distance between key arguments (2 for `MSET`'s key-value pairs).
    pub step: i64,
    /// The ACL category of its kind (`@string`, `@keyspace`, `@connection`, ...).
    pub category: &'static str,
    /// Whether the line protocol knows the command too (with the same name).
    pub line: bool,
}

/// Shorthand for a table row: name, arity, flags, `(first, last, step)` keys, category.
const fn spec(
    name: &'static str,
    arity: i64,
    flags: &'static [&'static str],
    keys: (i64, i64, i64),
    category: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        arity,
        flags,
        first_key: keys.0,
        last_key: keys.1,
        step: keys.2,
        category,
        line: false,
    }
}

/// The same row, for a command the line protocol knows too.
const fn both(row: CommandSpec) -> CommandSpec {
    CommandSpec { line: true, ..row }
}

const READ: &[&str] = &["readonly"];
const READ_FAST: &[&str] = &["readonly", "fast"];
const WRITE: &[&str] = &["write"];
const WRITE_FAST: &[&str] = &["write", "fast"];
const WRITE_OOM: &[&str] = &["write", "denyoom"];
const WRITE_OOM_FAST: &[&str] = &["write", "denyoom", "fast"];
const FAST: &[&str] = &["fast"];
const STALE: &[&str] = &["loading", "stale"];
const STALE_FAST: &[&str] = &["loading", "stale", "fast"];
const NOSCRIPT: &[&str] = &["noscript", "loading", "stale", "fast"];
const ADMIN: &[&str] = &["admin", "noscript", "loading", "stale"];
/// What a connection may send before it has logged in (Redis's `no_auth` flag).
const NO_AUTH: &[&str] = &["noscript", "loading", "stale", "fast", "no_auth"];
/// No key: positions 0, 0, 0.
const NONE: (i64, i64, i64) = (0, 0, 0);
/// One key, the first argument.
const ONE: (i64, i64, i64) = (1, 1, 1);
/// Every argument is a key.
const ALL: (i64, i64, i64) = (1, -1, 1);
/// Two keys, the first two arguments.
const TWO: (i64, i64, i64) = (1, 2, 1);
/// Key-value pairs.
const PAIRS: (i64, i64, i64) = (1, -1, 2);

/// Every command a node supports over RESP, sorted by name; `both` marks those the line
/// protocol knows too (it spells `SET` and `QUIT` its own way: [`LINE_ONLY`]).
pub const TABLE: &[CommandSpec] = &[
    both(spec("acl", -2, STALE, NONE, "@admin")),
    spec("append", 3, WRITE_OOM_FAST, ONE, "@string"),
    both(spec("auth", -2, NO_AUTH, NONE, "@connection")),
    spec("client", -2, STALE, NONE, "@connection"),
    spec("command", -1, STALE, NONE, "@connection"),
    spec("config", -2, ADMIN, NONE, "@admin"),
    spec("copy", -3, WRITE_OOM, TWO, "@keyspace"),
    spec("dbsize", 1, READ_FAST, NONE, "@keyspace"),
    spec("decr", 2, WRITE_OOM_FAST, ONE, "@string"),
    spec("decrby", 3, WRITE_OOM_FAST, ONE, "@string"),
    both(spec("del", -2, WRITE, ALL, "@keyspace")),
    both(spec("digest", 1, READ, NONE, "@server")),
    spec("discard", 1, NOSCRIPT, NONE, "@transaction"),
    spec("echo", 2, FAST, NONE, "@connection"),
    spec(
        "exec",
        1,
        &["noscript", "loading", "stale"],
        NONE,
        "@transaction",
    ),
    spec("exists", -2, READ_FAST, ALL, "@keyspace"),
    both(spec("expire", -3, WRITE_FAST, ONE, "@keyspace")),
    spec("expireat", -3, WRITE_FAST, ONE, "@keyspace"),
    spec("expiretime", 2, READ_FAST, ONE, "@keyspace"),
    both(spec("failover", -1, ADMIN, NONE, "@admin")),
    spec("flushall", -1, WRITE, NONE, "@keyspace"),
    spec("flushdb", -1, WRITE, NONE, "@keyspace"),
    both(spec("get", -2, READ_FAST, ONE, "@string")),
    spec("getdel", 2, WRITE_FAST, ONE, "@string"),
    spec("getex", -2, WRITE_FAST, ONE, "@string"),
    spec("getrange", 4, READ, ONE, "@string"),
    spec("getset", 3, WRITE_OOM_FAST, ONE, "@string"),
    spec("hello", -1, NO_AUTH, NONE, "@connection"),
    spec("incr", 2, WRITE_OOM_FAST, ONE, "@string"),
    spec("incrby", 3, WRITE_OOM_FAST, ONE, "@string"),
    spec("incrbyfloat", 3, WRITE_OOM_FAST, ONE, "@string"),
    both(spec("info", -1, STALE, NONE, "@server")),
    spec("keys", 2, READ, NONE, "@keyspace"),
    both(spec("lastpos", 1, STALE_FAST, NONE, "@connection")),
    spec("mget", -2, READ_FAST, ALL, "@string"),
    spec("mset", -3, WRITE_OOM, PAIRS, "@string"),
    spec("msetnx", -3, WRITE_OOM, PAIRS, "@string"),
    spec("multi", 1, NOSCRIPT, NONE, "@transaction"),
    both(spec("persist", 2, WRITE_FAST, ONE, "@keyspace")),
    spec("pexpire", -3, WRITE_FAST, ONE, "@keyspace"),
    spec("pexpireat", -3, WRITE_FAST, ONE, "@keyspace"),
    spec("pexpiretime", 2, READ_FAST, ONE, "@keyspace"),
    both(spec("ping", -1, FAST, NONE, "@connection")),
    spec("psetex", 4, WRITE_OOM, ONE, "@string"),
    spec("pttl", 2, READ_FAST, ONE, "@keyspace"),
    spec("quit", -1, NO_AUTH, NONE, "@connection"),
    spec("randomkey", 1, READ, NONE, "@keyspace"),
    spec("rename", 3, WRITE, TWO, "@keyspace"),
    spec("renamenx", 3, WRITE_FAST, TWO, "@keyspace"),
    both(spec("resync", 1, ADMIN, NONE, "@admin")),
    both(spec("role", 1, NOSCRIPT, NONE, "@admin")),
    spec("scan", -2, READ, NONE, "@keyspace"),
    spec("select", 2, STALE_FAST, NONE, "@connection"),
    spec("sentinel", -2, ADMIN, NONE, "@admin"),
    spec("set", -3, WRITE_OOM, ONE, "@string"),
    spec("setex", 4, WRITE_OOM, ONE, "@string"),
    spec("setnx", 3, WRITE_OOM_FAST, ONE, "@string"),
    spec("setrange", 4, WRITE_OOM, ONE, "@string"),
    spec("strlen", 2, READ_FAST, ONE, "@string"),
    spec("substr", 4, READ, ONE, "@string"),
    spec("time", 1, STALE_FAST, NONE, "@server"),
    both(spec("tls", -2, ADMIN, NONE, "@admin")),
    both(spec("ttl", 2, READ_FAST, ONE, "@keyspace")),
    spec("type", 2, READ_FAST, ONE, "@keyspace"),
    spec("unlink", -2, WRITE_FAST, ALL, "@keyspace"),
    spec("unwatch", 1, NOSCRIPT, NONE, "@transaction"),
    both(spec("wait", 3, &["noscript"], NONE, "@connection")),
    both(spec(
        "waitpos",
        3,
        &["noscript", "stale"],
        NONE,
        "@connection",
    )),
    spec("watch", -2, NOSCRIPT, ALL, "@transaction"),
];

/// The line protocol's verbs that RESP spells otherwise (`SET`, `QUIT`, `SETEX`): not in [`TABLE`],
/// which is what RESP clients are told.
pub const LINE_ONLY: &[&str] = &["put", "exit", "putex"];

/// The command named `name` (any case), if the node supports it over RESP.
pub fn lookup(name: &[u8]) -> Option<&'static CommandSpec> {
    TABLE
        .iter()
        .find(|spec| spec.name.as_bytes().eq_ignore_ascii_case(name))
}

/// What a RESP `COMMAND ...` request asks about the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TableQuery {
    /// `COMMAND`: every command, described.
    All,
    /// `COMMAND COUNT`: how many commands there are.
    Count,
    /// `COMMAND LIST`: their names.
    List,
    /// `COMMAND INFO [name ...]`: each named command described, or nil; every one without names.
    Info(Vec<Bytes>),
    /// `COMMAND DOCS [name ...]`: an empty map (the docs are in docs/protocol.md).
    Docs,
    /// `COMMAND HELP`.
    Help,
}

/// RESP `COMMAND [subcommand ...]` (`args` starts with the command's own name).
pub fn parse_resp_command(args: &[Bytes]) -> Result<TableQuery, CommandError> {
    let Some(sub) = args.get(1) else {
        return Ok(TableQuery::All);
    };
    let lower = String::from_utf8_lossy(sub).to_ascii_lowercase();
    let query = match (lower.as_str(), args.len()) {
        ("count", 2) => TableQuery::Count,
        ("list", 2) => TableQuery::List,
        ("help", 2) => TableQuery::Help,
        ("info", _) => TableQuery::Info(args[2..].to_vec()),
        ("docs", _) => TableQuery::Docs,
        ("count" | "list" | "help", _) => {
            return Err(CommandError::Redis(format!(
                "ERR wrong number of arguments for 'command|{lower}' command"
            )))
        }
        _ => return Err(unknown_subcommand("COMMAND", sub)),
    };
    Ok(query)
}

/// Redis's error for a subcommand it does not know, of container command `command`.
pub fn unknown_subcommand(command: &str, sub: &[u8]) -> CommandError {
    CommandError::Redis(format!(
        "ERR unknown subcommand '{}'. Try {command} HELP.",
        printable(sub)
    ))
}

/// The reply to `query`, as Redis shapes it.
pub fn answer(query: TableQuery) -> Reply {
    match query {
        TableQuery::All => Reply::Array(TABLE.iter().map(describe).collect()),
        TableQuery::Count => Reply::Integer(TABLE.len() as i64),
        TableQuery::List => Reply::Array(TABLE.iter().map(|spec| text(spec.name)).collect()),
        TableQuery::Info(names) if names.is_empty() => answer(TableQuery::All),
        TableQuery::Info(names) => Reply::Array(
            names
                .iter()
                .map(|name| lookup(name).map_or(Reply::NotFound, describe))
                .collect(),
        ),
        TableQuery::Docs => Reply::Map(Vec::new()),
        TableQuery::Help => help(&[
            "COMMAND <subcommand> [<arg> [value] [opt] ...]. Subcommands are:",
            "(no subcommand)",
            "    Return details about all commands.",
            "COUNT",
            "    Return the total number of commands.",
            "LIST",
            "    Return the names of all commands.",
            "INFO [<command-name> ...]",
            "    Return details about the named commands, or all of them.",
            "DOCS [<command-name> ...]",
            "    An empty map: the commands are documented in docs/protocol.md.",
        ]),
    }
}

/// A container command's `HELP`, as Redis gives it: its lines as status replies (the first
/// one the heading), then Redis's closing lines.
pub fn help(lines: &[&'static str]) -> Reply {
    let closing = ["HELP", "    Print this help."];
    Reply::Array(
        lines
            .iter()
            .chain(closing.iter())
            .map(|line| Reply::Status(line))
            .collect(),
    )
}

/// A bulk string of a static text.
fn text(s: &'static str) -> Reply {
    Reply::Value(Bytes::from_static(s.as_bytes()))
}

/// One command as `COMMAND INFO` gives it in Redis 7: name, arity, flags, first key, last key,
/// step, ACL categories, then tips, key specifications and subcommands (none here).
fn describe(spec: &'static CommandSpec) -> Reply {
    let flag = |name: &str| spec.flags.contains(&name);
    let mut categories = Vec::with_capacity(4);
    if flag("write") {
        categories.push("@write");
    } else if flag("readonly") {
        categories.push("@read");
    }
    categories.push(spec.category);
    categories.push(if flag("fast") { "@fast" } else { "@slow" });
    if flag("admin") {
        categories.push("@dangerous");
    }
    Reply::Array(vec![
        text(spec.name),
        Reply::Integer(spec.arity),
        Reply::Array(spec.flags.iter().map(|f| Reply::Status(f)).collect()),
        Reply::Integer(spec.first_key),
        Reply::Integer(spec.last_key),
        Reply::Integer(spec.step),
        Reply::Array(categories.into_iter().map(Reply::Status).collect()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
        Reply::Array(Vec::new()),
    ])
}

#[cfg(test)]
mod tests;
