//! `WATCH`: which clients watch which keys, and which of them saw a watched key change.
//!
//! Redis's optimistic check-and-set: a client watches keys, reads them, and queues a
//! transaction; `EXEC` runs it only if no watched key changed since `WATCH` (a write by anyone,
//! the client itself included, an expiry, a full resync replacing the data). The Store marks
//! the watchers of every key it changes, so the check at `EXEC` is one lookup, and a Store with
//! no watches pays one emptiness test per mutation.

use std::collections::HashMap;

use bytes::Bytes;

use super::expiry::Millis;
use super::mutation::Change;

/// A client, as the sessions number them.
pub type ClientId = u64;

/// The watches of every client, by key and by client.
#[derive(Debug, Default)]
pub struct Watches {
    /// Each watched key, with the clients watching it.
    by_key: HashMap<Bytes, Vec<ClientId>>,
    /// Each watching client: its keys, whether one of them changed since it watched, and
    /// when it first watched (a key hidden by its deadline after that has changed too).
    by_client: HashMap<ClientId, (Vec<Bytes>, bool, Millis)>,
}

impl Watches {
    /// Whether nobody watches anything (the common case, checked on every mutation).
    pub fn is_empty(&self) -> bool {
        self.by_client.is_empty()
    }

    /// `client` watches `key` from `now` on.
    pub fn watch(&mut self, client: ClientId, key: &[u8], now: Millis) {
        let (keys, _, _) = self
            .by_client
            .entry(client)
            .or_insert((Vec::new(), false, now));
        if keys.iter().any(|k| k == key) {
            return;
        }
        // A copy of its own: the caller's key may be a slice of a large read buffer.
        let key = Bytes::copy_from_slice(key);
        keys.push(key.clone());
        self.by_key.entry(key).or_default().push(client);
    }

    /// `key` changed: every client watching it will find its `EXEC` refused.
    pub fn touch(&mut self, key: &[u8]) {
        if let Some(clients) = self.by_key.get(key) {
            for client in clients {
                if let Some((_, dirty, _)) = self.by_client.get_mut(client) {
                    *dirty = true;
                }
            }
        }
    }

    /// `change` was applied: its key changed, or every key (`FLUSHALL`).
    pub fn touch_change(&mut self, change: &Change) {
        match change.key() {
            Some(key) => self.touch(key),
            None => self.touch_all(),
        }
    }

    /// Every key changed (the data was replaced).
    pub fn touch_all(&mut self) {
        for (_, dirty, _) in self.by_client.values_mut() {
            *dirty = true;
        }
    }

    /// The keys `client` watches, and since when.
    pub fn keys_of(&self, client: ClientId) -> (Vec<Bytes>, Millis) {
        self.by_client.get(&client).map_or_else(
            || (Vec::new(), 0),
            |(keys, _, since)| (keys.clone(), *since),
        )
    }

    /// Forget `client`'s watches (`EXEC`, `DISCARD`, `UNWATCH`, a closed connection); answers
    /// whether one of its keys changed meanwhile.
    pub fn release(&mut self, client: ClientId) -> bool {
        let Some((keys, dirty, _)) = self.by_client.remove(&client) else {
            return false;
        };
        for key in keys {
            if let Some(clients) = self.by_key.get_mut(&key) {
                clients.retain(|c| *c != client);
                if clients.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
        dirty
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_to_a_watched_key_marks_its_watchers_only() {
        let mut watches = Watches::default();
        assert!(watches.is_empty());
        watches.watch(1, b"a", 0);
        watches.watch(1, b"a", 0);
        watches.watch(2, b"b", 0);
        watches.touch(b"a");
        watches.touch(b"c");
        assert!(watches.release(1));
        assert!(!watches.release(2));
        assert!(watches.is_empty());
        assert!(watches.by_key.is_empty());
        // Released means forgotten: a later change marks nobody.
        watches.watch(3, b"a", 0);
        assert!(!watches.release(3));
        watches.watch(4, b"x", 7);
        watches.touch_all();
        assert_eq!(watches.keys_of(4), (vec![Bytes::from_static(b"x")], 7));
        assert!(watches.release(4));
    }
}
