//! The seed corpus, made by the encoders it exercises: requests as clients send them, logs
//! and snapshots as the node writes them, a primary's stream as it sends it. The files are in
//! the repository (`corpus/<target>/<name>`); `the_seeds_on_disk_are_these` checks they are
//! what this file makes, and `KV_FUZZ_WRITE_SEEDS=1 cargo test -p kv-fuzz --test seeds` writes them
//! again after a change here. A fuzzer's own finds are not kept in these folders (see
//! docs/fuzzing.md): a run adds its new inputs to a scratch corpus.

use std::fs;
use std::path::Path;

use kv_actors::replication::wire::{Prove, StreamEncoder, SyncStart};
use kv_actors::storage::record;
use kv_actors::storage::segment::LOG_MAGIC;
use kv_actors::storage::snapshot_file::SNAPSHOT_MAGIC;
use kv_actors::store::pair::Pair;
use kv_actors::store::{Change, Mutation};
use kv_fuzz::chunks::Rng;

/// Request arguments in the form the `commands` target reads them: each a length byte and
/// its bytes.
fn args(words: &[&str]) -> Vec<u8> {
    let mut bytes = Vec::new();
    for word in words {
        bytes.push(word.len() as u8);
        bytes.extend_from_slice(word.as_bytes());
    }
    bytes
}

/// `head`, then `len` bytes of seeded noise: for the targets that read a structure (a history,
/// damage) from their input, the head picks the structure's shape (the counts come first).
fn shaped(head: &[u8], seed: u64, len: usize) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut bytes = head.to_vec();
    bytes.extend((0..len).map(|_| rng.next_u64() as u8));
    bytes
}

/// A few mutations of every kind, one atomic group among them.
fn mutations() -> Vec<Mutation> {
    let put = |seq, key: &str, value: &str| {
        Mutation::new(seq, Change::put(key.as_bytes(), value.as_bytes()))
    };
    vec![
        put(1, "k1", "v1"),
        Mutation {
            more: true,
            ..put(2, "k2", "v2")
        },
        Mutation::new(
            3,
            Change::Put(Pair::with_deadline(b"k3", b"v3", Some(1_700_000_000_000))),
        ),
        Mutation::new(
            4,
            Change::Del {
                key: bytes::Bytes::from_static(b"k1"),
            },
        ),
        Mutation::new(5, Change::Clear),
        put(6, "k4", "v4 with spaces"),
    ]
}

/// The records of [`mutations`].
fn records() -> Vec<u8> {
    let mut bytes = Vec::new();
    for mutation in mutations() {
        record::encode_mutation(&mutation, &mut bytes);
    }
    bytes
}

/// A primary's stream: the proof, a start line, and then `records`.
fn stream(start: &SyncStart, records: &[u8]) -> Vec<u8> {
    let mut bytes = Prove {
        proof: Some("ab12".into()),
        from: 0,
    }
    .encode();
    start.encode(&mut bytes);
    bytes.extend_from_slice(records);
    bytes
}

/// Every seed: its target, its name, its bytes.
fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let text = |s: &str| s.as_bytes().to_vec();
    let full = SyncStart::Full {
        id: "0123abcd".into(),
        seq: 7,
        previous: None,
    };
    let resumed = SyncStart::Continue {
        id: "0123abcd".into(),
        offset: 0,
        previous: Some(kv_actors::replication::replication_id::Previous {
            id: "feed".into(),
            offset: 3,
        }),
    };
    let mut snapshot_records = Vec::new();
    StreamEncoder::snapshot_pair(7, &Pair::new(b"k", b"v"), &mut snapshot_records);
    StreamEncoder::snapshot_end(7, 1, &mut snapshot_records);
    StreamEncoder::heartbeat(7, &mut snapshot_records);
    let mut snapshot_file = SNAPSHOT_MAGIC.to_vec();
    snapshot_file.extend_from_slice(&snapshot_records[..snapshot_records.len() - 25]);
    let mut log = LOG_MAGIC.to_vec();
    log.extend_from_slice(&records());
    let mut torn_log = log.clone();
    torn_log.truncate(log.len() - 5);
    let mut replicated = text("PING\nREPLICATE s3cret 2\n");
    replicated.extend_from_slice(&stream(&full, &snapshot_records));
    vec![
        ("line_protocol", "basics", text("PUT k v\nGET k\nDEL k\nPING\nEXIT\n")),
        ("line_protocol", "crlf_and_blanks", text("\r\n  \t\nPUT k two words\r\nGET k\r\n\n")),
        ("line_protocol", "expiry", text("PUTEX k 10 v\nTTL k\nEXPIRE k 5\nPERSIST k\n")),
        ("line_protocol", "node", text("INFO\nDIGEST\nROLE\nRESYNC\nWAIT 1 100\nFAILOVER TO 127.0.0.1:7001\n")),
        ("line_protocol", "positions", text("LASTPOS\nWAITPOS 0:-:0 100\nGET k AFTER 3:0123456789abcdef0123456789abcdef01234567:42 10\n")),
        ("line_protocol", "replicate", text("GET a\nREPLICATE s3cret 3\nPROVE - 0\n")),
        ("line_protocol", "too_long", text("GET a\nPUT k 0123456789012345678901234567890123456789012345678901234567890123456789\n")),
        ("resp", "set_get", text("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")),
        ("resp", "hello3", text("*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*1\r\n$4\r\nPING\r\n")),
        ("resp", "inline", text("SET \"a b\" 'c\\'d' \"\\x41\\n\"\r\nPING\r\n\r\n")),
        ("resp", "null_and_empty", text("*-1\r\n*0\r\n*1\r\n$0\r\n\r\n")),
        ("resp", "binary_value", b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\n\x00\r\n\xff\r\n".to_vec()),
        ("resp", "value_too_large", text("*2\r\n$4\r\nECHO\r\n$17\r\n01234567890123456\r\n")),
        ("connection", "resp", text("*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n")),
        ("connection", "inline", text("\r\nPING\r\nSET k v\r\n")),
        ("connection", "lines", text("PUT k v\r\nGET k\nEXIT\n")),
        ("connection", "replicate", replicated),
        ("connection", "mset_at_the_limit", text("*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$16\r\n0123456789abcdef\r\n$1\r\nb\r\n$16\r\n0123456789abcdef\r\n")),
        ("commands", "set_ex", args(&["SET", "k", "v", "EX", "10", "NX"])),
        ("commands", "mset", args(&["mset", "a", "1", "b", "2"])),
        ("commands", "hello", args(&["HELLO", "3", "SETNAME", "me"])),
        ("commands", "client", args(&["CLIENT", "SETNAME", "me"])),
        ("commands", "command_docs", args(&["COMMAND", "DOCS", "get"])),
        ("commands", "config", args(&["CONFIG", "GET", "maxmemory*"])),
        ("commands", "sentinel", args(&["SENTINEL", "get-master-addr-by-name", "kv"])),
        ("commands", "failover", args(&["FAILOVER", "TO", "127.0.0.1", "7001", "TIMEOUT", "500"])),
        ("commands", "get_after", args(&["GET", "k", "AFTER", "0:-:0", "10"])),
        ("commands", "scan", args(&["SCAN", "0", "MATCH", "k*", "COUNT", "10"])),
        ("commands", "getex", args(&["GETEX", "k", "PXAT", "1700000000000"])),
        ("commands", "lines", text("PUT k v\nGET k AFTER 0:-:0 5\nPUTEX k 1 v\nWAIT 1 0\nFAILOVER\n")),
        ("records", "log", records()),
        ("records", "snapshot", snapshot_records.clone()),
        ("records", "torn", records()[..40].to_vec()),
        // The first sequence number, then the history's length.
        ("records", "history", shaped(&[1, 0, 0, 0, 0, 0, 0, 0, 16], 6, 300)),
        ("log_recovery", "raw_log", [&[0, 1][..], &log[LOG_MAGIC.len()..]].concat()),
        ("log_recovery", "raw_torn_log", [&[0, 1][..], &torn_log[LOG_MAGIC.len()..]].concat()),
        // Mode (not raw), then the history's length.
        ("log_recovery", "history", shaped(&[1, 24], 1, 400)),
        ("log_recovery", "history_two_logs", shaped(&[2, 20], 2, 400)),
        ("log_recovery", "short_history", shaped(&[3, 6], 3, 100)),
        // The sequence number, the mode (not raw), then the number of pairs.
        ("snapshot", "written", shaped(&[7, 0, 0, 0, 0, 0, 0, 0, 1, 12], 4, 300)),
        ("snapshot", "raw", [&[7, 0, 0, 0, 0, 0, 0, 0, 0, 1][..], &snapshot_file[SNAPSHOT_MAGIC.len()..]].concat()),
        ("snapshot", "damaged", shaped(&[9, 0, 0, 0, 0, 0, 0, 0, 2, 5], 5, 200)),
        ("stream", "full", stream(&full, &snapshot_records)),
        ("stream", "continue", stream(&resumed, &records())),
        ("stream", "bad_start", text("PROVE - 0\nHELLO\n")),
        ("stream", "replica_lines", text("CHALLENGE 0a1b 2c3d\nPOSITION 0123abcd 9 4 00000000000000ff\nPOSITION - 0\nACK 9 8\nERROR: replication refused: wrong cluster secret\n")),
    ]
}

/// Where the seeds are: `corpus/` beside this crate's manifest.
fn corpus() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/corpus"))
}

#[test]
fn the_seeds_on_disk_are_these() {
    for (target, name, bytes) in seeds() {
        let path = corpus().join(target).join(name);
        let on_disk = fs::read(&path).unwrap_or_default();
        assert!(
            on_disk == bytes,
            "{} is not what tests/seeds.rs makes: write the seeds again (see its doc)",
            path.display()
        );
    }
}

/// Writes the seed corpus into the source tree, when asked to (`KV_FUZZ_WRITE_SEEDS=1`):
/// after a change to what the seeds are made from. Otherwise it does nothing (the test above
/// checks the files on disk).
#[test]
fn write_the_seeds() {
    if std::env::var_os("KV_FUZZ_WRITE_SEEDS").is_none() {
        return;
    }
    for (target, name, bytes) in seeds() {
        let dir = corpus().join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
    }
}
