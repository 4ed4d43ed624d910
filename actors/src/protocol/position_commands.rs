//! The position commands, in both protocols: `LASTPOS` (the token of what this connection has
//! seen), `WAITPOS <token> <timeout-ms>` (wait until this node has it), and the one-round-trip
//! read `GET <key> AFTER <token> <timeout-ms>` (docs/protocol.md, "Reading your writes from a
//! replica").

use bytes::Bytes;

use super::command::{Command, CommandError};
use super::words::token;
use crate::replication::position_token::PositionToken;

/// The line protocol's usage of `WAITPOS`.
pub(crate) const WAITPOS_USAGE: &str = "WAITPOS <token> <timeout-ms>";
/// The line protocol's usage of `GET`, with its optional wait.
pub(crate) const GET_AFTER_USAGE: &str = "GET <key> [AFTER <token> <timeout-ms>]";

/// A wait for a position before a reply: `WAITPOS`'s, or a read's `AFTER`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PositionWait {
    /// The position to wait for.
    pub token: PositionToken,
    /// The longest to wait, in milliseconds; 0 waits for as long as it takes, as `WAIT`'s.
    pub timeout_ms: u64,
}

/// A token and a timeout, from their two words.
fn position_wait(token: &[u8], timeout_ms: &[u8]) -> Result<PositionWait, CommandError> {
    let text = std::str::from_utf8(token).unwrap_or("");
    let token = text
        .parse::<PositionToken>()
        .map_err(|e| CommandError::Invalid(e.to_string()))?;
    let timeout_ms = std::str::from_utf8(timeout_ms)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or_else(|| {
            CommandError::Invalid("the timeout must be a whole number of milliseconds".into())
        })?;
    Ok(PositionWait { token, timeout_ms })
}

/// RESP `LASTPOS`, `WAITPOS token timeout` and `GET key AFTER token timeout` (`args[0]` is the
/// verb, lower case in `name`).
pub fn parse_resp(name: &str, args: &mut Vec<Bytes>) -> Result<Command, CommandError> {
    let wrong = || {
        CommandError::Redis(format!(
            "ERR wrong number of arguments for '{name}' command"
        ))
    };
    match (name, args.len()) {
        ("lastpos", 1) => Ok(Command::LastPos),
        ("waitpos", 3) => position_wait(&args[1], &args[2]).map(Command::WaitPos),
        ("get", 5) if args[2].eq_ignore_ascii_case(b"after") => {
            let wait = position_wait(&args[3], &args[4])?;
            let key = args.swap_remove(1);
            Ok(Command::After(wait, Box::new(Command::Get { key })))
        }
        ("get", 5) => Err(CommandError::Redis(
            "ERR syntax error (GET key [AFTER token timeout-ms])".into(),
        )),
        _ => Err(wrong()),
    }
}

/// The line protocol's `LASTPOS`, `WAITPOS`, and `GET` (with or without `AFTER`), from the
/// words after the verb (`verb_end` on).
pub fn parse_line(verb: &[u8], line: &Bytes, verb_end: usize) -> Result<Command, CommandError> {
    let mut words = Vec::new();
    let mut from = verb_end;
    while let Some((start, end)) = token(line, from) {
        words.push(line.slice(start..end));
        from = end;
        if words.len() > 4 {
            break;
        }
    }
    if verb.eq_ignore_ascii_case(b"LASTPOS") {
        return match words.is_empty() {
            true => Ok(Command::LastPos),
            false => Err(CommandError::Usage("LASTPOS")),
        };
    }
    if verb.eq_ignore_ascii_case(b"WAITPOS") {
        return match words.as_slice() {
            [token, timeout] => position_wait(token, timeout).map(Command::WaitPos),
            _ => Err(CommandError::Usage(WAITPOS_USAGE)),
        };
    }
    match words.as_slice() {
        [key] => Ok(Command::Get { key: key.clone() }),
        [key, after, token, timeout] if after.eq_ignore_ascii_case(b"AFTER") => {
            let wait = position_wait(token, timeout)?;
            Ok(Command::After(
                wait,
                Box::new(Command::Get { key: key.clone() }),
            ))
        }
        _ => Err(CommandError::Usage(GET_AFTER_USAGE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::from_resp;
    use crate::protocol::line_commands::parse;

    const ID: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn line(text: &str) -> Result<Command, CommandError> {
        parse(&Bytes::copy_from_slice(text.as_bytes())).expect("not blank")
    }

    fn resp(words: &[&str]) -> Result<Command, CommandError> {
        let mut args = words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        from_resp(&mut args).expect("a request")
    }

    fn wait(offset: u64, timeout_ms: u64) -> PositionWait {
        PositionWait {
            token: PositionToken {
                epoch: 2,
                id: Some(ID.into()),
                offset,
                previous: None,
            },
            timeout_ms,
        }
    }

    #[test]
    fn lastpos_takes_no_arguments() {
        assert_eq!(line("LASTPOS"), Ok(Command::LastPos));
        assert_eq!(resp(&["lastpos"]), Ok(Command::LastPos));
        assert!(line("LASTPOS x").is_err());
        assert!(resp(&["lastpos", "x"]).is_err());
    }

    #[test]
    fn waitpos_takes_a_token_and_a_timeout() {
        let token = format!("2:{ID}:17");
        assert_eq!(
            line(&format!("WAITPOS {token} 100")),
            Ok(Command::WaitPos(wait(17, 100)))
        );
        assert_eq!(
            resp(&["WAITPOS", &token, "0"]),
            Ok(Command::WaitPos(wait(17, 0)))
        );
        assert_eq!(line("WAITPOS 100"), Err(CommandError::Usage(WAITPOS_USAGE)));
        let bad = line("WAITPOS nonsense 100").unwrap_err().to_string();
        assert!(bad.contains("invalid position token"), "{bad}");
        let bad = resp(&["waitpos", &token, "-1"]).unwrap_err().to_string();
        assert!(bad.contains("milliseconds"), "{bad}");
    }

    #[test]
    fn get_may_wait_for_a_position_first() {
        let token = format!("2:{ID}:9");
        let after = Command::After(
            wait(9, 250),
            Box::new(Command::Get {
                key: Bytes::from_static(b"k"),
            }),
        );
        assert_eq!(line(&format!("GET k AFTER {token} 250")), Ok(after.clone()));
        assert_eq!(line(&format!("get k after {token} 250")), Ok(after.clone()));
        assert_eq!(resp(&["GET", "k", "AFTER", &token, "250"]), Ok(after));
        assert_eq!(
            line("GET k"),
            Ok(Command::Get {
                key: Bytes::from_static(b"k")
            })
        );
        assert_eq!(
            line(&format!("GET k BEFORE {token} 250")),
            Err(CommandError::Usage(GET_AFTER_USAGE))
        );
        assert_eq!(line("GET k x"), Err(CommandError::Usage(GET_AFTER_USAGE)));
        assert!(resp(&["GET", "k", "BEFORE", &token, "250"]).is_err());
        assert!(resp(&["GET", "k", "AFTER"]).is_err());
    }
}
