//! RESP2, the Redis serialization protocol: request frames in, reply frames out.
//!
//! A client speaks RESP when the first byte it sends is `*`. Requests are arrays of bulk
//! strings; every declared length is checked against the limits before any memory is set aside
//! for it, so a peer cannot make the node allocate for bytes it never sends.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

/// Why a RESP stream cannot be read; the connection is closed after `-ERR Protocol error: ...`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

/// The most arguments one request may have.
pub const MAX_ARGS: usize = 1024 * 1024;
/// The longest header line (`*<count>` or `$<len>`).
const MAX_HEADER: usize = 32;

/// Decodes requests (arrays of bulk strings) from the front of a buffer, one at a time.
///
/// A request that arrives over many reads is parsed once, not once per read: the decoder
/// remembers how far it got (the argument count and the arguments found so far) and goes on
/// from there, so a request of a million arguments costs linear time however it is cut up.
/// The buffer must not be consumed by anyone else while a request is incomplete.
#[derive(Debug, Default)]
pub struct RequestDecoder {
    partial: Option<Partial>,
}

/// How far into an incomplete request the decoder got.
#[derive(Debug)]
struct Partial {
    /// The argument count its header declared.
    count: usize,
    /// Where the next argument's header starts.
    pos: usize,
    /// Where each argument found so far starts and ends.
    spans: Vec<(usize, usize)>,
}

impl RequestDecoder {
    /// Decode one request from the front of `buf`, consuming it. Answers `None` while the
    /// request is incomplete (nothing is consumed then).
    pub fn decode(
        &mut self,
        buf: &mut BytesMut,
        max_bulk: usize,
    ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        let mut partial = match self.partial.take() {
            Some(partial) => partial,
            None => {
                let Some((count, pos)) = header(buf, 0, b'*', "multibulk")? else {
                    return Ok(None);
                };
                if count < 0 {
                    // `*-1` is a null array: Redis ignores it as a request.
                    let _ = buf.split_to(pos);
                    return Ok(Some(Vec::new()));
                }
                let count = count as usize;
                if count > MAX_ARGS {
                    return Err(ProtocolError("invalid multibulk length".into()));
                }
                Partial {
                    count,
                    pos,
                    spans: Vec::with_capacity(count.min(64)),
                }
            }
        };
        while partial.spans.len() < partial.count {
            let Some((len, start)) = header(buf, partial.pos, b'$', "bulk")? else {
                self.partial = Some(partial);
                return Ok(None);
            };
            if len < 0 || len as usize > max_bulk {
                return Err(ProtocolError("invalid bulk length".into()));
            }
            let end = start + len as usize;
            if buf.len() < end + 2 {
                self.partial = Some(partial);
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(ProtocolError(
                    "expected '\\r\\n' after a bulk string".into(),
                ));
            }
            partial.spans.push((start, end));
            partial.pos = end + 2;
        }
        let frame = buf.split_to(partial.pos).freeze();
        Ok(Some(
            partial
                .spans
                .into_iter()
                .map(|(s, e)| frame.slice(s..e))
                .collect(),
        ))
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
    let rest = &buf[pos + 1..];
    let Some(cr) = memchr::memchr(b'\r', &rest[..rest.len().min(MAX_HEADER)]) else {
        if rest.len() >= MAX_HEADER {
            return Err(ProtocolError(format!("invalid {what} length")));
        }
        return Ok(None);
    };
    if rest.len() < cr + 2 {
        return Ok(None);
    }
    if rest[cr + 1] != b'\n' {
        return Err(ProtocolError(format!("invalid {what} length")));
    }
    let number = std::str::from_utf8(&rest[..cr])
        .ok()
        .and_then(|text| text.parse::<i64>().ok())
        .ok_or_else(|| ProtocolError(format!("invalid {what} length")))?;
    Ok(Some((number, pos + 1 + cr + 2)))
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
    out.put_slice(itoa(n).as_bytes());
    out.put_slice(b"\r\n");
}

/// Append the header of a bulk string of `len` bytes; the caller writes the bytes and `\r\n`.
pub fn bulk_header(out: &mut BytesMut, len: usize) {
    out.put_u8(b'$');
    out.put_slice(itoa(len as i64).as_bytes());
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
    out.put_slice(itoa(len as i64).as_bytes());
    out.put_slice(b"\r\n");
}

fn itoa(n: i64) -> String {
    n.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8]) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        RequestDecoder::default().decode(&mut BytesMut::from(bytes), 1 << 20)
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
            assert_eq!(decoder.decode(&mut buf, 1 << 20), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut, "nothing consumed");
            // The rest arrives: the decoder goes on from where it stopped.
            buf.extend_from_slice(&frame[cut..]);
            assert_eq!(
                decoder
                    .decode(&mut buf, 1 << 20)
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
            if let Some(args) = decoder.decode(&mut buf, 1 << 20).unwrap() {
                decoded.push(args);
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
    }
}
