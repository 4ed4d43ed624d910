//! Inline commands on a RESP connection: a line that does not start with `*`, split into
//! arguments as Redis splits it (`sdssplitargs`: words separated by blanks, `"double quotes"`
//! with backslash escapes, `'single quotes'`). Redis accepts them, and tools send them:
//! `redis-cli --pipe` ends its stream with a blank line and an inline-looking trailer, and
//! people type commands into `telnet` once a connection speaks RESP. A blank line is no
//! request at all.

use bytes::Bytes;

/// Why an inline request cannot be split (the RESP decoder reports it as a protocol error,
/// and the connection closes, as in Redis).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnbalancedQuotes;

impl std::fmt::Display for UnbalancedQuotes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("unbalanced quotes in request")
    }
}

/// The longest inline request accepted (Redis's `PROTO_INLINE_MAX_SIZE`).
pub const MAX_INLINE: usize = 64 * 1024;

/// The arguments of one inline request `line` (without its `\n`; a trailing `\r` is
/// dropped); none for a blank line.
pub fn split(line: &[u8]) -> Result<Vec<Bytes>, UnbalancedQuotes> {
    Ok(split_at_most(line, usize::MAX)?.unwrap_or_default())
}

/// The arguments of `line`, as [`split`] answers them, or `None` as soon as it finds it has
/// more than `max_args` (before a login: no more is split, or allocated, than the few a
/// request may have then).
pub fn split_at_most(line: &[u8], max_args: usize) -> Result<Option<Vec<Bytes>>, UnbalancedQuotes> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut args = Vec::new();
    let mut rest = line;
    loop {
        rest = trim_start(rest);
        let Some(&first) = rest.first() else {
            return Ok(Some(args));
        };
        if args.len() == max_args {
            return Ok(None);
        }
        let (arg, after) = match first {
            b'"' => double_quoted(&rest[1..])?,
            b'\'' => single_quoted(&rest[1..])?,
            _ => {
                let end = rest.iter().position(|b| is_blank(*b)).unwrap_or(rest.len());
                (rest[..end].to_vec(), &rest[end..])
            }
        };
        args.push(Bytes::from(arg));
        rest = after;
    }
}

fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0x0b | 0x0c)
}

fn trim_start(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !is_blank(*b))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

fn unbalanced() -> UnbalancedQuotes {
    UnbalancedQuotes
}

/// After a closing quote, the argument must end (a blank or the end of the line).
fn closed(after: &[u8]) -> Result<&[u8], UnbalancedQuotes> {
    match after.first() {
        Some(b) if !is_blank(*b) => Err(unbalanced()),
        _ => Ok(after),
    }
}

/// A `"double quoted"` argument (its opening quote already read), with `\n`, `\r`, `\t`,
/// `\b`, `\a`, `\xHH` and any other escaped character taken as itself.
fn double_quoted(mut rest: &[u8]) -> Result<(Vec<u8>, &[u8]), UnbalancedQuotes> {
    let mut arg = Vec::new();
    loop {
        match rest {
            [] => return Err(unbalanced()),
            [b'"', after @ ..] => return Ok((arg, closed(after)?)),
            [b'\\', b'x', h, l, after @ ..] if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {
                let hex = [*h, *l];
                let text = std::str::from_utf8(&hex).map_err(|_| unbalanced())?;
                arg.push(u8::from_str_radix(text, 16).map_err(|_| unbalanced())?);
                rest = after;
            }
            [b'\\', c, after @ ..] => {
                arg.push(match c {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 0x08,
                    b'a' => 0x07,
                    other => *other,
                });
                rest = after;
            }
            [c, after @ ..] => {
                arg.push(*c);
                rest = after;
            }
        }
    }
}

/// A `'single quoted'` argument (its opening quote already read): only `\'` is an escape.
fn single_quoted(mut rest: &[u8]) -> Result<(Vec<u8>, &[u8]), UnbalancedQuotes> {
    let mut arg = Vec::new();
    loop {
        match rest {
            [] => return Err(unbalanced()),
            [b'\'', after @ ..] => return Ok((arg, closed(after)?)),
            [b'\\', b'\'', after @ ..] => {
                arg.push(b'\'');
                rest = after;
            }
            [c, after @ ..] => {
                arg.push(*c);
                rest = after;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        split(line.as_bytes())
            .unwrap()
            .iter()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .collect()
    }

    #[test]
    fn inline_requests_split_as_redis_splits_them() {
        assert_eq!(words("PING\r"), ["PING"]);
        assert_eq!(words("  SET  k   v "), ["SET", "k", "v"]);
        assert_eq!(words("SET \"my key\" 'it\\''"), ["SET", "my key", "it'"]);
        assert_eq!(words(r#"SET k "a\nb\x41\"""#), ["SET", "k", "a\nbA\""]);
        assert_eq!(words(r"SET k 'a\'b'"), ["SET", "k", "a'b"]);
        assert!(words("").is_empty());
        assert!(words("\r").is_empty());
        assert!(words(" \t ").is_empty());
    }

    #[test]
    fn splitting_stops_past_the_most_arguments_asked_for() {
        assert_eq!(
            split_at_most(b"DEL a b", 3).unwrap().map(|a| a.len()),
            Some(3)
        );
        assert_eq!(split_at_most(b"DEL a b c ", 3), Ok(None));
        assert_eq!(split_at_most(b"  ", 0), Ok(Some(Vec::new())));
    }

    #[test]
    fn unbalanced_quotes_are_a_protocol_error() {
        assert!(split(b"SET \"k v").is_err());
        assert!(split(b"SET 'k").is_err());
        assert!(split(b"SET \"k\"v").is_err());
    }
}
