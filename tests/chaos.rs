//! `kvchaos` against our node: under `--fsync always`, with processes killed or paused at
//! random times while clients contend on a few keys, the history must check out.

use std::process::Command;

/// Run kvchaos with `fault` for a few seconds; answers its exit status and last line.
fn kvchaos(fault: &str, seed: &str) -> (i32, String) {
    let out = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_kvchaos"))
        .args(["--fault", fault, "--duration", "4", "--fsync", "always"])
        .args([
            "--seed",
            seed,
            "--clients",
            "4",
            "--keys",
            "3",
            "--rate",
            "200",
        ])
        .arg("--kvnode")
        .arg(env!("CARGO_BIN_EXE_kvnode"))
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run kvchaos");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let last = stdout.lines().last().unwrap_or_default().to_string();
    (
        output.status.code().unwrap_or(-1),
        format!(
            "{last}\n{stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// The number after `name=` in kvchaos's verdict line.
fn count(report: &str, name: &str) -> u64 {
    report
        .lines()
        .next()
        .and_then(|line| {
            line.split(' ')
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
        })
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {report}"))
}

#[test]
fn kill_9_and_restart_leaves_a_valid_history() {
    let (status, report) = kvchaos("kill", "1");
    assert_eq!(status, 0, "{report}");
    assert!(report.starts_with("kvchaos: valid "), "{report}");
    // A run that injected nothing or checked nothing would prove nothing.
    assert!(count(&report, "faults") >= 1, "{report}");
    assert!(count(&report, "operations") >= 100, "{report}");
    assert!(report.contains("lost_acknowledged_writes=0"), "{report}");
}

#[test]
fn pauses_leave_a_valid_history() {
    let (status, report) = kvchaos("pause", "2");
    assert_eq!(status, 0, "{report}");
    assert!(report.starts_with("kvchaos: valid "), "{report}");
    assert!(count(&report, "faults") >= 1, "{report}");
    assert!(count(&report, "operations") >= 100, "{report}");
}

#[test]
fn bad_arguments_exit_with_2() {
    let status = Command::new(env!("CARGO_BIN_EXE_kvchaos"))
        .args(["--fault", "meteor"])
        .status()
        .expect("run kvchaos");
    assert_eq!(status.code(), Some(2));
}
