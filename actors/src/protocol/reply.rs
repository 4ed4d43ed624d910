//! Replies, and how each is written on the wire in either protocol.
//!
//! A reply is a protocol-neutral value: the session decides what to answer, and the
//! connection's [`Protocol`] decides how it looks. In the line protocol every reply is exactly
//! one line; in RESP it is a typed RESP2 value. Encoding appends to the session's output
//! buffer, so a reply costs no allocation of its own.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};

pub use super::error::ErrorReply;
use crate::protocol::resp;
use crate::store::pair::Pair;
use crate::store::Outcome;

/// One reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK`: a PUT was applied, or a DEL removed a key.
    Ok,
    /// `NOT_FOUND`: a GET or DEL found no such key.
    NotFound,
    /// A value to send as it is (ECHO, HELLO's fields).
    Value(Bytes),
    /// A GET's value, read straight from the pair the Store holds: no copy, no allocation.
    Stored(Pair),
    /// `PONG`, the answer to PING.
    Pong,
    /// `QUEUED`: a command queued inside `MULTI`.
    Queued,
    /// A status word (RESP simple string): `TYPE`'s `string` or `none`.
    Status(&'static str),
    /// `Goodbye`, the answer to EXIT, after which the connection closes.
    Goodbye,
    /// A line of text: INFO, DIGEST and WAIT answers, and replication control lines.
    Text(String),
    /// A number (RESP `:n`; a decimal line in the line protocol).
    Integer(i64),
    /// Several replies (RESP arrays: MGET, COMMAND, EXEC).
    Array(Vec<Reply>),
    /// No array at all (RESP2 `*-1`, RESP3 `_`): an `EXEC` whose watched keys changed.
    NullArray,
    /// Field-value pairs (HELLO): a map in RESP3, a flat array in RESP2.
    Map(Vec<(Reply, Reply)>),
    /// `ERROR: ...`
    Error(ErrorReply),
}

impl From<Outcome> for Reply {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Value(pair) => Reply::Stored(pair),
            Outcome::NotFound => Reply::NotFound,
            Outcome::Applied(_) => Reply::Ok,
            Outcome::Number(n, _) => Reply::Integer(n),
            Outcome::Swapped(Some(pair), _) => Reply::Stored(pair),
            Outcome::Swapped(None, _) => Reply::NotFound,
            Outcome::Bulk(bytes, _) => Reply::Value(bytes),
            Outcome::Keys(keys) => Reply::Array(keys.into_iter().map(Reply::Value).collect()),
            Outcome::Scanned(cursor, keys) => Reply::Array(vec![
                Reply::Value(Bytes::from(cursor.to_string())),
                Reply::Array(keys.into_iter().map(Reply::Value).collect()),
            ]),
            Outcome::Refused(why) => Reply::Error(ErrorReply::Command(
                crate::protocol::error::CommandError::Redis(why.into()),
            )),
        }
    }
}

/// How a connection frames its replies: chosen by the first line the client sends
/// ([`super::codec::protocol_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    /// The line protocol of the C++ store.
    #[default]
    Line,
    /// RESP2, the Redis protocol.
    Resp,
    /// RESP3, after `HELLO 3`: the same, but nulls are `_` and maps are `%`.
    Resp3,
}

impl Protocol {
    /// Whether replies are RESP (2 or 3).
    pub fn is_resp(self) -> bool {
        self != Protocol::Line
    }
}

impl Reply {
    /// Append this reply to `out` as `protocol` frames it.
    pub fn encode(&self, protocol: Protocol, out: &mut BytesMut) {
        match protocol {
            Protocol::Line => self.encode_line(out),
            Protocol::Resp => self.encode_resp(out, false),
            Protocol::Resp3 => self.encode_resp(out, true),
        }
    }

    /// The bytes of a value reply, whichever way it is held.
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            Reply::Value(value) => Some(value),
            Reply::Stored(pair) => Some(pair.value()),
            _ => None,
        }
    }

    /// Append this reply, with its `\n`, to `out`.
    pub fn encode_line(&self, out: &mut BytesMut) {
        match self {
            Reply::Ok => out.put_slice(b"OK\n"),
            Reply::NotFound => out.put_slice(b"NOT_FOUND\n"),
            Reply::Value(_) | Reply::Stored(_) => {
                let value = self.value().unwrap_or_default();
                if value.contains(&b'\n') {
                    return Reply::Error(ErrorReply::NeedsResp).encode_line(out);
                }
                out.reserve(value.len() + 1);
                out.put_slice(value);
                out.put_u8(b'\n');
            }
            Reply::Pong => out.put_slice(b"PONG\n"),
            Reply::Queued => out.put_slice(b"QUEUED\n"),
            Reply::Status(word) => {
                out.put_slice(word.as_bytes());
                out.put_u8(b'\n');
            }
            Reply::Goodbye => out.put_slice(b"Goodbye\n"),
            Reply::Text(text) => {
                out.put_slice(text.as_bytes());
                out.put_u8(b'\n');
            }
            Reply::Integer(n) => {
                let _ = writeln!(out, "{n}");
            }
            Reply::NullArray => out.put_slice(b"NOT_FOUND\n"),
            Reply::Array(items) => {
                // Only RESP commands answer arrays; keep the one-line framing regardless.
                let _ = writeln!(out, "{}", items.len());
            }
            Reply::Map(pairs) => {
                let _ = writeln!(out, "{}", pairs.len());
            }
            Reply::Error(error) => {
                // Writing to a BytesMut cannot fail.
                let _ = writeln!(out, "ERROR: {error}");
            }
        }
    }

    /// Append this reply as a RESP2 value, or a RESP3 one (`resp3`).
    pub fn encode_resp(&self, out: &mut BytesMut, resp3: bool) {
        match self {
            Reply::Ok | Reply::Goodbye => resp::simple(out, "OK"),
            Reply::NotFound if resp3 => out.put_slice(b"_\r\n"),
            Reply::NotFound => resp::null(out),
            Reply::Value(value) => resp::bulk(out, value),
            Reply::Stored(pair) => resp::bulk(out, pair.value()),
            Reply::Pong => resp::simple(out, "PONG"),
            Reply::Queued => resp::simple(out, "QUEUED"),
            Reply::Status(word) => resp::simple(out, word),
            Reply::Text(text) => resp::bulk(out, text.as_bytes()),
            Reply::Integer(n) => resp::integer(out, *n),
            Reply::NullArray if resp3 => out.put_slice(b"_\r\n"),
            Reply::NullArray => out.put_slice(b"*-1\r\n"),
            Reply::Array(items) => {
                resp::array_header(out, items.len());
                for item in items {
                    item.encode_resp(out, resp3);
                }
            }
            Reply::Map(pairs) => {
                match resp3 {
                    true => {
                        let _ = write!(out, "%{}\r\n", pairs.len());
                    }
                    false => resp::array_header(out, pairs.len() * 2),
                }
                for (field, value) in pairs {
                    field.encode_resp(out, resp3);
                    value.encode_resp(out, resp3);
                }
            }
            Reply::Error(error) => resp::error(out, &error.resp_text()),
        }
    }

    /// The encoded line, for tests and clients.
    pub fn to_line(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode_line(&mut out);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error::CommandError;

    #[test]
    fn each_reply_is_one_line() {
        assert_eq!(Reply::Ok.to_line(), "OK\n");
        assert_eq!(Reply::NotFound.to_line(), "NOT_FOUND\n");
        assert_eq!(Reply::Value(Bytes::from_static(b"a b")).to_line(), "a b\n");
        assert_eq!(Reply::Pong.to_line(), "PONG\n");
        assert_eq!(Reply::Goodbye.to_line(), "Goodbye\n");
        assert_eq!(
            Reply::Error(ErrorReply::ReadOnly).to_line(),
            "ERROR: READONLY: this node is a replica; write to the primary\n"
        );
        assert_eq!(
            Reply::Error(CommandError::Usage("GET <key>").into()).to_line(),
            "ERROR: usage: GET <key>\n"
        );
        assert_eq!(
            Reply::Error(ErrorReply::LineTooLong { limit: 10 }).to_line(),
            "ERROR: line too long (limit 10 bytes)\n"
        );
    }
}
