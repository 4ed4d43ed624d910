//! The line protocol's commands: one request line parsed into a [`Command`].
//!
//! The line protocol is the C++ store's: `PUT key value` (the value is the rest of the line),
//! `GET key`, `DEL key`, and the node's own commands. Expiry adds `PUTEX key seconds value`
//! (not `PUT key value EX seconds`: the value is the rest of the line, so a value that ends in
//! ` EX 10` would change meaning), `EXPIRE key seconds`, `TTL key` and `PERSIST key`.
//! Authentication adds `AUTH [user] password` and `ACL LOAD|WHOAMI` (`auth_commands.rs`).

use bytes::Bytes;

use super::auth_commands;
use super::cluster_commands::parse_failover;
use super::command::{Command, CommandError};
use super::expiry_commands::{self, LineExpiry};
use super::position_commands;
use super::tls_commands;
use super::words::{printable, token};

pub(crate) const PUT_USAGE: &str = "PUT <key> <value>";
pub(crate) const DEL_USAGE: &str = "DEL <key>";
pub(crate) const WAIT_USAGE: &str = "WAIT <numreplicas> <timeout-ms>";
const PUTEX_USAGE: &str = "PUTEX <key> <seconds> <value>";
const EXPIRE_USAGE: &str = "EXPIRE <key> <seconds>";
const TTL_USAGE: &str = "TTL <key>";
const PERSIST_USAGE: &str = "PERSIST <key>";

/// Parse one line (without its `\n`; a trailing `\r` is dropped here).
///
/// Answers `None` for a blank line, which the protocol ignores. Keys and values are zero-copy
/// slices of `line`, which live only until the batch is answered: the Store copies a write's
/// key and value into a pair of its own, so it never pins the read buffer they arrived in.
pub fn parse(line: &Bytes) -> Option<Result<Command, CommandError>> {
    let line = match line.last() {
        Some(b'\r') => line.slice(..line.len() - 1),
        _ => line.clone(),
    };
    let (verb_start, verb_end) = token(&line, 0)?;
    let verb = &line[verb_start..verb_end];
    let single_key = |usage| match token(&line, verb_end) {
        Some((start, end)) if token(&line, end).is_none() => Ok(line.slice(start..end)),
        _ => Err(CommandError::Usage(usage)),
    };
    let no_args = |usage| match token(&line, verb_end) {
        None => Ok(()),
        Some(_) => Err(CommandError::Usage(usage)),
    };
    let command = if verb.eq_ignore_ascii_case(b"GET")
        || verb.eq_ignore_ascii_case(b"LASTPOS")
        || verb.eq_ignore_ascii_case(b"WAITPOS")
    {
        position_commands::parse_line(verb, &line, verb_end).map(Command::from)
    } else if verb.eq_ignore_ascii_case(b"AUTH") || verb.eq_ignore_ascii_case(b"ACL") {
        auth_commands::parse_line(verb, &line, verb_end).map(Command::from)
    } else if verb.eq_ignore_ascii_case(b"TLS") {
        tls_commands::parse_line(&line, verb_end).map(Command::Tls)
    } else if verb.eq_ignore_ascii_case(b"PUT") {
        parse_put(&line, verb_end)
    } else if verb.eq_ignore_ascii_case(b"DEL") {
        single_key(DEL_USAGE).map(|key| Command::Del { key })
    } else if verb.eq_ignore_ascii_case(b"PING") {
        no_args("PING").map(|()| Command::Ping)
    } else if verb.eq_ignore_ascii_case(b"EXIT") {
        no_args("EXIT").map(|()| Command::Exit)
    } else if verb.eq_ignore_ascii_case(b"INFO") {
        no_args("INFO").map(|()| Command::Info)
    } else if verb.eq_ignore_ascii_case(b"DIGEST") {
        no_args("DIGEST").map(|()| Command::Digest)
    } else if verb.eq_ignore_ascii_case(b"FAILOVER") {
        parse_failover(&line, verb_end).map(Command::from)
    } else if verb.eq_ignore_ascii_case(b"ROLE") {
        no_args("ROLE").map(|()| Command::Role)
    } else if verb.eq_ignore_ascii_case(b"RESYNC") {
        no_args("RESYNC").map(|()| Command::Resync)
    } else if verb.eq_ignore_ascii_case(b"WAIT") {
        parse_wait(&line, verb_end)
    } else if verb.eq_ignore_ascii_case(b"PUTEX") {
        parse_putex(&line, verb_end)
    } else if verb.eq_ignore_ascii_case(b"EXPIRE") {
        key_and_number(&line, verb_end, EXPIRE_USAGE)
            .and_then(|(key, seconds)| expiry_commands::line_expire(key, seconds))
            .map(Command::LineExpiry)
    } else if verb.eq_ignore_ascii_case(b"TTL") {
        single_key(TTL_USAGE).map(|key| Command::LineExpiry(LineExpiry::Ttl(key)))
    } else if verb.eq_ignore_ascii_case(b"PERSIST") {
        single_key(PERSIST_USAGE).map(|key| Command::LineExpiry(LineExpiry::Persist(key)))
    } else {
        Err(CommandError::Unknown(printable(verb)))
    };
    Some(command)
}

fn parse_wait(line: &Bytes, verb_end: usize) -> Result<Command, CommandError> {
    let usage = || CommandError::Usage(WAIT_USAGE);
    let (a, a_end) = token(line, verb_end).ok_or_else(usage)?;
    let (b, b_end) = token(line, a_end).ok_or_else(usage)?;
    if token(line, b_end).is_some() {
        return Err(usage());
    }
    let number = |range: std::ops::Range<usize>| {
        std::str::from_utf8(&line[range])
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
    };
    match (number(a..a_end), number(b..b_end)) {
        (Some(replicas), Some(timeout_ms)) => Ok(Command::Wait {
            replicas: u32::try_from(replicas).map_err(|_| usage())?,
            timeout_ms,
        }),
        _ => Err(usage()),
    }
}

fn parse_put(line: &Bytes, verb_end: usize) -> Result<Command, CommandError> {
    let usage = || CommandError::Usage(PUT_USAGE);
    let (key_start, key_end) = token(line, verb_end).ok_or_else(usage)?;
    let (value_start, _) = token(line, key_end).ok_or_else(usage)?;
    // Slices of the request, not copies: the Store copies a write into its own pair.
    Ok(Command::Put {
        key: line.slice(key_start..key_end),
        value: line.slice(value_start..),
    })
}

/// `PUTEX key seconds value`: the value is the rest of the line, as `PUT`'s.
fn parse_putex(line: &Bytes, verb_end: usize) -> Result<Command, CommandError> {
    let usage = || CommandError::Usage(PUTEX_USAGE);
    let (key_start, key_end) = token(line, verb_end).ok_or_else(usage)?;
    let (seconds_start, seconds_end) = token(line, key_end).ok_or_else(usage)?;
    let (value_start, _) = token(line, seconds_end).ok_or_else(usage)?;
    let seconds = number(&line[seconds_start..seconds_end]).ok_or_else(usage)?;
    let op = expiry_commands::line_putex(
        line.slice(key_start..key_end),
        seconds,
        line.slice(value_start..),
    )?;
    Ok(Command::StringOp(op))
}

/// A key and a whole number of seconds, and nothing else.
fn key_and_number(
    line: &Bytes,
    verb_end: usize,
    usage: &'static str,
) -> Result<(Bytes, i64), CommandError> {
    let (key_start, key_end) = token(line, verb_end).ok_or(CommandError::Usage(usage))?;
    let (n_start, n_end) = token(line, key_end).ok_or(CommandError::Usage(usage))?;
    if token(line, n_end).is_some() {
        return Err(CommandError::Usage(usage));
    }
    let n = number(&line[n_start..n_end]).ok_or(CommandError::Usage(usage))?;
    Ok((line.slice(key_start..key_end), n))
}

/// A decimal integer, or `None`.
fn number(text: &[u8]) -> Option<i64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}
