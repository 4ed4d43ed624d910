//! The position commands, in both protocols: `LASTPOS` (the token of what this connection has
//! seen), `WAITPOS <token> <timeout-ms>` (wait until this node has it), and the one-round-trip
//! read `GET <key> AFTER <token> <timeout-ms>` (docs/protocol.md, "Reading your writes from a
//! replica").

use bytes::Bytes;

use super::error::CommandError;
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

/// A position command, parsed (`command.rs` makes it a `Command`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PositionCommand {
    /// `LASTPOS`.
    LastPos,
    /// `WAITPOS <token> <timeout-ms>`.
    WaitPos(PositionWait),
    /// `GET <key>`, with its wait if it has one (`AFTER <token> <timeout-ms>`).
    Get {
        /// The key to read.
        key: Bytes,
        /// The position to wait for first.
        after: Option<PositionWait>,
    },
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
pub fn parse_resp(name: &str, args: &mut Vec<Bytes>) -> Result<PositionCommand, CommandError> {
    let wrong = || {
        CommandError::Redis(format!(
            "ERR wrong number of arguments for '{name}' command"
        ))
    };
    match (name, args.len()) {
        ("lastpos", 1) => Ok(PositionCommand::LastPos),
        ("waitpos", 3) => position_wait(&args[1], &args[2]).map(PositionCommand::WaitPos),
        ("get", 5) if args[2].eq_ignore_ascii_case(b"after") => {
            let after = Some(position_wait(&args[3], &args[4])?);
            let key = args.swap_remove(1);
            Ok(PositionCommand::Get { key, after })
        }
        ("get", 5) => Err(CommandError::Redis(
            "ERR syntax error (GET key [AFTER token timeout-ms])".into(),
        )),
        _ => Err(wrong()),
    }
}

/// The line protocol's `LASTPOS`, `WAITPOS`, and `GET` (with or without `AFTER`), from the
/// words after the verb (`verb_end` on).
pub fn parse_line(
    verb: &[u8],
    line: &Bytes,
    verb_end: usize,
) -> Result<PositionCommand, CommandError> {
    // Up to five words, as slices of the line: a plain `GET key` allocates nothing here.
    let mut spans = [(0, 0); 5];
    let mut count = 0;
    let mut from = verb_end;
    while let Some((start, end)) = token(line, from) {
        spans[count] = (start, end);
        count += 1;
        from = end;
        if count == spans.len() {
            break;
        }
    }
    let word = |i: usize| &line[spans[i].0..spans[i].1];
    if verb.eq_ignore_ascii_case(b"LASTPOS") {
        return match count {
            0 => Ok(PositionCommand::LastPos),
            _ => Err(CommandError::Usage("LASTPOS")),
        };
    }
    if verb.eq_ignore_ascii_case(b"WAITPOS") {
        return match count {
            2 => position_wait(word(0), word(1)).map(PositionCommand::WaitPos),
            _ => Err(CommandError::Usage(WAITPOS_USAGE)),
        };
    }
    let key = line.slice(spans[0].0..spans[0].1);
    match count {
        1 => Ok(PositionCommand::Get { key, after: None }),
        4 if word(1).eq_ignore_ascii_case(b"AFTER") => {
            let after = Some(position_wait(word(2), word(3))?);
            Ok(PositionCommand::Get { key, after })
        }
        _ => Err(CommandError::Usage(GET_AFTER_USAGE)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

    fn line(text: &str) -> Result<PositionCommand, CommandError> {
        let line = Bytes::copy_from_slice(text.as_bytes());
        let (start, end) = token(&line, 0).expect("a verb");
        parse_line(&line[start..end], &line, end)
    }

    fn resp(words: &[&str]) -> Result<PositionCommand, CommandError> {
        let mut args: Vec<Bytes> = words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect();
        parse_resp(&words[0].to_ascii_lowercase(), &mut args)
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
        assert_eq!(line("LASTPOS"), Ok(PositionCommand::LastPos));
        assert_eq!(resp(&["lastpos"]), Ok(PositionCommand::LastPos));
        assert!(line("LASTPOS x").is_err());
        assert!(resp(&["lastpos", "x"]).is_err());
    }

    #[test]
    fn waitpos_takes_a_token_and_a_timeout() {
        let token = format!("2:{ID}:17");
        assert_eq!(
            line(&format!("WAITPOS {token} 100")),
            Ok(PositionCommand::WaitPos(wait(17, 100)))
        );
        assert_eq!(
            resp(&["WAITPOS", &token, "0"]),
            Ok(PositionCommand::WaitPos(wait(17, 0)))
        );
        assert_eq!(line("WAITPOS 100"), Err(CommandError::Usage(WAITPOS_USAGE)));
        let bad = line("WAITPOS nonsense 100").unwrap_err().to_string();
        assert!(bad.contains("invalid position token"), "{bad}");
        let bad = resp(&["waitpos", &token, "-1"]).unwrap_err().to_string();
        assert!(bad.contains("milliseconds"), "{bad}");
    }

    /// Found by the `commands` fuzz target: a bad token was echoed as sent, `\r` and all, in
    /// the one line of an error reply (and RESP could carry a `\n` in it).
    #[test]
    fn a_bad_token_is_echoed_without_control_characters() {
        let bad = line("GET k AFTER 0:\r:0 5").unwrap_err().to_string();
        assert_eq!(bad, "invalid position token '0:?:0' (LASTPOS gives one)");
        let bad = resp(&["WAITPOS", "1:\n\x1b[2J:0", "5"])
            .unwrap_err()
            .to_string();
        assert_eq!(
            bad,
            "invalid position token '1:??[2J:0' (LASTPOS gives one)"
        );
    }

    #[test]
    fn get_may_wait_for_a_position_first() {
        let token = format!("2:{ID}:9");
        let after = PositionCommand::Get {
            key: Bytes::from_static(b"k"),
            after: Some(wait(9, 250)),
        };
        assert_eq!(line(&format!("GET k AFTER {token} 250")), Ok(after.clone()));
        assert_eq!(line(&format!("get k after {token} 250")), Ok(after.clone()));
        assert_eq!(resp(&["GET", "k", "AFTER", &token, "250"]), Ok(after));
        assert_eq!(
            line("GET k"),
            Ok(PositionCommand::Get {
                key: Bytes::from_static(b"k"),
                after: None,
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
