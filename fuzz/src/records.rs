//! The record format's two readers: the slice decoder (the replication stream's) and the
//! streaming reader (recovery's and snapshots'). They must agree on every input, and give
//! back what the encoder wrote.

use arbitrary::Unstructured;
use kv_actors::storage::record::{self, Entry, RecordError, RecordReader, MAX_BODY};
use kv_actors::store::Seq;

use crate::gen;

/// How a run of records ends, as both readers can say it.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// At a record boundary, with nothing after it.
    Clean,
    /// Inside a record: the input stops before the record does.
    CutShort,
    /// A damaged record: its header's checksum fails.
    BadHeader,
    /// A damaged record: its body's checksum fails (a header that checks out gave `len`).
    BadBody(usize),
    /// A record whose checksums hold but whose length or body makes no sense.
    Malformed,
}

/// What a reader made of some bytes: the records, where the last good one ends, and how.
type Read = (Vec<Entry>, u64, End);

/// Arbitrary bytes read by both readers give the same records, the same offset and the same
/// ending; records encoded from the input give back exactly what was encoded.
pub fn records(data: &[u8]) {
    assert_eq!(by_slices(data), by_stream(data), "the readers disagree");

    let mut u = Unstructured::new(data);
    let mut encoded = Vec::new();
    let mut expected = Vec::new();
    let first = gen::number(&mut u) % 1000;
    for mutation in gen::history(&mut u, first, 16) {
        record::encode_mutation(&mutation, &mut encoded);
        expected.push(Entry::Mutation(mutation));
    }
    let seq: Seq = gen::number(&mut u);
    let count = gen::number(&mut u);
    record::encode_end(seq, count, &mut encoded);
    expected.push(Entry::End { seq, count });
    record::encode_heartbeat(seq, &mut encoded);
    expected.push(Entry::Heartbeat { seq });
    let whole = (expected, encoded.len() as u64, End::Clean);
    assert_eq!(by_slices(&encoded), whole);
    assert_eq!(by_stream(&encoded), whole);
}

/// The records of `bytes` by [`record::decode`], one slice after another.
fn by_slices(bytes: &[u8]) -> Read {
    let mut entries = Vec::new();
    let mut at = 0;
    loop {
        let end = match record::decode(&bytes[at..], MAX_BODY) {
            Ok(Some((entry, len))) => {
                entries.push(entry);
                at += len;
                continue;
            }
            Ok(None) if at == bytes.len() => End::Clean,
            Ok(None) => End::CutShort,
            Err(error) => end_of(error),
        };
        return (entries, at as u64, end);
    }
}

/// The records of `bytes` by a [`RecordReader`].
fn by_stream(bytes: &[u8]) -> Read {
    let mut reader = RecordReader::new(bytes, 0);
    let mut entries = Vec::new();
    loop {
        let end = match reader.read_next() {
            Ok(Some(entry)) => {
                entries.push(entry);
                continue;
            }
            Ok(None) => End::Clean,
            Err(Ok(error)) => end_of(error),
            Err(Err(error)) => panic!("reading a slice failed: {error}"),
        };
        return (entries, reader.offset(), end);
    }
}

/// How a reader's error ends the run, as both readers can say it (the messages differ).
fn end_of(error: RecordError) -> End {
    match error {
        RecordError::Truncated => End::CutShort,
        RecordError::BadHeader => End::BadHeader,
        RecordError::BadBody { len } => End::BadBody(len),
        RecordError::Malformed(_) => End::Malformed,
    }
}
