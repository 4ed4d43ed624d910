//! On-disk record framing shared by the Raft log file and the small atomic files.
//!
//! A record is `len: u32 LE | crc32(payload): u32 LE | payload (len bytes of JSON)`. The CRC
//! lets a reader tell a torn or rotten record from a good one; the length lets it skip to the
//! next record without parsing JSON.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Bytes before each payload: length and CRC.
pub const HEADER_LEN: usize = 8;

/// Upper bound on one record's payload; a larger length field is treated as garbage, so a torn
/// header cannot make the reader allocate gigabytes.
pub const MAX_PAYLOAD: usize = 64 << 20;

/// Errors of the file formats; converted to openraft's `StorageError` at the trait boundary.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The OS refused a read, write, fsync or rename.
    #[error("io error on {what}: {source}")]
    Io {
        /// Which file or step failed, for the operator.
        what: String,
        /// The underlying OS error.
        source: io::Error,
    },
    /// A payload that passed its CRC did not decode, or a value did not encode.
    #[error("json error on {what}: {source}")]
    Json {
        /// Which file or step failed.
        what: String,
        /// The serde error.
        source: serde_json::Error,
    },
    /// A file that is written atomically (never torn) failed its check: real corruption.
    #[error("corrupt file {0}")]
    Corrupt(String),
    /// A previous write failed and could not be rolled back; the store refuses further work.
    #[error("store is broken after an earlier failed write: {0}")]
    Broken(String),
    /// Another thread panicked while holding the store's lock.
    #[error("store lock poisoned")]
    Poisoned,
    /// The blocking task running a file operation was cancelled or panicked.
    #[error("blocking task failed: {0}")]
    Join(String),
}

impl StoreError {
    /// Attaches to an `io::Error` which file or step failed.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        StoreError::Io {
            what: what.into(),
            source,
        }
    }
}

/// Serializes `value` and appends one framed record to `buf`.
pub fn encode_into<T: Serialize>(buf: &mut Vec<u8>, value: &T) -> Result<(), StoreError> {
    let payload = serde_json::to_vec(value).map_err(|source| StoreError::Json {
        what: "encode".into(),
        source,
    })?;
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|l| (*l as usize) <= MAX_PAYLOAD)
        .ok_or_else(|| {
            StoreError::Corrupt(format!("record of {} bytes is too large", payload.len()))
        })?;
    buf.extend_from_slice(&len.to_le_bytes());
    buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    buf.extend_from_slice(&payload);
    Ok(())
}

/// Outcome of decoding the record at the start of a byte slice: recovery needs to tell a
/// clean end from a bad tail.
pub enum Decoded<T> {
    /// A good record and its total framed length.
    Record(T, usize),
    /// No bytes left: a clean end.
    End,
    /// Short, oversized, CRC-failing or undecodable record: everything from here is a bad tail.
    Bad(&'static str),
}

/// Decodes the first record of `bytes`; never panics on garbage, since the bytes come from a
/// disk that may have torn a write.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Decoded<T> {
    if bytes.is_empty() {
        return Decoded::End;
    }
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Decoded::Bad("short header");
    };
    let mut len4 = [0u8; 4];
    let mut crc4 = [0u8; 4];
    len4.copy_from_slice(&header[..4]);
    crc4.copy_from_slice(&header[4..]);
    let len = u32::from_le_bytes(len4) as usize;
    if len > MAX_PAYLOAD {
        return Decoded::Bad("length out of range");
    }
    let Some(payload) = bytes.get(HEADER_LEN..HEADER_LEN + len) else {
        return Decoded::Bad("short payload");
    };
    if crc32fast::hash(payload) != u32::from_le_bytes(crc4) {
        return Decoded::Bad("crc mismatch");
    }
    match serde_json::from_slice(payload) {
        Ok(v) => Decoded::Record(v, HEADER_LEN + len),
        Err(_) => Decoded::Bad("undecodable payload"),
    }
}

/// Fsyncs a directory so that a rename or a newly created file inside it is durable.
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(format!("fsync dir {}", dir.display()), e))
}

/// Replaces `dir/name` with one record holding `value`, atomically and durably: write a
/// temporary file, fsync it, rename it over the target, fsync the directory. A crash leaves
/// either the old or the new content, never a mix.
pub fn write_atomic<T: Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), StoreError> {
    let mut buf = Vec::new();
    encode_into(&mut buf, value)?;
    let tmp = dir.join(format!("{name}.tmp"));
    let target = dir.join(name);
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| StoreError::io(format!("create {}", tmp.display()), e))?;
    f.write_all(&buf)
        .and_then(|_| f.sync_all())
        .map_err(|e| StoreError::io(format!("write {}", tmp.display()), e))?;
    fs::rename(&tmp, &target)
        .map_err(|e| StoreError::io(format!("rename to {}", target.display()), e))?;
    sync_dir(dir)
}

/// [`write_atomic`], tried again every `retry` while the OS refuses it (a full disk): a
/// snapshot that cannot be written must wait for space, not stop Raft for good.
pub fn write_atomic_retrying<T: Serialize>(
    dir: &Path,
    name: &str,
    value: &T,
    retry: std::time::Duration,
) -> Result<(), StoreError> {
    loop {
        match write_atomic(dir, name, value) {
            Err(StoreError::Io { .. }) => std::thread::sleep(retry),
            result => return result,
        }
    }
}

/// Reads a file written by [`write_atomic`]; `None` if it does not exist. Because it is only
/// ever replaced by rename, a bad record here is corruption, not a torn write.
pub fn read_atomic<T: DeserializeOwned>(dir: &Path, name: &str) -> Result<Option<T>, StoreError> {
    let path = dir.join(name);
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::io(format!("read {}", path.display()), e)),
    };
    match decode(&bytes) {
        Decoded::Record(v, n) if n == bytes.len() => Ok(Some(v)),
        Decoded::Record(..) => Err(StoreError::Corrupt(format!(
            "{}: trailing bytes",
            path.display()
        ))),
        Decoded::End => Err(StoreError::Corrupt(format!("{}: empty", path.display()))),
        Decoded::Bad(why) => Err(StoreError::Corrupt(format!("{}: {why}", path.display()))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_garbage() {
        let mut buf = Vec::new();
        encode_into(&mut buf, &"hello").unwrap();
        encode_into(&mut buf, &42u64).unwrap();
        let Decoded::Record(s, n) = decode::<String>(&buf) else {
            panic!("first")
        };
        assert_eq!(s, "hello");
        let Decoded::Record(v, _) = decode::<u64>(&buf[n..]) else {
            panic!("second")
        };
        assert_eq!(v, 42);
        // Every strict prefix of a record is a bad tail, never a panic or a wrong value.
        for cut in 1..n {
            assert!(
                matches!(decode::<String>(&buf[..cut]), Decoded::Bad(_)),
                "cut {cut}"
            );
        }
        let mut flipped = buf.clone();
        flipped[HEADER_LEN] ^= 1;
        assert!(matches!(
            decode::<String>(&flipped),
            Decoded::Bad("crc mismatch")
        ));
    }
}
