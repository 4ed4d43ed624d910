//! RESP's read-modify-write string commands (`INCR`, `DECR`, `INCRBY`, `DECRBY`, `APPEND`,
//! `STRLEN`, `SETNX`, `GETSET`, `GETDEL`, `RENAME`, `RENAMENX`, `COPY`, `MSETNX`), parsed into
//! the Store op that carries each out;
//! the command table (`command.rs`) wraps them into its `Command`s.

use bytes::Bytes;

use super::error::CommandError;
use crate::store::Op;

/// The op for string command `name` (lower case) with `args` (the name first), or the error
/// Redis gives for its arguments.
pub fn string_op(name: &str, args: &mut [Bytes]) -> Result<Op, CommandError> {
    let wrong_args = || {
        CommandError::Redis(format!(
            "ERR wrong number of arguments for '{name}' command"
        ))
    };
    let not_integer = || CommandError::Redis("ERR value is not an integer or out of range".into());
    let integer = |arg: &Bytes| -> Result<i64, CommandError> {
        std::str::from_utf8(arg)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or_else(not_integer)
    };
    let take = |args: &mut [Bytes], i: usize| std::mem::take(&mut args[i]);
    match (name, args.len()) {
        ("incr", 2) => Ok(Op::Incr(take(args, 1), 1)),
        ("decr", 2) => Ok(Op::Incr(take(args, 1), -1)),
        ("incrby", 3) => Ok(Op::Incr(take(args, 1), integer(&args[2])?)),
        ("decrby", 3) => {
            let delta = integer(&args[2])?.checked_neg().ok_or_else(not_integer)?;
            Ok(Op::Incr(take(args, 1), delta))
        }
        ("append", 3) => Ok(Op::Append(take(args, 1), take(args, 2))),
        ("strlen", 2) => Ok(Op::StrLen(take(args, 1))),
        ("setnx", 3) => Ok(Op::SetNx(take(args, 1), take(args, 2))),
        ("getset", 3) => Ok(Op::GetSet(take(args, 1), take(args, 2))),
        ("getdel", 2) => Ok(Op::GetDel(take(args, 1))),
        ("rename", 3) => Ok(Op::Rename(take(args, 1), take(args, 2), false)),
        ("renamenx", 3) => Ok(Op::Rename(take(args, 1), take(args, 2), true)),
        ("copy", 3) => Ok(Op::Copy(take(args, 1), take(args, 2), false)),
        ("copy", 4) if args[3].eq_ignore_ascii_case(b"replace") => {
            Ok(Op::Copy(take(args, 1), take(args, 2), true))
        }
        ("copy", n) if n > 3 => Err(CommandError::Redis("ERR syntax error".into())),
        ("msetnx", n) if n >= 3 && n % 2 == 1 => {
            let pairs = args[1..]
                .chunks_mut(2)
                .map(|pair| (std::mem::take(&mut pair[0]), std::mem::take(&mut pair[1])))
                .collect();
            Ok(Op::MSetNx(pairs))
        }
        _ => Err(wrong_args()),
    }
}
