//! The operations a [`super::Batch`] carries and what each came to: the Store's vocabulary,
//! apart from the actor that applies it, so that the protocol layer and tests can name them.

use bytes::Bytes;

use super::expiry::{ExpireCondition, Expiry, SetArgs, TtlQuery};
use super::mutation::Seq;
use super::pair::Pair;
use super::scan::ScanArgs;
use super::watch::ClientId;

/// One operation of a [`super::Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Read this key: answers [`Outcome::Value`], or [`Outcome::NotFound`].
    Get(Bytes),
    /// Set this key (first) to this value (second): answers [`Outcome::Applied`].
    Put(Bytes, Bytes),
    /// Remove this key: answers [`Outcome::Applied`], or [`Outcome::NotFound`] when it did not
    /// exist.
    Del(Bytes),
    /// `INCRBY`: add to the key's integer value (absent: 0): answers [`Outcome::Number`] with
    /// the new value, or [`Outcome::Refused`] (nothing applied).
    Incr(Bytes, i64),
    /// `APPEND`: add to the end of the key's value: answers [`Outcome::Number`], its length.
    Append(Bytes, Bytes),
    /// `STRLEN`: answers [`Outcome::Number`], the length of the key's value (0 when absent).
    StrLen(Bytes),
    /// `SETNX`: set the key only if it is absent: [`Outcome::Number`] 1 (set) or 0.
    SetNx(Bytes, Bytes),
    /// `GETSET`: set the key and answer its previous value ([`Outcome::Swapped`]).
    GetSet(Bytes, Bytes),
    /// `GETDEL`: remove the key and answer its value ([`Outcome::Swapped`]), or
    /// [`Outcome::NotFound`].
    GetDel(Bytes),
    /// `RENAME` (`nx` false: [`Outcome::Applied`]) or `RENAMENX` (`nx` true:
    /// [`Outcome::Number`] 1 or 0): move the first key's value to the second (a `Del` and a
    /// `Put`); [`Outcome::Refused`] when the first is absent.
    Rename(Bytes, Bytes, bool),
    /// `COPY src dst [REPLACE]`: [`Outcome::Number`] 1 when copied, 0 when `src` is absent or
    /// `dst` exists (without `replace`).
    Copy(Bytes, Bytes, bool),
    /// `MSETNX`: set every pair only if no key exists: [`Outcome::Number`] 1 or 0.
    MSetNx(Vec<(Bytes, Bytes)>),
    /// `DEL`/`UNLINK` of several keys, as one op so that its deletes are one atomic group:
    /// [`Outcome::Number`], how many of the keys existed.
    DelMany(Vec<Bytes>),
    /// `MSET`: set every pair, as one op so that its puts are one atomic group:
    /// [`Outcome::Applied`] with the last put's mutation.
    MSet(Vec<(Bytes, Bytes)>),
    /// `SET` with options (`NX`/`XX`, `GET`, a time to live or `KEEPTTL`), `SETEX`, `PSETEX`:
    /// [`Outcome::Applied`], or [`Outcome::NotFound`] when its condition failed; with `GET`,
    /// the previous value ([`Outcome::Swapped`] when set, [`Outcome::Value`] when not).
    /// Boxed: it is rare, and every op of every batch would otherwise carry its size.
    Set(Box<SetArgs>),
    /// `EXPIRE` and its kin (`expiry` is `In` or `At`): [`Outcome::Number`] 1 when the
    /// deadline was set (or the key deleted, for a time already past), 0 when the key is
    /// absent or the condition failed.
    Expire(Bytes, Expiry, ExpireCondition),
    /// `PERSIST`: remove the key's deadline: [`Outcome::Number`] 1 if it had one, else 0.
    Persist(Bytes),
    /// `TTL`, `PTTL`, `EXPIRETIME`, `PEXPIRETIME`: [`Outcome::Number`], -2 when the key is
    /// absent, -1 when it never expires.
    Ttl(Bytes, TtlQuery),
    /// `GETEX`: the value ([`Outcome::Value`], or [`Outcome::NotFound`]), changing its
    /// deadline when asked ([`Outcome::Swapped`] with the value, when that applied a change).
    GetEx(Bytes, Option<Expiry>),
    /// `WATCH`: this client watches these keys: [`Outcome::Number`] 1.
    Watch(ClientId, Vec<Bytes>),
    /// `UNWATCH` (and `DISCARD`, and a closed connection): forget this client's watches:
    /// [`Outcome::Number`] 1.
    Unwatch(ClientId),
    /// `EXEC` of this client, whose transaction is the next this many ops of the batch: they
    /// run if no key it watched changed ([`Outcome::Number`] 1), or are skipped (0, and each
    /// skipped op answers [`Outcome::NotFound`]). Its watches are forgotten either way.
    Exec(ClientId, usize),
    /// `INCRBYFLOAT key increment` (the increment as the client wrote it): [`Outcome::Bulk`]
    /// with the new value, or [`Outcome::Refused`] (nothing applied). Keeps the deadline.
    IncrByFloat(Bytes, Bytes),
    /// `GETRANGE key start end`: [`Outcome::Bulk`], the bytes between (empty when none).
    GetRange(Bytes, i64, i64),
    /// `SETRANGE key offset value`: [`Outcome::Number`], the value's length after it, or
    /// [`Outcome::Refused`]. Keeps the deadline.
    SetRange(Bytes, i64, Bytes),
    /// `KEYS pattern`: [`Outcome::Keys`], every live key that matches.
    Keys(Bytes),
    /// `SCAN`: [`Outcome::Scanned`], the next cursor and the keys of the shards read.
    Scan(Box<ScanArgs>),
    /// `RANDOMKEY`: [`Outcome::Bulk`] with a live key, or [`Outcome::NotFound`].
    RandomKey,
    /// `FLUSHDB`/`FLUSHALL`: remove every key, as one logged and replicated `Clear`:
    /// [`Outcome::Applied`]. The old keys are freed off the Store's thread.
    Clear,
}

impl Op {
    /// Whether the op may change data (refused while the Store is closed to writes).
    pub fn is_write(&self) -> bool {
        !matches!(
            self,
            Op::Get(_)
                | Op::StrLen(_)
                | Op::Ttl(..)
                | Op::GetEx(_, None)
                | Op::Watch(..)
                | Op::Unwatch(_)
                | Op::Exec(..)
                | Op::GetRange(..)
                | Op::Keys(_)
                | Op::Scan(_)
                | Op::RandomKey
        )
    }
}

impl Op {
    /// The bytes its keys and values hold: what a `MULTI` queue counts it for (against
    /// `--maxmemory-clients` and a transaction's own limit).
    pub fn arg_bytes(&self) -> usize {
        let pairs = |pairs: &[(Bytes, Bytes)]| pairs.iter().map(|(k, v)| k.len() + v.len()).sum();
        match self {
            Op::Get(k)
            | Op::Del(k)
            | Op::Incr(k, _)
            | Op::StrLen(k)
            | Op::GetDel(k)
            | Op::Expire(k, ..)
            | Op::Persist(k)
            | Op::Ttl(k, _)
            | Op::GetEx(k, _)
            | Op::GetRange(k, ..)
            | Op::Keys(k) => k.len(),
            Op::Put(k, v)
            | Op::Append(k, v)
            | Op::SetNx(k, v)
            | Op::GetSet(k, v)
            | Op::Rename(k, v, _)
            | Op::Copy(k, v, _)
            | Op::IncrByFloat(k, v)
            | Op::SetRange(k, _, v) => k.len() + v.len(),
            Op::MSetNx(p) | Op::MSet(p) => pairs(p),
            Op::DelMany(keys) | Op::Watch(_, keys) => keys.iter().map(Bytes::len).sum(),
            Op::Set(args) => args.key.len() + args.value.len(),
            Op::Scan(args) => args.pattern.as_ref().map_or(0, Bytes::len),
            Op::Unwatch(_) | Op::Exec(..) | Op::RandomKey | Op::Clear => 0,
        }
    }
}

/// What one [`Op`] came to, in the same position as the op in its batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A `Get` found this pair.
    Value(Pair),
    /// A `Get` or `Del` found no such key.
    NotFound,
    /// A `Put` or `Del` was applied with this sequence number.
    Applied(Seq),
    /// A number answered, with the mutation it applied, if it applied one.
    Number(i64, Option<Seq>),
    /// The key's previous value (or none), replaced or removed by the mutation applied.
    Swapped(Option<Pair>, Seq),
    /// Bytes the op computed (`RANDOMKEY`'s key, `GETRANGE`'s part, `INCRBYFLOAT`'s new
    /// value), with the mutation it applied, if any.
    Bulk(Bytes, Option<Seq>),
    /// The keys a `KEYS` found.
    Keys(Vec<Bytes>),
    /// A `SCAN`'s next cursor (0: done) and the keys it found.
    Scanned(u64, Vec<Bytes>),
    /// Not applied: why, as Redis words it.
    Refused(&'static str),
}

impl Outcome {
    /// The mutation this outcome applied, if any (what `WAIT` waits for).
    pub fn applied(&self) -> Option<Seq> {
        match self {
            Outcome::Applied(seq) | Outcome::Swapped(_, seq) => Some(*seq),
            Outcome::Number(_, seq) | Outcome::Bulk(_, seq) => *seq,
            _ => None,
        }
    }
}
