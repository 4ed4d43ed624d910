//! The line protocol's framing: requests are lines ended by `\n`, parsed in batches.
//!
//! Each call takes every complete line already buffered (up to a batch limit), so a client that
//! pipelines many requests has them handled as one batch: one message to the Store and one
//! write of the replies.

use bytes::BytesMut;
use thiserror::Error;

use super::command::{CommandError, Request};
use super::line_commands;
use crate::replication::wire::Replicate;

/// A line grew past the limit before its `\n` arrived. The connection must be closed, since
/// the rest of the line cannot be told apart from the next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[error("line too long (limit {limit} bytes)")]
pub struct LineTooLong {
    /// The longest line accepted, in bytes, not counting the `\n`.
    pub limit: usize,
}

/// What one call found: the requests of complete lines, and whether a primary's replication
/// opening ended the batch (nothing after it is a request).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Lines {
    /// Parsed or refused requests, in order; blank lines are skipped.
    pub requests: Vec<Request>,
    /// A `REPLICATE` line that came after `requests`.
    pub replicate: Option<Replicate>,
}

/// Splits a connection's bytes at `\n` and parses each line.
#[derive(Debug)]
pub struct LineDecoder {
    /// The longest line accepted (without its `\n`).
    max_line: usize,
    /// The most requests yielded as one batch.
    max_batch: usize,
    /// How far the buffer has already been searched for `\n`, so a long line arriving in many
    /// reads is scanned once, not once per read.
    scanned: usize,
}

impl LineDecoder {
    /// A decoder refusing lines longer than `max_line` bytes and yielding at most `max_batch`
    /// requests per batch.
    pub fn new(max_line: usize, max_batch: usize) -> Self {
        LineDecoder {
            max_line,
            max_batch: max_batch.max(1),
            scanned: 0,
        }
    }

    /// The longest line accepted.
    pub fn max_line(&self) -> usize {
        self.max_line
    }

    /// Refuse lines longer than `max_line` from now on (a connection's limit shrinks before it
    /// logs in and grows back after).
    pub fn set_max_line(&mut self, max_line: usize) {
        self.max_line = max_line;
    }

    /// Take every complete line at the front of `src`, up to the batch limit, or up to and
    /// including a replication opening. A line too long is reported once the requests before
    /// it are answered: only when nothing else is in the batch.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Lines, LineTooLong> {
        let mut lines = Lines::default();
        let too_long = LineTooLong {
            limit: self.max_line,
        };
        while lines.requests.len() < self.max_batch {
            let Some(offset) = memchr::memchr(b'\n', &src[self.scanned..]) else {
                self.scanned = src.len();
                if src.len() > self.max_line && lines.requests.is_empty() {
                    return Err(too_long);
                }
                break;
            };
            let end = self.scanned + offset;
            self.scanned = 0;
            if end > self.max_line {
                if lines.requests.is_empty() {
                    return Err(too_long);
                }
                break;
            }
            let mut line = src.split_to(end + 1).freeze();
            line.truncate(end);
            match line_commands::parse(&line) {
                // Not a command: perhaps a primary opening its stream. Checked only here, so
                // the requests of clients pay nothing for it.
                Some(Err(CommandError::Unknown(verb))) => match Replicate::parse(&line) {
                    Some(replicate) => {
                        lines.replicate = Some(replicate);
                        break;
                    }
                    None if verb.eq_ignore_ascii_case("REPLICATE") => lines
                        .requests
                        .push(Err(CommandError::Usage(Replicate::USAGE))),
                    None => lines.requests.push(Err(CommandError::Unknown(verb))),
                },
                Some(request) => lines.requests.push(request),
                None => {}
            }
        }
        Ok(lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::Command;
    use bytes::Bytes;

    fn get(key: &'static str) -> Request {
        Ok(Command::Get {
            key: Bytes::from_static(key.as_bytes()),
        })
    }

    fn requests(requests: Vec<Request>) -> Result<Lines, LineTooLong> {
        Ok(Lines {
            requests,
            replicate: None,
        })
    }

    #[test]
    fn every_complete_line_forms_one_batch() {
        let mut decoder = LineDecoder::new(100, 10);
        let mut buf = BytesMut::from("GET a\r\n\nGET b\nGET c");
        assert_eq!(decoder.decode(&mut buf), requests(vec![get("a"), get("b")]));
        assert_eq!(decoder.decode(&mut buf), requests(vec![]));
        buf.extend_from_slice(b"\n");
        assert_eq!(decoder.decode(&mut buf), requests(vec![get("c")]));
    }

    #[test]
    fn batches_are_capped() {
        let mut decoder = LineDecoder::new(100, 2);
        let mut buf = BytesMut::from("GET a\nGET b\nGET c\n");
        assert_eq!(decoder.decode(&mut buf).unwrap().requests.len(), 2);
        assert_eq!(decoder.decode(&mut buf).unwrap().requests.len(), 1);
    }

    #[test]
    fn a_long_line_is_refused_once_the_requests_before_it_are_answered() {
        let mut decoder = LineDecoder::new(8, 10);
        let mut buf = BytesMut::from("GET a\nGET 123456789");
        assert_eq!(decoder.decode(&mut buf), requests(vec![get("a")]));
        assert_eq!(decoder.decode(&mut buf), Err(LineTooLong { limit: 8 }));
        let mut buf = BytesMut::from("GET 1234567\n");
        assert_eq!(
            LineDecoder::new(8, 10).decode(&mut buf),
            Err(LineTooLong { limit: 8 })
        );
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_accepted() {
        let mut buf = BytesMut::from("GET 1234\n");
        let lines = LineDecoder::new(8, 10).decode(&mut buf).unwrap();
        assert_eq!(lines.requests.len(), 1);
    }

    #[test]
    fn a_replication_opening_ends_the_batch() {
        let mut decoder = LineDecoder::new(100, 10);
        let mut buf = BytesMut::from("PING\nREPLICATE s3cret\nFULLSYNC abc 7\n");
        let lines = decoder.decode(&mut buf).unwrap();
        assert_eq!(lines.requests, vec![Ok(Command::Ping)]);
        assert_eq!(lines.replicate, Some(Replicate::new("s3cret")));
        assert_eq!(&buf[..], b"FULLSYNC abc 7\n");
        let mut buf = BytesMut::from("REPLICATE a b\n");
        let lines = decoder.decode(&mut buf).unwrap();
        assert_eq!(
            lines.requests,
            vec![Err(CommandError::Usage(Replicate::USAGE))]
        );
    }
}
