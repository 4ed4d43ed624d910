//! The one parser of replies, for both protocols and every connection.
//!
//! It works on the bytes a connection has read so far and answers whether they begin with a
//! whole reply: the blocking connections of prefill and the lag probe and the event-loop
//! connections of the load each fill a buffer and call [`parse`], so the two kinds of
//! connection cannot disagree on what a reply is. Nothing is copied: the answer says where
//! the reply's text lies in the buffer and how many bytes to consume.

use std::io;
use std::ops::Range;

use crate::args::Proto;

/// Longest RESP bulk string accepted in a reply (Redis's own limit is 512 MiB).
const MAX_RESP_BULK: usize = 1 << 30;

/// What a reply means to the benchmark.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reply {
    /// Any success: `OK`, a value, an integer, an array.
    Value,
    /// `NOT_FOUND`, or a RESP nil (bulk or array): not an error.
    Nil,
    /// `ERROR ...`, or a RESP error (`-...`).
    Error,
}

/// A whole reply at the start of a buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// What the reply means.
    pub reply: Reply,
    /// Where its text is in the buffer, for messages and the lag probe's comparisons: a line
    /// without its `\n`; a simple string's or an error's message; a bulk string's bytes; an
    /// integer's or a nil's whole line without `\r\n`; nothing for an array.
    pub text: Range<usize>,
    /// Bytes the reply takes, from the start of the buffer: the caller consumes them.
    pub len: usize,
}

/// Whether `buf` begins with a whole reply in `proto`: `Ok(None)` when more bytes are
/// needed, an `InvalidData` error when the bytes cannot be a reply (the stream cannot be
/// trusted past them).
///
/// A line reply is one line: `ERROR...` is an error, `NOT_FOUND` is nil, any other line a
/// value. A RESP reply is one RESP2 value: a simple string (`+`), an error (`-`), an integer
/// (`:`), a bulk string (`$`, nil when its length is -1) or an array (`*`, nil when its
/// count is -1) of values, taken whole. An array is a value even if an element is an error
/// (as in a transaction's replies).
pub fn parse(buf: &[u8], proto: Proto) -> io::Result<Option<Parsed>> {
    match proto {
        Proto::Line => Ok(parse_line(buf)),
        Proto::Resp => parse_resp(buf),
    }
}

/// One line reply at the start of `buf`, if its `\n` is there.
fn parse_line(buf: &[u8]) -> Option<Parsed> {
    let end = find_newline(buf, 0)?;
    let line = &buf[..end];
    let reply = if line.starts_with(b"ERROR") {
        Reply::Error
    } else if line == b"NOT_FOUND" {
        Reply::Nil
    } else {
        Reply::Value
    };
    Some(Parsed {
        reply,
        text: 0..end,
        len: end + 1,
    })
}

/// One RESP value at the start of `buf`, with every element of an array: the elements are
/// counted off one by one rather than parsed by recursion, so that no nesting, however
/// deep, can exhaust the stack.
fn parse_resp(buf: &[u8]) -> io::Result<Option<Parsed>> {
    let Some(first) = resp_value(buf, 0)? else {
        return Ok(None);
    };
    let (mut end, mut pending) = (first.end, first.elements);
    while pending > 0 {
        let Some(element) = resp_value(buf, end)? else {
            return Ok(None);
        };
        pending = (pending - 1)
            .checked_add(element.elements)
            .ok_or_else(|| bad_reply("a bad RESP array", &buf[end..element.end]))?;
        end = element.end;
    }
    Ok(Some(Parsed {
        reply: first.reply,
        text: first.text,
        len: end,
    }))
}

/// One RESP value, without its elements if it is an array.
struct RespValue {
    /// What the value means.
    reply: Reply,
    /// Where its text is (see [`Parsed::text`]): empty for an array.
    text: Range<usize>,
    /// Where it ends; for an array, where its first element begins.
    end: usize,
    /// How many values follow as its elements: an array's count, else 0.
    elements: u64,
}

/// The RESP value starting at `at` in `buf`, without its elements if it is an array.
fn resp_value(buf: &[u8], at: usize) -> io::Result<Option<RespValue>> {
    let Some(newline) = find_newline(buf, at) else {
        return Ok(None);
    };
    let Some(line_end) = newline
        .checked_sub(1)
        .filter(|&end| end >= at && buf[end] == b'\r')
    else {
        return Err(bad_reply("a RESP line without \\r\\n", &buf[at..newline]));
    };
    let (line, next) = (&buf[at..line_end], newline + 1);
    let simple = |reply, text| RespValue {
        reply,
        text,
        end: next,
        elements: 0,
    };
    let value = match line.first() {
        None => return Err(bad_reply("an empty RESP line", line)),
        Some(b'+') => simple(Reply::Value, at + 1..line_end),
        Some(b'-') => simple(Reply::Error, at + 1..line_end),
        Some(b':') => {
            number(line)?;
            simple(Reply::Value, at..line_end)
        }
        Some(b'$') => match number(line)? {
            -1 => simple(Reply::Nil, at..line_end),
            len => {
                let len = usize::try_from(len)
                    .ok()
                    .filter(|&len| len <= MAX_RESP_BULK)
                    .ok_or_else(|| bad_reply("a bad RESP bulk length", line))?;
                let Some(bulk) = buf.get(next..next + len + 2) else {
                    return Ok(None);
                };
                if !bulk.ends_with(b"\r\n") {
                    return Err(bad_reply("a RESP bulk string without \\r\\n", bulk));
                }
                RespValue {
                    reply: Reply::Value,
                    text: next..next + len,
                    end: next + len + 2,
                    elements: 0,
                }
            }
        },
        Some(b'*') => match number(line)? {
            -1 => simple(Reply::Nil, at..line_end),
            count => RespValue {
                reply: Reply::Value,
                text: next..next,
                end: next,
                elements: u64::try_from(count).map_err(|_| bad_reply("a bad RESP array", line))?,
            },
        },
        Some(_) => return Err(bad_reply("not a RESP reply", line)),
    };
    Ok(Some(value))
}

/// The number after a RESP line's type byte: a length, a count or an integer.
fn number(line: &[u8]) -> io::Result<i64> {
    std::str::from_utf8(&line[1..])
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| bad_reply("a RESP length or integer that is not a number", line))
}

/// Where the first `\n` at or after `from` is in `buf`, if there is one.
fn find_newline(buf: &[u8], from: usize) -> Option<usize> {
    buf[from..]
        .iter()
        .position(|&byte| byte == b'\n')
        .map(|i| from + i)
}

/// A reply that is not valid for the protocol: the stream cannot be trusted past it.
fn bad_reply(what: &str, line: &[u8]) -> io::Error {
    let text = String::from_utf8_lossy(line);
    io::Error::new(io::ErrorKind::InvalidData, format!("{what}: {text:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parse `bytes`, which must begin with a whole reply: its meaning, its text, its length.
    fn whole(proto: Proto, bytes: &[u8]) -> (Reply, String, usize) {
        let parsed = parse(bytes, proto)
            .expect("a valid reply")
            .expect("a whole reply");
        let text = String::from_utf8_lossy(&bytes[parsed.text]).into_owned();
        (parsed.reply, text, parsed.len)
    }

    /// Parse `bytes` as RESP; see `whole`.
    fn resp(bytes: &[u8]) -> (Reply, String, usize) {
        whole(Proto::Resp, bytes)
    }

    /// Parse `bytes` as lines; see `whole`.
    fn line(bytes: &[u8]) -> (Reply, String, usize) {
        whole(Proto::Line, bytes)
    }

    /// The message of the error that refuses `bytes` as RESP.
    fn refused(bytes: &[u8]) -> String {
        let error = parse(bytes, Proto::Resp).expect_err("an invalid reply");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        error.to_string()
    }

    /// One reply of each kind in each protocol, each as the bytes the node sends.
    const SAMPLES: &[(Proto, &[u8])] = &[
        (Proto::Resp, b"+OK\r\n"),
        (Proto::Resp, b"-ERR wrong number of arguments\r\n"),
        (Proto::Resp, b":-42\r\n"),
        (Proto::Resp, b"$5\r\nhello\r\n"),
        (Proto::Resp, b"$0\r\n\r\n"),
        (Proto::Resp, b"$4\r\n\r\n\0\xff\r\n"),
        (Proto::Resp, b"$-1\r\n"),
        (Proto::Resp, b"*-1\r\n"),
        (Proto::Resp, b"*0\r\n"),
        (
            Proto::Resp,
            b"*3\r\n$1\r\na\r\n*2\r\n:1\r\n$-1\r\n-ERR no\r\n",
        ),
        (Proto::Line, b"OK\n"),
        (Proto::Line, b"a value\n"),
        (Proto::Line, b"NOT_FOUND\n"),
        (Proto::Line, b"ERROR: usage: GET <key>\n"),
        (Proto::Line, b"\n"),
    ];

    // RESP: each type of value.

    #[test]
    fn a_simple_string_is_a_value_whose_text_follows_the_plus() {
        assert_eq!(resp(b"+OK\r\n"), (Reply::Value, "OK".into(), 5));
    }

    #[test]
    fn a_resp_error_is_an_error_whose_text_is_its_message() {
        let (reply, text, _) = resp(b"-ERR unknown command\r\n");
        assert_eq!(
            (reply, text.as_str()),
            (Reply::Error, "ERR unknown command")
        );
    }

    #[test]
    fn an_integer_is_a_value_whose_text_is_its_whole_line() {
        assert_eq!(resp(b":1\r\n"), (Reply::Value, ":1".into(), 4));
        assert_eq!(resp(b":-7\r\n"), (Reply::Value, ":-7".into(), 5));
    }

    #[test]
    fn a_bulk_string_is_a_value_whose_text_is_its_bytes() {
        assert_eq!(resp(b"$5\r\nhello\r\n"), (Reply::Value, "hello".into(), 11));
    }

    #[test]
    fn an_empty_bulk_string_is_a_value_with_empty_text() {
        assert_eq!(resp(b"$0\r\n\r\n"), (Reply::Value, String::new(), 6));
    }

    #[test]
    fn a_bulk_string_may_hold_any_bytes_even_crlf_since_its_length_frames_it() {
        let bytes = b"$6\r\na\r\n\0\xffb\r\n";
        let parsed = parse(bytes, Proto::Resp).unwrap().unwrap();
        assert_eq!(parsed.reply, Reply::Value);
        assert_eq!(&bytes[parsed.text], b"a\r\n\0\xffb");
        assert_eq!(parsed.len, bytes.len());
    }

    #[test]
    fn a_nil_bulk_string_or_array_is_nil_whose_text_is_its_line() {
        assert_eq!(resp(b"$-1\r\n"), (Reply::Nil, "$-1".into(), 5));
        assert_eq!(resp(b"*-1\r\n"), (Reply::Nil, "*-1".into(), 5));
    }

    #[test]
    fn an_array_is_one_value_taken_whole_with_empty_text() {
        let bytes = b"*2\r\n$1\r\na\r\n:1\r\n";
        assert_eq!(resp(bytes), (Reply::Value, String::new(), bytes.len()));
        assert_eq!(resp(b"*0\r\n"), (Reply::Value, String::new(), 4));
    }

    #[test]
    fn an_array_is_a_value_even_when_an_element_is_an_error_or_nil() {
        let bytes = b"*3\r\n-ERR no\r\n$-1\r\n*-1\r\n";
        assert_eq!(resp(bytes), (Reply::Value, String::new(), bytes.len()));
    }

    #[test]
    fn nested_arrays_are_taken_whole_however_deep() {
        let bytes = b"*2\r\n*2\r\n*0\r\n+a\r\n:3\r\n";
        assert_eq!(resp(bytes).2, bytes.len());
        let mut deep = b"*1\r\n".repeat(100_000);
        deep.extend_from_slice(b"+bottom\r\n");
        assert_eq!(resp(&deep), (Reply::Value, String::new(), deep.len()));
    }

    #[test]
    fn only_the_first_reply_is_consumed() {
        assert_eq!(resp(b"+OK\r\n+NEXT\r\n").2, 5);
        assert_eq!(resp(b"*1\r\n:1\r\n:2\r\n").2, 8);
        assert_eq!(line(b"OK\nNOT_FOUND\n").2, 3);
    }

    // The line protocol.

    #[test]
    fn a_line_is_a_value_whose_text_is_the_line_without_its_newline() {
        assert_eq!(line(b"OK\n"), (Reply::Value, "OK".into(), 3));
        assert_eq!(line(b"a value\n"), (Reply::Value, "a value".into(), 8));
        assert_eq!(line(b"\n"), (Reply::Value, String::new(), 1));
    }

    #[test]
    fn only_the_exact_line_not_found_is_nil() {
        assert_eq!(line(b"NOT_FOUND\n").0, Reply::Nil);
        assert_eq!(line(b"NOT_FOUND_HERE\n").0, Reply::Value);
    }

    #[test]
    fn a_line_starting_with_error_is_an_error() {
        let (reply, text, _) = line(b"ERROR: usage: GET <key>\n");
        assert_eq!(
            (reply, text.as_str()),
            (Reply::Error, "ERROR: usage: GET <key>")
        );
    }

    // Incomplete input, as a reader sees it between two reads.

    #[test]
    fn every_proper_prefix_of_a_reply_is_incomplete() {
        for &(proto, bytes) in SAMPLES {
            for split in 0..bytes.len() {
                let prefix = &bytes[..split];
                let parsed = parse(prefix, proto).expect("a valid beginning");
                assert_eq!(parsed, None, "{proto:?} {prefix:?} of {bytes:?}");
            }
            let parsed = parse(bytes, proto).unwrap().expect("a whole reply");
            assert_eq!(parsed.len, bytes.len(), "{proto:?} {bytes:?}");
        }
    }

    #[test]
    fn pipelined_replies_arriving_one_byte_at_a_time_parse_one_by_one() {
        for proto in [Proto::Line, Proto::Resp] {
            let samples: Vec<&[u8]> = SAMPLES
                .iter()
                .filter(|(p, _)| *p == proto)
                .map(|(_, bytes)| *bytes)
                .collect();
            let stream = samples.concat();
            let (mut buf, mut replies) = (Vec::new(), Vec::new());
            for &byte in &stream {
                buf.push(byte);
                while let Some(parsed) = parse(&buf, proto).unwrap() {
                    replies.push(buf.drain(..parsed.len).collect::<Vec<u8>>());
                }
            }
            assert!(buf.is_empty(), "{proto:?}: {buf:?} left over");
            assert_eq!(replies, samples, "{proto:?}");
        }
    }

    // What RESP refuses: the stream cannot be trusted past it.

    #[test]
    fn a_resp_line_must_end_with_crlf() {
        assert_eq!(refused(b"+OK\n"), r#"a RESP line without \r\n: "+OK""#);
        assert_eq!(refused(b"\n"), r#"a RESP line without \r\n: """#);
    }

    #[test]
    fn an_empty_resp_line_is_refused() {
        assert_eq!(refused(b"\r\n"), r#"an empty RESP line: """#);
    }

    #[test]
    fn an_unknown_type_byte_is_refused() {
        assert_eq!(refused(b"OK\r\n"), r#"not a RESP reply: "OK""#);
        assert!(refused(b"*1\r\n?\r\n").starts_with("not a RESP reply"));
    }

    #[test]
    fn lengths_counts_and_integers_must_be_numbers() {
        for bytes in [&b":x\r\n"[..], b":\r\n", b"$abc\r\n", b"*1.5\r\n"] {
            let message = refused(bytes);
            assert!(
                message.starts_with("a RESP length or integer that is not a number"),
                "{message}"
            );
        }
    }

    #[test]
    fn a_bulk_length_must_be_nil_or_from_zero_to_one_gib() {
        assert!(refused(b"$-2\r\n").starts_with("a bad RESP bulk length"));
        let too_long = format!("${}\r\n", MAX_RESP_BULK + 1);
        assert!(refused(too_long.as_bytes()).starts_with("a bad RESP bulk length"));
    }

    #[test]
    fn a_bulk_string_must_end_with_crlf() {
        assert_eq!(
            refused(b"$2\r\nabcd"),
            r#"a RESP bulk string without \r\n: "abcd""#
        );
    }

    #[test]
    fn an_array_count_must_be_nil_or_not_negative_and_fit_in_the_counter() {
        assert!(refused(b"*-2\r\n").starts_with("a bad RESP array"));
        let huge = format!("*{}\r\n", i64::MAX).repeat(3);
        assert!(refused(huge.as_bytes()).starts_with("a bad RESP array"));
    }
}
