//! The bytes a connection has read and not yet parsed.
//!
//! Both kinds of connection read replies the same way: read whatever the socket has into a
//! [`ReadBuf`], take every whole reply [`parse`](crate::reply::parse) finds at its start,
//! and read again when only part of one is left. A pipeline's replies thus cost one read
//! system call per buffer-full rather than one per reply.

use std::io;

use crate::args::Proto;
use crate::reply::{self, Reply};

/// Bytes a read buffer starts with: room for many small replies per read.
const INITIAL_CAPACITY: usize = 64 * 1024;

/// A connection's read buffer: `bytes[start..end]` is read and not yet parsed.
pub struct ReadBuf {
    /// The buffer, all of it initialised, so that reads can go straight into its tail.
    bytes: Vec<u8>,
    /// Where the unparsed bytes begin.
    start: usize,
    /// Where they end, and the room for the next read begins.
    end: usize,
}

impl ReadBuf {
    /// An empty buffer of `INITIAL_CAPACITY` bytes.
    pub fn new() -> ReadBuf {
        ReadBuf {
            bytes: vec![0; INITIAL_CAPACITY],
            start: 0,
            end: 0,
        }
    }

    /// The next whole reply in the buffer, if there is one, with its text (see
    /// [`reply::Parsed::text`]), consumed: the text stays valid until the next read.
    pub fn next_reply(&mut self, proto: Proto) -> io::Result<Option<(Reply, &[u8])>> {
        let start = self.start;
        let Some(parsed) = reply::parse(&self.bytes[start..self.end], proto)? else {
            return Ok(None);
        };
        self.start += parsed.len;
        if self.start == self.end {
            // All consumed: the next read starts at the front again, with no copying.
            (self.start, self.end) = (0, 0);
        }
        let text = start + parsed.text.start..start + parsed.text.end;
        Ok(Some((parsed.reply, &self.bytes[text])))
    }

    /// The room for the next read, at least half the buffer. Readers ask for it only when
    /// the buffer holds no whole reply, so the unparsed bytes, at most part of one reply, are
    /// moved to the front first; the buffer doubles when they fill more than half of it (a
    /// reply larger than the buffer).
    pub fn space(&mut self) -> &mut [u8] {
        if self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            (self.start, self.end) = (0, self.end - self.start);
        }
        if self.end > self.bytes.len() / 2 {
            self.bytes.resize(self.bytes.len() * 2, 0);
        }
        &mut self.bytes[self.end..]
    }

    /// Count the `read` bytes just read into [`space`](Self::space); a read of none means
    /// that the node closed the connection, before a whole reply.
    pub fn filled(&mut self, read: usize) -> io::Result<()> {
        if read == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the node closed the connection",
            ));
        }
        self.end += read;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Copy `bytes` into `buf` as reads would, as many reads as its room needs.
    fn receive(buf: &mut ReadBuf, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let space = buf.space();
            let n = space.len().min(bytes.len());
            space[..n].copy_from_slice(&bytes[..n]);
            buf.filled(n).unwrap();
            bytes = &bytes[n..];
        }
    }

    #[test]
    fn whole_replies_are_taken_in_order_and_a_partial_one_waits_for_more_bytes() {
        let mut buf = ReadBuf::new();
        receive(&mut buf, b"OK\nNOT_FOUND\nERR");
        let next = |buf: &mut ReadBuf| {
            let reply = buf.next_reply(Proto::Line).unwrap();
            reply.map(|(reply, text)| (reply, text.to_vec()))
        };
        assert_eq!(next(&mut buf), Some((Reply::Value, b"OK".to_vec())));
        assert_eq!(next(&mut buf), Some((Reply::Nil, b"NOT_FOUND".to_vec())));
        assert_eq!(next(&mut buf), None);
        receive(&mut buf, b"OR: no\n");
        assert_eq!(next(&mut buf), Some((Reply::Error, b"ERROR: no".to_vec())));
        assert_eq!(next(&mut buf), None);
    }

    #[test]
    fn a_reply_larger_than_the_buffer_grows_it() {
        let mut buf = ReadBuf::new();
        let value = vec![b'v'; 5 * INITIAL_CAPACITY];
        let mut reply = format!("${}\r\n", value.len()).into_bytes();
        reply.extend_from_slice(&value);
        reply.extend_from_slice(b"\r\n+OK\r\n");
        receive(&mut buf, &reply);
        let (kind, text) = buf.next_reply(Proto::Resp).unwrap().unwrap();
        assert_eq!((kind, text), (Reply::Value, &value[..]));
        let (kind, text) = buf.next_reply(Proto::Resp).unwrap().unwrap();
        assert_eq!((kind, text), (Reply::Value, &b"OK"[..]));
    }

    #[test]
    fn a_partial_reply_left_at_the_end_moves_to_the_front_to_make_room() {
        let mut buf = ReadBuf::new();
        let mut bytes = b"+OK\r\n".repeat((INITIAL_CAPACITY - 2) / 5);
        bytes.extend_from_slice(b"+O");
        receive(&mut buf, &bytes);
        while buf.next_reply(Proto::Resp).unwrap().is_some() {}
        assert!(buf.space().len() >= INITIAL_CAPACITY / 2);
        receive(&mut buf, b"K\r\n");
        let (kind, text) = buf.next_reply(Proto::Resp).unwrap().unwrap();
        assert_eq!((kind, text), (Reply::Value, &b"OK"[..]));
        assert_eq!(buf.bytes.len(), INITIAL_CAPACITY);
    }

    #[test]
    fn a_read_of_nothing_means_the_node_closed_the_connection() {
        let error = ReadBuf::new().filled(0).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(error.to_string(), "the node closed the connection");
    }
}
