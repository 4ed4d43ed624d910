//! The replication wire protocol: every message a primary and a replica exchange on the link,
//! typed, parsed and encoded here and nowhere else.
//!
//! ```text
//! primary                                     replica (on its client port)
//!   REPLICATE <nonce>\n             ───────▶
//!                                   ◀───────  CHALLENGE <nonce> <proof | ->\n
//!   PROVE <proof | ->\n             ───────▶
//!                                   ◀───────  POSITION <replication id | -> <offset>\n
//!                                             (instead of either line, ERROR: <why>\n, and
//!                                             the replica closes)
//!   FULLSYNC <id> <seq> [<prev id> <prev offset>]\n  ─▶  a snapshot as of <seq>, then mutations
//!   or CONTINUE <id> <offset> [<prev id> <prev offset>]\n  ─▶  the mutations after <offset>
//!   (the optional pair: the history the primary's continues, and up to where)
//!   records (binary)                ───────▶
//!                                   ◀───────  ACK <applied> <durable>\n   (at least once a second)
//! ```
//!
//! The nonces are fresh random hex; the proofs are each side's HMAC of both nonces under the
//! cluster secret (`-` without one), made and checked in [`super::auth`]. The records are
//! those of the log ([`crate::storage::record`]): mutations, a snapshot's
//! `Put`s and its end marker, and heartbeats; [`StreamEncoder`] says which are sent when and
//! [`StreamDecoder`] reads them back. The design (replication ids, partial and full resync,
//! acknowledgements) is in docs/replication.md.

use bytes::BytesMut;
use thiserror::Error;

use super::replication_id::Previous;
use crate::storage::record::{self, Entry};
use crate::store::pair::Pair;
use crate::store::{Mutation, Seq};

/// The longest control line either side accepts: the handshake lines are short, so a peer that
/// sends more is not speaking this protocol.
pub const MAX_CONTROL_LINE: usize = 256;

/// Why bytes on a replication link are not a valid message; ends the link.
#[derive(Debug, PartialEq, Eq, Error)]
pub enum WireError {
    /// A control line that is not the message expected at this point (shown shortened).
    #[error("unexpected {0:.80}")]
    Unexpected(String),
    /// A control line longer than [`MAX_CONTROL_LINE`].
    #[error("control line too long")]
    LineTooLong,
    /// A record that does not decode.
    #[error("{0}")]
    Record(#[from] record::RecordError),
}

/// The primary's first line: `REPLICATE <nonce> [<epoch>]`. From then on the connection
/// carries replication, not requests.
///
/// The epoch is the primary's term in a failover cluster (`0`, and not sent, for a static
/// primary): a replica refuses a stream from an epoch older than the newest it has seen. It is
/// bound into both sides' proofs ([`Replicate::bound_nonce`]), so with a cluster secret a
/// stream cannot be replayed under another epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replicate {
    /// The primary's fresh nonce, as sent (checked for form by the replica).
    pub nonce: String,
    /// The primary's epoch (`0`: a static primary, outside a failover cluster).
    pub epoch: u64,
}

impl Replicate {
    /// The opening's usage, the error a line that starts with `REPLICATE` but is not one gets.
    pub const USAGE: &'static str = "REPLICATE <nonce> [<epoch>]";

    /// The opening of a static primary's handshake with `nonce`.
    pub fn new(nonce: &str) -> Replicate {
        Replicate::with_epoch(nonce, 0)
    }

    /// The opening of a handshake with `nonce` for a primary of `epoch`.
    pub fn with_epoch(nonce: &str, epoch: u64) -> Replicate {
        Replicate {
            nonce: nonce.to_string(),
            epoch,
        }
    }

    /// The primary's nonce as both sides' proofs cover it: with the epoch, when there is one.
    pub fn bound_nonce(&self) -> String {
        match self.epoch {
            0 => self.nonce.clone(),
            epoch => format!("{}@{epoch}", self.nonce),
        }
    }

    /// The line, with its `\n`.
    pub fn encode(&self) -> Vec<u8> {
        match self.epoch {
            0 => format!("REPLICATE {}\n", self.nonce).into_bytes(),
            epoch => format!("REPLICATE {} {epoch}\n", self.nonce).into_bytes(),
        }
    }

    /// The opening, if `line` (without its `\n`, a trailing `\r` allowed) is exactly
    /// `REPLICATE <nonce> [<epoch>]`, the verb in any case and blanks around the words allowed.
    /// Any other line is a client request, and goes to the command parser, which answers it.
    pub fn parse(line: &[u8]) -> Option<Replicate> {
        let text = std::str::from_utf8(line).ok()?;
        let mut words = text.split([' ', '\t', '\r']).filter(|w| !w.is_empty());
        if !words.next()?.eq_ignore_ascii_case("REPLICATE") {
            return None;
        }
        let nonce = words.next()?;
        let epoch = match words.next() {
            None => 0,
            Some(epoch) => epoch.parse().ok()?,
        };
        words
            .next()
            .is_none()
            .then(|| Replicate::with_epoch(nonce, epoch))
    }

    /// Whether the first bytes of a connection are a primary's opening: what the Listener
    /// peeks at (ten bytes) to admit a primary when client places are full.
    pub fn opens(head: &[u8]) -> bool {
        head == b"REPLICATE " || head == b"REPLICATE\n"
    }
}

/// The primary's second line, `PROVE <proof>`: its proof that it knows the cluster secret
/// (`-` without one), sent once it has checked the replica's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prove {
    /// The proof, as hex; `None` for a primary without a secret.
    pub proof: Option<String>,
    /// The primary's backlog holds every mutation after this one: the replica fingerprints
    /// what it holds after it, for the primary to check (see `fingerprint.rs`).
    pub from: Seq,
}

impl Prove {
    /// The line, with its `\n`.
    pub fn encode(&self) -> Vec<u8> {
        let proof = self.proof.as_deref().unwrap_or("-");
        format!("PROVE {proof} {}\n", self.from).into_bytes()
    }

    /// Parse the line (without its `\n`).
    pub fn parse(line: &[u8]) -> Result<Prove, WireError> {
        let text = String::from_utf8_lossy(line);
        let words: Vec<&str> = text.split_whitespace().collect();
        let parsed = match words.as_slice() {
            ["PROVE", proof, from] => from.parse().ok().map(|from| Prove {
                proof: (*proof != "-").then(|| proof.to_string()),
                from,
            }),
            _ => None,
        };
        parsed.ok_or_else(|| WireError::Unexpected(text.into_owned()))
    }
}

/// The primary's choice after learning where the replica stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncStart {
    /// `FULLSYNC <id> <seq>`: a snapshot as of `seq` follows, then the mutations after it.
    Full {
        /// The primary's replication id: the history the replica holds once the snapshot is in.
        id: String,
        /// The last mutation the snapshot includes; the streamed mutations start after it.
        seq: Seq,
        /// The history the primary's continues, and up to where (for position tokens).
        previous: Option<Previous>,
    },
    /// `CONTINUE <id> <offset>`: the mutations after `offset` follow (a partial resync).
    Continue {
        /// The primary's replication id, which the replica's data must already belong to.
        id: String,
        /// The replica's position, as its `POSITION` gave it; the mutations from `offset + 1`
        /// follow.
        offset: Seq,
        /// The history the primary's continues, and up to where (for position tokens).
        previous: Option<Previous>,
    },
}

impl SyncStart {
    /// Append the line, with its `\n`, to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (line, previous) = match self {
            SyncStart::Full { id, seq, previous } => (format!("FULLSYNC {id} {seq}"), previous),
            SyncStart::Continue {
                id,
                offset,
                previous,
            } => (format!("CONTINUE {id} {offset}"), previous),
        };
        out.extend_from_slice(line.as_bytes());
        if let Some(previous) = previous {
            out.extend_from_slice(format!(" {} {}", previous.id, previous.offset).as_bytes());
        }
        out.push(b'\n');
    }

    /// Parse the line (without its `\n`).
    pub fn parse(line: &[u8]) -> Result<SyncStart, WireError> {
        let text = String::from_utf8_lossy(line);
        let words: Vec<&str> = text.split_whitespace().collect();
        // A primary that continues no history (or of an older version) sends three words.
        let (words, previous) = match words.as_slice() {
            [verb, id, n, earlier, to] => match to.parse() {
                Ok(offset) => {
                    let previous = Previous {
                        id: earlier.to_string(),
                        offset,
                    };
                    (vec![*verb, *id, *n], Some(previous))
                }
                Err(_) => (words, None),
            },
            _ => (words, None),
        };
        let start = match words.as_slice() {
            ["FULLSYNC", id, seq] => seq.parse().ok().map(|seq| SyncStart::Full {
                id: id.to_string(),
                seq,
                previous,
            }),
            ["CONTINUE", id, offset] => offset.parse().ok().map(|offset| SyncStart::Continue {
                id: id.to_string(),
                offset,
                previous,
            }),
            _ => None,
        };
        start.ok_or_else(|| WireError::Unexpected(text.into_owned()))
    }
}

/// Why a replica refuses a primary's opening; it sends the line and closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum Refusal {
    /// This node is a primary (or has no follower): nothing here accepts a stream.
    #[error("REPLICATE: this node is not a replica")]
    NotAReplica,
    /// The primary did not prove it knows this node's `--cluster-secret`.
    #[error("replication refused: wrong cluster secret")]
    WrongSecret,
    /// The opening's nonce is not a nonce: not a primary of ours.
    #[error("replication refused: malformed handshake")]
    Malformed,
    /// A node with TLS takes a replication stream only over TLS.
    #[error("replication refused: this node takes replication only over TLS")]
    NotTls,
}

/// A line the replica sends back to its primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaLine {
    /// `CHALLENGE <nonce> <proof>`: the replica's fresh nonce, and its proof that it knows the
    /// cluster secret (`None`, sent as `-`, for a replica without one). The answer to the
    /// opening.
    Challenge {
        /// The replica's nonce, as hex.
        nonce: String,
        /// The replica's proof, as hex.
        proof: Option<String>,
    },
    /// `POSITION <id> <offset>`: the history the replica's data belongs to (`-`: none) and how
    /// far it goes. The answer to the opening.
    Position {
        /// The replication id of the history the replica's data belongs to, if it has one.
        id: Option<String>,
        /// The last mutation of that history the replica holds.
        offset: Seq,
        /// A hash of its fingerprints of the mutations after `.0` up to `offset`, for the
        /// primary to check against its own (`None`: nothing in common to check).
        window: Option<(Seq, u64)>,
    },
    /// `ACK <applied> <durable>`: the replica applied every mutation up to `applied` and made
    /// every one up to `durable` durable.
    Ack {
        /// The last mutation applied; `WAIT` counts the replica once this reaches a write.
        applied: Seq,
        /// The last mutation on the replica's disk (never past `applied`).
        durable: Seq,
    },
    /// `ERROR: <why>`: the replica refused the opening.
    Refused(String),
}

impl ReplicaLine {
    /// The line, with its `\n`.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ReplicaLine::Challenge { nonce, proof } => {
                format!("CHALLENGE {nonce} {}\n", proof.as_deref().unwrap_or("-"))
            }
            ReplicaLine::Position { id, offset, window } => {
                let id = id.as_deref().unwrap_or("-");
                match window {
                    Some((start, hash)) => {
                        format!("POSITION {id} {offset} {start} {hash:016x}\n")
                    }
                    None => format!("POSITION {id} {offset}\n"),
                }
            }
            ReplicaLine::Ack { applied, durable } => format!("ACK {applied} {durable}\n"),
            ReplicaLine::Refused(why) => format!("ERROR: {why}\n"),
        }
        .into_bytes()
    }

    /// The refusal line for `refusal`.
    pub fn refused(refusal: Refusal) -> ReplicaLine {
        ReplicaLine::Refused(refusal.to_string())
    }

    /// Parse one line (without its `\n`).
    pub fn parse(line: &str) -> Result<ReplicaLine, WireError> {
        if let Some(why) = line.strip_prefix("ERROR: ") {
            return Ok(ReplicaLine::Refused(why.to_string()));
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let parsed = match words.as_slice() {
            ["CHALLENGE", nonce, proof] => Some(ReplicaLine::Challenge {
                nonce: nonce.to_string(),
                proof: (*proof != "-").then(|| proof.to_string()),
            }),
            ["POSITION", id, offset, window @ ..] if window.len() != 1 && window.len() <= 2 => {
                let window = match window {
                    [start, hash] => match (start.parse(), u64::from_str_radix(hash, 16)) {
                        (Ok(start), Ok(hash)) => Some(Some((start, hash))),
                        _ => None,
                    },
                    _ => Some(None),
                };
                match (offset.parse(), window) {
                    (Ok(offset), Some(window)) => Some(ReplicaLine::Position {
                        id: (*id != "-").then(|| id.to_string()),
                        offset,
                        window,
                    }),
                    _ => None,
                }
            }
            ["ACK", applied, durable] => match (applied.parse(), durable.parse()) {
                (Ok(applied), Ok(durable)) => Some(ReplicaLine::Ack { applied, durable }),
                _ => None,
            },
            _ => None,
        };
        parsed.ok_or_else(|| WireError::Unexpected(line.to_string()))
    }
}

/// Encodes what a primary streams after its [`SyncStart`]: a snapshot's pairs and end marker
/// (full resync), mutations, heartbeats. Each appends one record to `out`.
pub struct StreamEncoder;

impl StreamEncoder {
    /// One key of a full resync's snapshot (with its deadline), as of `seq`.
    pub fn snapshot_pair(seq: Seq, pair: &Pair, out: &mut Vec<u8>) {
        record::encode_pair(seq, pair, out);
    }

    /// The end of a full resync's snapshot: `count` pairs as of `seq`.
    pub fn snapshot_end(seq: Seq, count: u64, out: &mut Vec<u8>) {
        record::encode_end(seq, count, out);
    }

    /// One mutation.
    pub fn mutation(mutation: &Mutation, out: &mut Vec<u8>) {
        record::encode_mutation(mutation, out);
    }

    /// A heartbeat: the primary is alive and at `seq`, with nothing new to send.
    pub fn heartbeat(seq: Seq, out: &mut Vec<u8>) {
        record::encode_heartbeat(seq, out);
    }
}

/// What a replica reads on the link after the opening.
#[derive(Debug, PartialEq, Eq)]
pub enum StreamFrame {
    /// The primary's proof.
    Prove(Prove),
    /// How the stream starts.
    Start(SyncStart),
    /// A batch of records.
    Records(Vec<Entry>),
}

/// Decodes the primary's stream after the opening: the [`Prove`] line, one [`SyncStart`]
/// line, then records in batches of at most `max_batch`.
#[derive(Debug)]
pub struct StreamDecoder {
    /// How many control lines have been read: the proof, then how the stream starts; records
    /// follow them.
    lines: u8,
    /// The most records yielded as one batch.
    max_batch: usize,
}

impl StreamDecoder {
    /// A decoder yielding at most `max_batch` records at a time.
    pub fn new(max_batch: usize) -> StreamDecoder {
        StreamDecoder {
            lines: 0,
            max_batch: max_batch.max(1),
        }
    }

    /// The next frame from the front of `src`, or `None` until more bytes arrive.
    ///
    /// Records of any size a node may write are accepted ([`record::MAX_BODY`]), not only what
    /// this node's client limits allow, or a primary with larger limits than its replica could
    /// send a record the replica refuses forever.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<StreamFrame>, WireError> {
        if self.lines < 2 {
            // Only the longest line's worth is searched: a line over the limit is refused
            // whether or not its end has arrived.
            let searched = &src[..src.len().min(MAX_CONTROL_LINE + 1)];
            let Some(end) = memchr::memchr(b'\n', searched) else {
                if src.len() > MAX_CONTROL_LINE {
                    return Err(WireError::LineTooLong);
                }
                return Ok(None);
            };
            let line = src.split_to(end + 1);
            let line = &line[..end];
            self.lines += 1;
            return Ok(Some(match self.lines {
                1 => StreamFrame::Prove(Prove::parse(line)?),
                _ => StreamFrame::Start(SyncStart::parse(line)?),
            }));
        }
        let mut entries = Vec::new();
        let mut used = 0;
        while entries.len() < self.max_batch {
            match record::decode(&src[used..], record::MAX_BODY) {
                Ok(Some((entry, len))) => {
                    entries.push(entry);
                    used += len;
                }
                Ok(None) => break,
                // The good records before a damaged one are yielded first, as they would be
                // had they arrived in an earlier read; the next call reports the damage.
                Err(_) if !entries.is_empty() => break,
                Err(error) => return Err(error.into()),
            }
        }
        let _ = src.split_to(used);
        Ok((!entries.is_empty()).then_some(StreamFrame::Records(entries)))
    }
}

#[cfg(test)]
mod tests;
