//! The wire codec of the line protocol: bytes in, batches of parsed requests out.
//!
//! Each call to `decode` takes every complete line already buffered (up to a batch limit), so a
//! client that pipelines many requests has them handled as one batch: one message to the Store
//! and one write of the replies.

use bytes::BytesMut;
use thiserror::Error;
use tokio_util::codec::Decoder;

use crate::command::{self, Command, CommandError};

/// One non-blank request line, parsed or refused.
pub type Request = Result<Command, CommandError>;

/// Why the byte stream of a connection cannot go on.
#[derive(Debug, Error)]
pub enum CodecError {
    /// A line grew past the limit before its `\n` arrived. The connection must be closed, since
    /// the rest of the line cannot be told apart from the next request.
    #[error("line too long (limit {limit} bytes)")]
    LineTooLong { limit: usize },
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Splits the stream at `\n` and parses each line into a [`Request`].
#[derive(Debug)]
pub struct LineCodec {
    max_line: usize,
    max_batch: usize,
    /// How far the buffer has already been searched for `\n`, so a long line arriving in many
    /// reads is scanned once, not once per read.
    scanned: usize,
}

impl LineCodec {
    /// A codec refusing lines longer than `max_line` bytes (not counting the `\n`) and
    /// yielding at most `max_batch` requests per batch.
    pub fn new(max_line: usize, max_batch: usize) -> Self {
        LineCodec {
            max_line,
            max_batch: max_batch.max(1),
            scanned: 0,
        }
    }
}

impl Decoder for LineCodec {
    type Item = Vec<Request>;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        let mut batch = Vec::new();
        while batch.len() < self.max_batch {
            let Some(offset) = memchr::memchr(b'\n', &src[self.scanned..]) else {
                self.scanned = src.len();
                if src.len() > self.max_line && batch.is_empty() {
                    return Err(CodecError::LineTooLong {
                        limit: self.max_line,
                    });
                }
                break;
            };
            let end = self.scanned + offset;
            self.scanned = 0;
            if end > self.max_line {
                if batch.is_empty() {
                    return Err(CodecError::LineTooLong {
                        limit: self.max_line,
                    });
                }
                // Answer the complete requests first; the next call reports the long line.
                break;
            }
            let mut line = src.split_to(end + 1).freeze();
            line.truncate(end);
            if let Some(request) = command::parse(&line) {
                batch.push(request);
            }
        }
        Ok((!batch.is_empty()).then_some(batch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn get(key: &'static str) -> Request {
        Ok(Command::Get {
            key: Bytes::from_static(key.as_bytes()),
        })
    }

    #[test]
    fn every_complete_line_forms_one_batch() {
        let mut codec = LineCodec::new(100, 10);
        let mut buf = BytesMut::from("GET a\r\n\nGET b\nGET c");
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(vec![get("a"), get("b")])
        );
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(vec![get("c")]));
    }

    #[test]
    fn batches_are_capped() {
        let mut codec = LineCodec::new(100, 2);
        let mut buf = BytesMut::from("GET a\nGET b\nGET c\n");
        assert_eq!(codec.decode(&mut buf).unwrap().map(|b| b.len()), Some(2));
        assert_eq!(codec.decode(&mut buf).unwrap().map(|b| b.len()), Some(1));
    }

    #[test]
    fn a_long_line_is_refused_once_the_requests_before_it_are_answered() {
        let mut codec = LineCodec::new(8, 10);
        let mut buf = BytesMut::from("GET a\nGET 123456789");
        assert_eq!(codec.decode(&mut buf).unwrap(), Some(vec![get("a")]));
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::LineTooLong { limit: 8 })
        ));
        let mut buf = BytesMut::from("GET 1234567\n");
        assert!(matches!(
            LineCodec::new(8, 10).decode(&mut buf),
            Err(CodecError::LineTooLong { limit: 8 })
        ));
    }

    #[test]
    fn a_line_of_exactly_the_limit_is_accepted() {
        let mut codec = LineCodec::new(8, 10);
        let mut buf = BytesMut::from("GET 1234\n");
        assert!(codec.decode(&mut buf).unwrap().is_some());
    }
}
