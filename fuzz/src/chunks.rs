//! Feeding one input to a decoder cut into reads in several ways, and checking that the way it
//! is cut changes nothing.
//!
//! A socket hands a decoder whatever bytes have arrived: a request may come whole, a byte at a
//! time, or split anywhere. A decoder whose answer depends on where the reads fell would
//! accept on a fast link what it refuses on a slow one, so every decoder target checks that
//! the frames, the bytes consumed and the error that ends the stream are the same for the
//! input whole, a byte at a time, and cut at pseudo-random places chosen by the input itself
//! (so a failing input fails again, the same way, when replayed).

use std::fmt::Debug;

use bytes::BytesMut;

/// What one call of a decoder gave.
#[derive(Debug)]
pub enum Step<T> {
    /// Items decoded (a batch flattened; possibly none, when the call consumed only bytes
    /// that make nothing, such as blank lines).
    Items(Vec<T>),
    /// Nothing more until more bytes arrive.
    Wait,
    /// These items, then the rest of the stream is not this decoder's (a replication opening
    /// read by the line decoder): feeding stops.
    Last(Vec<T>),
    /// The stream cannot go on: the connection would be closed with this error.
    Error(String),
}

/// What a decoder made of a whole stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded<T> {
    /// Every item, in order, batches flattened (where batches end depends on the reads; what
    /// is in them must not).
    pub items: Vec<T>,
    /// How many bytes the decoder consumed.
    pub consumed: usize,
    /// The error that ended the stream, if one did.
    pub error: Option<String>,
}

/// The lengths of the reads an input of `len` bytes is cut into, in each of the ways tried:
/// whole, a byte at a time, and two pseudo-random cuttings (short reads, and reads of any
/// length) seeded by `seed`.
pub fn cuttings(len: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut rng = Rng::new(seed);
    let mut random = |most: usize| {
        let mut pieces = Vec::new();
        let mut left = len;
        while left > 0 {
            let piece = 1 + rng.below(most.min(left));
            pieces.push(piece);
            left -= piece;
        }
        pieces
    };
    let short = random(8);
    let any = random(len.max(1));
    vec![vec![len], vec![1; len], short, any]
}

/// Feed `data` to a fresh decoder (`new`) in reads of `pieces` bytes, calling `step` after
/// each read until it waits, and answer what it made of the stream.
pub fn feed<T, D>(
    data: &[u8],
    pieces: &[usize],
    new: &mut impl FnMut() -> D,
    step: &mut impl FnMut(&mut D, &mut BytesMut) -> Step<T>,
) -> Decoded<T> {
    let mut decoder = new();
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut decoded = Decoded {
        items: Vec::new(),
        consumed: 0,
        error: None,
    };
    // Every call that yields must make progress; a decoder that yields forever is a hang.
    let mut calls_left = 2 * data.len() + 2 * pieces.len() + 8;
    for &piece in pieces {
        buf.extend_from_slice(&data[fed..fed + piece]);
        fed += piece;
        loop {
            calls_left = calls_left
                .checked_sub(1)
                .expect("the decoder keeps yielding without consuming its input");
            match step(&mut decoder, &mut buf) {
                Step::Items(items) => decoded.items.extend(items),
                Step::Wait => break,
                Step::Last(items) => {
                    decoded.items.extend(items);
                    decoded.consumed = fed - buf.len();
                    return decoded;
                }
                Step::Error(error) => {
                    decoded.error = Some(error);
                    decoded.consumed = fed - buf.len();
                    return decoded;
                }
            }
        }
    }
    decoded.consumed = fed - buf.len();
    decoded
}

/// Feed `data` whole and in every other [`cuttings`] to fresh decoders, assert that they all
/// made the same of it, and answer what that was.
pub fn same_however_cut<T: Debug + PartialEq, D>(
    data: &[u8],
    mut new: impl FnMut() -> D,
    mut step: impl FnMut(&mut D, &mut BytesMut) -> Step<T>,
) -> Decoded<T> {
    let mut ways = cuttings(data.len(), hash(data)).into_iter();
    let whole_pieces = ways.next().unwrap_or_default();
    let whole = feed(data, &whole_pieces, &mut new, &mut step);
    for pieces in ways {
        let cut = feed(data, &pieces, &mut new, &mut step);
        assert_eq!(
            cut, whole,
            "cut into reads of {pieces:?} the stream decodes otherwise than whole"
        );
    }
    whole
}

/// FNV-1a of `data`: the seed of its pseudo-random cuttings, so that they are the same every
/// time the input is replayed.
pub fn hash(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A small seeded generator (xorshift64*): where the pseudo-random cuts fall, and the tests'
/// variations of the seeds. Not for anything that needs good randomness.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed` (any value; zero is moved off the fixed point).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        match n {
            0 => 0,
            n => (self.next_u64() % n as u64) as usize,
        }
    }
}
