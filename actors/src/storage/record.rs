//! One record of the on-disk format, shared by log segments and snapshots.
//!
//! ```text
//! record := len:u32 | body_crc:u32 | header_crc:u32 | body[len]      (integers little-endian)
//! body   := seq:u64 | op:u8 | key_len:u32 | key[key_len] | value[..]
//!         | seq:u64 | 3:u8  | key_len:u32 | key[key_len] | deadline:u64 | value[..]
//!         | seq:u64 | 4:u8  | 0:u32                                            (CLEAR)
//! header_crc = crc32(len | body_crc)      body_crc = crc32(body)
//! ```
//!
//! A put of a key with a time to live is op 3, with its deadline (milliseconds since the Unix
//! epoch) before the value; a put without one keeps op 1, so files and streams written before
//! expiry existed read exactly as before, and a key without a deadline costs no byte more.
//! `FLUSHDB`/`FLUSHALL` is op 4, with no key and no value: every key is gone from that point
//! of the history on, in one record however many keys there were.
//!
//! The header has a checksum of its own so that a damaged length is recognised as damage,
//! not trusted; that is what lets recovery tell a record torn by a crash (cut short at the end
//! of the file) from corruption in the middle of a log. See docs/storage.md.

use std::io::{self, Read};

use bytes::{BufMut, Bytes};
use thiserror::Error;

use crate::store::pair::Pair;
use crate::store::{Change, Mutation, Seq};

/// Bytes in a record header.
pub const HEADER_LEN: usize = 12;
/// The smallest body: seq, op and key length.
const MIN_BODY: usize = 8 + 1 + 4;
/// The largest body accepted when reading (a sanity bound on a header that checks out).
pub const MAX_BODY: usize = 1 << 31;

const OP_PUT: u8 = 1;
const OP_DEL: u8 = 2;
/// A put whose key expires: the deadline comes between the key and the value.
const OP_PUT_EXPIRING: u8 = 3;
/// Every key is removed (`FLUSHALL`); no key, no value.
const OP_CLEAR: u8 = 4;
/// Closes a snapshot; its value is the number of records before it.
const OP_END: u8 = 0xEE;
/// Set on a mutation's op (1 to 4) when another mutation of the same atomic group follows
/// ([`Mutation::more`]). Clear in both markers below, so it never makes one of them.
const MORE: u8 = 0x10;
/// A replication heartbeat: no change, carries the sender's current offset.
const OP_HEARTBEAT: u8 = 0xEF;

/// What a record holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A mutation, in a log or (as a `Put`) in a snapshot.
    Mutation(Mutation),
    /// The end marker of a snapshot, with the count of records before it.
    End {
        /// The sequence number the snapshot reflects, which each of its `Put`s carries too.
        seq: Seq,
        /// How many records come before it, so that a snapshot cut short is never mistaken
        /// for a smaller one.
        count: u64,
    },
    /// A replication heartbeat: the primary is alive and at offset `seq`.
    Heartbeat {
        /// The primary's offset: the last mutation it has sent.
        seq: Seq,
    },
}

/// Why bytes at some offset are not a valid record.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RecordError {
    /// The file ends inside the record: it was cut short.
    #[error("record cut short")]
    Truncated,
    /// The header's checksum does not match (its length cannot be trusted).
    #[error("record header checksum mismatch")]
    BadHeader,
    /// The body's checksum does not match; `len` is the body length the header gives.
    #[error("record checksum mismatch")]
    BadBody {
        /// The body's length, from a header whose own checksum matched: where the damaged
        /// record ends.
        len: usize,
    },
    /// The checksums match but the body makes no sense.
    #[error("malformed record: {0}")]
    Malformed(&'static str),
}

/// Append the record for `mutation` to `out`.
pub fn encode_mutation(mutation: &Mutation, out: &mut Vec<u8>) {
    let more = if mutation.more { MORE } else { 0 };
    match &mutation.change {
        Change::Put(pair) => encode_flagged_pair(mutation.seq, pair, more, out),
        Change::Del { key } => encode(mutation.seq, OP_DEL | more, key, &[], out),
        Change::Clear => encode(mutation.seq, OP_CLEAR | more, &[], &[], out),
    }
}

/// Append a snapshot entry (a `Put` as of `seq`) of a key that never expires.
pub fn encode_put(seq: Seq, key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    encode(seq, OP_PUT, key, value, out);
}

/// Append a `Put` of `pair` as of `seq`, with its deadline if it has one.
pub fn encode_pair(seq: Seq, pair: &Pair, out: &mut Vec<u8>) {
    encode_flagged_pair(seq, pair, 0, out);
}

/// A `Put` of `pair` whose op carries `flags` ([`MORE`] or nothing).
fn encode_flagged_pair(seq: Seq, pair: &Pair, flags: u8, out: &mut Vec<u8>) {
    match pair.deadline() {
        None => encode(seq, OP_PUT | flags, pair.key(), pair.value(), out),
        Some(deadline) => encode_parts(
            seq,
            OP_PUT_EXPIRING | flags,
            pair.key(),
            &[&deadline.to_le_bytes(), pair.value()],
            out,
        ),
    }
}

/// Append a snapshot's end marker.
pub fn encode_end(seq: Seq, count: u64, out: &mut Vec<u8>) {
    encode(seq, OP_END, &[], &count.to_le_bytes(), out);
}

/// Append a replication heartbeat.
pub fn encode_heartbeat(seq: Seq, out: &mut Vec<u8>) {
    encode(seq, OP_HEARTBEAT, &[], &[], out);
}

/// Decode one record from the front of `buf`: answers the entry and the bytes it took, or
/// `None` when `buf` does not hold a whole record yet. Records longer than `max_body` are
/// refused before their bytes arrive, so a peer cannot make the reader buffer without bound.
pub fn decode(buf: &[u8], max_body: usize) -> Result<Option<(Entry, usize)>, RecordError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let len_bytes = [buf[0], buf[1], buf[2], buf[3]];
    let len = u32::from_le_bytes(len_bytes) as usize;
    let body_crc = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    let stored_header_crc = u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]);
    if header_crc(len_bytes, body_crc) != stored_header_crc {
        return Err(RecordError::BadHeader);
    }
    if !(MIN_BODY..=max_body.max(MIN_BODY)).contains(&len) {
        return Err(RecordError::Malformed("record too large"));
    }
    let Some(body) = buf.get(HEADER_LEN..HEADER_LEN + len) else {
        return Ok(None);
    };
    if crc32fast::hash(body) != body_crc {
        return Err(RecordError::BadBody { len });
    }
    Ok(Some((parse_body(body)?, HEADER_LEN + len)))
}

fn encode(seq: Seq, op: u8, key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    encode_parts(seq, op, key, &[value], out);
}

/// A record whose value is `parts`, one after another.
fn encode_parts(seq: Seq, op: u8, key: &[u8], parts: &[&[u8]], out: &mut Vec<u8>) {
    let value_len: usize = parts.iter().map(|part| part.len()).sum();
    let body_len = MIN_BODY + key.len() + value_len;
    let start = out.len();
    out.reserve(HEADER_LEN + body_len);
    out.put_bytes(0, HEADER_LEN);
    out.put_u64_le(seq);
    out.put_u8(op);
    out.put_u32_le(key.len() as u32);
    out.put_slice(key);
    for part in parts {
        out.put_slice(part);
    }
    let body_crc = crc32fast::hash(&out[start + HEADER_LEN..]);
    let len = (body_len as u32).to_le_bytes();
    let header_crc = header_crc(len, body_crc);
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + 8].copy_from_slice(&body_crc.to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&header_crc.to_le_bytes());
}

fn header_crc(len: [u8; 4], body_crc: u32) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&len);
    hasher.update(&body_crc.to_le_bytes());
    hasher.finalize()
}

/// Reads records one after another from a byte stream, keeping track of the offset.
pub struct RecordReader<R> {
    /// The bytes being read: a log or snapshot file, past its magic.
    input: R,
    /// The file offset of the next record; after a damaged one, where it starts (where
    /// recovery cuts the log).
    offset: u64,
    /// The buffer a record's body is read into, reused from one record to the next.
    body: Vec<u8>,
}

impl<R: Read> RecordReader<R> {
    /// A reader whose first record starts at `offset` of the underlying file.
    pub fn new(input: R, offset: u64) -> Self {
        RecordReader {
            input,
            offset,
            body: Vec::new(),
        }
    }

    /// The offset of the next record: after a successful read, the end of the last good one.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The next record; `Ok(None)` at a clean end of input. On `Err(Ok(e))` the record at
    /// [`RecordReader::offset`] is damaged; `Err(Err(e))` is an I/O failure.
    pub fn read_next(&mut self) -> Result<Option<Entry>, Result<RecordError, io::Error>> {
        let mut header = [0u8; HEADER_LEN];
        match read_full(&mut self.input, &mut header).map_err(Err)? {
            0 => return Ok(None),
            n if n < HEADER_LEN => return Err(Ok(RecordError::Truncated)),
            _ => {}
        }
        let len_bytes = [header[0], header[1], header[2], header[3]];
        let len = u32::from_le_bytes(len_bytes) as usize;
        let body_crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let stored_header_crc = u32::from_le_bytes([header[8], header[9], header[10], header[11]]);
        if header_crc(len_bytes, body_crc) != stored_header_crc {
            return Err(Ok(RecordError::BadHeader));
        }
        if !(MIN_BODY..=MAX_BODY).contains(&len) {
            return Err(Ok(RecordError::Malformed("impossible length")));
        }
        if !self.read_body(len).map_err(Err)? {
            return Err(Ok(RecordError::Truncated));
        }
        if crc32fast::hash(&self.body) != body_crc {
            return Err(Ok(RecordError::BadBody { len }));
        }
        let entry = parse_body(&self.body).map_err(Ok)?;
        self.offset += (HEADER_LEN + len) as u64;
        Ok(Some(entry))
    }

    /// Read a body of `len` bytes into the reused buffer; `false` if the input ends first.
    ///
    /// The buffer grows as the bytes arrive (doubling from 1 MiB), never far past what the
    /// input holds: a damaged length whose header still checks out (one damage in 2^32), or a
    /// file cut short, must not make recovery set aside up to 2 GiB for bytes that are not
    /// there. A whole record still costs its size and nothing more.
    fn read_body(&mut self, len: usize) -> io::Result<bool> {
        self.body.clear();
        let mut step = len.min(1 << 20);
        while self.body.len() < len {
            let filled = self.body.len();
            let want = (filled + step).min(len);
            self.body.reserve_exact(want - filled);
            self.body.resize(want, 0);
            if read_full(&mut self.input, &mut self.body[filled..])? < want - filled {
                return Ok(false);
            }
            step = want;
        }
        Ok(true)
    }
}

fn parse_body(body: &[u8]) -> Result<Entry, RecordError> {
    let seq = u64::from_le_bytes(body[0..8].try_into().expect("8 bytes"));
    // The flag is read only on a mutation's op (1 to 4); any other byte stays what it is.
    let unflagged = body[8] & !MORE;
    let (op, more) = match body[8] & MORE != 0 && (OP_PUT..=OP_CLEAR).contains(&unflagged) {
        true => (unflagged, true),
        false => (body[8], false),
    };
    let key_len = u32::from_le_bytes(body[9..13].try_into().expect("4 bytes")) as usize;
    let rest = &body[MIN_BODY..];
    if key_len > rest.len() {
        return Err(RecordError::Malformed("key longer than record"));
    }
    let (key, value) = rest.split_at(key_len);
    // Copies of exactly the right size: the Store keeps these for the life of the key.
    let change = match op {
        OP_PUT => Change::put(key, value),
        OP_PUT_EXPIRING => {
            let (deadline, value) = value
                .split_first_chunk::<8>()
                .ok_or(RecordError::Malformed("expiring put without its deadline"))?;
            Change::Put(Pair::with_deadline(
                key,
                value,
                Some(u64::from_le_bytes(*deadline)),
            ))
        }
        OP_DEL if value.is_empty() => Change::Del {
            key: Bytes::copy_from_slice(key),
        },
        OP_CLEAR if key.is_empty() && value.is_empty() => Change::Clear,
        OP_HEARTBEAT if key.is_empty() && value.is_empty() => {
            return Ok(Entry::Heartbeat { seq });
        }
        OP_END => {
            let count: [u8; 8] = value
                .try_into()
                .map_err(|_| RecordError::Malformed("bad end marker"))?;
            return Ok(Entry::End {
                seq,
                count: u64::from_le_bytes(count),
            });
        }
        _ => return Err(RecordError::Malformed("unknown operation")),
    };
    Ok(Entry::Mutation(Mutation { seq, change, more }))
}

/// Read until `buf` is full or the input ends; answers how many bytes were read.
fn read_full(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(seq: Seq, key: &'static str, value: &'static str) -> Mutation {
        Mutation {
            more: false,
            seq,
            change: Change::put(key.as_bytes(), value.as_bytes()),
        }
    }

    fn read_all(bytes: &[u8]) -> (Vec<Entry>, Option<RecordError>, u64) {
        let mut reader = RecordReader::new(bytes, 0);
        let mut entries = Vec::new();
        loop {
            match reader.read_next() {
                Ok(Some(entry)) => entries.push(entry),
                Ok(None) => return (entries, None, reader.offset()),
                Err(Ok(error)) => return (entries, Some(error), reader.offset()),
                Err(Err(error)) => panic!("{error}"),
            }
        }
    }

    #[test]
    fn records_round_trip() {
        let mutations = vec![
            put(1, "k", "v"),
            Mutation {
                more: false,
                seq: 2,
                change: Change::Del {
                    key: Bytes::from_static(b"k"),
                },
            },
            put(3, "", ""),
            put(4, "bin\n\0", "\r\n\x7f"),
            Mutation {
                more: false,
                seq: 5,
                change: Change::Put(Pair::with_deadline(b"ttl", b"v", Some(1_700_000_000_123))),
            },
            Mutation {
                more: false,
                seq: 6,
                change: Change::Put(Pair::with_deadline(b"", b"", Some(0))),
            },
            Mutation {
                more: false,
                seq: 7,
                change: Change::Clear,
            },
        ];
        let mut bytes = Vec::new();
        for m in &mutations {
            encode_mutation(m, &mut bytes);
        }
        encode_end(6, 6, &mut bytes);
        encode_heartbeat(9, &mut bytes);
        let (entries, error, offset) = read_all(&bytes);
        assert_eq!(error, None);
        assert_eq!(offset, bytes.len() as u64);
        let mut expected: Vec<Entry> = mutations.into_iter().map(Entry::Mutation).collect();
        expected.push(Entry::End { seq: 6, count: 6 });
        expected.push(Entry::Heartbeat { seq: 9 });
        assert_eq!(entries, expected);
        // The slice decoder agrees, record by record, and waits for whole records.
        let mut rest = &bytes[..];
        for entry in &expected {
            let (decoded, used) = decode(rest, 1 << 20).unwrap().unwrap();
            assert_eq!(&decoded, entry);
            assert_eq!(decode(&rest[..used - 1], 1 << 20), Ok(None));
            rest = &rest[used..];
        }
    }

    #[test]
    fn a_cut_record_is_truncated_and_the_offset_is_its_start() {
        let mut bytes = Vec::new();
        encode_mutation(&put(1, "a", "1"), &mut bytes);
        let first = bytes.len();
        encode_mutation(&put(2, "b", "2"), &mut bytes);
        for cut in first + 1..bytes.len() {
            let (entries, error, offset) = read_all(&bytes[..cut]);
            assert_eq!(entries.len(), 1);
            assert_eq!(error, Some(RecordError::Truncated), "cut at {cut}");
            assert_eq!(offset, first as u64);
        }
    }

    #[test]
    fn a_mutation_says_whether_its_group_goes_on() {
        let mut bytes = Vec::new();
        let changes = [
            Change::put(b"k", b"v"),
            Change::Put(Pair::with_deadline(b"k", b"v", Some(9))),
            Change::Del {
                key: Bytes::from_static(b"k"),
            },
            Change::Clear,
        ];
        let mutations: Vec<Mutation> = changes
            .into_iter()
            .zip(1..)
            .flat_map(|(change, seq)| {
                let first = Mutation {
                    seq: seq * 2,
                    change: change.clone(),
                    more: true,
                };
                [first, Mutation::new(seq * 2 + 1, change)]
            })
            .collect();
        for m in &mutations {
            encode_mutation(m, &mut bytes);
        }
        encode_end(1, 0, &mut bytes);
        encode_heartbeat(1, &mut bytes);
        let (entries, error, _) = read_all(&bytes);
        assert_eq!(error, None);
        let mut expected: Vec<Entry> = mutations.into_iter().map(Entry::Mutation).collect();
        expected.push(Entry::End { seq: 1, count: 0 });
        expected.push(Entry::Heartbeat { seq: 1 });
        assert_eq!(entries, expected);
    }

    #[test]
    fn an_expiring_put_without_its_deadline_is_malformed() {
        let mut bytes = Vec::new();
        encode_parts(1, OP_PUT_EXPIRING, b"k", &[b"1234567"], &mut bytes);
        let (_, error, _) = read_all(&bytes);
        assert!(matches!(error, Some(RecordError::Malformed(_))));
    }

    /// Found by the `records` fuzz target (a run's memory reached 2 GB): a header whose
    /// checksum holds but whose length is damaged made the reader allocate that length before
    /// finding the input far shorter.
    #[test]
    fn a_damaged_length_costs_no_more_memory_than_the_input_holds() {
        let len = (1u32 << 30).to_le_bytes();
        let mut bytes = len.to_vec();
        bytes.extend_from_slice(&0u32.to_le_bytes());
        bytes.extend_from_slice(&header_crc(len, 0).to_le_bytes());
        bytes.extend_from_slice(&[7; 100]);
        let mut reader = RecordReader::new(&bytes[..], 0);
        assert_eq!(
            reader.read_next().unwrap_err().ok(),
            Some(RecordError::Truncated)
        );
        assert!(
            reader.body.capacity() <= 1 << 20,
            "{}",
            reader.body.capacity()
        );
        // A record over the first step reads whole, into a buffer of its size.
        let big = Mutation::new(1, Change::put(b"k", &vec![1; 3 << 20]));
        let mut bytes = Vec::new();
        encode_mutation(&big, &mut bytes);
        let mut reader = RecordReader::new(&bytes[..], 0);
        assert_eq!(reader.read_next().unwrap(), Some(Entry::Mutation(big)));
        assert_eq!(reader.body.capacity(), bytes.len() - HEADER_LEN);
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let mut bytes = Vec::new();
        encode_mutation(&put(7, "key", "value"), &mut bytes);
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x40;
            let (entries, error, _) = read_all(&damaged);
            assert!(
                entries.is_empty() && error.is_some(),
                "flip at {i} undetected"
            );
        }
    }
}
