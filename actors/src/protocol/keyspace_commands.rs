//! RESP's keyspace commands (`KEYS`, `SCAN`, `RANDOMKEY`, `FLUSHDB`, `FLUSHALL`) and the
//! string commands of the same change (`INCRBYFLOAT`, `GETRANGE`/`SUBSTR`, `SETRANGE`),
//! parsed into the Store op that carries each out; the command table (`command.rs`) wraps
//! them into its `Command`s.

use bytes::Bytes;

use super::error::CommandError;
use super::words::printable;
use crate::store::scan::{ScanArgs, DEFAULT_COUNT};
use crate::store::Op;

/// The types Redis names, which `SCAN ... TYPE` accepts; only `string` exists here.
const TYPES: [&str; 6] = ["string", "list", "set", "zset", "hash", "stream"];

/// The op for keyspace command `name` (lower case) with `args` (the name first), or the error
/// Redis gives for its arguments.
pub fn keyspace_op(name: &str, args: &mut [Bytes]) -> Result<Op, CommandError> {
    let syntax = || CommandError::Redis("ERR syntax error".into());
    let integer = |arg: &Bytes| -> Result<i64, CommandError> {
        std::str::from_utf8(arg)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(|| {
                CommandError::Redis("ERR value is not an integer or out of range".into())
            })
    };
    let take = |args: &mut [Bytes], i: usize| std::mem::take(&mut args[i]);
    match (name, args.len()) {
        // The increment is checked by the Store, with the value, as Redis does: inside
        // `MULTI` a bad one fails at `EXEC`, not before.
        ("incrbyfloat", 3) => Ok(Op::IncrByFloat(take(args, 1), take(args, 2))),
        ("getrange" | "substr", 4) => {
            let (start, end) = (integer(&args[2])?, integer(&args[3])?);
            Ok(Op::GetRange(take(args, 1), start, end))
        }
        ("setrange", 4) => {
            let offset = integer(&args[2])?;
            Ok(Op::SetRange(take(args, 1), offset, take(args, 3)))
        }
        // `ASYNC` and `SYNC` both answer once the keyspace is empty, and both free the old
        // keys off the Store's thread: a flush never stalls other clients (see
        // docs/protocol.md).
        ("flushdb" | "flushall", 1) => Ok(Op::Clear),
        ("flushdb" | "flushall", 2)
            if args[1].eq_ignore_ascii_case(b"async") || args[1].eq_ignore_ascii_case(b"sync") =>
        {
            Ok(Op::Clear)
        }
        ("flushdb" | "flushall", _) => Err(syntax()),
        ("keys", 2) => Ok(Op::Keys(std::mem::take(&mut args[1]))),
        ("randomkey", 1) => Ok(Op::RandomKey),
        ("scan", n) if n >= 2 => scan(args).map(|args| Op::Scan(Box::new(args))),
        _ => Err(CommandError::Redis(format!(
            "ERR wrong number of arguments for '{name}' command"
        ))),
    }
}

/// `SCAN cursor [MATCH pattern] [COUNT n] [TYPE type]`, options in any order (the last of
/// each counts), with Redis's errors.
fn scan(args: &mut [Bytes]) -> Result<ScanArgs, CommandError> {
    let error = |text: &str| CommandError::Redis(text.into());
    let cursor = std::str::from_utf8(&args[1])
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| error("ERR invalid cursor"))?;
    let mut scan = ScanArgs {
        cursor,
        pattern: None,
        count: DEFAULT_COUNT,
        other_type: false,
    };
    let mut i = 2;
    while i < args.len() {
        let option = args[i].to_ascii_lowercase();
        let Some(value) = args.get_mut(i + 1) else {
            return Err(error("ERR syntax error"));
        };
        match &option[..] {
            b"match" => scan.pattern = Some(std::mem::take(value)),
            b"count" => {
                let count: i64 = std::str::from_utf8(value)
                    .ok()
                    .and_then(|text| text.parse().ok())
                    .ok_or_else(|| error("ERR value is not an integer or out of range"))?;
                if count < 1 {
                    return Err(error("ERR syntax error"));
                }
                scan.count = usize::try_from(count).unwrap_or(usize::MAX);
            }
            b"type" => {
                let name = String::from_utf8_lossy(value).to_ascii_lowercase();
                if !TYPES.contains(&name.as_str()) {
                    return Err(CommandError::Redis(format!(
                        "ERR unknown type name '{}'",
                        printable(value)
                    )));
                }
                scan.other_type = name != "string";
            }
            _ => return Err(error("ERR syntax error")),
        }
        i += 2;
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(words: &[&str]) -> Result<Op, CommandError> {
        let mut args: Vec<Bytes> = words.iter().map(|w| Bytes::from(w.to_string())).collect();
        keyspace_op(words[0], &mut args)
    }

    #[test]
    fn flushes_take_async_or_sync() {
        for words in [
            &["flushall"][..],
            &["flushall", "ASYNC"],
            &["flushdb", "sync"],
        ] {
            assert_eq!(parse(words), Ok(Op::Clear), "{words:?}");
        }
        assert!(parse(&["flushall", "now"]).is_err());
        assert!(parse(&["flushdb", "async", "sync"]).is_err());
    }

    fn scan_of(words: &[&str]) -> Result<ScanArgs, String> {
        match parse(words) {
            Ok(Op::Scan(args)) => Ok(*args),
            Ok(other) => panic!("{other:?}"),
            Err(CommandError::Redis(text)) => Err(text),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn scan_takes_its_options_in_any_order_with_redis_errors() {
        let scan = scan_of(&[
            "scan", "7", "COUNT", "100", "match", "u:*", "TYPE", "String",
        ]);
        assert_eq!(
            scan,
            Ok(ScanArgs {
                cursor: 7,
                pattern: Some(Bytes::from_static(b"u:*")),
                count: 100,
                other_type: false,
            })
        );
        assert_eq!(scan_of(&["scan", "0"]).map(|s| s.count), Ok(DEFAULT_COUNT));
        assert_eq!(
            scan_of(&["scan", "0", "type", "hash"]).map(|s| s.other_type),
            Ok(true)
        );
        let error = |words: &[&str]| scan_of(words).unwrap_err();
        assert_eq!(error(&["scan", "x"]), "ERR invalid cursor");
        assert_eq!(error(&["scan", "-1"]), "ERR invalid cursor");
        assert_eq!(error(&["scan", "0", "count", "0"]), "ERR syntax error");
        assert_eq!(
            error(&["scan", "0", "count", "ten"]),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(error(&["scan", "0", "match"]), "ERR syntax error");
        assert_eq!(error(&["scan", "0", "limit", "5"]), "ERR syntax error");
        assert_eq!(
            error(&["scan", "0", "type", "blob"]),
            "ERR unknown type name 'blob'"
        );
        assert_eq!(
            parse(&["keys", "*"]),
            Ok(Op::Keys(Bytes::from_static(b"*")))
        );
        assert_eq!(parse(&["randomkey"]), Ok(Op::RandomKey));
        assert!(parse(&["keys"]).is_err() && parse(&["randomkey", "x"]).is_err());
    }

    #[test]
    fn string_commands_take_integer_indexes() {
        let key = || Bytes::from_static(b"k");
        assert_eq!(
            parse(&["getrange", "k", "0", "-1"]),
            Ok(Op::GetRange(key(), 0, -1))
        );
        assert_eq!(
            parse(&["substr", "k", "-3", "5"]),
            Ok(Op::GetRange(key(), -3, 5))
        );
        let value = Bytes::from_static(b"v");
        assert_eq!(
            parse(&["setrange", "k", "-1", "v"]),
            Ok(Op::SetRange(key(), -1, value))
        );
        let incr = Bytes::from_static(b"x");
        assert_eq!(
            parse(&["incrbyfloat", "k", "x"]),
            Ok(Op::IncrByFloat(key(), incr))
        );
        let not_integer = CommandError::Redis("ERR value is not an integer or out of range".into());
        assert_eq!(
            parse(&["getrange", "k", "a", "1"]),
            Err(not_integer.clone())
        );
        assert_eq!(parse(&["setrange", "k", "1.5", "v"]), Err(not_integer));
        assert!(parse(&["getrange", "k", "1"]).is_err() && parse(&["incrbyfloat", "k"]).is_err());
    }
}
