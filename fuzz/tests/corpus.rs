//! The fuzz targets as ordinary tests, so `cargo test` checks their properties without a
//! fuzzer: every seed of the corpus (`corpus/<target>/`), every input that once failed
//! (`regressions/<target>/`), and a fixed set of variations of the seeds, made by a seeded
//! generator so every run tries the same inputs.

use std::fs;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use kv_fuzz::chunks::{hash, Rng};
use kv_fuzz::{Target, TARGETS};

/// Variations tried per seed: enough to reach past the seeds, few enough that the slowest
/// target (recovery, which writes files) takes seconds.
const VARIATIONS: usize = 40;

/// The files in `dir` (none if it does not exist), in name order.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("read a corpus folder").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Run `target` on `input`, answering the panic's message if a property failed.
fn failure(target: Target, input: &[u8]) -> Option<String> {
    let outcome = catch_unwind(AssertUnwindSafe(|| target(input)));
    outcome.err().map(|panic| {
        panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

/// A variation of `input`, as a mutating fuzzer makes one: bytes flipped, inserted, removed,
/// repeated, or the input cut short or joined to another seed.
fn vary(input: &[u8], other: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut bytes = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let at = rng.below(bytes.len() + 1);
        match rng.below(6) {
            0 if at < bytes.len() => bytes[at] ^= 1 << rng.below(8),
            1 => bytes.insert(at, rng.next_u64() as u8),
            2 if at < bytes.len() => {
                bytes.remove(at);
            }
            3 => {
                let len = rng.below(bytes.len() - at + 1).min(16);
                let copy = bytes[at..at + len].to_vec();
                bytes.splice(at..at, copy);
            }
            4 => bytes.truncate(at),
            _ => {
                let from = rng.below(other.len() + 1);
                bytes.splice(at.., other[from..].iter().copied());
            }
        }
    }
    bytes
}

/// Check `name`'s properties on its seeds, its regressions and the seeds' variations.
fn check(name: &str) {
    let (_, target) = TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no target {name}"));
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let seeds: Vec<(PathBuf, Vec<u8>)> = files(&root.join("corpus").join(name))
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).expect("read a seed");
            (path, bytes)
        })
        .collect();
    assert!(seeds.len() >= 3, "{name} has {} seeds", seeds.len());
    let mut failed = Vec::new();
    for path in files(&root.join("regressions").join(name)) {
        let input = fs::read(&path).expect("read a regression input");
        if let Some(why) = failure(*target, &input) {
            failed.push(format!("{}: {why}", path.display()));
        }
    }
    let mut rng = Rng::new(hash(name.as_bytes()));
    for (i, (path, seed)) in seeds.iter().enumerate() {
        if let Some(why) = failure(*target, seed) {
            failed.push(format!("{}: {why}", path.display()));
        }
        let other = &seeds[(i + 1) % seeds.len()].1;
        for n in 0..VARIATIONS {
            let input = vary(seed, other, &mut rng);
            if let Some(why) = failure(*target, &input) {
                failed.push(format!(
                    "variation {n} of {}: {why}\n{input:?}",
                    path.display()
                ));
            }
        }
    }
    assert!(failed.is_empty(), "{name}:\n{}", failed.join("\n"));
}

/// Every target has a test below, so none is forgotten.
#[test]
fn every_target_is_tested_here() {
    let source = include_str!("corpus.rs");
    for (name, _) in TARGETS {
        assert!(
            source.contains(&format!("fn {name}()")),
            "no test for {name}"
        );
    }
}

#[test]
fn line_protocol() {
    check("line_protocol");
}

#[test]
fn resp() {
    check("resp");
}

#[test]
fn connection() {
    check("connection");
}

#[test]
fn commands() {
    check("commands");
}

#[test]
fn records() {
    check("records");
}

#[test]
fn log_recovery() {
    check("log_recovery");
}

#[test]
fn snapshot() {
    check("snapshot");
}

#[test]
fn stream() {
    check("stream");
}
