//! The client protocols' decoders: the line protocol's framing, the RESP request decoder
//! (RESP2 and RESP3 send requests alike; `HELLO 3` changes only the replies), and a
//! connection's codec, which picks between them and hands over to the replication stream.
//!
//! The limits are small here (lines of 64 bytes, values of 16, batches of 3), so that inputs
//! of a few hundred bytes reach every limit and every batch boundary.

use bytes::{Bytes, BytesMut};
use kv_actors::protocol::codec::{ConnectionCodec, Frame, Request};
use kv_actors::protocol::line::LineDecoder;
use kv_actors::protocol::resp::{self, RequestDecoder};
use kv_actors::protocol::{inline, line_commands};
use kv_actors::replication::wire::{Replicate, StreamFrame};
use kv_actors::storage::record::Entry;
use tokio_util::codec::Decoder;

use crate::chunks::{same_however_cut, Decoded, Step};
use crate::gen;

/// The longest line the targets' decoders accept.
const MAX_LINE: usize = 64;
/// The largest RESP value they accept.
const MAX_VALUE: usize = 16;
/// The most requests in one batch.
const MAX_BATCH: usize = 3;
/// The largest RESP request the codec accepts with these limits (two values and a line).
const MAX_REQUEST: usize = 2 * MAX_VALUE + MAX_LINE;

/// The line protocol: lines decode the same however they arrive; a `PUT` of any key and value
/// the protocol can carry comes back as that key and value.
pub fn line_protocol(data: &[u8]) {
    let decoded = same_however_cut(
        data,
        || LineDecoder::new(MAX_LINE, MAX_BATCH),
        |decoder, buf| match decoder.decode(buf) {
            Err(error) => Step::Error(error.to_string()),
            Ok(lines) => {
                let mut items: Vec<LineItem> =
                    lines.requests.into_iter().map(LineItem::Request).collect();
                match lines.replicate {
                    Some(replicate) => {
                        items.push(LineItem::Replicate(replicate));
                        Step::Last(items)
                    }
                    None if items.is_empty() => Step::Wait,
                    None => Step::Items(items),
                }
            }
        },
    );
    assert!(
        decoded.items.len() <= data.len(),
        "more requests than bytes"
    );
    put_round_trips(data);
}

/// What the line decoder yields.
#[derive(Debug, PartialEq, Eq)]
enum LineItem {
    /// A request, parsed or refused.
    Request(Request),
    /// A primary's replication opening.
    Replicate(Replicate),
}

/// A `PUT` line of a key and value made from `data` decodes to that key and value. The
/// protocol's limits on them: the key is a word (no blank, no line end), the value is the rest
/// of the line, so it cannot start with a blank or hold a `\n`, and a final `\r` is taken as
/// part of a `\r\n` line end.
fn put_round_trips(data: &[u8]) {
    let split = data.len() / 3;
    let key: Vec<u8> = data[..split]
        .iter()
        .copied()
        .filter(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .collect();
    let value: Vec<u8> = data[split..]
        .iter()
        .copied()
        .filter(|&b| b != b'\n')
        .skip_while(|b| matches!(b, b' ' | b'\t'))
        .collect();
    let value = value.strip_suffix(b"\r").unwrap_or(&value);
    if key.is_empty() || value.is_empty() || value.ends_with(b"\r") {
        return;
    }
    let mut line = b"PUT ".to_vec();
    line.extend_from_slice(&key);
    line.push(b' ');
    line.extend_from_slice(value);
    let mut buf = BytesMut::from(&line[..]);
    buf.extend_from_slice(b"\n");
    let lines = LineDecoder::new(line.len(), 1)
        .decode(&mut buf)
        .expect("a PUT line within the limit");
    let expected = kv_actors::protocol::command::Command::Put {
        key: Bytes::from(key),
        value: Bytes::copy_from_slice(value),
    };
    assert_eq!(lines.requests, vec![Ok(expected)], "PUT line {line:?}");
    assert!(buf.is_empty());
    // And the line parser alone agrees, with or without the `\r` of a `\r\n` line end.
    let parsed = line_commands::parse(&Bytes::from(line.clone()));
    line.push(b'\r');
    assert_eq!(line_commands::parse(&Bytes::from(line)), parsed);
}

/// RESP requests: they decode the same however they arrive; arguments encoded as an array of
/// bulk strings, or as an inline command with every argument quoted, decode to themselves.
pub fn resp(data: &[u8]) {
    requests(data, MAX_VALUE, MAX_REQUEST);
    let args = gen::args(data);
    let mut array = BytesMut::new();
    resp::array_header(&mut array, args.len());
    for arg in &args {
        resp::bulk(&mut array, arg);
    }
    let inline = inline_line(&args);
    for encoded in [&array[..], &inline[..]] {
        let decoded = requests(encoded, 64, 1 << 20);
        assert_eq!(decoded.error, None, "{encoded:?}");
        assert_eq!(decoded.items, vec![args.clone()], "{encoded:?}");
        assert_eq!(decoded.consumed, encoded.len());
    }
    let line = &inline[..inline.len() - 2];
    assert_eq!(inline::split(line), Ok(args));
}

/// RESP requests decoded from `data` with these limits, checking the cut changes nothing.
fn requests(data: &[u8], max_bulk: usize, max_request: usize) -> Decoded<Vec<Bytes>> {
    same_however_cut(
        data,
        RequestDecoder::default,
        |decoder, buf| match decoder.decode(buf, max_bulk, max_request) {
            Ok(Some(args)) => Step::Items(vec![std::mem::take(args)]),
            Ok(None) => Step::Wait,
            Err(error) => Step::Error(error.to_string()),
        },
    )
}

/// An inline command (`\r\n`-ended) whose arguments are each double-quoted, with `"`, `\`
/// and every byte that is not printable ASCII escaped (`\"`, `\\`, `\xHH`), as Redis's
/// `sdssplitargs` reads them.
fn inline_line(args: &[Bytes]) -> Vec<u8> {
    let mut line = Vec::new();
    for (i, arg) in args.iter().enumerate() {
        if i > 0 {
            line.push(b' ');
        }
        line.push(b'"');
        for &b in arg.iter() {
            match b {
                b'"' | b'\\' => line.extend_from_slice(&[b'\\', b]),
                b' '..=b'~' => line.push(b),
                _ => line.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            }
        }
        line.push(b'"');
    }
    line.extend_from_slice(b"\r\n");
    line
}

/// What a connection's codec yields, batches flattened.
#[derive(Debug, PartialEq, Eq)]
enum ConnectionItem {
    /// A request of the line protocol.
    Line(Request),
    /// A request sent over RESP.
    Resp(Request),
    /// A primary's replication opening.
    Replicate(Replicate),
    /// The replication stream's proof or start line.
    Control(StreamFrame),
    /// One record of the replication stream.
    Record(Entry),
}

/// A connection's codec, from its first byte: the protocol it picks, the requests it reads,
/// the replication stream it hands over to, and the error that closes it are the same
/// however the bytes arrive.
pub fn connection(data: &[u8]) {
    same_however_cut(
        data,
        || ConnectionCodec::new(MAX_LINE, MAX_BATCH).max_value(MAX_VALUE),
        |codec, buf| match codec.decode(buf) {
            Err(error) => Step::Error(error.to_string()),
            Ok(None) => Step::Wait,
            Ok(Some(frame)) => Step::Items(match frame {
                Frame::Requests(requests) => {
                    requests.into_iter().map(ConnectionItem::Line).collect()
                }
                Frame::Resp(requests) => requests.into_iter().map(ConnectionItem::Resp).collect(),
                Frame::Replicate(replicate) => vec![ConnectionItem::Replicate(replicate)],
                Frame::Stream(StreamFrame::Records(entries)) => {
                    entries.into_iter().map(ConnectionItem::Record).collect()
                }
                Frame::Stream(control) => vec![ConnectionItem::Control(control)],
            }),
        },
    );
}
