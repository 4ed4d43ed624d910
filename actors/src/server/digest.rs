//! `DIGEST`: a hash of the whole data set and the offset it reflects, so operators and tests
//! can check that replicas hold exactly their primary's data.
//!
//! The Store hands out a snapshot (copy-on-write, O(shards)); the hashing runs on a thread of
//! its own, so neither the Store nor the session's arbiter waits for it.

use actix::prelude::*;
use thiserror::Error;
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::store::keyspace::Snapshot;
use crate::store::{Store, TakeSnapshot};

/// Why a `DIGEST` could not be computed; ends the session that asked.
#[derive(Debug, Error)]
pub enum DigestError {
    /// The Store stopped (the node is shutting down).
    #[error("the store is gone: {0}")]
    Store(#[from] MailboxError),
    /// The hashing thread could not be started.
    #[error("cannot start the digest thread: {0}")]
    Spawn(#[from] std::io::Error),
    /// The hashing thread ended without an answer.
    #[error("the digest thread failed")]
    Thread,
}

/// Answer `DIGEST`: `digest=<hex> offset=<seq> keys=<n>`. One runs at a time per node (`turn`),
/// however many clients ask, so they cannot start a hashing thread and a snapshot each.
pub async fn answer(
    store: &Addr<Store>,
    turn: &tokio::sync::Mutex<()>,
) -> Result<String, DigestError> {
    let _turn = turn.lock().await;
    let snapshot = store.send(TakeSnapshot).await?;
    let (done, result) = futures::channel::oneshot::channel();
    std::thread::Builder::new()
        .name("kv-digest".into())
        .spawn(move || {
            let digest = digest(&snapshot.data);
            let _ = done.send(format!(
                "digest={digest:016x} offset={} keys={}",
                snapshot.seq,
                snapshot.data.len()
            ));
        })?;
    result.await.map_err(|_| DigestError::Thread)
}

/// An order-independent 64-bit hash of every key, value and deadline: equal data gives an
/// equal digest on any node, whatever the order of its hash tables. Each pair is hashed with
/// XXH3 (the key seeded with its length, so that no two splits of the same bytes into key and
/// value hash alike, then the value seeded with the key's hash, and a deadline hashed with
/// that), and the pairs' hashes are summed. A key whose deadline passed but whose delete has
/// not been applied yet counts: replicas converge on the primary's deletes, not on clocks.
pub fn digest(snapshot: &Snapshot) -> u64 {
    snapshot
        .iter()
        .map(|pair| {
            let key = pair.key();
            let key_hash = xxh3_64_with_seed(key, key.len() as u64);
            let hash = xxh3_64_with_seed(pair.value(), key_hash);
            match pair.deadline() {
                None => hash,
                Some(deadline) => xxh3_64_with_seed(&deadline.to_le_bytes(), hash),
            }
        })
        .fold(0u64, u64::wrapping_add)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keyspace::Keyspace;
    use crate::store::pair::Pair;

    fn digest_of(pairs: &[(&str, &str)]) -> u64 {
        let keyspace: Keyspace = pairs
            .iter()
            .map(|(k, v)| Pair::new(k.as_bytes(), v.as_bytes()))
            .collect();
        digest(&keyspace.snapshot())
    }

    #[test]
    fn equal_data_has_an_equal_digest_whatever_the_order() {
        assert_eq!(
            digest_of(&[("a", "1"), ("b", "2")]),
            digest_of(&[("b", "2"), ("a", "1")])
        );
        assert_eq!(digest_of(&[]), 0);
    }

    #[test]
    fn any_difference_changes_the_digest() {
        let base = digest_of(&[("a", "1"), ("b", "2")]);
        assert_ne!(base, digest_of(&[("a", "1"), ("b", "3")]));
        assert_ne!(base, digest_of(&[("a", "1")]));
        // The same bytes split differently between key and value.
        assert_ne!(digest_of(&[("ab", "c")]), digest_of(&[("a", "bc")]));
        // Values swapped between keys.
        assert_ne!(base, digest_of(&[("a", "2"), ("b", "1")]));
    }
}
