//! The wire codec of a connection: bytes in, batches of parsed requests out.
//!
//! Each call to `decode` takes every complete line already buffered (up to a batch limit), so a
//! client that pipelines many requests has them handled as one batch: one message to the Store
//! and one write of the replies.
//!
//! A connection whose first byte is `*` speaks RESP2 (the Redis protocol) for its whole life:
//! the codec then decodes RESP arrays into the same requests, in batches too.
//!
//! A connection that opens with `REPLICATE` is a primary's replication stream: after that line
//! the codec reads one control line (`FULLSYNC <id> <seq>` or `CONTINUE <id> <offset>`) and
//! then binary records (see `record.rs`), yielded in batches too.

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio_util::codec::Decoder;

use crate::command::{self, Command, CommandError};
use crate::record::{self, Entry};
use crate::resp;
use crate::store::Seq;

/// One non-blank request line, parsed or refused.
pub type Request = Result<Command, CommandError>;

/// What a connection sends, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A batch of client requests.
    Requests(Vec<Request>),
    /// `REPLICATE <secret>`: the connection is a replication stream from now on.
    Replicate { secret: Bytes },
    /// How the primary starts the stream.
    SyncStart(SyncStart),
    /// A batch of replication records.
    Records(Vec<Entry>),
    /// A batch of requests sent over RESP.
    Resp(Vec<Request>),
}

/// The primary's choice after learning the replica's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStart {
    /// A snapshot as of `seq` follows, then the mutations after it.
    Full { id: String, seq: Seq },
    /// The mutations after `offset` follow.
    Continue { id: String, offset: Seq },
}

/// Why the byte stream of a connection cannot go on.
#[derive(Debug, Error)]
pub enum CodecError {
    /// A line grew past the limit before its `\n` arrived. The connection must be closed, since
    /// the rest of the line cannot be told apart from the next request.
    #[error("line too long (limit {limit} bytes)")]
    LineTooLong { limit: usize },
    #[error("bad replication stream: {0}")]
    Replication(String),
    /// Malformed RESP; the client is told and the connection closed, as Redis does.
    #[error(transparent)]
    Resp(#[from] resp::ProtocolError),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What the codec expects next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing received yet: the first byte decides between lines and RESP.
    Start,
    Requests,
    Resp,
    /// After `REPLICATE`: the control line.
    SyncStart,
    Records,
}

/// Splits the stream at `\n` and parses each line into a [`Request`].
#[derive(Debug)]
pub struct LineCodec {
    max_line: usize,
    max_batch: usize,
    /// How far the buffer has already been searched for `\n`, so a long line arriving in many
    /// reads is scanned once, not once per read.
    scanned: usize,
    mode: Mode,
    /// A `REPLICATE` line read at the end of a batch, yielded by the next call.
    replicate: Option<Bytes>,
    /// The largest value (RESP bulk string) accepted.
    max_value: usize,
    /// Where an incomplete RESP request's parse stopped.
    resp: resp::RequestDecoder,
}

impl LineCodec {
    /// A codec refusing lines longer than `max_line` bytes (not counting the `\n`) and
    /// yielding at most `max_batch` requests per batch.
    pub fn new(max_line: usize, max_batch: usize) -> Self {
        LineCodec {
            max_line,
            max_batch: max_batch.max(1),
            scanned: 0,
            mode: Mode::Start,
            replicate: None,
            max_value: max_line,
            resp: resp::RequestDecoder::default(),
        }
    }

    /// Accept RESP values of up to `max_value` bytes (by default, as long as a line).
    pub fn max_value(mut self, max_value: usize) -> Self {
        self.max_value = max_value;
        self
    }

    fn decode_resp(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        let mut batch = Vec::new();
        while batch.len() < self.max_batch && !src.is_empty() {
            match self.resp.decode(src, self.max_value) {
                Ok(Some(args)) => batch.extend(command::from_resp(args)),
                Ok(None) => break,
                // Answer the requests before it first; the next call reports the error.
                Err(_) if !batch.is_empty() => break,
                Err(error) => return Err(error.into()),
            }
        }
        // One request may carry several values (MSET), but not without bound: as Redis's
        // client-query-buffer-limit, an incomplete request this large ends the connection.
        let max_request = self
            .max_value
            .saturating_mul(2)
            .saturating_add(self.max_line);
        if batch.is_empty() && src.len() > max_request {
            return Err(resp::ProtocolError("request too large".into()).into());
        }
        Ok((!batch.is_empty()).then_some(Frame::Resp(batch)))
    }

    /// The largest record accepted on a replication stream: whatever any node may have
    /// written, not this node's client limits, or a primary with larger limits than its replica
    /// could send a record the replica refuses forever.
    fn max_record(&self) -> usize {
        record::MAX_BODY
    }

    fn decode_sync_start(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        let Some(end) = memchr::memchr(b'\n', src) else {
            if src.len() > 256 {
                return Err(CodecError::Replication("control line too long".into()));
            }
            return Ok(None);
        };
        let line = src.split_to(end + 1);
        let text = String::from_utf8_lossy(&line[..end]);
        let words: Vec<&str> = text.split_whitespace().collect();
        let start = match words.as_slice() {
            ["FULLSYNC", id, seq] => seq.parse().ok().map(|seq| SyncStart::Full {
                id: id.to_string(),
                seq,
            }),
            ["CONTINUE", id, offset] => offset.parse().ok().map(|offset| SyncStart::Continue {
                id: id.to_string(),
                offset,
            }),
            _ => None,
        };
        let start =
            start.ok_or_else(|| CodecError::Replication(format!("unexpected {text:.80}")))?;
        self.mode = Mode::Records;
        Ok(Some(Frame::SyncStart(start)))
    }

    fn decode_records(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        let mut entries = Vec::new();
        let mut used = 0;
        while entries.len() < self.max_batch {
            match record::decode(&src[used..], self.max_record()) {
                Ok(Some((entry, len))) => {
                    entries.push(entry);
                    used += len;
                }
                Ok(None) => break,
                Err(error) => return Err(CodecError::Replication(error.to_string())),
            }
        }
        let _ = src.split_to(used);
        Ok((!entries.is_empty()).then_some(Frame::Records(entries)))
    }
}

impl Decoder for LineCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        if let Some(secret) = self.replicate.take() {
            self.mode = Mode::SyncStart;
            return Ok(Some(Frame::Replicate { secret }));
        }
        if self.mode == Mode::Start {
            match src.first() {
                None => return Ok(None),
                Some(b'*') => self.mode = Mode::Resp,
                Some(_) => self.mode = Mode::Requests,
            }
        }
        match self.mode {
            Mode::Start | Mode::Requests => {}
            Mode::Resp => return self.decode_resp(src),
            Mode::SyncStart => return self.decode_sync_start(src),
            Mode::Records => return self.decode_records(src),
        }
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
            match command::parse(&line) {
                Some(Ok(Command::Replicate { secret })) => {
                    // Nothing after this line is a request: answer the batch, then switch.
                    if batch.is_empty() {
                        self.mode = Mode::SyncStart;
                        return Ok(Some(Frame::Replicate { secret }));
                    }
                    self.replicate = Some(secret);
                    break;
                }
                Some(request) => batch.push(request),
                None => {}
            }
        }
        Ok((!batch.is_empty()).then_some(Frame::Requests(batch)))
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

    fn requests(batch: Vec<Request>) -> Option<Frame> {
        Some(Frame::Requests(batch))
    }

    #[test]
    fn a_replication_stream_switches_to_records() {
        let mut codec = LineCodec::new(100, 10);
        let mut buf = BytesMut::from("PING\nREPLICATE s3cret\nFULLSYNC abc 7\n");
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            requests(vec![Ok(Command::Ping)])
        );
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Replicate {
                secret: Bytes::from_static(b"s3cret")
            })
        );
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::SyncStart(SyncStart::Full {
                id: "abc".into(),
                seq: 7
            }))
        );
        let mut records = Vec::new();
        record::encode_end(7, 0, &mut records);
        record::encode_heartbeat(7, &mut records);
        buf.extend_from_slice(&records[..records.len() - 1]);
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Records(vec![Entry::End { seq: 7, count: 0 }]))
        );
        buf.extend_from_slice(&records[records.len() - 1..]);
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Records(vec![Entry::Heartbeat { seq: 7 }]))
        );
    }

    #[test]
    fn every_complete_line_forms_one_batch() {
        let mut codec = LineCodec::new(100, 10);
        let mut buf = BytesMut::from("GET a\r\n\nGET b\nGET c");
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            requests(vec![get("a"), get("b")])
        );
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"\n");
        assert_eq!(codec.decode(&mut buf).unwrap(), requests(vec![get("c")]));
    }

    #[test]
    fn batches_are_capped() {
        let mut codec = LineCodec::new(100, 2);
        let mut buf = BytesMut::from("GET a\nGET b\nGET c\n");
        assert!(
            matches!(codec.decode(&mut buf).unwrap(), Some(Frame::Requests(b)) if b.len() == 2)
        );
        assert!(
            matches!(codec.decode(&mut buf).unwrap(), Some(Frame::Requests(b)) if b.len() == 1)
        );
    }

    #[test]
    fn a_long_line_is_refused_once_the_requests_before_it_are_answered() {
        let mut codec = LineCodec::new(8, 10);
        let mut buf = BytesMut::from("GET a\nGET 123456789");
        assert_eq!(codec.decode(&mut buf).unwrap(), requests(vec![get("a")]));
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
