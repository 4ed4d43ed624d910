//! A connection's decoder: bytes in, batches of parsed requests out.
//!
//! The first byte a client sends picks its protocol for the connection's whole life: `*` is
//! RESP2 (the Redis protocol), anything else the line protocol ([`super::line`]). Both yield
//! batches of the same [`Request`]s. A connection that opens with `REPLICATE` is a primary's
//! replication stream: from then on the replication stream's decoder
//! ([`crate::replication::wire::StreamDecoder`]) reads it.

use bytes::BytesMut;
use thiserror::Error;
use tokio_util::codec::Decoder;

use super::command;
pub use super::command::Request;
use super::line::{LineDecoder, LineTooLong};
use super::resp;
use crate::replication::wire::{Replicate, StreamDecoder, StreamFrame, WireError};

/// What a connection sends, decoded.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A batch of requests in the line protocol.
    Requests(Vec<Request>),
    /// A batch of requests sent over RESP.
    Resp(Vec<Request>),
    /// A primary opened its replication stream: the connection carries replication from now.
    Replicate(Replicate),
    /// Part of a primary's replication stream.
    Stream(StreamFrame),
}

/// Why the byte stream of a connection cannot go on.
#[derive(Debug, Error)]
pub enum CodecError {
    /// A request line too long; the client is told and the connection closed.
    #[error(transparent)]
    LineTooLong(#[from] LineTooLong),
    /// A replication stream that does not follow the protocol.
    #[error("bad replication stream: {0}")]
    Replication(#[from] WireError),
    /// Malformed RESP; the client is told and the connection closed, as Redis does.
    #[error(transparent)]
    Resp(#[from] resp::ProtocolError),
    /// Reading the socket failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// What the codec expects next.
#[derive(Debug)]
enum Mode {
    /// Nothing received yet: the first byte decides between lines and RESP.
    Start,
    /// Request lines.
    Lines,
    /// RESP requests.
    Resp,
    /// A primary's replication stream.
    Replication(StreamDecoder),
}

/// Decodes one connection, whatever it speaks.
#[derive(Debug)]
pub struct ConnectionCodec {
    /// What the codec expects next.
    mode: Mode,
    /// The line protocol's framing (its limit also bounds RESP requests).
    lines: LineDecoder,
    /// A replication opening read after a batch of requests, yielded by the next call.
    replicate: Option<Replicate>,
    /// The most requests (or records) yielded as one batch.
    max_batch: usize,
    /// The largest value (RESP bulk string) accepted.
    max_value: usize,
    /// Where an incomplete RESP request's parse stopped.
    resp: resp::RequestDecoder,
}

impl ConnectionCodec {
    /// A codec refusing lines longer than `max_line` bytes (not counting the `\n`) and
    /// yielding at most `max_batch` requests per batch.
    pub fn new(max_line: usize, max_batch: usize) -> Self {
        ConnectionCodec {
            mode: Mode::Start,
            lines: LineDecoder::new(max_line, max_batch),
            replicate: None,
            max_batch: max_batch.max(1),
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
            .saturating_add(self.lines.max_line());
        if batch.is_empty() && src.len() > max_request {
            return Err(resp::ProtocolError("request too large".into()).into());
        }
        Ok((!batch.is_empty()).then_some(Frame::Resp(batch)))
    }

    /// A replication opening switches the connection to the replication stream.
    fn replicating(&mut self, replicate: Replicate) -> Frame {
        self.mode = Mode::Replication(StreamDecoder::new(self.max_batch));
        Frame::Replicate(replicate)
    }
}

impl Decoder for ConnectionCodec {
    type Item = Frame;
    type Error = CodecError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        if let Some(replicate) = self.replicate.take() {
            return Ok(Some(self.replicating(replicate)));
        }
        if let Mode::Start = self.mode {
            match src.first() {
                None => return Ok(None),
                Some(b'*') => self.mode = Mode::Resp,
                Some(_) => self.mode = Mode::Lines,
            }
        }
        match &mut self.mode {
            Mode::Start | Mode::Lines => {}
            Mode::Resp => return self.decode_resp(src),
            Mode::Replication(stream) => return Ok(stream.decode(src)?.map(Frame::Stream)),
        }
        let lines = self.lines.decode(src)?;
        match (lines.requests.is_empty(), lines.replicate) {
            (true, Some(replicate)) => Ok(Some(self.replicating(replicate))),
            (true, None) => Ok(None),
            (false, replicate) => {
                // Nothing after the opening is a request: answer the batch, then switch.
                self.replicate = replicate;
                Ok(Some(Frame::Requests(lines.requests)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::command::Command;
    use crate::replication::wire::{Prove, SyncStart};
    use crate::storage::record::Entry;

    #[test]
    fn a_replication_stream_switches_to_records() {
        let mut codec = ConnectionCodec::new(100, 10);
        let mut buf = BytesMut::from("PING\nREPLICATE s3cret\nPROVE - 0\nFULLSYNC abc 7\n");
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Requests(vec![Ok(Command::Ping)]))
        );
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Replicate(Replicate::new("s3cret")))
        );
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Stream(StreamFrame::Prove(Prove {
                proof: None,
                from: 0
            })))
        );
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Stream(StreamFrame::Start(SyncStart::Full {
                id: "abc".into(),
                seq: 7
            })))
        );
        let mut records = Vec::new();
        crate::replication::wire::StreamEncoder::heartbeat(7, &mut records);
        buf.extend_from_slice(&records);
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Stream(StreamFrame::Records(vec![
                Entry::Heartbeat { seq: 7 }
            ])))
        );
    }

    #[test]
    fn the_first_byte_picks_the_protocol() {
        let mut codec = ConnectionCodec::new(100, 10);
        let mut buf = BytesMut::from("*1\r\n$4\r\nPING\r\n");
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Resp(vec![Ok(Command::Ping)]))
        );
        let mut codec = ConnectionCodec::new(100, 10);
        let mut buf = BytesMut::from("PING\n");
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Requests(vec![Ok(Command::Ping)]))
        );
    }
}
