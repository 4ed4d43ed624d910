//! RESP's keyspace commands (`FLUSHDB`, `FLUSHALL`), parsed into the Store op that carries
//! each out; the command table (`command.rs`) wraps them into its `Command`s.

use bytes::Bytes;

use super::error::CommandError;
use crate::store::Op;

/// The op for keyspace command `name` (lower case) with `args` (the name first), or the error
/// Redis gives for its arguments.
pub fn keyspace_op(name: &str, args: &mut [Bytes]) -> Result<Op, CommandError> {
    let syntax = || CommandError::Redis("ERR syntax error".into());
    match (name, args.len()) {
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
        _ => Err(CommandError::Redis(format!(
            "ERR wrong number of arguments for '{name}' command"
        ))),
    }
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
}
