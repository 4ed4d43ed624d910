//! The expiry commands, parsed into the Store ops that carry them out: RESP's `SET` with
//! options, `SETEX`, `PSETEX`, `EXPIRE`, `PEXPIRE`, `EXPIREAT`, `PEXPIREAT`, `TTL`, `PTTL`,
//! `EXPIRETIME`, `PEXPIRETIME`, `PERSIST`, `GETEX`, with Redis's replies and errors; and the
//! line protocol's `PUTEX`, `EXPIRE`, `TTL`, `PERSIST`. The command table (`command.rs`) wraps
//! them into its `Command`s.
//!
//! Times are checked here, against this node's clock, the way Redis checks them: a time to
//! live that is not a whole number, is not positive where it must be, or whose deadline would
//! not fit in 64 bits is refused before anything reaches the Store.

use bytes::Bytes;

use super::error::CommandError;
use crate::store::expiry::{self, ExpireCondition, Expiry, SetArgs, SetCondition, TtlQuery};
use crate::store::Op;

/// What the line protocol says of a time to live it cannot use.
const PUTEX_SECONDS: &str = "PUTEX <key> <seconds> <value>, seconds a positive whole number";
/// The same for `EXPIRE`, whose time may be zero or less (the key is deleted).
const EXPIRE_SECONDS: &str = "EXPIRE <key> <seconds>, seconds a whole number of 64 bits";

/// A line-protocol expiry command, answered in that protocol's words (`OK`, `NOT_FOUND`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineExpiry {
    /// `EXPIRE key seconds`: `OK`, or `NOT_FOUND`.
    Expire(Op),
    /// `TTL key`: the seconds left, `-1` when the key never expires, or `NOT_FOUND`.
    Ttl(Bytes),
    /// `PERSIST key`: `OK` (the key no longer expires), or `NOT_FOUND`.
    Persist(Bytes),
}

/// The op for expiry command `name` (lower case) with `args` (the name first), or the error
/// Redis gives for its arguments. `SET` comes here only with options.
pub fn expiry_op(name: &str, args: &mut [Bytes]) -> Result<Op, CommandError> {
    let wrong_args = || {
        CommandError::Redis(format!(
            "ERR wrong number of arguments for '{name}' command"
        ))
    };
    let take = |args: &mut [Bytes], i: usize| std::mem::take(&mut args[i]);
    let ttl = |args: &mut [Bytes], query| Ok(Op::Ttl(take(args, 1), query));
    match (name, args.len()) {
        ("set", n) if n > 3 => parse_set(args),
        ("setex" | "psetex", 4) => {
            let unit = if name == "setex" { 1000 } else { 1 };
            let expiry = time(&args[2], unit, false, name, true)?;
            Ok(set(take(args, 1), take(args, 3), expiry))
        }
        ("expire" | "pexpire" | "expireat" | "pexpireat", n) if n >= 3 => {
            let unit = if name.starts_with('p') { 1 } else { 1000 };
            let expiry = time(&args[2], unit, name.ends_with("at"), name, false)?;
            let only = expire_condition(&args[3..])?;
            Ok(Op::Expire(take(args, 1), expiry, only))
        }
        ("ttl", 2) => ttl(args, TtlQuery::Seconds),
        ("pttl", 2) => ttl(args, TtlQuery::Millis),
        ("expiretime", 2) => ttl(args, TtlQuery::AtSeconds),
        ("pexpiretime", 2) => ttl(args, TtlQuery::AtMillis),
        ("persist", 2) => Ok(Op::Persist(take(args, 1))),
        ("getex", n) if n >= 2 => parse_getex(args),
        _ => Err(wrong_args()),
    }
}

/// Line protocol `PUTEX key seconds value`.
pub fn line_putex(key: Bytes, seconds: i64, value: Bytes) -> Result<Op, CommandError> {
    let expiry = millis(seconds, 1000, false, "putex", true)
        .map_err(|_| CommandError::Usage(PUTEX_SECONDS))?;
    Ok(set(key, value, expiry))
}

/// Line protocol `EXPIRE key seconds` (zero or less deletes the key, as in Redis).
pub fn line_expire(key: Bytes, seconds: i64) -> Result<LineExpiry, CommandError> {
    let expiry = millis(seconds, 1000, false, "expire", false)
        .map_err(|_| CommandError::Usage(EXPIRE_SECONDS))?;
    Ok(LineExpiry::Expire(Op::Expire(
        key,
        expiry,
        ExpireCondition::default(),
    )))
}

/// A `SET` of `value` with `expiry` and no condition.
fn set(key: Bytes, value: Bytes, expiry: Expiry) -> Op {
    Op::Set(Box::new(SetArgs {
        key,
        value,
        only: SetCondition::Always,
        expiry,
        get: false,
    }))
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`, options in any order.
fn parse_set(args: &mut [Bytes]) -> Result<Op, CommandError> {
    let syntax = || CommandError::Redis("ERR syntax error".into());
    let mut only = SetCondition::Always;
    let mut expiry = None;
    let mut get = false;
    let mut i = 3;
    while i < args.len() {
        let option = args[i].to_ascii_lowercase();
        match (option.as_slice(), only, expiry) {
            (b"nx", SetCondition::Always | SetCondition::IfAbsent, _) => {
                only = SetCondition::IfAbsent
            }
            (b"xx", SetCondition::Always | SetCondition::IfPresent, _) => {
                only = SetCondition::IfPresent
            }
            (b"get", ..) => get = true,
            (b"keepttl", _, None) => expiry = Some(Expiry::Keep),
            (b"ex" | b"px" | b"exat" | b"pxat", _, None) if i + 1 < args.len() => {
                i += 1;
                expiry = Some(time_option(&option, &args[i], "set")?);
            }
            _ => return Err(syntax()),
        }
        i += 1;
    }
    Ok(Op::Set(Box::new(SetArgs {
        key: std::mem::take(&mut args[1]),
        value: std::mem::take(&mut args[2]),
        only,
        expiry: expiry.unwrap_or(Expiry::Clear),
        get,
    })))
}

/// `GETEX key [EX s|PX ms|EXAT s|PXAT ms|PERSIST]`.
fn parse_getex(args: &mut [Bytes]) -> Result<Op, CommandError> {
    let syntax = || CommandError::Redis("ERR syntax error".into());
    let change = match &args[2..] {
        [] => None,
        [persist] if persist.eq_ignore_ascii_case(b"persist") => Some(Expiry::Clear),
        [option, value] => Some(time_option(&option.to_ascii_lowercase(), value, "getex")?),
        _ => return Err(syntax()),
    };
    Ok(Op::GetEx(std::mem::take(&mut args[1]), change))
}

/// The time of `EX`, `PX`, `EXAT` or `PXAT` (lower case) given as `value`; it must be positive.
fn time_option(option: &[u8], value: &Bytes, command: &str) -> Result<Expiry, CommandError> {
    match option {
        b"ex" => time(value, 1000, false, command, true),
        b"px" => time(value, 1, false, command, true),
        b"exat" => time(value, 1000, true, command, true),
        b"pxat" => time(value, 1, true, command, true),
        _ => Err(CommandError::Redis("ERR syntax error".into())),
    }
}

/// `EXPIRE`'s conditions: any of `NX`, `XX`, `GT`, `LT`, in the combinations Redis allows.
fn expire_condition(options: &[Bytes]) -> Result<ExpireCondition, CommandError> {
    let mut only = ExpireCondition::default();
    for option in options {
        match option.to_ascii_lowercase().as_slice() {
            b"nx" => only.nx = true,
            b"xx" => only.xx = true,
            b"gt" => only.gt = true,
            b"lt" => only.lt = true,
            _ => {
                return Err(CommandError::Redis(format!(
                    "ERR Unsupported option {}",
                    super::words::printable(option)
                )))
            }
        }
    }
    if only.nx && (only.xx || only.gt || only.lt) {
        return Err(CommandError::Redis(
            "ERR NX and XX, GT or LT options at the same time are not compatible".into(),
        ));
    }
    if only.gt && only.lt {
        return Err(CommandError::Redis(
            "ERR GT and LT options at the same time are not compatible".into(),
        ));
    }
    Ok(only)
}

/// A time argument: a whole number of `unit` milliseconds, relative or `absolute`.
fn time(
    arg: &Bytes,
    unit: i64,
    absolute: bool,
    command: &str,
    positive: bool,
) -> Result<Expiry, CommandError> {
    let n = std::str::from_utf8(arg)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| CommandError::Redis("ERR value is not an integer or out of range".into()))?;
    millis(n, unit, absolute, command, positive)
}

/// `n` units of `unit` milliseconds as an expiry, refused as Redis refuses it: not positive
/// where it must be, or a deadline past what 64 bits hold.
fn millis(
    n: i64,
    unit: i64,
    absolute: bool,
    command: &str,
    positive: bool,
) -> Result<Expiry, CommandError> {
    let invalid = || CommandError::Redis(format!("ERR invalid expire time in '{command}' command"));
    if positive && n <= 0 {
        return Err(invalid());
    }
    let ms = n.checked_mul(unit).ok_or_else(invalid)?;
    if absolute {
        return Ok(Expiry::At(ms));
    }
    let now = i64::try_from(expiry::now_ms()).map_err(|_| invalid())?;
    ms.checked_add(now).ok_or_else(invalid)?;
    Ok(Expiry::In(ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(words: &str) -> Result<Op, CommandError> {
        let mut args: Vec<Bytes> = words
            .split(' ')
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        let name = words.split(' ').next().unwrap().to_ascii_lowercase();
        expiry_op(&name, &mut args)
    }

    fn set_args(words: &str) -> SetArgs {
        match op(words) {
            Ok(Op::Set(args)) => *args,
            other => panic!("{words}: {other:?}"),
        }
    }

    fn error(words: &str) -> String {
        match op(words) {
            Err(CommandError::Redis(text)) => text,
            other => panic!("{words}: {other:?}"),
        }
    }

    #[test]
    fn set_takes_its_options_in_any_order() {
        let args = set_args("SET k v nx GET px 1500");
        assert_eq!(args.only, SetCondition::IfAbsent);
        assert_eq!((args.expiry, args.get), (Expiry::In(1500), true));
        assert_eq!(set_args("set k v EX 2 XX").expiry, Expiry::In(2000));
        assert_eq!(set_args("set k v exat 2").expiry, Expiry::At(2000));
        assert_eq!(set_args("set k v PXAT 2").expiry, Expiry::At(2));
        assert_eq!(set_args("set k v KEEPTTL").expiry, Expiry::Keep);
        assert_eq!(set_args("set k v NX NX").only, SetCondition::IfAbsent);
    }

    #[test]
    fn set_refuses_what_redis_refuses() {
        for bad in [
            "SET k v NX XX",
            "SET k v EX 1 PX 1",
            "SET k v EX 1 KEEPTTL",
            "SET k v EX",
            "SET k v FOO",
        ] {
            assert_eq!(error(bad), "ERR syntax error", "{bad}");
        }
        assert_eq!(
            error("SET k v EX 0"),
            "ERR invalid expire time in 'set' command"
        );
        assert_eq!(
            error("SET k v EX 9223372036854775807"),
            "ERR invalid expire time in 'set' command"
        );
        assert_eq!(
            error("SET k v EX 1.5"),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            error("SETEX k -1 v"),
            "ERR invalid expire time in 'setex' command"
        );
    }

    #[test]
    fn expire_takes_conditions_and_times_in_the_past() {
        let expire = |words| match op(words) {
            Ok(Op::Expire(_, expiry, only)) => (expiry, only),
            other => panic!("{words}: {other:?}"),
        };
        assert_eq!(expire("EXPIRE k 10").0, Expiry::In(10_000));
        assert_eq!(expire("PEXPIRE k -5").0, Expiry::In(-5));
        assert_eq!(expire("EXPIREAT k 10").0, Expiry::At(10_000));
        assert_eq!(expire("PEXPIREAT k 10").0, Expiry::At(10));
        let (_, only) = expire("EXPIRE k 10 xx GT");
        assert!(only.xx && only.gt && !only.nx && !only.lt);
        assert_eq!(
            error("EXPIRE k 10 NX GT"),
            "ERR NX and XX, GT or LT options at the same time are not compatible"
        );
        assert_eq!(
            error("EXPIRE k 10 GT LT"),
            "ERR GT and LT options at the same time are not compatible"
        );
        assert_eq!(error("EXPIRE k 10 SOON"), "ERR Unsupported option SOON");
        assert_eq!(
            error("EXPIRE k"),
            "ERR wrong number of arguments for 'expire' command"
        );
    }

    #[test]
    fn getex_and_the_ttl_queries() {
        assert_eq!(op("GETEX k"), Ok(Op::GetEx(Bytes::from_static(b"k"), None)));
        assert_eq!(
            op("GETEX k persist"),
            Ok(Op::GetEx(Bytes::from_static(b"k"), Some(Expiry::Clear)))
        );
        assert_eq!(
            op("GETEX k PX 5"),
            Ok(Op::GetEx(Bytes::from_static(b"k"), Some(Expiry::In(5))))
        );
        assert_eq!(error("GETEX k EX 1 PERSIST"), "ERR syntax error");
        assert_eq!(
            op("PTTL k"),
            Ok(Op::Ttl(Bytes::from_static(b"k"), TtlQuery::Millis))
        );
        assert_eq!(op("PERSIST k"), Ok(Op::Persist(Bytes::from_static(b"k"))));
    }
}
