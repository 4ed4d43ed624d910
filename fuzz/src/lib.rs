//! Fuzz targets for everything in kvstore that reads bytes it did not write itself: the
//! client protocols, command parsing, the log and snapshot readers, and the replica's
//! replication stream decoder.
//!
//! Each target is a function of one input, `fn(&[u8])`, that panics when a property fails. The
//! same functions run in two ways, so there is one copy of every property:
//!
//! - under libFuzzer, coverage-guided, through `cargo fuzz run <target>` (the entry points in
//!   `fuzz_targets/`, built only with the `libfuzzer` feature); CI runs each one for a short
//!   fixed time, and `docs/fuzzing.md` says how to run them longer;
//! - as ordinary tests (`tests/corpus.rs`): every seed of the corpus in the repository
//!   (`corpus/<target>/`), every input that once failed (`regressions/<target>/`), and a fixed,
//!   seeded sweep of variations of the seeds, so `cargo test` checks the properties too.
//!
//! The properties are more than "does not panic": a decoder yields the same frames however the
//! bytes are cut into reads ([`chunks`]); what an encoder writes decodes back to what it was
//! given; recovery of a damaged log keeps exactly a prefix of its records, or refuses with an
//! error that names the damage; a snapshot loads whole or not at all.

#![warn(missing_docs)]

pub mod chunks;
pub mod commands;
pub mod gen;
pub mod protocol;
pub mod records;
pub mod recovery;
pub mod snapshot;
pub mod stream;

/// A fuzz target: checks its properties on one input, panicking if one fails.
pub type Target = fn(&[u8]);

/// Every target, by the name its corpus folder, its `fuzz_targets/` file and `cargo fuzz run`
/// know it by: the one list the corpus tests walk, so a target cannot be left out of them.
pub const TARGETS: [(&str, Target); 8] = [
    ("line_protocol", protocol::line_protocol),
    ("resp", protocol::resp),
    ("connection", protocol::connection),
    ("commands", commands::commands),
    ("records", records::records),
    ("log_recovery", recovery::log_recovery),
    ("snapshot", snapshot::snapshot),
    ("stream", stream::stream),
];
