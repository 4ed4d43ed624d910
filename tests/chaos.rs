//! `kvchaos` as CI runs it: each fault kind once against our node (a primary and two replicas,
//! `--fsync always`), which must come out valid with no acknowledged write lost; the
//! failover cluster (three members that elect their primary, `--min-replicas-to-write 1`)
//! under a `kill -9`, a pause and a cut of its primary, each of which must make the others
//! elect a new one, also valid with nothing lost; and two reference runs against Redis that
//! show the checker finds what it should: without an AOF, `kill -9` loses acknowledged
//! writes; with `appendfsync always` and no faults, all is well. And the read-your-writes
//! workload (`--read-your-writes`: every client reads from the replicas with its position
//! token): valid under kills and pauses of the replicas, and caught by the checker when the
//! clients leave the token out of their reads while a replication link is cut.

use std::process::Command;

/// Run kvchaos for a few seconds with `args`; answers its exit status, its report (the
/// verdict line first, then everything it printed), and the faults it injected.
fn kvchaos(args: &[&str]) -> (i32, String, String) {
    let out = tempfile::tempdir().expect("a temporary directory");
    let output = Command::new(env!("CARGO_BIN_EXE_kvchaos"))
        .args(["--clients", "4", "--rate", "150"])
        // A few seconds, unless the run says otherwise.
        .args(if args.contains(&"--duration") {
            &[][..]
        } else {
            &["--duration", "5"][..]
        })
        // Few keys, so that operations contend, unless the run says otherwise.
        .args(if args.contains(&"--keys") {
            &[][..]
        } else {
            &["--keys", "3"][..]
        })
        .args(args)
        .arg("--kvnode")
        .arg(env!("CARGO_BIN_EXE_kvnode"))
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run kvchaos");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let last = stdout.lines().last().unwrap_or_default().to_string();
    let faults = std::fs::read_to_string(out.path().join("faults.txt")).unwrap_or_default();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{last}\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ),
        faults,
    )
}

/// The number after `name=` in `line`, if it has one.
fn number(line: &str, name: &str) -> Option<u64> {
    line.split(' ')
        .find_map(|f| f.strip_prefix(&format!("{name}=")))
        .and_then(|n| n.parse().ok())
}

/// The number after `name=` in kvchaos's verdict line.
fn count(report: &str, name: &str) -> u64 {
    report
        .lines()
        .next()
        .and_then(|line| number(line, name))
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

/// Our node under `fault`, `--fsync always` (each seed below makes the first fault hit the
/// primary): valid, nothing lost, replicas converged; and a run
/// that injected nothing, spared the primary, or checked nothing would prove nothing.
fn our_node_survives(fault: &str, seed: &str) {
    let (status, report, faults) =
        kvchaos(&["--fault", fault, "--fsync", "always", "--seed", seed]);
    assert_eq!(status, 0, "{report}");
    assert!(report.starts_with("kvchaos: valid "), "{report}");
    assert!(count(&report, "faults") >= 1, "{report}");
    assert!(
        faults.contains("primary"),
        "the primary was spared:\n{faults}"
    );
    assert!(count(&report, "answered") >= 100, "{report}");
    assert_eq!(count(&report, "lost_acknowledged_writes"), 0, "{report}");
    assert!(report.contains("converged=yes"), "{report}");
}

/// The number after `name=` in kvchaos's line on the reads with a token.
fn token_count(report: &str, name: &str) -> u64 {
    report
        .lines()
        .find(|line| line.starts_with("kvchaos: token_reads="))
        .and_then(|line| number(line, name))
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

/// The read-your-writes workload with tokens under `fault` of the replicas only: valid, every
/// client read its own writes and never went back, the replicas answered reads with tokens,
/// and the faults hit replicas and nothing else.
fn reads_with_tokens_survive(fault: &str, seed: &str) {
    let (status, report, faults) = kvchaos(&[
        "--read-your-writes",
        "--fault",
        fault,
        "--fault-target",
        "replicas",
        "--replica-reads",
        "80",
        "--seed",
        seed,
    ]);
    assert_eq!(status, 0, "{report}");
    assert!(report.starts_with("kvchaos: valid "), "{report}");
    assert!(count(&report, "faults") >= 1, "{report}");
    assert!(
        !faults.contains("primary"),
        "the primary was hit:\n{faults}"
    );
    assert_eq!(count(&report, "read_your_writes_violations"), 0, "{report}");
    assert_eq!(count(&report, "monotonic_read_violations"), 0, "{report}");
    assert!(token_count(&report, "by_replica") >= 100, "{report}");
    assert!(report.contains("converged=yes"), "{report}");
}

#[test]
fn reads_with_tokens_see_their_own_writes_through_replica_kills() {
    reads_with_tokens_survive("kill", "7");
}

#[test]
fn reads_with_tokens_see_their_own_writes_through_replica_pauses() {
    reads_with_tokens_survive("pause", "7");
}

/// The checker catches a real bug: clients that keep their token but read without it, while
/// the first fault (seed 2) cuts a replication link for 1.5 s, miss their own writes.
#[test]
fn reads_without_the_token_are_caught_missing_their_own_writes() {
    let (status, report, faults) = kvchaos(&[
        "--read-your-writes",
        "without-tokens",
        "--fault",
        "partition",
        "--fault-target",
        "replicas",
        "--replica-reads",
        "80",
        "--seed",
        "2",
    ]);
    assert!(faults.contains("link primary <-> replica1"), "{faults}");
    assert_eq!(status, 1, "{report}");
    assert!(report.starts_with("kvchaos: INVALID "), "{report}");
    assert!(
        count(&report, "read_your_writes_violations") >= 1,
        "{report}"
    );
    assert!(report.contains("did not read its own write"), "{report}");
    // The primary's answers and the replicas' own promises still hold: only the clients'
    // sessions were broken.
    assert_eq!(count(&report, "lost_acknowledged_writes"), 0, "{report}");
    assert_eq!(count(&report, "not_linearizable_keys"), 0, "{report}");
}

/// The read-your-writes workload in the failover cluster: a paused primary is deposed (seed 2:
/// the first fault pauses it past the election), and the clients' tokens, taken on either
/// side of the failover, still give every client its own writes and monotonic reads.
#[test]
fn reads_with_tokens_see_their_own_writes_across_a_failover() {
    let (status, report, faults) = kvchaos(&[
        "--target",
        "cluster",
        "--read-your-writes",
        "--replica-reads",
        "80",
        "--fault",
        "pause",
        "--failover-timeout-ms",
        "600",
        "--duration",
        "8",
        "--seed",
        "2",
    ]);
    assert_eq!(status, 0, "{report}");
    assert!(report.starts_with("kvchaos: valid "), "{report}");
    assert!(faults.contains("(the primary)"), "{faults}");
    assert_eq!(count(&report, "read_your_writes_violations"), 0, "{report}");
    assert_eq!(count(&report, "monotonic_read_violations"), 0, "{report}");
    // Few under load (a paused primary holds every client for up to 2 s), but some.
    assert!(token_count(&report, "by_replica") >= 5, "{report}");
    assert_eq!(count(&report, "lost_acknowledged_writes"), 0, "{report}");
}

#[test]
fn kill_9_and_restart_of_any_node_leaves_a_valid_history() {
    our_node_survives("kill", "5");
}

#[test]
fn nodes_that_require_a_password_leave_a_valid_history_under_kills() {
    // Every client logs in (`AUTH` before its first request); the nodes take the password
    // from the environment.
    let (status, report, _) = kvchaos(&[
        "--fault", "kill", "--fsync", "always", "--seed", "7", "--pass", "s3cret",
    ]);
    assert_eq!(status, 0, "{report}");
    assert!(report.starts_with("kvchaos: valid "), "{report}");
    assert!(count(&report, "answered") >= 100, "{report}");
    assert_eq!(count(&report, "lost_acknowledged_writes"), 0, "{report}");
}

#[test]
fn pauses_leave_a_valid_history() {
    our_node_survives("pause", "8");
}

#[test]
fn partitions_and_one_way_cuts_leave_a_valid_history() {
    our_node_survives("partition", "9");
}

#[test]
fn a_full_disk_leaves_a_valid_history() {
    our_node_survives("disk-full", "10");
}

#[test]
fn a_slow_disk_leaves_a_valid_history() {
    our_node_survives("slow-disk", "3");
}

#[test]
fn mixed_faults_leave_a_valid_history() {
    our_node_survives("mixed", "5");
}

/// The failover cluster under `fault`, in safe mode (`--min-replicas-to-write 1`, `--fsync
/// always`; each seed below makes the first fault hit the primary, long enough for an
/// election): valid, nothing lost, the members converged, and at least one failover measured.
fn the_cluster_survives(fault: &str, seed: &str) {
    let (status, report, faults) = kvchaos(&[
        "--target",
        "cluster",
        "--fault",
        fault,
        "--fsync",
        "always",
        "--min-replicas-to-write",
        "1",
        "--failover-timeout-ms",
        "600",
        "--duration",
        "8",
        "--seed",
        seed,
    ]);
    assert_eq!(status, 0, "{report}");
    assert!(report.starts_with("kvchaos: valid "), "{report}");
    assert!(
        faults.contains("(the primary)"),
        "the primary was spared:\n{faults}"
    );
    assert!(report.contains("kvchaos: primary_faults="), "{report}");
    assert!(count(&report, "answered") >= 100, "{report}");
    assert_eq!(count(&report, "lost_acknowledged_writes"), 0, "{report}");
    assert!(report.contains("converged=yes"), "{report}");
}

#[test]
fn the_cluster_elects_a_new_primary_when_its_primary_is_killed_and_loses_nothing() {
    the_cluster_survives("kill", "2");
}

#[test]
fn the_cluster_survives_a_paused_primary_that_comes_back_deposed() {
    the_cluster_survives("pause", "2");
}

#[test]
fn the_cluster_survives_its_primary_cut_off_from_the_other_members() {
    the_cluster_survives("partition", "3");
}

#[test]
fn redis_without_an_aof_loses_acknowledged_writes_when_killed() {
    let (status, report, _) = kvchaos(&[
        "--target",
        "redis",
        "--fsync",
        "off",
        "--fault",
        "kill",
        "--replicas",
        "0",
        "--seed",
        "5",
        // Many keys: most have no write in flight at a kill that could explain a loss away.
        "--keys",
        "20",
    ]);
    assert_eq!(status, 1, "{report}");
    assert!(report.starts_with("kvchaos: INVALID "), "{report}");
    assert!(count(&report, "lost_acknowledged_writes") >= 1, "{report}");
}

#[test]
fn redis_with_appendfsync_always_and_no_faults_is_valid() {
    let (status, report, _) = kvchaos(&[
        "--target", "redis", "--fsync", "always", "--fault", "none", "--seed", "7",
    ]);
    assert_eq!(status, 0, "{report}");
    assert!(report.starts_with("kvchaos: valid "), "{report}");
    assert!(count(&report, "answered") >= 100, "{report}");
}

#[test]
fn our_node_over_resp_leaves_a_valid_history() {
    let (status, report, _) = kvchaos(&[
        "--fault",
        "kill",
        "--protocol",
        "resp",
        "--replicas",
        "0",
        "--seed",
        "8",
    ]);
    assert_eq!(status, 0, "{report}");
    assert!(count(&report, "answered") >= 100, "{report}");
}

#[test]
fn bad_arguments_exit_with_2() {
    for args in [
        &["--fault", "meteor"][..],
        &["--fsync", "off"],
        &["--target", "redis", "--protocol", "line"],
        &["--target", "redis", "--read-your-writes"],
        &["--read-your-writes", "sometimes"],
        &["--replicas", "0", "--read-your-writes"],
        &["--replicas", "0", "--fault-target", "replicas"],
        &["--target", "redis", "--pass", "secret"],
    ] {
        let status = Command::new(env!("CARGO_BIN_EXE_kvchaos"))
            .args(args)
            .arg("--out")
            .arg(tempfile::tempdir().expect("a temporary directory").path())
            .status()
            .expect("run kvchaos");
        assert_eq!(status.code(), Some(2), "{args:?}");
    }
}
