//! The replies of the line protocol and how each is written on the wire.
//!
//! Every reply is exactly one line. Encoding appends to the session's output buffer, so a reply
//! costs no allocation of its own.

use std::fmt::Write as _;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::command::CommandError;
use crate::store::Outcome;

/// One reply line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `OK`: a PUT was applied, or a DEL removed a key.
    Ok,
    /// `NOT_FOUND`: a GET or DEL found no such key.
    NotFound,
    /// A GET's value, as it was stored.
    Value(Bytes),
    /// `PONG`, the answer to PING.
    Pong,
    /// `Goodbye`, the answer to EXIT, after which the connection closes.
    Goodbye,
    /// A line of text: INFO, DIGEST and WAIT answers, and replication control lines.
    Text(String),
    /// `ERROR: ...`
    Error(ErrorReply),
}

/// Everything a client can be told went wrong; its `Display` is the text after `ERROR: `.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ErrorReply {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("READONLY: this node is a replica; write to the primary")]
    ReadOnly,
    #[error("line too long (limit {limit} bytes)")]
    LineTooLong { limit: usize },
    #[error("max clients reached")]
    MaxClients,
    #[error("replies too large (client output limit {limit} bytes); closing the connection")]
    OutputLimit { limit: usize },
    #[error("REPLICATE: this node is not a replica")]
    NotAReplica,
    #[error("replication refused: wrong cluster secret")]
    WrongSecret,
    #[error("WAIT cannot be used on a replica")]
    WaitOnReplica,
    /// The write could not be made durable, or writes are refused until the disk recovers.
    #[error("persistence failed: {0}")]
    PersistenceFailed(std::sync::Arc<str>),
}

impl From<Outcome> for Reply {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Value(value) => Reply::Value(value),
            Outcome::NotFound => Reply::NotFound,
            Outcome::Applied(_) => Reply::Ok,
        }
    }
}

impl Reply {
    /// Append this reply, with its `\n`, to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Reply::Ok => out.put_slice(b"OK\n"),
            Reply::NotFound => out.put_slice(b"NOT_FOUND\n"),
            Reply::Value(value) => {
                out.reserve(value.len() + 1);
                out.put_slice(value);
                out.put_u8(b'\n');
            }
            Reply::Pong => out.put_slice(b"PONG\n"),
            Reply::Goodbye => out.put_slice(b"Goodbye\n"),
            Reply::Text(text) => {
                out.put_slice(text.as_bytes());
                out.put_u8(b'\n');
            }
            Reply::Error(error) => {
                // Writing to a BytesMut cannot fail.
                let _ = writeln!(out, "ERROR: {error}");
            }
        }
    }

    /// The encoded line, for tests and clients.
    pub fn to_line(&self) -> Bytes {
        let mut out = BytesMut::new();
        self.encode(&mut out);
        out.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
