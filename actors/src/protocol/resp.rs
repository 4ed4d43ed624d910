//! RESP2, the Redis serialization protocol: request frames in, reply frames out.
//!
//! A client speaks RESP when its first line is an array (`*`) or an inline command ended by
//! `\r\n` ([`super::codec::protocol_of`]). Requests are arrays of bulk strings; every
//! declared length is checked against the limits before any memory is set aside for it, so a
//! peer cannot make the node allocate for bytes it never sends.

use bytes::{BufMut, Bytes, BytesMut};

use super::inline;
use thiserror::Error;

/// Why a RESP stream cannot be read; the connection is closed after `-ERR Protocol error: ...`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

/// The most arguments one request may have.
pub const MAX_ARGS: usize = 1024 * 1024;
/// The longest header line (`*<count>` or `$<len>`).
const MAX_HEADER: usize = 32;
/// The most arguments a request may have before the connection has logged in, on a node that
/// asks for it (as Redis): a client without a password cannot make the node hold more than a
/// few small arguments.
pub const UNAUTHENTICATED_ARGS: usize = 10;
/// The largest value a request may carry before the connection has logged in (as Redis).
pub const UNAUTHENTICATED_BULK: usize = 16 * 1024;

/// Decodes requests (arrays of bulk strings) from the front of a buffer, one at a time.
///
/// A request that arrives over many reads is parsed once, not once per read: the decoder
/// remembers how far it got (the argument count and the arguments found so far) and goes on
/// from there, so a request of a million arguments costs linear time however it is cut up.
/// The buffer must not be consumed by anyone else while a request is incomplete.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    /// How far into the request at the front of the buffer decoding got, while it is
    /// incomplete; `None` between requests.
    partial: Option<Partial>,
    /// Where each argument of the request being decoded starts and ends; kept from one
    /// request to the next, so decoding one allocates only the arguments it hands out.
    spans: Vec<(usize, usize)>,
    /// The arguments of the request just decoded, for the caller to take out (which leaves
    /// the list's memory for the next request).
    args: Vec<Bytes>,
    /// The connection has not logged in yet on a node that asks for it: requests are held to
    /// [`UNAUTHENTICATED_ARGS`] arguments of at most [`UNAUTHENTICATED_BULK`] bytes.
    before_login: bool,
}

/// How far into an incomplete request the decoder got.
#[derive(Debug)]
struct Partial {
    /// The argument count its header declared.
    count: usize,
    /// Where the next argument's header starts.
    pos: usize,
}

/// Argument positions kept between requests; a request with more gives the memory back.
const KEEP_SPANS: usize = 1024;

impl RequestDecoder {
    /// Hold requests to the small ones a connection may send before it logs in (`true`), or
    /// to the node's limits (`false`, the default). A request whose header was accepted stays
    /// accepted: the limits apply to headers read from now on.
    pub fn before_login(&mut self, before_login: bool) {
        self.before_login = before_login;
    }

    /// Decode one request from the front of `buf`, consuming it, and answer its arguments.
    /// Answers `None` while the request is incomplete (nothing is consumed then).
    ///
    /// Values longer than `max_bulk` are refused, and so is a request longer than
    /// `max_request` bytes (as Redis's client-query-buffer-limit: one request may carry several
    /// values, as `MSET` does, but not without bound). Only a request's first `max_request`
    /// bytes are ever looked at: one that needs more is refused whether or not the rest has
    /// arrived, so that how its bytes were cut into reads never changes the answer.
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        max_bulk: usize,
        max_request: usize,
    ) -> Result<Option<&mut Vec<Bytes>>, ProtocolError> {
        // Where the bytes that may be looked at end; a request that needs bytes past it while
        // there are some is too large.
        let seen = buf.len().min(max_request);
        let too_large = buf.len() > seen;
        let wait = |partial: Option<Partial>, this: &mut RequestDecoder| match too_large {
            true => Err(ProtocolError("request too large".into())),
            false => {
                this.partial = partial;
                Ok(None)
            }
        };
        let mut partial = match self.partial.take() {
            Some(partial) => partial,
            // Not an array: an inline command (or a blank line, which has no arguments).
            None if buf.first().is_some_and(|b| *b != b'*') => {
                let end = memchr::memchr(b'\n', &buf[..seen]);
                if end.unwrap_or(seen) > inline::MAX_INLINE {
                    return Err(ProtocolError("too big inline request".into()));
                }
                let Some(end) = end else {
                    return wait(None, self);
                };
                // Split before consuming: a bad line stays, to be reported on the next call.
                self.args = inline::split(&buf[..end]).map_err(|e| ProtocolError(e.to_string()))?;
                let _ = buf.split_to(end + 1);
                return Ok(Some(&mut self.args));
            }
            None => {
                let Some((count, pos)) = header(&buf[..seen], 0, b'*', "multibulk")? else {
                    return wait(None, self);
                };
                if count < 0 {
                    // `*-1` is a null array: Redis ignores it as a request.
                    let _ = buf.split_to(pos);
                    self.args.clear();
                    return Ok(Some(&mut self.args));
                }
                let count = count as usize;
                if count > MAX_ARGS {
                    return Err(ProtocolError("invalid multibulk length".into()));
                }
                if self.before_login && count > UNAUTHENTICATED_ARGS {
                    return Err(ProtocolError("unauthenticated multibulk length".into()));
                }
                self.spans.clear();
                Partial { count, pos }
            }
        };
        while self.spans.len() < partial.count {
            let Some((len, start)) = header(&buf[..seen], partial.pos, b'$', "bulk")? else {
                return wait(Some(partial), self);
            };
            if len < 0 || len as usize > max_bulk {
                return Err(ProtocolError("invalid bulk length".into()));
            }
            if self.before_login && len as usize > UNAUTHENTICATED_BULK {
                return Err(ProtocolError("unauthenticated bulk length".into()));
            }
            let end = start + len as usize;
            if seen < end + 2 {
                return wait(Some(partial), self);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError(
                    "expected '\\r\\n' after a bulk string".into(),
                ));
            }
            self.spans.push((start, end));
            partial.pos = end + 2;
        }
        let frame = buf.split_to(partial.pos).freeze();
        if self.spans.capacity() > KEEP_SPANS || self.args.capacity() > KEEP_SPANS {
            self.args = Vec::new();
        }
        self.args.clear();
        self.args
            .extend(self.spans.iter().map(|&(s, e)| frame.slice(s..e)));
        if self.spans.capacity() > KEEP_SPANS {
            self.spans = Vec::new();
        }
        Ok(Some(&mut self.args))
    }
}

/// Read `<kind><integer>\r\n` at `pos`; answers the integer and the position after the line.
fn header(
    buf: &[u8],
    pos: usize,
    kind: u8,
    what: &str,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    let Some(&first) = buf.get(pos) else {
        return Ok(None);
    };
    if first != kind {
        return Err(ProtocolError(format!(
            "expected '{}', got '{}'",
            kind as char,
            (first as char).escape_default()
        )));
    }
    // Digits read in place (this runs twice or more per request): an optional `-`, then
    // decimal digits, then `\r\n`.
    let rest = &buf[pos + 1..];
    let invalid = || ProtocolError(format!("invalid {what} length"));
    let negative = rest.first() == Some(&b'-');
    let digits = usize::from(negative);
    let mut value: i64 = 0;
    let mut end = digits;
    loop {
        // At most `MAX_HEADER` bytes of sign and digits, then `\r`: until then a header waits
        // for its next byte, however the bytes were cut into reads.
        match rest.get(end) {
            None => return Ok(None),
            Some(&b'\r') => break,
            Some(&digit @ b'0'..=b'9') if end < MAX_HEADER => {
                value = value
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(i64::from(digit - b'0')))
                    .ok_or_else(invalid)?;
                end += 1;
            }
            Some(_) => return Err(invalid()),
        }
    }
    if end == digits {
        return Err(invalid());
    }
    match rest.get(end + 1) {
        None => return Ok(None),
        Some(&b'\n') => {}
        Some(_) => return Err(invalid()),
    }
    let number = if negative { -value } else { value };
    Ok(Some((number, pos + 1 + end + 2)))
}

/// Append a simple string (`+OK`).
pub fn simple(out: &mut BytesMut, text: &str) {
    out.put_u8(b'+');
    out.put_slice(text.as_bytes());
    out.put_slice(b"\r\n");
}

/// Append an error (`-ERR ...`); `text` includes its code word.
pub fn error(out: &mut BytesMut, text: &str) {
    out.put_u8(b'-');
    // An error is one line: never let a message break the framing.
    for &b in text.as_bytes() {
        out.put_u8(if b == b'\r' || b == b'\n' { b' ' } else { b });
    }
    out.put_slice(b"\r\n");
}

/// Append an integer (`:42`).
pub fn integer(out: &mut BytesMut, n: i64) {
    out.put_u8(b':');
    put_decimal(out, n);
    out.put_slice(b"\r\n");
}

/// Append the header of a bulk string of `len` bytes; the caller writes the bytes and `\r\n`.
pub fn bulk_header(out: &mut BytesMut, len: usize) {
    out.put_u8(b'$');
    put_decimal(out, len as i64);
    out.put_slice(b"\r\n");
}

/// Append a whole bulk string.
pub fn bulk(out: &mut BytesMut, bytes: &[u8]) {
    bulk_header(out, bytes.len());
    out.put_slice(bytes);
    out.put_slice(b"\r\n");
}

/// Append a null bulk string (`$-1`), Redis's "no such key".
pub fn null(out: &mut BytesMut) {
    out.put_slice(b"$-1\r\n");
}

/// Append the header of an array of `len` elements.
pub fn array_header(out: &mut BytesMut, len: usize) {
    out.put_u8(b'*');
    put_decimal(out, len as i64);
    out.put_slice(b"\r\n");
}

/// Append `n` in decimal. Every reply has a number in it, so it is written from a buffer on
/// the stack rather than through a `String`.
fn put_decimal(out: &mut BytesMut, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.put_u8(b'-');
    }
    out.put_slice(&digits[at..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let mut decoder = RequestDecoder::default();
        let decoded = decoder.decode(&mut BytesMut::from(bytes), 1 << 20, 1 << 22)?;
        Ok(decoded.map(std::mem::take))
    }

    #[test]
    fn arrays_of_bulk_strings_decode_whole_or_not_at_all() {
        let frame = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\na\r\nb\0\r\n";
        assert_eq!(
            decode(frame).unwrap(),
            Some(vec![
                Bytes::from_static(b"SET"),
                Bytes::from_static(b"k"),
                Bytes::from_static(b"a\r\nb\0")
            ])
        );
        for cut in 0..frame.len() {
            let mut buf = BytesMut::from(&frame[..cut]);
            let mut decoder = RequestDecoder::default();
            assert!(
                matches!(decoder.decode(&mut buf, 1 << 20, 1 << 22), Ok(None)),
                "cut at {cut}"
            );
            assert_eq!(buf.len(), cut, "nothing consumed");
            // The rest arrives: the decoder goes on from where it stopped.
            buf.extend_from_slice(&frame[cut..]);
            assert_eq!(
                decoder
                    .decode(&mut buf, 1 << 20, 1 << 22)
                    .unwrap()
                    .map(|args| args.len()),
                Some(3),
                "resumed at {cut}"
            );
            assert!(buf.is_empty());
        }
    }

    #[test]
    fn a_request_arriving_byte_by_byte_then_the_next_one() {
        let frames = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*1\r\n$4\r\nPING\r\n";
        let mut decoder = RequestDecoder::default();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for &byte in frames.iter() {
            buf.extend_from_slice(&[byte]);
            if let Some(args) = decoder.decode(&mut buf, 1 << 20, 1 << 22).unwrap() {
                decoded.push(std::mem::take(args));
            }
        }
        assert_eq!(
            decoded,
            vec![
                vec![Bytes::from_static(b"GET"), Bytes::from_static(b"a")],
                vec![Bytes::from_static(b"PING")]
            ]
        );
    }

    #[test]
    fn bad_frames_are_protocol_errors() {
        assert!(decode(b"*x\r\n").is_err());
        assert!(decode(b"*1\r\n+OK\r\n").is_err());
        assert!(decode(b"*1\r\n$-5\r\n").is_err());
        assert!(decode(b"*1\r\n$3\r\nabcde").is_err());
        assert!(decode(b"*99999999999\r\n").is_err());
        assert!(
            decode(b"*1\r\n$2147483648\r\n").is_err(),
            "over the bulk limit"
        );
        assert!(decode(b"*1234567890123456789012345678901234\r\n").is_err());
        assert!(decode(b"*\r\n").is_err(), "no digits");
        assert!(decode(b"*-\r\n").is_err(), "a sign alone");
        assert!(
            decode(b"*1\r\n$3x\r\nabc\r\n").is_err(),
            "junk after the digits"
        );
        assert!(
            decode(b"*1\r\n$3\rxabc\r\n").is_err(),
            "no \\n after the \\r"
        );
        assert!(
            decode(b"*99999999999999999999\r\n").is_err(),
            "more than an i64 holds"
        );
        assert_eq!(decode(b"*-1\r\n"), Ok(Some(Vec::new())), "a null array");
    }

    /// Found by the `connection` fuzz target: a request over the size limit was refused when
    /// it arrived in pieces, but taken when it arrived in one read; and an inline line over
    /// its limit, likewise.
    #[test]
    fn a_request_over_the_limits_is_refused_however_it_arrives() {
        let long_array = b"*2\r\n$4\r\nECHO\r\n$30\r\n012345678901234567890123456789\r\n";
        let long_inline = [&[b'x'; inline::MAX_INLINE + 1][..], b"\r\n"].concat();
        for (frame, max_request, error) in [
            (&long_array[..], 40, "Protocol error: request too large"),
            (
                &long_inline[..],
                1 << 20,
                "Protocol error: too big inline request",
            ),
            (
                b"PING 0123456789012345678901234567890123456789\r\n",
                40,
                "Protocol error: request too large",
            ),
        ] {
            for cut in [frame.len(), 1, max_request + 1] {
                let mut decoder = RequestDecoder::default();
                let mut buf = BytesMut::from(&frame[..cut.min(frame.len())]);
                let mut decoded = decoder.decode(&mut buf, 1 << 20, max_request).map(|_| ());
                if cut < frame.len() {
                    buf.extend_from_slice(&frame[cut..]);
                    decoded = decoder.decode(&mut buf, 1 << 20, max_request).map(|_| ());
                }
                assert_eq!(decoded.unwrap_err().to_string(), error, "cut at {cut}");
            }
        }
        // At the limit exactly, it is taken.
        let exact = long_array.len();
        let mut buf = BytesMut::from(&long_array[..]);
        let mut decoder = RequestDecoder::default();
        let decoded = decoder.decode(&mut buf, 1 << 20, exact).unwrap();
        assert_eq!(decoded.map(|args| args.len()), Some(2));
    }

    /// Found by the `resp` fuzz target: a header of the longest length accepted was refused
    /// while its `\r` had not arrived, and taken when it came in the same read.
    #[test]
    fn a_header_of_the_longest_length_waits_for_its_end() {
        let frame = [&b"*"[..], &[b'0'; MAX_HEADER], b"\r\n"].concat();
        let mut decoder = RequestDecoder::default();
        let mut buf = BytesMut::new();
        for (at, &byte) in frame.iter().enumerate() {
            buf.extend_from_slice(&[byte]);
            let decoded = decoder.decode(&mut buf, 1 << 20, 1 << 22).unwrap();
            let last = at + 1 == frame.len();
            assert_eq!(decoded.map(|args| args.len()), last.then_some(0), "at {at}");
        }
    }

    #[test]
    fn before_login_only_small_requests_are_taken() {
        let mut decoder = RequestDecoder::default();
        decoder.before_login(true);
        let eleven = [&b"*11\r\n"[..], &b"$1\r\nx\r\n".repeat(11)].concat();
        let big = format!("*2\r\n$4\r\nECHO\r\n$16385\r\n{}\r\n", "x".repeat(16385));
        let at_the_limits = format!("*1\r\n$16384\r\n{}\r\n", "x".repeat(16384));
        for (frame, error) in [
            (
                &eleven[..],
                "Protocol error: unauthenticated multibulk length",
            ),
            (
                big.as_bytes(),
                "Protocol error: unauthenticated bulk length",
            ),
        ] {
            let refused = decoder.decode(&mut BytesMut::from(frame), 1 << 20, 1 << 22);
            assert_eq!(refused.unwrap_err().to_string(), error);
            // After a login, the node's limits apply.
            let mut logged_in = RequestDecoder::default();
            let taken = logged_in.decode(&mut BytesMut::from(frame), 1 << 20, 1 << 22);
            assert!(taken.unwrap().is_some());
        }
        let taken = decoder.decode(
            &mut BytesMut::from(at_the_limits.as_bytes()),
            1 << 20,
            1 << 22,
        );
        assert_eq!(taken.unwrap().map(|args| args.len()), Some(1));
        let ten = [&b"*10\r\n"[..], &b"$1\r\nx\r\n".repeat(10)].concat();
        let taken = decoder.decode(&mut BytesMut::from(&ten[..]), 1 << 20, 1 << 22);
        assert_eq!(taken.unwrap().map(|args| args.len()), Some(10));
    }

    #[test]
    fn replies_are_framed() {
        let mut out = BytesMut::new();
        simple(&mut out, "OK");
        error(&mut out, "ERR bad\r\nthing");
        integer(&mut out, -3);
        bulk(&mut out, b"v");
        null(&mut out);
        array_header(&mut out, 2);
        assert_eq!(
            &out[..],
            b"+OK\r\n-ERR bad  thing\r\n:-3\r\n$1\r\nv\r\n$-1\r\n*2\r\n"
        );
        for n in [0, 7, 10, -10, 1_234_567, i64::MAX, i64::MIN] {
            let mut out = BytesMut::new();
            integer(&mut out, n);
            assert_eq!(out, format!(":{n}\r\n").as_bytes(), "{n}");
        }
    }
}
