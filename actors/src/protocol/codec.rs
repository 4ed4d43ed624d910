//! A connection's decoder: bytes in, batches of parsed requests out.
//!
//! The first line a client sends picks its protocol for the connection's whole life
//! ([`protocol_of`]): RESP (the Redis protocol) when it is an array (`*`) or a line ended by
//! `\r\n` as every Redis tool ends an inline command, unless its verb is one only the line
//! protocol has (`PUT`, `EXIT`, ...); the line protocol ([`super::line`]) otherwise. Both yield
//! batches of the same [`Request`]s. A connection that opens with `REPLICATE` is a primary's
//! replication stream: from then on the replication stream's decoder
//! ([`crate::replication::wire::StreamDecoder`]) reads it.
//!
//! A client connection's codec also tells the node how much memory its reading holds (a
//! [`ReadMeter`], for `--maxmemory-clients`), and on a node that asks for a password holds a
//! connection that has not logged in to small requests ([`ConnectionCodec::login_required`]).

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::{Buf, BytesMut};
use thiserror::Error;
use tokio_util::codec::Decoder;

use super::command;
pub use super::command::Request;
use super::line::{LineDecoder, LineTooLong};
use super::reply::Protocol;
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
    /// A request line longer than a connection may send before it logs in
    /// ([`UNAUTHENTICATED_LINE`]); the client is told and the connection closed.
    #[error("line too long before login (limit {} bytes)", .0.limit)]
    LineTooLongBeforeLogin(LineTooLong),
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

/// The longest line the line protocol takes from a connection that has not logged in, on a
/// node that asks for a password (RESP's limits then are [`resp::UNAUTHENTICATED_ARGS`] and
/// [`resp::UNAUTHENTICATED_BULK`]).
pub const UNAUTHENTICATED_LINE: usize = 16 * 1024;

/// A read buffer left empty with more than this allocated (after a large request) is
/// released, so that an idle connection does not keep the memory of its largest request.
const KEEP_READ_BUFFER: usize = 256 * 1024;
/// What a released read buffer starts again with (what `FramedRead` starts with).
const FRESH_READ_BUFFER: usize = 8 * 1024;

/// Told, after every decode of a client connection, what its reading holds: how the node
/// counts client memory (`--maxmemory-clients`) without the protocol knowing what it is
/// counted for. Called once per read, never per request.
pub trait ReadMeter: fmt::Debug {
    /// The read buffer has `buffered` bytes allocated; `parsed` bytes were just handed out as
    /// a batch of requests, which the connection holds until it has answered them (0: none).
    fn reading(&self, buffered: usize, parsed: usize);

    /// Whether the connection was evicted: what it sends from now on is dropped unread.
    fn evicted(&self) -> bool;

    /// The connection's first line made it a RESP one (before its first request is whole, so
    /// that an error can be worded for it while that request is still arriving).
    fn speaks_resp(&self);
}

/// Verbs only the line protocol has (Redis has no such command, so no Redis tool sends one):
/// a first line that starts with one of them is the line protocol's, even ended by `\r\n`
/// (`telnet`, `nc -C` and Windows tools send that, and the line protocol accepts it).
/// `REPLICATE` is here so that a primary's opening is the line protocol's whatever its line
/// ending.
const LINE_ONLY_VERBS: [&[u8]; 5] = [b"PUT", b"EXIT", b"DIGEST", b"RESYNC", b"REPLICATE"];

/// Whether a byte separates words on a first line (as both protocols split words).
fn is_blank(b: u8) -> bool {
    matches!(b, b' ' | b'\t')
}

/// The protocol of a connection whose first non-blank line is `line` (without its `\n`), or
/// `None` when `line` is blank (empty, or only blanks and a final `\r`): both protocols skip
/// a blank line without a reply, so the next line decides.
///
/// The rule, decided on this one line so that it never depends on how bytes arrive:
/// - a line that starts with `*` is a RESP array: RESP;
/// - a line ended by `\r\n` is a RESP inline command, as Redis reads it (redis-benchmark's
///   `PING_INLINE` opens fresh connections with `PING\r\n` and expects `+PONG\r\n`; every
///   Redis client ends its lines so), unless its verb is one of [`LINE_ONLY_VERBS`];
/// - any other line (ended by `\n` alone, as `nc`, `printf`, `kvcli` and kvbench send) is the
///   line protocol, which stays exactly what it was.
fn line_protocol(line: &[u8]) -> Option<Protocol> {
    if line.first() == Some(&b'*') {
        return Some(Protocol::Resp);
    }
    let (text, crlf) = match line.strip_suffix(b"\r") {
        Some(text) => (text, true),
        None => (line, false),
    };
    let verb = text.split(|b| is_blank(*b)).find(|word| !word.is_empty())?;
    let line_only = LINE_ONLY_VERBS.iter().any(|v| verb.eq_ignore_ascii_case(v));
    Some(match crlf && !line_only {
        true => Protocol::Resp,
        false => Protocol::Line,
    })
}

/// The protocol of a connection whose first bytes are `head`, by [`line_protocol`]: `None`
/// until its first line that is not blank has arrived whole (or starts with `*`). For peeking
/// at a connection without reading it (the Listener refusing one over the client limit).
pub fn protocol_of(head: &[u8]) -> Option<Protocol> {
    let mut rest = head;
    loop {
        if rest.first()? == &b'*' {
            return Some(Protocol::Resp);
        }
        let end = memchr::memchr(b'\n', rest)?;
        if let Some(protocol) = line_protocol(&rest[..end]) {
            return Some(protocol);
        }
        rest = &rest[end + 1..];
    }
}

/// What the codec expects next.
#[derive(Debug)]
enum Mode {
    /// No line that is not blank received yet: the first one decides between lines and RESP
    /// ([`line_protocol`]). `scanned` bytes at the front hold no `\n`, so a long first line
    /// arriving in many reads is searched once.
    Start { scanned: usize },
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
    /// The longest line accepted once logged in (`lines` holds the limit in force).
    max_line: usize,
    /// Told what the reading holds, for a client connection whose memory is counted.
    meter: Option<Arc<dyn ReadMeter + Send + Sync>>,
    /// On a node that asks for a password: whether the connection has logged in (its session
    /// sets it). Until it has, only small requests are taken.
    logged_in: Option<Arc<AtomicBool>>,
}

impl ConnectionCodec {
    /// A codec refusing lines longer than `max_line` bytes (not counting the `\n`) and
    /// yielding at most `max_batch` requests per batch.
    pub fn new(max_line: usize, max_batch: usize) -> Self {
        ConnectionCodec {
            mode: Mode::Start { scanned: 0 },
            lines: LineDecoder::new(max_line, max_batch),
            replicate: None,
            max_batch: max_batch.max(1),
            max_value: max_line,
            resp: resp::RequestDecoder::default(),
            max_line,
            meter: None,
            logged_in: None,
        }
    }

    /// Accept RESP values of up to `max_value` bytes (by default, as long as a line).
    pub fn max_value(mut self, max_value: usize) -> Self {
        self.max_value = max_value;
        self
    }

    /// Tell `meter` what the reading holds after every decode (not for a replication stream,
    /// which is not a client).
    pub fn metered(mut self, meter: Arc<dyn ReadMeter + Send + Sync>) -> Self {
        self.meter = Some(meter);
        self
    }

    /// The node asks for a password: while `logged_in` is false, requests are held to a few
    /// small arguments over RESP and to [`UNAUTHENTICATED_LINE`] bytes over the line
    /// protocol, as Redis holds clients that have not authenticated. Without this (a node
    /// with no password) nothing is checked.
    pub fn login_required(mut self, logged_in: Arc<AtomicBool>) -> Self {
        self.logged_in = Some(logged_in);
        self
    }

    fn decode_resp(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        // One request may carry several values (MSET), but not without bound: as Redis's
        // client-query-buffer-limit, a request larger than this ends the connection.
        let max_request = self
            .max_value
            .saturating_mul(2)
            .saturating_add(self.lines.max_line());
        let mut batch = Vec::new();
        while batch.len() < self.max_batch && !src.is_empty() {
            match self.resp.decode(src, self.max_value, max_request) {
                Ok(Some(args)) => batch.extend(command::from_resp(args)),
                Ok(None) => break,
                // Answer the requests before it first; the next call reports the error.
                Err(_) if !batch.is_empty() => break,
                Err(error) => return Err(error.into()),
            }
        }
        Ok((!batch.is_empty()).then_some(Frame::Resp(batch)))
    }

    /// Pick the protocol from the first line that is not blank, once it has arrived (blank
    /// lines before it are dropped: neither protocol answers them). A first line longer than
    /// the line limit goes to the line protocol, whose decoder refuses it.
    fn start(&mut self, src: &mut BytesMut, mut scanned: usize) -> Mode {
        loop {
            if src.first() == Some(&b'*') {
                return Mode::Resp;
            }
            let Some(offset) = memchr::memchr(b'\n', &src[scanned..]) else {
                if src.len() > self.lines.max_line() {
                    return Mode::Lines;
                }
                return Mode::Start { scanned: src.len() };
            };
            let end = scanned + offset;
            scanned = 0;
            // Refused whatever it says, as it is while its end has not arrived: the protocol
            // must not depend on how the bytes were cut into reads.
            if end > self.lines.max_line() {
                return Mode::Lines;
            }
            match line_protocol(&src[..end]) {
                Some(Protocol::Line) => return Mode::Lines,
                Some(_) => return Mode::Resp,
                None => src.advance(end + 1),
            }
        }
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
        let Some(meter) = self.meter.clone() else {
            return self.decode_limited(src);
        };
        if meter.evicted() {
            // Its answer is written; what it sends until it is closed is dropped unread.
            discard(src);
            return Ok(None);
        }
        let (before, undecided) = (src.len(), matches!(self.mode, Mode::Start { .. }));
        let decoded = self.decode_limited(src);
        if undecided && matches!(self.mode, Mode::Resp) {
            meter.speaks_resp();
        }
        if !matches!(self.mode, Mode::Replication(_)) {
            release_if_empty(src);
            meter.reading(src.capacity(), before.saturating_sub(src.len()));
        }
        decoded
    }
}

/// Drop what a read buffer holds, keeping at most a small allocation for the next reads.
fn discard(src: &mut BytesMut) {
    match src.capacity() > FRESH_READ_BUFFER {
        true => *src = BytesMut::with_capacity(FRESH_READ_BUFFER),
        false => src.clear(),
    }
}

/// Give back the allocation of an empty read buffer that a large request grew.
fn release_if_empty(src: &mut BytesMut) {
    if src.is_empty() && src.capacity() > KEEP_READ_BUFFER {
        *src = BytesMut::with_capacity(FRESH_READ_BUFFER);
    }
}

impl ConnectionCodec {
    /// Decode under the limits in force: the node's, or before a login the small ones.
    fn decode_limited(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        let Some(logged_in) = &self.logged_in else {
            return self.decode_frame(src);
        };
        let before_login = !logged_in.load(Ordering::Relaxed);
        self.resp.before_login(before_login);
        self.lines.set_max_line(match before_login {
            true => self.max_line.min(UNAUTHENTICATED_LINE),
            false => self.max_line,
        });
        match self.decode_frame(src) {
            Err(CodecError::LineTooLong(too_long)) if before_login => {
                Err(CodecError::LineTooLongBeforeLogin(too_long))
            }
            decoded => decoded,
        }
    }

    /// Decode the next frame, whatever the connection speaks.
    fn decode_frame(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if let Some(replicate) = self.replicate.take() {
            return Ok(Some(self.replicating(replicate)));
        }
        if let Mode::Start { scanned } = self.mode {
            self.mode = self.start(src, scanned);
        }
        match &mut self.mode {
            Mode::Start { .. } => return Ok(None),
            Mode::Lines => {}
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
                seq: 7,
                previous: None,
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

    /// Which frame kind a fresh connection's `bytes` decode to: `"lines"`, `"resp"`,
    /// `"replicate"`, or `"none"` while undecided.
    fn kind(bytes: &[u8]) -> &'static str {
        let mut codec = ConnectionCodec::new(100, 10);
        match codec.decode(&mut BytesMut::from(bytes)).unwrap() {
            None => "none",
            Some(Frame::Requests(_)) => "lines",
            Some(Frame::Resp(_)) => "resp",
            Some(Frame::Replicate(_)) => "replicate",
            Some(Frame::Stream(_)) => "stream",
        }
    }

    #[test]
    fn the_first_line_picks_the_protocol() {
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
        // redis-benchmark's PING_INLINE, on a fresh connection.
        let mut codec = ConnectionCodec::new(100, 10);
        let mut buf = BytesMut::from("PING\r\n");
        assert_eq!(
            codec.decode(&mut buf).unwrap(),
            Some(Frame::Resp(vec![Ok(Command::Ping)]))
        );
        let cases: [(&str, &str); 16] = [
            // Ended by `\n` alone (nc, printf, kvcli, kvbench): the line protocol, whatever
            // it says.
            ("PUT k v\n", "lines"),
            ("get k\n", "lines"),
            ("SET k v\n", "lines"),
            ("FOO\n", "lines"),
            ("  PING  \n", "lines"),
            ("x\r \n", "lines"),
            // Ended by `\r\n`: RESP inline, as Redis reads it...
            ("GET k\r\n", "resp"),
            ("SET k v\r\n", "resp"),
            ("ping\r\n", "resp"),
            ("HELLO 3\r\n", "resp"),
            ("FOO\r\n", "resp"),
            // ...unless its verb is one only the line protocol has (telnet, nc -C).
            ("PUT k v\r\n", "lines"),
            ("put k v\r\n", "lines"),
            ("\tExit\r\n", "lines"),
            ("DIGEST\r\n", "lines"),
            ("RESYNC\r\n", "lines"),
        ];
        for (line, expected) in cases {
            assert_eq!(kind(line.as_bytes()), expected, "{line:?}");
        }
        assert_eq!(kind(b"REPLICATE s3cret\r\n"), "replicate");
        assert_eq!(kind(b"REPLICATE s3cret\n"), "replicate");
        // Blank lines before it are skipped by both protocols: the next line decides.
        assert_eq!(kind(b"\r\n\n \t\r\nPING\r\n"), "resp");
        assert_eq!(kind(b"\r\n\r\nPING\n"), "lines");
        assert_eq!(kind(b"\n\r\n*1\r\n$4\r\nPING\r\n"), "resp");
        assert_eq!(kind(b"\r\n \n"), "none");
    }

    #[test]
    fn the_protocol_waits_for_the_whole_first_line() {
        for (bytes, decided) in [(&b"PING\r\n"[..], "resp"), (b"PUT k v\r\n", "lines")] {
            let mut codec = ConnectionCodec::new(100, 10);
            let mut buf = BytesMut::new();
            for (at, &byte) in bytes.iter().enumerate() {
                buf.extend_from_slice(&[byte]);
                let frame = codec.decode(&mut buf).unwrap();
                let last = at + 1 == bytes.len();
                assert_eq!(frame.is_some(), last, "{bytes:?} cut at {at}");
                if let Some(frame) = frame {
                    assert_eq!(matches!(frame, Frame::Resp(_)), decided == "resp");
                }
            }
        }
        // A first line too long for the limit, never ended: the line protocol refuses it.
        let mut codec = ConnectionCodec::new(8, 10);
        let mut buf = BytesMut::from("GET 12345");
        assert!(matches!(
            codec.decode(&mut buf),
            Err(CodecError::LineTooLong(_))
        ));
    }

    /// Found by the `connection` fuzz target: a first line over the limit ended by `\r\n`
    /// was read as RESP when it arrived whole, but refused when its end came in a later read.
    #[test]
    fn a_first_line_over_the_limit_is_refused_however_it_arrives() {
        for first in ["PING 123456789\r\n", "          \r\nPING\r\n"] {
            let mut codec = ConnectionCodec::new(8, 10);
            let mut buf = BytesMut::from(first);
            assert!(
                matches!(codec.decode(&mut buf), Err(CodecError::LineTooLong(_))),
                "{first:?}"
            );
        }
    }

    #[test]
    fn before_login_a_line_is_held_to_16_kib_and_after_it_to_the_node_limit() {
        let logged_in = Arc::new(AtomicBool::new(false));
        let mut codec = ConnectionCodec::new(1 << 20, 10).login_required(logged_in.clone());
        let long = format!("PUT k {}\n", "x".repeat(UNAUTHENTICATED_LINE));
        assert!(matches!(
            codec.decode(&mut BytesMut::from(long.as_str())),
            Err(CodecError::LineTooLongBeforeLogin(_))
        ));
        // A login and a long line in one read: the login is answered first, and the line is
        // read under the limits in force once it is decided.
        let mut codec = ConnectionCodec::new(1 << 20, 10).login_required(logged_in.clone());
        let mut buf = BytesMut::from(format!("AUTH pw\n{long}").as_str());
        assert!(matches!(codec.decode(&mut buf), Ok(Some(Frame::Requests(r))) if r.len() == 1));
        logged_in.store(true, Ordering::Relaxed);
        assert!(matches!(codec.decode(&mut buf), Ok(Some(Frame::Requests(r))) if r.len() == 1));
    }

    /// Records what a codec reports.
    #[derive(Debug, Default)]
    struct Meter(std::sync::Mutex<Vec<(usize, usize)>>);

    impl ReadMeter for Meter {
        fn reading(&self, buffered: usize, parsed: usize) {
            self.0.lock().unwrap().push((buffered, parsed));
        }

        fn evicted(&self) -> bool {
            false
        }

        fn speaks_resp(&self) {}
    }

    #[test]
    fn a_metered_codec_reports_its_buffer_and_what_it_parsed_and_releases_a_grown_buffer() {
        let meter = Arc::new(Meter::default());
        let mut codec = ConnectionCodec::new(1 << 20, 10)
            .max_value(1 << 20)
            .metered(meter.clone());
        let value = "v".repeat(KEEP_READ_BUFFER);
        let request = format!(
            "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n{value}\r\n",
            value.len()
        );
        let mut buf = BytesMut::with_capacity(2 * request.len());
        buf.extend_from_slice(&request.as_bytes()[..100]);
        assert!(codec.decode(&mut buf).unwrap().is_none());
        buf.extend_from_slice(&request.as_bytes()[100..]);
        assert!(codec.decode(&mut buf).unwrap().is_some());
        let reports = meter.0.lock().unwrap().clone();
        assert_eq!(
            reports[0],
            (2 * request.len(), 0),
            "a partial request: its buffer"
        );
        // The request handed out; its emptied buffer given back.
        assert_eq!(reports[1], (FRESH_READ_BUFFER, request.len()));
        assert_eq!(buf.capacity(), FRESH_READ_BUFFER);
    }

    #[test]
    fn a_peek_tells_the_protocol_once_the_first_line_is_there() {
        assert_eq!(protocol_of(b""), None);
        assert_eq!(protocol_of(b"*"), Some(Protocol::Resp));
        assert_eq!(protocol_of(b"PING\r"), None);
        assert_eq!(protocol_of(b"PING\r\n"), Some(Protocol::Resp));
        assert_eq!(protocol_of(b"PING\n"), Some(Protocol::Line));
        assert_eq!(protocol_of(b"\r\nPUT k v\r\nGET"), Some(Protocol::Line));
        assert_eq!(protocol_of(b"\n\r\n"), None);
    }
}
