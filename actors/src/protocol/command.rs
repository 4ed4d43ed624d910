//! The command table: every client command, its parse in both protocols, and how it is
//! answered.
//!
//! Parsing turns raw bytes into a typed [`Command`] (or a [`CommandError`] that becomes the
//! client's error reply) before anything reaches the Store, so the Store only ever sees
//! well-formed operations: [`from_resp`] reads one RESP request (and
//! [`super::line_commands::parse`] one line of the line protocol). [`Command::plan`] then says how each is answered: by Store operations whose
//! outcomes [`Fold`] into one reply, by a reply at once, or from the node's own state
//! ([`NodeQuery`]).
//!
//! Adding a command: a variant of [`Command`], its arm in `line_commands::parse` and/or
//! `parse_resp`, its arm in [`Command::plan`], and, if it needs one, the Store [`Op`] it
//! takes; then its row in `command_table.rs` (what `COMMAND` tells clients; its tests fail
//! without it) and its name in `command_name.rs` (the build fails without it). The tests in
//! `command/tests.rs` are the table's specification.

use bytes::Bytes;

use super::auth_commands::{self, acl_help, AuthCommand};
pub use super::auth_commands::{AclCommand, Login};
use super::client_commands::parse_resp_client;
pub use super::client_commands::ClientCommand;
pub use super::cluster_commands::SentinelQuery;
use super::cluster_commands::{parse_resp_failover, parse_resp_sentinel, FailoverArgs};
use super::command_table::{self, parse_resp_command, TableQuery};
pub use super::error::CommandError;
use super::expiry_commands::{expiry_op, LineExpiry};
use super::keyspace_commands::keyspace_op;
pub use super::position_commands::PositionWait;
use super::position_commands::{self, PositionCommand};
use super::reply::{ErrorReply, Reply};
use super::string_commands::string_op;
pub use super::tls_commands::TlsCommand;
use super::tls_commands::{self, tls_help};
use super::words::printable;
use crate::store::expiry::TtlQuery;
use crate::store::{Op, Outcome};

/// One client request, from either protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `PUT <key> <value>`: the value is the rest of the line after the key, leading blanks
    /// trimmed, so it may contain spaces.
    Put {
        /// The key to set: a slice of the request, which the Store copies.
        key: Bytes,
        /// The value to store under it (in RESP, `SET`'s second argument).
        value: Bytes,
    },
    /// `GET <key>`
    Get {
        /// The key to read.
        key: Bytes,
    },
    /// `DEL <key>`
    Del {
        /// The key to remove.
        key: Bytes,
    },
    /// `PING`: a liveness check that never touches the Store.
    Ping,
    /// `EXIT`: say goodbye and close the connection.
    Exit,
    /// `INFO`: the node's role, replication state and counters, as `field=value` pairs.
    Info,
    /// `DIGEST`: a hash of the whole data set and the offset it reflects.
    Digest,
    /// `WAIT <numreplicas> <timeout-ms>`: block until that many replicas acknowledged every
    /// write this connection made, or the timeout passes.
    Wait {
        /// How many replicas must have acknowledged.
        replicas: u32,
        /// The longest to wait, in milliseconds; 0 waits for as long as it takes, as in Redis.
        timeout_ms: u64,
    },
    /// RESP `DEL key [key ...]`: answers how many of the keys existed.
    DelMany(Vec<Bytes>),
    /// RESP `EXISTS key [key ...]`: answers how many of the keys exist.
    Exists(Vec<Bytes>),
    /// RESP `MGET key [key ...]`: answers each value, or nil.
    MGet(Vec<Bytes>),
    /// RESP `MSET key value [key value ...]`.
    MSet(Vec<(Bytes, Bytes)>),
    /// RESP `DBSIZE`: the number of keys.
    DbSize,
    /// RESP `ECHO msg` and `PING msg`: answers `msg`.
    Echo(Bytes),
    /// RESP `COMMAND ...`: the table of supported commands (`command_table.rs`).
    CommandTable(TableQuery),
    /// RESP `CLIENT ...`: about this connection or the node's others.
    Client(ClientCommand),
    /// Accepted and answered `OK` with no effect: `SELECT 0`.
    Accept,
    /// RESP `HELLO [protover [AUTH user password] [SETNAME name]]`: switches to RESP3 or
    /// back to RESP2, logging in first with `AUTH`.
    Hello {
        /// The protocol version asked for, if any: 2 or 3; anything else is refused with `NOPROTO`.
        version: Option<u64>,
        /// `SETNAME`'s name for the connection, as `CLIENT SETNAME` gives it.
        name: Option<Bytes>,
        /// `AUTH`'s user and password: the connection logs in as that user first.
        auth: Option<Box<Login>>,
    },
    /// `AUTH [user] password`: log the connection in.
    Auth(Login),
    /// `ACL LOAD`, `ACL WHOAMI`, `ACL HELP`.
    Acl(AclCommand),
    /// `TLS RELOAD`, `TLS HELP`.
    Tls(TlsCommand),
    /// RESP `TYPE key`: `string` or `none` (strings are the only type).
    Type(Bytes),
    /// RESP `TIME`: the server's clock, seconds and microseconds.
    Time,
    /// RESP `CONFIG GET pattern [pattern ...]`: the settings clients read, as Redis names them.
    ConfigGet(Vec<Bytes>),
    /// `MULTI`: start queuing commands for one atomic `EXEC`.
    Multi,
    /// `EXEC`: run the queued commands as one step of the Store.
    Exec,
    /// `DISCARD`: drop the queued commands.
    Discard,
    /// RESP `WATCH key [key ...]`: the next `EXEC` runs only if none of these keys changed.
    Watch(Vec<Bytes>),
    /// RESP `UNWATCH`: forget the keys watched.
    Unwatch,
    /// RESP `INCR`, `DECR`, `INCRBY`, `DECRBY`, `APPEND`, `STRLEN`, `SETNX`, `GETSET`,
    /// `GETDEL`, ..., and the expiry commands (`SET` with options, `EXPIRE`, `TTL`, ...): one
    /// op of the Store, answered as Redis answers it.
    StringOp(Op),
    /// The line protocol's `EXPIRE`, `TTL`, `PERSIST`, answered in its words.
    LineExpiry(LineExpiry),
    /// `ROLE`: whether this node is the primary or a replica now, as Redis answers it.
    Role,
    /// `FAILOVER [TO <host:port>]` (RESP: `FAILOVER [TO host port] [TIMEOUT ms]`): hand the
    /// primary role to a caught-up member, with no write lost.
    Failover {
        /// The member to hand over to, as `host:port`.
        to: Option<String>,
        /// How long the handover may take, in milliseconds.
        timeout_ms: u64,
    },
    /// RESP `SENTINEL ...`: the Sentinel discovery commands, so that Redis clients with
    /// Sentinel support find the primary of a failover cluster and follow its failovers.
    Sentinel(SentinelQuery),
    /// `RESYNC`, on a replica: give up its data and take a full copy from the next primary
    /// stream, even one whose history is behind this replica's. The operator's answer to a
    /// primary that refuses to overwrite the replica (`INFO`: `replicaN_state=refused`).
    Resync,
    /// `LASTPOS`: the position token of what this connection's replies have shown it.
    LastPos,
    /// `WAITPOS <token> <timeout-ms>`: until this node's data holds the token's position.
    WaitPos(PositionWait),
    /// A read that waits for a position first: `GET <key> AFTER <token> <timeout-ms>`.
    After(PositionWait, Box<Command>),
}

impl From<FailoverArgs> for Command {
    fn from(args: FailoverArgs) -> Command {
        Command::Failover {
            to: args.to,
            timeout_ms: args.timeout_ms,
        }
    }
}

impl From<AuthCommand> for Command {
    fn from(command: AuthCommand) -> Command {
        match command {
            AuthCommand::Auth(login) => Command::Auth(login),
            AuthCommand::Acl(acl) => Command::Acl(acl),
            AuthCommand::Hello {
                version,
                name,
                auth,
            } => Command::Hello {
                version,
                name,
                auth: auth.map(Box::new),
            },
        }
    }
}

impl From<PositionCommand> for Command {
    fn from(command: PositionCommand) -> Command {
        match command {
            PositionCommand::LastPos => Command::LastPos,
            PositionCommand::WaitPos(wait) => Command::WaitPos(wait),
            PositionCommand::Get { key, after: None } => Command::Get { key },
            PositionCommand::Get {
                key,
                after: Some(wait),
            } => Command::After(wait, Box::new(Command::Get { key })),
        }
    }
}

impl Command {
    /// Whether the command changes data, which a replica refuses.
    pub fn is_write(&self) -> bool {
        match self {
            Command::StringOp(op) => op.is_write(),
            Command::After(_, command) => command.is_write(),
            Command::LineExpiry(LineExpiry::Ttl(_)) => false,
            Command::LineExpiry(_) => true,
            _ => matches!(
                self,
                Command::Put { .. } | Command::Del { .. } | Command::DelMany(_) | Command::MSet(_)
            ),
        }
    }
}

/// One non-blank request, parsed or refused.
pub type Request = Result<Command, CommandError>;

/// How a command is answered: what the session does with it.
#[derive(Debug)]
pub enum Plan {
    /// By the Store: the command appended `ops` operations to the batch, whose outcomes
    /// `fold` turns into its one reply.
    Store {
        /// How many operations the command appended to the batch: its share of the outcomes.
        ops: usize,
        /// How those outcomes become the command's reply.
        fold: Fold,
    },
    /// At once, with this reply; nothing else is asked.
    Reply(Reply),
    /// From what the node knows about itself, not its data.
    Node(NodeQuery),
    /// `HELLO`: the server's description (which names the session), or a refusal of RESP3.
    Hello {
        /// The protocol version the client asked for, if any.
        version: Option<u64>,
        /// The name `SETNAME` gives the connection, if any.
        name: Option<Bytes>,
    },
    /// `CLIENT ...`: by the session, from the node's registry of connections.
    Client(ClientCommand),
    /// `ACL WHOAMI`: by the session, which knows its user.
    WhoAmI,
    /// `Goodbye`, then the connection closes; nothing after it in the batch is answered.
    Exit,
    /// `WATCH` these keys, for this connection (which the session names to the Store).
    Watch(Vec<Bytes>),
    /// `UNWATCH` this connection's keys.
    Unwatch,
    /// `LASTPOS`: by the session, from what its replies have shown.
    LastPos,
    /// `WAITPOS`: the session waits for the node's position before it sends the batch.
    WaitPos(PositionWait),
    /// This plan, once the node's position holds the wait's (or the wait's error instead).
    After(PositionWait, Box<Plan>),
}

/// A command answered from the node's state rather than by the Store's operations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeQuery {
    /// `DBSIZE`: the number of keys.
    DbSize,
    /// `INFO`: role, replication and counters.
    Info,
    /// `DIGEST`: a hash of the whole data set.
    Digest,
    /// `WAIT`: until `replicas` replicas acknowledged this connection's writes.
    Wait {
        /// How many replicas must have acknowledged the connection's latest write.
        replicas: u32,
        /// The longest to wait, in milliseconds; 0 waits for as long as it takes.
        timeout_ms: u64,
    },
    /// `RESYNC`: a replica gives up its data for its primary's.
    Resync,
    /// `ROLE`.
    Role,
    /// `CONFIG GET`.
    ConfigGet(Vec<Bytes>),
    /// `FAILOVER`.
    Failover {
        /// The member to hand over to.
        to: Option<String>,
        /// How long it may take, in milliseconds.
        timeout_ms: u64,
    },
    /// `SENTINEL ...`.
    Sentinel(SentinelQuery),
    /// `TLS RELOAD`.
    TlsReload,
}

/// How the outcomes of one command's Store operations become its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fold {
    /// One op: its value, `OK` or not found.
    One,
    /// RESP `EXISTS`: how many keys were found.
    CountFound,
    /// RESP `MGET`: each value or nil.
    Values,
    /// RESP `MSET`: `OK`.
    AllOk,
    /// RESP `TYPE`: `string` for a key found, `none` otherwise.
    Type,
    /// `EXEC`'s check of the keys watched: 1 (the transaction runs) or 0 (it was skipped).
    ExecCheck,
    /// Line `EXPIRE`: `OK` for 1, `NOT_FOUND` for 0.
    OkIfOne,
    /// Line `TTL`: the number, or `NOT_FOUND` for -2 (no such key).
    TtlOrNotFound,
    /// Line `PERSIST` (a `PERSIST` then a `TTL`): `NOT_FOUND` when the `TTL` found no key,
    /// else `OK`.
    OkIfFoundAfter,
}

impl Command {
    /// How this command is answered. Store operations are appended to `ops`, the batch a
    /// session sends the Store in one message, so planning allocates nothing per request.
    pub fn plan(self, ops: &mut Vec<Op>) -> Plan {
        match self {
            Command::Get { key } => store(ops, [Op::Get(key)], Fold::One),
            Command::Put { key, value } => store(ops, [Op::Put(key, value)], Fold::One),
            Command::Del { key } => store(ops, [Op::Del(key)], Fold::One),
            Command::StringOp(op) => store(ops, [op], Fold::One),
            Command::LineExpiry(LineExpiry::Expire(op)) => store(ops, [op], Fold::OkIfOne),
            Command::LineExpiry(LineExpiry::Ttl(key)) => {
                store(ops, [Op::Ttl(key, TtlQuery::Seconds)], Fold::TtlOrNotFound)
            }
            Command::LineExpiry(LineExpiry::Persist(key)) => {
                let then_ttl = Op::Ttl(key.clone(), TtlQuery::Seconds);
                store(ops, [Op::Persist(key), then_ttl], Fold::OkIfFoundAfter)
            }
            Command::Type(key) => store(ops, [Op::Get(key)], Fold::Type),
            Command::ConfigGet(patterns) => Plan::Node(NodeQuery::ConfigGet(patterns)),
            Command::Time => {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap_or_default();
                let text = |n: u64| Reply::Value(Bytes::from(n.to_string()));
                Plan::Reply(Reply::Array(vec![
                    text(now.as_secs()),
                    text(u64::from(now.subsec_micros())),
                ]))
            }
            // Handled by the session's transaction state before planning; never planned.
            Command::Multi | Command::Exec | Command::Discard => Plan::Reply(Reply::Ok),
            Command::Watch(keys) => Plan::Watch(keys),
            Command::Unwatch => Plan::Unwatch,
            // One op: its deletes are one atomic group in the log and the stream.
            Command::DelMany(keys) => store(ops, [Op::DelMany(keys)], Fold::One),
            Command::Exists(keys) => store(ops, keys.into_iter().map(Op::Get), Fold::CountFound),
            Command::MGet(keys) => store(ops, keys.into_iter().map(Op::Get), Fold::Values),
            // One op: its puts are one atomic group in the log and the stream.
            Command::MSet(pairs) => store(ops, [Op::MSet(pairs)], Fold::AllOk),
            Command::Ping => Plan::Reply(Reply::Pong),
            Command::Echo(message) => Plan::Reply(Reply::Value(message)),
            Command::CommandTable(query) => Plan::Reply(command_table::answer(query)),
            Command::Client(command) => Plan::Client(command),
            Command::Accept => Plan::Reply(Reply::Ok),
            Command::Exit => Plan::Exit,
            Command::DbSize => Plan::Node(NodeQuery::DbSize),
            Command::Info => Plan::Node(NodeQuery::Info),
            Command::Digest => Plan::Node(NodeQuery::Digest),
            Command::Resync => Plan::Node(NodeQuery::Resync),
            Command::Role => Plan::Node(NodeQuery::Role),
            Command::Failover { to, timeout_ms } => {
                Plan::Node(NodeQuery::Failover { to, timeout_ms })
            }
            Command::Sentinel(query) => Plan::Node(NodeQuery::Sentinel(query)),
            Command::Wait {
                replicas,
                timeout_ms,
            } => Plan::Node(NodeQuery::Wait {
                replicas,
                timeout_ms,
            }),
            Command::Hello {
                version,
                name,
                auth: None,
            } => Plan::Hello { version, name },
            Command::Acl(AclCommand::WhoAmI) => Plan::WhoAmI,
            Command::Acl(AclCommand::Help) => Plan::Reply(acl_help()),
            Command::Tls(TlsCommand::Reload) => Plan::Node(NodeQuery::TlsReload),
            Command::Tls(TlsCommand::Help) => Plan::Reply(tls_help()),
            // The session answers these apart (`is_login`): never planned.
            Command::Auth(_) | Command::Acl(AclCommand::Load) | Command::Hello { .. } => {
                Plan::Reply(Reply::Error(ErrorReply::Command(CommandError::Redis(
                    "ERR Command not allowed inside a transaction".into(),
                ))))
            }
            Command::LastPos => Plan::LastPos,
            Command::WaitPos(wait) => Plan::WaitPos(wait),
            Command::After(wait, command) => Plan::After(wait, Box::new(command.plan(ops))),
        }
    }
}

/// Append a command's operations to the batch; answers the plan that folds their outcomes back
/// into the command's one reply.
fn store(ops: &mut Vec<Op>, new: impl IntoIterator<Item = Op>, fold: Fold) -> Plan {
    let before = ops.len();
    ops.extend(new);
    Plan::Store {
        ops: ops.len() - before,
        fold,
    }
}

impl Fold {
    /// The reply to one command from the outcomes of its ops.
    pub fn reply(self, outcomes: impl Iterator<Item = Outcome>) -> Reply {
        let mut outcomes = outcomes;
        match self {
            Fold::One => outcomes.next().map_or(Reply::NotFound, Reply::from),
            Fold::CountFound => {
                Reply::Integer(outcomes.filter(|o| matches!(o, Outcome::Value(_))).count() as i64)
            }
            Fold::Values => Reply::Array(outcomes.map(Reply::from).collect()),
            Fold::AllOk => Reply::Ok,
            Fold::Type => match outcomes.next() {
                Some(Outcome::Value(_)) => Reply::Status("string"),
                _ => Reply::Status("none"),
            },
            Fold::ExecCheck => match outcomes.next() {
                Some(Outcome::Number(0, _)) => Reply::Integer(0),
                _ => Reply::Integer(1),
            },
            Fold::OkIfOne => match outcomes.next() {
                Some(Outcome::Number(1, _)) => Reply::Ok,
                Some(Outcome::Refused(why)) => Outcome::Refused(why).into(),
                _ => Reply::NotFound,
            },
            Fold::TtlOrNotFound => match outcomes.next() {
                Some(Outcome::Number(-2, _)) | None => Reply::NotFound,
                Some(other) => other.into(),
            },
            Fold::OkIfFoundAfter => match outcomes.nth(1) {
                Some(Outcome::Number(-2, _)) | None => Reply::NotFound,
                Some(_) => Reply::Ok,
            },
        }
    }
}

/// The most argument slots a connection keeps between requests.
const KEEP_ARGS: usize = 1024;

/// Parse a RESP request (the array's elements: the command name, then its arguments).
///
/// Answers `None` for an empty array, which Redis ignores. Errors are worded as Redis words
/// them, so clients and people who know Redis recognise them. The arguments are taken out of
/// `args`, which is left empty, so that its memory serves the connection's next request.
pub fn from_resp(args: &mut Vec<Bytes>) -> Option<Result<Command, CommandError>> {
    let command = parse_resp(args);
    // Emptied for the decoder to fill again: one argument list per connection, not per request.
    // One that a huge request made large is given back, not kept by an idle connection.
    args.clear();
    if args.capacity() > KEEP_ARGS {
        *args = Vec::new();
    }
    command
}

fn parse_resp(args: &mut Vec<Bytes>) -> Option<Result<Command, CommandError>> {
    if args.is_empty() {
        return None;
    }
    // Lower-cased on the stack: this runs for every request, and no command name is long.
    let mut lower = [0u8; 16];
    let name = match args[0].len() {
        n if n <= lower.len() => {
            lower[..n].copy_from_slice(&args[0]);
            lower[..n].make_ascii_lowercase();
            // Not UTF-8, or too long: no command has such a name; it is reported as unknown.
            std::str::from_utf8(&lower[..n]).unwrap_or("")
        }
        _ => "",
    };
    let argc = args.len();
    let wrong_args = || {
        CommandError::Redis(format!(
            "ERR wrong number of arguments for '{}' command",
            printable(name.as_bytes())
        ))
    };
    let integer = |arg: &Bytes| -> Result<u64, CommandError> {
        std::str::from_utf8(arg)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| {
                CommandError::Redis("ERR value is not an integer or out of range".into())
            })
    };
    let keys = |args: &mut Vec<Bytes>| args.drain(1..).collect::<Vec<_>>();
    let command = match (name, argc) {
        (
            "incr" | "decr" | "incrby" | "decrby" | "append" | "strlen" | "setnx" | "getset"
            | "getdel" | "rename" | "renamenx" | "copy" | "msetnx",
            _,
        ) => string_op(name, args).map(Command::StringOp),
        ("set", n) if n > 3 => expiry_op(name, args).map(Command::StringOp),
        (
            "flushdb" | "flushall" | "keys" | "scan" | "randomkey" | "incrbyfloat" | "getrange"
            | "substr" | "setrange",
            _,
        ) => keyspace_op(name, args).map(Command::StringOp),
        (
            "setex" | "psetex" | "expire" | "pexpire" | "expireat" | "pexpireat" | "ttl" | "pttl"
            | "expiretime" | "pexpiretime" | "persist" | "getex",
            _,
        ) => expiry_op(name, args).map(Command::StringOp),
        ("get", 5) | ("lastpos" | "waitpos", _) => {
            position_commands::parse_resp(name, args).map(Command::from)
        }
        ("get", 2) => Ok(Command::Get {
            key: args.swap_remove(1),
        }),
        ("set", 3) => {
            let value = args.swap_remove(2);
            let key = args.swap_remove(1);
            Ok(Command::Put { key, value })
        }
        ("del" | "unlink", n) if n >= 2 => Ok(Command::DelMany(keys(args))),
        ("type", 2) => Ok(Command::Type(args.swap_remove(1))),
        ("time", 1) => Ok(Command::Time),
        ("exists", n) if n >= 2 => Ok(Command::Exists(keys(args))),
        ("mget", n) if n >= 2 => Ok(Command::MGet(keys(args))),
        ("mset", n) if n >= 3 && n % 2 == 1 => {
            let rest = keys(args);
            let mut pairs = Vec::with_capacity(rest.len() / 2);
            let mut rest = rest.into_iter();
            while let (Some(key), Some(value)) = (rest.next(), rest.next()) {
                pairs.push((key, value));
            }
            Ok(Command::MSet(pairs))
        }
        ("dbsize", 1) => Ok(Command::DbSize),
        ("ping", 1) => Ok(Command::Ping),
        ("ping", 2) | ("echo", 2) => Ok(Command::Echo(args.swap_remove(1))),
        ("info", _) => Ok(Command::Info),
        ("digest", 1) => Ok(Command::Digest),
        ("resync", 1) => Ok(Command::Resync),
        ("role", 1) => Ok(Command::Role),
        ("multi", 1) => Ok(Command::Multi),
        ("exec", 1) => Ok(Command::Exec),
        ("discard", 1) => Ok(Command::Discard),
        ("watch", n) if n >= 2 => Ok(Command::Watch(keys(args))),
        ("unwatch", 1) => Ok(Command::Unwatch),
        ("failover", _) => parse_resp_failover(args).map(Command::from),
        ("sentinel", n) if n >= 2 => parse_resp_sentinel(args).map(Command::Sentinel),
        ("wait", 3) => integer(&args[1]).and_then(|replicas| {
            Ok(Command::Wait {
                replicas: u32::try_from(replicas).map_err(|_| {
                    CommandError::Redis("ERR value is not an integer or out of range".into())
                })?,
                timeout_ms: integer(&args[2])?,
            })
        }),
        ("quit", _) => Ok(Command::Exit),
        ("command", _) => parse_resp_command(args).map(Command::CommandTable),
        ("config", n) if n >= 3 && args[1].eq_ignore_ascii_case(b"get") => {
            Ok(Command::ConfigGet(args.drain(2..).collect()))
        }
        ("config", n) if n >= 2 => Err(CommandError::Redis(format!(
            "ERR CONFIG {} is not supported (only CONFIG GET); settings are kvnode's flags",
            printable(&args[1])
        ))),
        ("client", n) if n >= 2 => parse_resp_client(args).map(Command::Client),
        ("select", 2) => match integer(&args[1]) {
            Ok(0) => Ok(Command::Accept),
            _ => Err(CommandError::Redis("ERR DB index is out of range".into())),
        },
        ("auth" | "acl" | "hello", _) => auth_commands::parse_resp(name, args).map(Command::from),
        ("tls", _) => tls_commands::parse_resp(args).map(Command::Tls),
        (
            "get" | "set" | "del" | "exists" | "mget" | "mset" | "dbsize" | "ping" | "echo"
            | "digest" | "resync" | "wait" | "client" | "select" | "role" | "sentinel" | "multi"
            | "exec" | "discard" | "unlink" | "type" | "time" | "watch" | "unwatch",
            _,
        ) => Err(wrong_args()),
        _ => {
            let mut message = format!(
                "ERR unknown command '{}', with args beginning with:",
                printable(&args[0])
            );
            for arg in args.iter().skip(1).take(3) {
                message.push_str(&format!(" '{}'", printable(arg)));
            }
            Err(CommandError::Redis(message))
        }
    };
    Some(command)
}

#[cfg(test)]
mod tests;
