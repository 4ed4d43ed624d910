//! `kvnode import`: bring the C++ store's data into a data directory.
//!
//! The C++ store kept its data in a text file of `key=value` lines. Import checks the whole
//! file first (so a bad line changes nothing), then appends one PUT per pair to the data
//! directory's log, continuing its history, and fsyncs.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use kv_actors::replication::replication_id::{self, ReplicationState};
use kv_actors::storage::data_dir::{DataDir, StorageError};
use kv_actors::storage::record;
use kv_actors::storage::recovery::{self, RecoveryOptions};
use slog::{info, Logger};
use thiserror::Error;

/// Why an import did not happen; nothing was written in any of these cases.
#[derive(Debug, Error)]
pub enum ImportError {
    #[error("cannot read seed file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}:{line}: {problem}; nothing was imported", path.display())]
    BadLine {
        path: PathBuf,
        line: usize,
        problem: &'static str,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImportSummary {
    /// Pairs read from the file (a key given twice counts twice; the last value wins).
    pub pairs: usize,
    /// The sequence numbers the imported PUTs got.
    pub first_seq: u64,
    pub last_seq: u64,
}

/// Parse a seed file: one `key=value` pair a line, split at the first `=`. Blank lines are
/// skipped; a trailing `\r` is dropped.
pub fn parse_seed(path: &Path, text: &[u8]) -> Result<Vec<(Bytes, Bytes)>, ImportError> {
    let mut pairs = Vec::new();
    for (index, line) in text.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let bad = |problem| ImportError::BadLine {
            path: path.to_path_buf(),
            line: index + 1,
            problem,
        };
        let split = line
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| bad("no '=' in the line"))?;
        let (key, value) = (&line[..split], &line[split + 1..]);
        if key.is_empty() {
            return Err(bad("empty key"));
        }
        if key.iter().any(|&b| b == b' ' || b == b'\t') {
            return Err(bad(
                "the key contains a space or tab, which the line protocol cannot address",
            ));
        }
        if value.is_empty() {
            return Err(bad("empty value, which the line protocol cannot store"));
        }
        pairs.push((Bytes::copy_from_slice(key), Bytes::copy_from_slice(value)));
    }
    Ok(pairs)
}

/// Import `seed_file` into the data directory `data_dir`.
pub fn import(
    seed_file: &Path,
    data_dir: &Path,
    log: &Logger,
) -> Result<ImportSummary, ImportError> {
    let text = std::fs::read(seed_file).map_err(|source| ImportError::Read {
        path: seed_file.to_path_buf(),
        source,
    })?;
    let pairs = parse_seed(seed_file, &text)?;
    let dir = DataDir::open(data_dir)?;
    let recovered = recovery::recover(&dir, RecoveryOptions::default(), log)?;
    let mut segment = recovered.continue_log(&dir)?;
    let first_seq = recovered.last_seq + 1;
    let mut buf = Vec::with_capacity(1 << 20);
    let mut seq = recovered.last_seq;
    let append_error = StorageError::io("append to", segment.path());
    for (key, value) in &pairs {
        seq += 1;
        record::encode_put(seq, key, value, &mut buf);
        if buf.len() >= 1 << 20 {
            segment
                .append(&buf)
                .map_err(|e| StorageError::io("append to", segment.path())(e))?;
            buf.clear();
        }
    }
    segment
        .append(&buf)
        .and_then(|()| segment.sync())
        .map_err(append_error)?;
    // The imported writes are this directory's own history now: a replica's claim to follow
    // a primary's history no longer holds, so its next connection is a full resync.
    replication_id::save(&dir, &ReplicationState::None)?;
    info!(log, "imported seed file"; "file" => %seed_file.display(), "pairs" => pairs.len(),
        "data_dir" => %data_dir.display(), "first_seq" => first_seq, "last_seq" => seq);
    Ok(ImportSummary {
        pairs: pairs.len(),
        first_seq,
        last_seq: seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        let pairs = parse_seed(Path::new("seed"), b"a=1\r\n\nb=x=y\nc= spaced value \n").unwrap();
        let expected: Vec<(Bytes, Bytes)> = [("a", "1"), ("b", "x=y"), ("c", " spaced value ")]
            .iter()
            .map(|(k, v)| (Bytes::from(*k), Bytes::from(*v)))
            .collect();
        assert_eq!(pairs, expected);
    }

    #[test]
    fn bad_lines_are_reported_with_their_number() {
        let error = parse_seed(Path::new("seed.txt"), b"a=1\nnoequals\n").unwrap_err();
        assert_eq!(
            error.to_string(),
            "seed.txt:2: no '=' in the line; nothing was imported"
        );
        assert!(parse_seed(Path::new("s"), b"=v\n").is_err());
        assert!(parse_seed(Path::new("s"), b"k=\n").is_err());
        assert!(parse_seed(Path::new("s"), b"a key=v\n").is_err());
    }
}
