//! The Store's read-modify-write ops (`INCRBY`, `APPEND`, `SETNX`, `GETSET`, `GETDEL`,
//! `RENAME`, `COPY`, `MSETNX`, and the read `STRLEN`): each reads the current value and
//! applies what it comes to as plain `Put`s and `Del`s, so the log, snapshots and replicas see
//! ordinary mutations. As in Redis, a key's deadline survives a change of its value in place
//! (`INCRBY`, `APPEND`) and moves with it (`RENAME`, `COPY`); a key whose deadline has passed
//! is absent. Part of the Store (`mod.rs`); no I/O.

use super::pair::Pair;
use super::string_ops;
use super::{Op, Outcome, Store};

impl Store {
    /// The read-modify-write string commands, each applied as a plain `Put` or `Del`.
    pub(super) fn read_modify_write(&mut self, op: Op) -> Outcome {
        let value_of = |store: &mut Store, key: &[u8]| store.lookup(key);
        let deadline = |pair: &Option<Pair>| pair.as_ref().and_then(Pair::deadline);
        let before = self.last_seq;
        match op {
            Op::Incr(key, delta) => {
                let old = value_of(self, &key);
                match string_ops::increment(old.as_ref().map(Pair::value), delta) {
                    Ok((next, text)) => {
                        let seq = self.put_expiring(&key, &text, deadline(&old));
                        Outcome::Number(next, Some(seq))
                    }
                    Err(why) => Outcome::Refused(why.message()),
                }
            }
            Op::Append(key, suffix) => {
                let old = value_of(self, &key);
                let value = string_ops::append(old.as_ref().map(Pair::value), &suffix);
                let len = value.len() as i64;
                Outcome::Number(len, Some(self.put_expiring(&key, &value, deadline(&old))))
            }
            Op::StrLen(key) => {
                let len = value_of(self, &key).map_or(0, |p| p.value().len());
                Outcome::Number(len as i64, None)
            }
            Op::SetNx(key, value) => match value_of(self, &key) {
                Some(_) => Outcome::Number(0, None),
                None => Outcome::Number(1, Some(self.put(&key, &value))),
            },
            Op::GetSet(key, value) => {
                let old = value_of(self, &key);
                Outcome::Swapped(old, self.put(&key, &value))
            }
            Op::GetDel(key) => {
                let old = value_of(self, &key);
                match self.del(&key) {
                    Some(seq) => Outcome::Swapped(old, seq),
                    None => Outcome::NotFound,
                }
            }
            Op::Rename(from, to, nx) => self.rename(&from, &to, nx),
            Op::Copy(from, to, replace) => match value_of(self, &from) {
                Some(pair) if replace || value_of(self, &to).is_none() => {
                    let seq = self.put_expiring(&to, pair.value(), pair.deadline());
                    Outcome::Number(1, Some(seq))
                }
                _ => Outcome::Number(0, None),
            },
            Op::DelMany(keys) => {
                let mut last = None;
                let mut removed = 0;
                for key in keys {
                    if let Some(seq) = self.del(&key) {
                        removed += 1;
                        last = Some(seq);
                    }
                }
                // The last mutation, if any (an expired key's delete counts, though not as
                // removed): what `WAIT` waits for.
                let seq = (self.last_seq > before).then_some(self.last_seq).or(last);
                Outcome::Number(removed, seq)
            }
            Op::MSet(pairs) => {
                let mut last = self.last_seq;
                for (key, value) in pairs {
                    last = self.put(&key, &value);
                }
                Outcome::Applied(last)
            }
            Op::MSetNx(pairs) => {
                if pairs.iter().any(|(key, _)| self.lookup(key).is_some()) {
                    return Outcome::Number(0, None);
                }
                let mut last = None;
                for (key, value) in pairs {
                    last = Some(self.put(&key, &value));
                }
                Outcome::Number(1, last)
            }
            _ => Outcome::Refused("ERR internal: not a read-modify-write"),
        }
    }

    /// `RENAME`/`RENAMENX`: the value moves, as a `Del` of `from` and a `Put` of `to`.
    fn rename(&mut self, from: &[u8], to: &[u8], nx: bool) -> Outcome {
        let Some(pair) = self.lookup(from) else {
            return Outcome::Refused("ERR no such key");
        };
        let taken = self.lookup(to).is_some();
        match (nx, from == to) {
            (true, _) if taken => Outcome::Number(0, None),
            (false, true) => Outcome::Applied(self.last_seq),
            _ => {
                let _ = self.del(from);
                let seq = self.put_expiring(to, pair.value(), pair.deadline());
                match nx {
                    true => Outcome::Number(1, Some(seq)),
                    false => Outcome::Applied(seq),
                }
            }
        }
    }
}
