//! How passwords are kept and checked.
//!
//! - A user of the users file has an **Argon2id hash** of its password, in the PHC string form
//!   (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), made by `kvnode hash-password`
//!   ([`hash`]). Argon2 is memory-hard: someone who steals the users file must spend about
//!   19 MiB and tens of milliseconds per guess, on every guess, which makes guessing a good
//!   password offline impractical. Checking one costs the node the same, so checks run off its
//!   threads, a few at a time (`accounts.rs`).
//! - The one password the node is given in clear (`--requirepass`, its file or its environment
//!   variable) is kept only as a [`DigestKey`] digest: HMAC-SHA256 under a key made at
//!   start-up. The node never writes it anywhere, and a memory dump shows no password.
//!
//! Every comparison is constant-time: Argon2's verify compares its output in constant time,
//! and digests are compared with `hmac`'s `verify_slice`.

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

use crate::replication::auth::nonce;

/// HMAC-SHA256, the digest of passwords kept in memory.
type HmacSha256 = Hmac<Sha256>;

/// The most memory one hash of the users file may ask for, in KiB (64 MiB; the default is
/// 19 MiB): every check of it allocates that much, so a mistyped parameter must not take the
/// node's memory.
const MAX_MEMORY_KIB: u32 = 64 * 1024;

/// The most passes one hash may ask for (the default is 2): each pass is another sweep over
/// the memory, so this bounds the time of a check as the memory bound bounds its size.
const MAX_PASSES: u32 = 16;

/// The most lanes one hash may ask for (the default is 1). The node computes lanes one after
/// the other, on the two threads it lends Argon2, so each lane adds a full pass's time.
const MAX_LANES: u32 = 8;

/// Why a password could not be hashed, or a hash cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PasswordError {
    /// The text is not a PHC string of Argon2 (what `kvnode hash-password` prints).
    #[error("not an Argon2 hash as `kvnode hash-password` prints it ($argon2id$v=19$m=...,t=...,p=...$<salt>$<hash>): {0}")]
    Format(String),
    /// Its parameters would cost the node too much at every check: which one, and its value.
    #[error("the hash asks for {1} {0} per check; at most {limit} is accepted", limit = .0.limit())]
    TooCostly(Cost, u32),
    /// Hashing failed (no random salt, or a password Argon2 refuses).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// A parameter of an Argon2 hash that costs the node at every check, bounded when the users
/// file is read so that a mistyped or hostile file cannot make logins take the node's memory
/// or threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cost {
    /// `m`: memory, in KiB.
    MemoryKib,
    /// `t`: passes over the memory.
    Passes,
    /// `p`: lanes.
    Lanes,
}

impl Cost {
    /// The most this parameter may ask for.
    fn limit(self) -> u32 {
        match self {
            Cost::MemoryKib => MAX_MEMORY_KIB,
            Cost::Passes => MAX_PASSES,
            Cost::Lanes => MAX_LANES,
        }
    }
}

impl fmt::Display for Cost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Cost::MemoryKib => "KiB of memory (m)",
            Cost::Passes => "passes (t)",
            Cost::Lanes => "lanes (p)",
        })
    }
}

/// An Argon2id hash of `password` with the crate's default parameters (OWASP's
/// recommendation: 19 MiB, 2 passes, 1 lane) and a fresh random salt, as a PHC string.
pub fn hash(password: &[u8]) -> Result<String, PasswordError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| PasswordError::Hash(e.to_string()))?;
    Argon2::default()
        .hash_password(password, &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| PasswordError::Hash(e.to_string()))
}

/// Check, when the users file is read, that `text` is a hash a login can be checked against:
/// a PHC string of Argon2 (any variant) with parameters within bounds.
pub fn check_hash(text: &str) -> Result<(), PasswordError> {
    let format = |e: argon2::password_hash::Error| PasswordError::Format(e.to_string());
    let parsed = PasswordHash::new(text).map_err(format)?;
    argon2::Algorithm::try_from(parsed.algorithm).map_err(format)?;
    let params = Params::try_from(&parsed).map_err(format)?;
    let costs = [
        (Cost::MemoryKib, params.m_cost()),
        (Cost::Passes, params.t_cost()),
        (Cost::Lanes, params.p_cost()),
    ];
    if let Some((cost, asked)) = costs.into_iter().find(|(cost, v)| *v > cost.limit()) {
        return Err(PasswordError::TooCostly(cost, asked));
    }
    if parsed.hash.is_none() {
        return Err(PasswordError::Format("it has no hash part".into()));
    }
    Ok(())
}

/// Whether `password` is the one `hash` was made from. Slow on purpose (see the module's
/// documentation): call it off the node's threads.
pub fn verify(hash: &str, password: &[u8]) -> bool {
    PasswordHash::new(hash)
        .is_ok_and(|parsed| Argon2::default().verify_password(password, &parsed).is_ok())
}

/// The key of the digests a node keeps of passwords it has seen in clear: made at start-up,
/// never written anywhere.
#[derive(Clone)]
pub struct DigestKey(
    /// The HMAC key: random bytes from the operating system.
    Vec<u8>,
);

/// A password's digest under a [`DigestKey`].
pub type Digest = [u8; 32];

impl fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DigestKey(..)")
    }
}

impl DigestKey {
    /// A fresh random key (the replication handshake's nonces, which come from the operating
    /// system's random source).
    pub fn random() -> DigestKey {
        DigestKey([nonce(), nonce()].concat().into_bytes())
    }

    /// The MAC of `password` under this key.
    fn mac(&self, password: &[u8]) -> HmacSha256 {
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes keys of any length"),
        };
        mac.update(password);
        mac
    }

    /// `password`'s digest.
    pub fn digest(&self, password: &[u8]) -> Digest {
        self.mac(password).finalize().into_bytes().into()
    }

    /// Whether `password` has digest `digest`, compared in constant time.
    pub fn matches(&self, password: &[u8], digest: &Digest) -> bool {
        self.mac(password).verify_slice(digest).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hashed = hash(b"open sesame").unwrap();
        assert!(
            hashed.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hashed}"
        );
        assert_eq!(check_hash(&hashed), Ok(()));
        assert!(verify(&hashed, b"open sesame"));
        assert!(!verify(&hashed, b"open sesame "));
        assert!(!verify("not a hash", b"open sesame"));
        // Two hashes of one password differ (their salts do).
        assert_ne!(hash(b"open sesame").unwrap(), hashed);
    }

    #[test]
    fn hashes_that_cannot_be_used_are_refused_when_read() {
        assert!(matches!(
            check_hash("secret"),
            Err(PasswordError::Format(_))
        ));
        let bcrypt = "$2b$12$abcdefghijklmnopqrstuu5s2v8.iXieOjg/.AySBTTZIIVFJeBui";
        assert!(check_hash(bcrypt).is_err());
        let costly = "$argon2id$v=19$m=1048576,t=2,p=1$c2FsdHNhbHRzYWx0$\
                      aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        assert_eq!(
            check_hash(costly),
            Err(PasswordError::TooCostly(Cost::MemoryKib, 1_048_576))
        );
        let slow = "$argon2id$v=19$m=19456,t=1000,p=1$c2FsdHNhbHRzYWx0$\
                    aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        let refused = check_hash(slow).unwrap_err();
        assert_eq!(refused, PasswordError::TooCostly(Cost::Passes, 1000));
        assert_eq!(
            refused.to_string(),
            "the hash asks for 1000 passes (t) per check; at most 16 is accepted"
        );
        let wide = "$argon2id$v=19$m=19456,t=2,p=64$c2FsdHNhbHRzYWx0$\
                    aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";
        assert_eq!(
            check_hash(wide),
            Err(PasswordError::TooCostly(Cost::Lanes, 64))
        );
    }

    #[test]
    fn digests_match_their_password_under_their_key_only() {
        let key = DigestKey::random();
        let digest = key.digest(b"hunter2");
        assert!(key.matches(b"hunter2", &digest));
        assert!(!key.matches(b"hunter3", &digest));
        assert!(!DigestKey::random().matches(b"hunter2", &digest));
        assert_eq!(format!("{key:?}"), "DigestKey(..)");
    }
}
