//! Writing a batch's replies to a session's socket.
//!
//! Small replies are encoded into the session's output buffer and written at once; large
//! values are handed to the socket straight from where they are held (the pair the Store
//! keeps), so a batch of large values is never copied whole into memory.

use std::io;

use bytes::BytesMut;
use tokio::io::AsyncWriteExt;

use crate::protocol::reply::{Protocol, Reply};
use crate::protocol::resp;
use crate::tls::WriteHalf;

/// Reply bytes are handed to the socket whenever this many are buffered, so a batch with large
/// replies is written in pieces rather than copied whole into memory.
pub const FLUSH_BYTES: usize = 64 * 1024;

/// The bytes a set of replies will occupy on the wire, counting values only, which is all that
/// can be large.
pub fn reply_bytes(replies: &[Reply]) -> usize {
    replies
        .iter()
        .map(|reply| match reply {
            Reply::Array(items) => reply_bytes(items),
            reply => reply.value().map_or(0, |value| value.len() + 1),
        })
        .sum()
}

/// Encode `replies` (which take `bytes` on the wire, by [`reply_bytes`]) through `out` and
/// write them all.
pub async fn write(
    writer: &mut WriteHalf,
    out: &mut BytesMut,
    replies: &[Reply],
    bytes: usize,
    protocol: Protocol,
) -> io::Result<()> {
    if bytes >= FLUSH_BYTES {
        // Boxed: its future is large, and only batches with large values need it, while this
        // function's future is part of the one every batch allocates.
        return Box::pin(write_large(writer, out, replies, protocol)).await;
    }
    // The common case: every reply encoded into the buffer, one write.
    for reply in replies {
        reply.encode(protocol, out);
        // Many small replies (nils, integers) add up too.
        if out.len() >= FLUSH_BYTES {
            flush(writer, out).await?;
        }
    }
    flush(writer, out).await
}

/// Encode `replies` into `out` and write them, handing large values to the socket directly
/// instead of copying them, inside arrays too.
async fn write_large(
    writer: &mut WriteHalf,
    out: &mut BytesMut,
    replies: &[Reply],
    protocol: Protocol,
) -> io::Result<()> {
    for reply in replies {
        match (reply, protocol) {
            (Reply::Array(items), Protocol::Resp | Protocol::Resp3) => {
                resp::array_header(out, items.len());
                for item in items {
                    write_one(writer, out, item, protocol).await?;
                }
            }
            _ => write_one(writer, out, reply, protocol).await?,
        }
    }
    flush(writer, out).await
}

/// Write one reply (not an array of large values: arrays inside arrays are small).
async fn write_one(
    writer: &mut WriteHalf,
    out: &mut BytesMut,
    reply: &Reply,
    protocol: Protocol,
) -> io::Result<()> {
    match (reply.value(), protocol) {
        (Some(value), Protocol::Line) if value.len() >= FLUSH_BYTES && !value.contains(&b'\n') => {
            flush(writer, out).await?;
            writer.write_all(value).await?;
            out.extend_from_slice(b"\n");
        }
        (Some(value), Protocol::Resp | Protocol::Resp3) if value.len() >= FLUSH_BYTES => {
            resp::bulk_header(out, value.len());
            flush(writer, out).await?;
            writer.write_all(value).await?;
            out.extend_from_slice(b"\r\n");
        }
        _ => reply.encode(protocol, out),
    }
    if out.len() >= FLUSH_BYTES {
        flush(writer, out).await?;
    }
    Ok(())
}

/// Write what `out` holds and empty it, then flush: over TLS, what the socket did not take
/// yet waits in the TLS session until flushed (over plain TCP the flush does nothing).
pub async fn flush(writer: &mut WriteHalf, out: &mut BytesMut) -> io::Result<()> {
    if !out.is_empty() {
        writer.write_all(out).await?;
        out.clear();
    }
    writer.flush().await
}
