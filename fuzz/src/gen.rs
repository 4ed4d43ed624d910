//! Turning fuzz input into the values an encoder is given: request arguments, histories of
//! mutations, the model of the data they make, and damage to do to a file.
//!
//! Every reader here is total: input that runs out gives zeros and empty values, never an
//! error, so any input is some history (libFuzzer's mutations of one stay meaningful), and
//! the seed files can be short.

use std::collections::BTreeMap;

use arbitrary::Unstructured;
use bytes::Bytes;
use kv_actors::store::pair::Pair;
use kv_actors::store::{Change, Mutation, Seq};

/// A byte of input (0 once it runs out).
pub fn byte(u: &mut Unstructured) -> u8 {
    u.arbitrary().unwrap_or(0)
}

/// Whether the next byte of input is a multiple of `n`: a choice taken one time in `n` (every
/// time once the input runs out).
pub fn one_in(u: &mut Unstructured, n: u8) -> bool {
    byte(u).is_multiple_of(n)
}

/// A number of input (0 once it runs out).
pub fn number(u: &mut Unstructured) -> u64 {
    u.arbitrary().unwrap_or(0)
}

/// A whole number in `0..=most`.
pub fn up_to(u: &mut Unstructured, most: usize) -> usize {
    u.int_in_range(0..=most).unwrap_or(0)
}

/// Up to `most` bytes of input, as many as the next byte says (fewer once it runs out).
pub fn bytes(u: &mut Unstructured, most: usize) -> Vec<u8> {
    let len = up_to(u, most);
    let len = len.min(u.len());
    u.bytes(len).map(<[u8]>::to_vec).unwrap_or_default()
}

/// Request arguments from `data`: each is a length byte (modulo 64) and that many bytes, so
/// every argument, binary ones included, can be made.
pub fn args(data: &[u8]) -> Vec<Bytes> {
    let mut args = Vec::new();
    let mut rest = data;
    while let Some((&len, after)) = rest.split_first() {
        let len = usize::from(len % 64).min(after.len());
        args.push(Bytes::copy_from_slice(&after[..len]));
        rest = &after[len..];
    }
    args
}

/// A word of lower-case hex (at least one digit): what replication ids, nonces and proofs
/// look like on the wire.
pub fn hex_word(u: &mut Unstructured) -> String {
    let raw = bytes(u, 20);
    let mut word: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    if word.is_empty() {
        word.push('0');
    }
    word
}

/// A key: one of a few short ones most of the time, so that puts and deletes meet, and now and
/// then one of any bytes.
pub fn key(u: &mut Unstructured) -> Vec<u8> {
    match byte(u) {
        0..=223 => vec![b'k', b'0' + byte(u) % 8],
        _ => bytes(u, 12),
    }
}

/// A pair, with a deadline one time in four.
pub fn pair(u: &mut Unstructured) -> Pair {
    let key = key(u);
    let value = bytes(u, 16);
    let deadline = one_in(u, 4).then(|| number(u));
    Pair::with_deadline(&key, &value, deadline)
}

/// A change: mostly puts, some deletes, now and then a `FLUSHALL`.
pub fn change(u: &mut Unstructured) -> Change {
    match byte(u) % 16 {
        0 => Change::Clear,
        1..=4 => Change::Del {
            key: Bytes::from(key(u)),
        },
        _ => Change::Put(pair(u)),
    }
}

/// A history of up to `most` mutations numbered from `first`, some of them in atomic groups;
/// the last one always ends its group, as a log the writer finished does.
pub fn history(u: &mut Unstructured, first: Seq, most: usize) -> Vec<Mutation> {
    let count = up_to(u, most);
    let mut mutations: Vec<Mutation> = (0..count as Seq)
        .map(|i| Mutation {
            seq: first + i,
            change: change(u),
            more: one_in(u, 3),
        })
        .collect();
    if let Some(last) = mutations.last_mut() {
        last.more = false;
    }
    mutations
}

/// The data as a model keeps it: key to value and deadline.
pub type Model = BTreeMap<Vec<u8>, (Vec<u8>, Option<u64>)>;

/// Apply `change` to the model.
pub fn apply(model: &mut Model, change: &Change) {
    match change {
        Change::Put(pair) => {
            let entry = (pair.value().to_vec(), pair.deadline());
            model.insert(pair.key().to_vec(), entry);
        }
        Change::Del { key } => {
            model.remove(&key[..]);
        }
        Change::Clear => model.clear(),
    }
}

/// The model of some pairs (a keyspace's, or a snapshot's).
pub fn model_of<'a>(pairs: impl Iterator<Item = &'a Pair>) -> Model {
    pairs
        .map(|p| (p.key().to_vec(), (p.value().to_vec(), p.deadline())))
        .collect()
}

/// Damage to a file of `len` bytes, as a disk, a crash or an operator's mistake may do it: cut
/// short, bits flipped, a range zeroed, a range lost, or a range written twice. None of these
/// can forge a record (write bytes chosen to pass its checksums), which no reader could tell
/// from a good one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Damage {
    /// The file ends at this offset.
    Truncate(usize),
    /// This bit of this byte is flipped.
    Flip(usize, u8),
    /// These bytes are zeros.
    Zero(usize, usize),
    /// These bytes are gone; what followed them moves up.
    Remove(usize, usize),
    /// These bytes are written again at another offset, over what was there.
    Copy {
        /// Where the range starts.
        from: usize,
        /// Its length.
        len: usize,
        /// Where it is written again.
        to: usize,
    },
}

/// Up to `most` kinds of damage, with offsets within a file of `len` bytes.
pub fn damage(u: &mut Unstructured, len: usize, most: usize) -> Vec<Damage> {
    let count = up_to(u, most);
    let at = |u: &mut Unstructured| up_to(u, len);
    (0..count)
        .map(|_| match byte(u) % 5 {
            0 => Damage::Truncate(at(u)),
            1 => Damage::Flip(at(u), byte(u) % 8),
            2 => Damage::Zero(at(u), up_to(u, 32)),
            3 => Damage::Remove(at(u), up_to(u, 64)),
            _ => Damage::Copy {
                from: at(u),
                len: up_to(u, 64),
                to: at(u),
            },
        })
        .collect()
}

/// `bytes` with `damage` done to it, in order (offsets past the end do nothing).
pub fn damaged(mut bytes: Vec<u8>, damage: &[Damage]) -> Vec<u8> {
    for &harm in damage {
        let end = |start: usize, len: usize, bytes: &Vec<u8>| (start + len).min(bytes.len());
        match harm {
            Damage::Truncate(at) => bytes.truncate(at),
            Damage::Flip(at, bit) => {
                if let Some(b) = bytes.get_mut(at) {
                    *b ^= 1 << bit;
                }
            }
            Damage::Zero(start, len) => {
                let end = end(start, len, &bytes);
                if start < end {
                    bytes[start..end].fill(0);
                }
            }
            Damage::Remove(start, len) => {
                let end = end(start, len, &bytes);
                if start < end {
                    bytes.drain(start..end);
                }
            }
            Damage::Copy { from, len, to } => {
                let end = end(from, len, &bytes);
                if from < end {
                    let range = bytes[from..end].to_vec();
                    let to_end = (to + range.len()).min(bytes.len());
                    if to < to_end {
                        bytes[to..to_end].copy_from_slice(&range[..to_end - to]);
                    }
                }
            }
        }
    }
    bytes
}
