//! The snapshot reader: a snapshot loads whole or not at all. What the snapshot writer wrote
//! loads back exactly; a damaged one is refused with an error naming the file, never loaded in
//! part; arbitrary bytes never make it panic.

use std::path::Path;

use arbitrary::Unstructured;
use kv_actors::storage::data_dir::{DataDir, StorageError};
use kv_actors::storage::snapshot_file::{self, SNAPSHOT_MAGIC};
use kv_actors::store::keyspace::Keyspace;
use kv_actors::store::Seq;

use crate::gen::{self, Damage, Model};
use crate::recovery::scratch;

/// One input: most of the time a snapshot written by the snapshot writer, damaged or not;
/// now and then a file of raw input bytes.
pub fn snapshot(data: &[u8]) {
    let mut u = Unstructured::new(data);
    let scratch = scratch();
    let dir = DataDir::open(scratch.path()).expect("a scratch data directory");
    let seq: Seq = gen::number(&mut u);
    let path = dir.snapshot_path(seq);
    if gen::one_in(&mut u, 4) {
        let mut bytes = match gen::byte(&mut u) % 4 {
            0 => Vec::new(),
            _ => SNAPSHOT_MAGIC.to_vec(),
        };
        bytes.extend_from_slice(u.take_rest());
        std::fs::write(&path, bytes).expect("write a snapshot");
        let _ = load(&path, seq);
        return;
    }
    let pairs: Vec<_> = (0..gen::up_to(&mut u, 12))
        .map(|_| gen::pair(&mut u))
        .collect();
    let keyspace: Keyspace = pairs.into_iter().collect();
    let written = gen::model_of(keyspace.iter());
    let (written_path, size) =
        snapshot_file::write(&dir, &keyspace.snapshot(), seq, None).expect("write a snapshot");
    assert_eq!(written_path, path);
    let bytes = std::fs::read(&path).expect("read the snapshot back");
    assert_eq!(bytes.len() as u64, size);
    // A whole record written again over another of the same size is left out: every record
    // of a snapshot carries the same sequence number, so nothing can tell that copy from the
    // record it replaced (docs/fuzzing.md).
    let damage: Vec<Damage> = gen::damage(&mut u, bytes.len(), 3)
        .into_iter()
        .filter(|harm| !matches!(harm, Damage::Copy { .. }))
        .collect();
    let harmed = gen::damaged(bytes.clone(), &damage);
    std::fs::write(&path, &harmed).expect("write the damaged snapshot");
    match load(&path, seq) {
        Ok(model) => assert_eq!(model, written, "a snapshot loaded in part"),
        Err(error) => assert_ne!(harmed, bytes, "an intact snapshot refused: {error}"),
    }
}

/// Load the snapshot at `path`; a refusal must be a damaged-snapshot error naming it.
fn load(path: &Path, seq: Seq) -> Result<Model, StorageError> {
    let mut keyspace = Keyspace::new();
    match snapshot_file::load(path, seq, &mut keyspace, |_, _| {}) {
        Ok(()) => Ok(gen::model_of(keyspace.iter())),
        Err(StorageError::BadSnapshot {
            path: named,
            detail,
        }) => {
            assert_eq!(named, path, "{detail}");
            Err(StorageError::BadSnapshot {
                path: named,
                detail,
            })
        }
        Err(other) => panic!("a snapshot refused without saying it is damaged: {other}"),
    }
}
