//! The table of commands agrees with the parsers: every command name Redis has is accepted by
//! the RESP parser exactly when the table lists it (and by the line protocol exactly when the
//! table marks it so), each row has a request that parses to a command of that name, and the
//! data types this server does not have answer `unknown command`.

use bytes::Bytes;

use super::*;
use crate::protocol::command::{from_resp, Command};
use crate::protocol::line_commands::parse;

/// Every command of Redis 7 (and Redis Sentinel's `SENTINEL`): the names a client may send.
#[rustfmt::skip]
const REDIS_COMMANDS: &[&str] = &[
    "acl", "append", "asking", "auth", "bgrewriteaof", "bgsave", "bitcount", "bitfield",
    "bitfield_ro", "bitop", "bitpos", "blmove", "blmpop", "blpop", "brpop", "brpoplpush", "bzmpop",
    "bzpopmax", "bzpopmin", "client", "cluster", "command", "config", "copy", "dbsize", "debug",
    "decr", "decrby", "del", "discard", "dump", "echo", "eval", "eval_ro", "evalsha", "evalsha_ro",
    "exec", "exists", "expire", "expireat", "expiretime", "failover", "fcall", "fcall_ro",
    "flushall", "flushdb", "function", "geoadd", "geodist", "geohash", "geopos", "georadius",
    "georadius_ro", "georadiusbymember", "georadiusbymember_ro", "geosearch", "geosearchstore",
    "get", "getbit", "getdel", "getex", "getrange", "getset", "hdel", "hello", "hexists", "hget",
    "hgetall", "hincrby", "hincrbyfloat", "hkeys", "hlen", "hmget", "hmset", "hrandfield", "hscan",
    "hset", "hsetnx", "hstrlen", "hvals", "incr", "incrby", "incrbyfloat", "info", "keys",
    "lastsave", "latency", "lcs", "lindex", "linsert", "llen", "lmove", "lmpop", "lolwut", "lpop",
    "lpos", "lpush", "lpushx", "lrange", "lrem", "lset", "ltrim", "memory", "mget", "migrate",
    "module", "monitor", "move", "mset", "msetnx", "multi", "object", "persist", "pexpire",
    "pexpireat", "pexpiretime", "pfadd", "pfcount", "pfdebug", "pfmerge", "pfselftest", "ping",
    "psetex", "psubscribe", "psync", "pttl", "publish", "pubsub", "punsubscribe", "quit",
    "randomkey", "readonly", "readwrite", "rename", "renamenx", "replconf", "replicaof", "reset",
    "restore", "restore-asking", "role", "rpop", "rpoplpush", "rpush", "rpushx", "sadd", "save",
    "scan", "scard", "script", "sdiff", "sdiffstore", "select", "sentinel", "set", "setbit",
    "setex", "setnx", "setrange", "shutdown", "sinter", "sintercard", "sinterstore", "sismember",
    "slaveof", "slowlog", "smembers", "smismember", "smove", "sort", "sort_ro", "spop", "spublish",
    "srandmember", "srem", "sscan", "ssubscribe", "strlen", "subscribe", "substr", "sunion",
    "sunionstore", "sunsubscribe", "swapdb", "sync", "time", "touch", "ttl", "type", "unlink",
    "unsubscribe", "unwatch", "wait", "waitaof", "watch", "xack", "xadd", "xautoclaim", "xclaim",
    "xdel", "xgroup", "xinfo", "xlen", "xpending", "xrange", "xread", "xreadgroup", "xrevrange",
    "xsetid", "xtrim", "zadd", "zcard", "zcount", "zdiff", "zdiffstore", "zincrby", "zinter",
    "zintercard", "zinterstore", "zlexcount", "zmpop", "zmscore", "zpopmax", "zpopmin",
    "zrandmember", "zrange", "zrangebylex", "zrangebyscore", "zrangestore", "zrank", "zrem",
    "zremrangebylex", "zremrangebyrank", "zremrangebyscore", "zrevrange", "zrevrangebylex",
    "zrevrangebyscore", "zrevrank", "zscan", "zscore", "zunion", "zunionstore",
];

/// One valid request per row of the table, and the name its command reports when that is
/// another spelling (`UNLINK` is planned as `DEL`).
const EXAMPLES: &[(&str, Option<&str>)] = &[
    ("acl whoami", Some("acl|whoami")),
    ("tls reload", Some("tls|reload")),
    ("auth pw", None),
    ("append k v", None),
    ("client id", Some("client|id")),
    ("command count", Some("command|count")),
    ("config get maxmemory", Some("config|get")),
    ("copy a b", None),
    ("dbsize", None),
    ("decr k", None),
    ("decrby k 2", None),
    ("del k", None),
    ("digest", None),
    ("discard", None),
    ("echo m", None),
    ("exec", None),
    ("exists k", None),
    ("expire k 10", None),
    ("expireat k 10", Some("expireat")),
    ("expiretime k", None),
    ("getex k", None),
    ("persist k", None),
    ("pexpire k 10", Some("expire")),
    ("pexpireat k 10", Some("expireat")),
    ("pexpiretime k", None),
    ("psetex k 10 v", Some("set")),
    ("pttl k", None),
    ("setex k 10 v", Some("set")),
    ("ttl k", None),
    ("unwatch", None),
    ("watch k", None),
    ("failover", None),
    ("get k", None),
    ("flushall", None),
    ("flushdb", Some("flushall")),
    ("getdel k", None),
    ("getrange k 0 1", None),
    ("incrbyfloat k 1.5", None),
    ("keys *", None),
    ("randomkey", None),
    ("scan 0", None),
    ("setrange k 0 v", None),
    ("substr k 0 1", Some("getrange")),
    ("getset k v", None),
    ("hello 3", None),
    ("incr k", None),
    ("incrby k 2", None),
    ("info", None),
    ("mget k", None),
    ("mset k v", None),
    ("msetnx k v", None),
    ("multi", None),
    ("ping", None),
    ("quit", None),
    ("rename a b", None),
    ("renamenx a b", None),
    ("resync", None),
    ("role", None),
    ("select 0", None),
    ("sentinel masters", None),
    ("set k v", None),
    ("setnx k v", None),
    ("strlen k", None),
    ("time", None),
    ("type k", None),
    ("unlink k", Some("del")),
    ("wait 0 0", None),
    ("waitpos 0:-:0 0", None),
    ("lastpos", None),
];

fn resp(words: &[&str]) -> Option<Result<Command, CommandError>> {
    let mut args = words
        .iter()
        .map(|w| Bytes::copy_from_slice(w.as_bytes()))
        .collect();
    from_resp(&mut args)
}

/// Whether the RESP parser knows `name`: some number of arguments gets anything but Redis's
/// `unknown command` error.
fn resp_knows(name: &str) -> bool {
    let args = ["x", "get", "y", "z"];
    (0..=args.len()).any(|n| {
        let mut words = vec![name];
        words.extend(&args[..n]);
        !matches!(resp(&words), Some(Err(CommandError::Redis(text)))
            if text.starts_with("ERR unknown command '"))
    })
}

/// Whether the line protocol knows verb `name`.
fn line_knows(name: &str) -> bool {
    !matches!(
        parse(&Bytes::copy_from_slice(name.as_bytes())),
        Some(Err(CommandError::Unknown(_)))
    )
}

#[test]
fn the_parsers_accept_exactly_the_commands_of_the_table() {
    let names = REDIS_COMMANDS
        .iter()
        .chain(LINE_ONLY)
        .copied()
        .chain(TABLE.iter().map(|spec| spec.name));
    for name in names {
        let row = lookup(name.as_bytes());
        assert_eq!(
            resp_knows(name),
            row.is_some(),
            "`{name}`: the RESP parser and the table (command_table.rs) disagree"
        );
        let in_line = row.is_some_and(|spec| spec.line) || LINE_ONLY.contains(&name);
        assert_eq!(
            line_knows(name),
            in_line,
            "`{name}`: the line protocol and the table (command_table.rs) disagree"
        );
    }
}

#[test]
fn every_row_has_a_request_that_parses_to_a_command_of_its_name() {
    for spec in TABLE {
        assert!(
            EXAMPLES
                .iter()
                .any(|(request, _)| request.split(' ').next() == Some(spec.name)),
            "no example request for `{}`",
            spec.name
        );
    }
    for (request, reported) in EXAMPLES {
        let words: Vec<&str> = request.split(' ').collect();
        let command = match resp(&words) {
            Some(Ok(command)) => command,
            other => panic!("`{request}` does not parse: {other:?}"),
        };
        assert_eq!(
            command.name(),
            reported.unwrap_or(words[0]),
            "the name of `{request}`"
        );
        let base = command.name().split('|').next().unwrap_or_default();
        assert!(
            lookup(base.as_bytes()).is_some(),
            "`{base}` is not in the table"
        );
    }
}

#[test]
fn the_table_is_sorted_and_its_rows_are_consistent() {
    for pair in TABLE.windows(2) {
        assert!(
            pair[0].name < pair[1].name,
            "{} before {}",
            pair[0].name,
            pair[1].name
        );
    }
    for spec in TABLE {
        assert_eq!(spec.name, spec.name.to_ascii_lowercase());
        let keys = spec.first_key != 0;
        assert_eq!(keys, spec.step != 0, "{}", spec.name);
        let write = spec.flags.contains(&"write");
        assert!(
            !(write && spec.flags.contains(&"readonly")),
            "{}",
            spec.name
        );
    }
}

/// Lists, hashes, sets, sorted sets, streams, pub/sub and scripting are not supported: they
/// are unknown commands, as docs/protocol.md's table says.
#[test]
fn other_data_types_answer_unknown_command() {
    for name in [
        "LPUSH",
        "HSET",
        "SADD",
        "ZADD",
        "XADD",
        "SUBSCRIBE",
        "PUBLISH",
        "EVAL",
        "SETBIT",
        "PFADD",
        "GEOADD",
    ] {
        let Some(Err(CommandError::Redis(text))) = resp(&[name, "k", "v"]) else {
            panic!("{name} is not refused");
        };
        assert_eq!(
            text,
            format!("ERR unknown command '{name}', with args beginning with: 'k' 'v'")
        );
    }
}

#[test]
fn command_info_and_count_answer_in_redis_shape() {
    assert_eq!(
        answer(TableQuery::Count),
        Reply::Integer(TABLE.len() as i64)
    );
    let info = answer(TableQuery::Info(vec![
        Bytes::from_static(b"GET"),
        Bytes::from_static(b"lpush"),
    ]));
    let Reply::Array(items) = info else {
        panic!("{info:?}");
    };
    assert_eq!(items[1], Reply::NotFound);
    let Reply::Array(get) = &items[0] else {
        panic!("{items:?}");
    };
    assert_eq!(get.len(), 10);
    assert_eq!(get[0], Reply::Value(Bytes::from_static(b"get")));
    // `GET key [AFTER token timeout-ms]`: at least two words.
    assert_eq!(get[1], Reply::Integer(-2));
    assert_eq!(
        get[2],
        Reply::Array(vec![Reply::Status("readonly"), Reply::Status("fast")])
    );
    assert_eq!(
        &get[3..6],
        &[Reply::Integer(1), Reply::Integer(1), Reply::Integer(1)]
    );
    assert_eq!(
        get[6],
        Reply::Array(vec![
            Reply::Status("@read"),
            Reply::Status("@string"),
            Reply::Status("@fast")
        ])
    );
    let Reply::Array(all) = answer(TableQuery::All) else {
        panic!("COMMAND");
    };
    assert_eq!(all.len(), TABLE.len());
    assert_eq!(
        parse_resp_command(&[Bytes::from_static(b"COMMAND"), Bytes::from_static(b"nope")]),
        Err(CommandError::Redis(
            "ERR unknown subcommand 'nope'. Try COMMAND HELP.".into()
        ))
    );
}
