//! The replication link: the replica's decoder of its primary's stream (the `PROVE` line, the
//! line that says how the stream starts, then records in batches), and the lines the primary
//! reads back from its replica (`CHALLENGE`, `POSITION`, `ACK`).

use arbitrary::Unstructured;
use kv_actors::replication::replication_id::Previous;
use kv_actors::replication::wire::{
    Prove, ReplicaLine, StreamDecoder, StreamEncoder, StreamFrame, SyncStart,
};
use kv_actors::storage::record::Entry;

use crate::chunks::{same_however_cut, Step};
use crate::gen;

/// The most records in one batch: small, so that inputs cross batch boundaries.
const MAX_BATCH: usize = 3;

/// One thing the stream decoder yields, batches flattened.
#[derive(Debug, PartialEq, Eq)]
enum Item {
    /// The proof line, or the line that says how the stream starts.
    Control(StreamFrame),
    /// One record.
    Record(Entry),
}

/// Arbitrary bytes decode the same however they arrive; a stream encoded from the input
/// (a proof, a start line, a snapshot's pairs and end marker, mutations, heartbeats) decodes,
/// however it arrives, to exactly what was encoded.
pub fn stream(data: &[u8]) {
    decode(data);
    replica_lines(data);

    let mut u = Unstructured::new(data);
    let proof = gen::one_in(&mut u, 2).then(|| gen::hex_word(&mut u));
    let prove = Prove {
        proof,
        from: gen::number(&mut u),
    };
    let id = gen::hex_word(&mut u);
    // Far from the end of the numbers, so that the mutations after it can be numbered.
    let at = gen::number(&mut u) >> 2;
    let previous = gen::one_in(&mut u, 2).then(|| Previous {
        id: gen::hex_word(&mut u),
        offset: gen::number(&mut u),
    });
    let full = gen::one_in(&mut u, 2);
    let start = match full {
        true => SyncStart::Full {
            id,
            seq: at,
            previous,
        },
        false => SyncStart::Continue {
            id,
            offset: at,
            previous,
        },
    };
    let mut bytes = prove.encode();
    start.encode(&mut bytes);
    let mut expected = vec![
        Item::Control(StreamFrame::Prove(prove)),
        Item::Control(StreamFrame::Start(start)),
    ];
    if full {
        let pairs: Vec<_> = (0..gen::up_to(&mut u, 8))
            .map(|_| gen::pair(&mut u))
            .collect();
        for pair in &pairs {
            StreamEncoder::snapshot_pair(at, pair, &mut bytes);
            expected.push(Item::Record(Entry::Mutation(
                kv_actors::store::Mutation::new(at, kv_actors::store::Change::Put(pair.clone())),
            )));
        }
        StreamEncoder::snapshot_end(at, pairs.len() as u64, &mut bytes);
        expected.push(Item::Record(Entry::End {
            seq: at,
            count: pairs.len() as u64,
        }));
    }
    for mutation in gen::history(&mut u, at.wrapping_add(1), 12) {
        if gen::one_in(&mut u, 4) {
            StreamEncoder::heartbeat(mutation.seq - 1, &mut bytes);
            expected.push(Item::Record(Entry::Heartbeat {
                seq: mutation.seq - 1,
            }));
        }
        StreamEncoder::mutation(&mutation, &mut bytes);
        expected.push(Item::Record(Entry::Mutation(mutation)));
    }
    let decoded = decode(&bytes);
    assert_eq!(decoded.error, None);
    assert_eq!(decoded.items, expected);
    assert_eq!(decoded.consumed, bytes.len());
}

/// Every line of `data` read as the primary reads its replica's lines never panics, and a line
/// the primary accepts is one the replica could have sent: encoded again, it reads the same.
fn replica_lines(data: &[u8]) {
    for line in data.split(|&b| b == b'\n') {
        let text = String::from_utf8_lossy(line);
        if let Ok(parsed) = ReplicaLine::parse(&text) {
            let encoded = String::from_utf8(parsed.encode()).expect("lines are text");
            let again = ReplicaLine::parse(encoded.trim_end_matches('\n'));
            assert_eq!(again.as_ref(), Ok(&parsed), "{text:?}");
        }
    }
}

/// Decode `bytes` as a replica reads its primary's stream, checking the cut changes nothing.
fn decode(bytes: &[u8]) -> crate::chunks::Decoded<Item> {
    same_however_cut(
        bytes,
        || StreamDecoder::new(MAX_BATCH),
        |decoder, buf| match decoder.decode(buf) {
            Err(error) => Step::Error(error.to_string()),
            Ok(None) => Step::Wait,
            Ok(Some(StreamFrame::Records(entries))) => {
                Step::Items(entries.into_iter().map(Item::Record).collect())
            }
            Ok(Some(control)) => Step::Items(vec![Item::Control(control)]),
        },
    )
}
