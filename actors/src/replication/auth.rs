//! Mutual authentication of a peer link by challenge and response: the replication link here,
//! and the control plane's Raft connections (`consensus/handshake.rs`), with one cluster secret.
//!
//! Each side sends a fresh random nonce, and proves that it knows the cluster secret by an
//! HMAC-SHA256 over both nonces, with a label per role so that one side's proof is never valid
//! as the other's. The secret itself never crosses the wire, a proof recorded from one
//! handshake is worthless in the next (the other side's nonce is new), and proofs are compared
//! in constant time (`hmac`'s `verify_slice`). The order, in `wire.rs`: the primary sends its
//! nonce; the replica answers its nonce and its proof; the primary checks it before it sends
//! anything else (an impostor replica learns nothing), then sends its own proof; the replica
//! checks that before it says where it stands or takes a record.
//!
//! The control plane runs the same exchange with its own two labels, with the accepting side's
//! nonce first, so that no proof from one kind of link is ever valid on the other.
//!
//! What this does not do: protect the stream after the handshake against someone who can
//! change bytes on the path (that takes TLS), or authenticate anything without a secret. See
//! docs/replication.md, "Threat model", and docs/security.md.

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// HMAC-SHA256, the proof's function.
type HmacSha256 = Hmac<Sha256>;

/// Bytes in a nonce (sent as twice as many hex digits).
const NONCE_BYTES: usize = 16;

/// Which side of which kind of link a proof comes from; part of what is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The primary, which streams.
    Primary,
    /// The replica, which receives.
    Replica,
    /// A control-plane member that accepted a Raft connection.
    ControlServer,
    /// A control-plane member that dialed one (to send Raft RPCs or a switchover request).
    ControlCaller,
}

impl Side {
    /// The label signed with the nonces, so that a proof is only ever valid for its side.
    fn label(self) -> &'static [u8] {
        match self {
            Side::Primary => b"kvstore replication primary\0",
            Side::Replica => b"kvstore replication replica\0",
            Side::ControlServer => b"kvstore control plane server\0",
            Side::ControlCaller => b"kvstore control plane caller\0",
        }
    }
}

/// The cluster secret (`--cluster-secret`): never logged, never sent.
#[derive(Clone)]
pub struct ClusterSecret(
    /// The secret's bytes.
    Vec<u8>,
);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(..)")
    }
}

impl ClusterSecret {
    /// The secret given on the command line.
    pub fn new(secret: &str) -> ClusterSecret {
        ClusterSecret(secret.as_bytes().to_vec())
    }

    /// The MAC of `side` over the handshake's two nonces: the one sent first (the primary's on
    /// a replication link, the accepting member's on the control plane) and the one answered.
    fn mac(&self, side: Side, first_nonce: &str, second_nonce: &str) -> HmacSha256 {
        // Any key length is valid for HMAC, so this cannot fail.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(side.label());
        mac.update(first_nonce.as_bytes());
        mac.update(b"\0");
        mac.update(second_nonce.as_bytes());
        mac
    }

    /// `side`'s proof for a handshake with these nonces, as hex.
    pub fn proof(&self, side: Side, first_nonce: &str, second_nonce: &str) -> String {
        let bytes = self
            .mac(side, first_nonce, second_nonce)
            .finalize()
            .into_bytes();
        hex(&bytes)
    }

    /// Whether `proof` (hex) is `side`'s proof for these nonces; compared in constant time.
    pub fn verify(&self, side: Side, first_nonce: &str, second_nonce: &str, proof: &str) -> bool {
        let Some(bytes) = unhex(proof) else {
            return false;
        };
        self.mac(side, first_nonce, second_nonce)
            .verify_slice(&bytes)
            .is_ok()
    }
}

/// A fresh random nonce, as hex, from the operating system's random source.
pub fn nonce() -> String {
    let mut bytes = [0u8; NONCE_BYTES];
    if getrandom::fill(&mut bytes).is_err() {
        // No random source: the time still makes a nonce that does not repeat.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&nanos.to_le_bytes());
    }
    hex(&bytes)
}

/// Whether `text` looks like a nonce: what a handshake accepts from a peer.
pub fn is_nonce(text: &str) -> bool {
    text.len() == 2 * NONCE_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Lower-case hex digits of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The bytes of hex digits, or `None` if `text` is not hex.
fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_holds_only_for_its_secret_side_and_nonces() {
        let secret = ClusterSecret::new("s3cret");
        let (p, r) = (nonce(), nonce());
        assert!(is_nonce(&p) && is_nonce(&r) && p != r);
        let proof = secret.proof(Side::Replica, &p, &r);
        assert!(!proof.contains("s3cret"));
        assert!(secret.verify(Side::Replica, &p, &r, &proof));
        assert!(
            !secret.verify(Side::Primary, &p, &r, &proof),
            "not the other side's"
        );
        assert!(
            !secret.verify(Side::ControlCaller, &p, &r, &proof)
                && !secret.verify(Side::ControlServer, &p, &r, &proof),
            "not valid on the control plane"
        );
        assert!(
            !secret.verify(Side::Replica, &nonce(), &r, &proof),
            "not another handshake's"
        );
        assert!(
            !secret.verify(Side::Replica, &p, &nonce(), &proof),
            "not another handshake's"
        );
        let other = ClusterSecret::new("other");
        assert!(
            !other.verify(Side::Replica, &p, &r, &proof),
            "not another secret's"
        );
        assert!(!secret.verify(Side::Replica, &p, &r, "zz"));
        assert!(!secret.verify(Side::Replica, &p, &r, ""));
        assert_eq!(format!("{secret:?}"), "ClusterSecret(..)");
    }
}
