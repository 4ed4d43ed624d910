//! Short smoke runs of `kvbench` against test nodes, over both protocols: the pipelined
//! workloads on one node, the cycle workloads on a primary and its replica.

mod common;

use std::process::{Command, Output};

use common::{pipeline, wait_until, NodeProcess};

/// Run kvbench against `node` with `args` and `--json`; answers its output, whatever its
/// exit status.
fn run_kvbench(node: &NodeProcess, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kvbench"))
        .args(["--port", &node.addr.port().to_string(), "--json"])
        .args(args)
        .output()
        .expect("run kvbench")
}

/// Run kvbench against `node` with `args` and `--json`, which must succeed; answers the JSON
/// line.
fn kvbench(node: &NodeProcess, args: &[&str]) -> String {
    let output = run_kvbench(node, args);
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "kvbench {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// The value of a numeric field in a flat JSON object.
fn field(json: &str, name: &str) -> u64 {
    let start = json
        .find(&format!("\"{name}\":"))
        .unwrap_or_else(|| panic!("no {name} in {json}"))
        + name.len()
        + 3;
    json[start..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{name} is not a number in {json}"))
}

#[test]
fn kvbench_drives_a_node_over_both_protocols_without_errors() {
    let node = NodeProcess::start(&[]);
    for proto in ["line", "resp"] {
        for (workload, pipeline) in [("set", "1"), ("get", "8"), ("mixed", "4")] {
            let json = kvbench(
                &node,
                &[
                    "--proto",
                    proto,
                    "--workload",
                    workload,
                    "--pipeline",
                    pipeline,
                    "--conns",
                    "4",
                    "--requests",
                    "2000",
                    "--keyspace",
                    "500",
                ],
            );
            assert_eq!(field(&json, "errors"), 0, "{proto} {workload}: {json}");
            assert!(
                field(&json, "requests") >= 2000,
                "{proto} {workload}: {json}"
            );
        }
    }
    // Every key the SET runs wrote is really there.
    let mut client = node.client();
    let info = String::from_utf8(client.request(b"INFO").unwrap()).unwrap();
    // With its leading blank: `expired_keys=0 ` must not count.
    assert!(!info.contains(" keys=0 "), "{info}");
}

#[test]
fn kvbench_refuses_an_unreachable_node_with_a_clear_message() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = Command::new(env!("CARGO_BIN_EXE_kvbench"))
        .args(["--port", &port.to_string(), "--requests", "10"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&output.stderr).trim().is_empty());
}

/// A replica, and a primary streaming to it once it reports the replica connected.
fn primary_and_replica() -> (NodeProcess, NodeProcess) {
    let replica = NodeProcess::start(&["--role", "replica"]);
    let primary = NodeProcess::start(&["--replica", &replica.addr.to_string()]);
    wait_until("the primary has its replica", || {
        let info = primary.client().request(b"INFO").unwrap();
        String::from_utf8(info)
            .unwrap()
            .contains(" connected_replicas=1 ")
    });
    (primary, replica)
}

#[test]
fn kvbench_cycles_write_on_the_primary_and_read_back_on_the_replica() {
    let (primary, replica) = primary_and_replica();
    let replica_addr = replica.addr.to_string();
    for proto in ["line", "resp"] {
        for workload in [
            "set-wait",
            "ryw-plain",
            "ryw-after",
            "ryw-waitpos",
            "ryw-wait",
        ] {
            let json = kvbench(
                &primary,
                &[
                    "--proto",
                    proto,
                    "--workload",
                    workload,
                    "--replica",
                    &replica_addr,
                    // Wait as long as it takes: a loaded machine must not fail the test.
                    "--wait-timeout",
                    "0",
                    "--conns",
                    "4",
                    "--requests",
                    "300",
                    "--keyspace",
                    "100",
                ],
            );
            let what = format!("{proto} {workload}: {json}");
            assert_eq!(field(&json, "errors"), 0, "{what}");
            assert!(field(&json, "requests") >= 300, "{what}");
            // kvbench fails a run whose promised reads miss their writes; the plain reads may.
            if workload != "ryw-plain" {
                assert_eq!(field(&json, "stale"), 0, "{what}");
            }
            // set-wait only writes; the others read every cycle on the replica.
            let reads = field(&json, "read_p50_us");
            assert_eq!(workload == "set-wait", reads == 0, "{what}");
        }
    }
}

/// kvbench's arguments for pipelined GETs that each wait for `token`.
fn gets_after<'a>(proto: &'a str, token: &'a str) -> Vec<&'a str> {
    vec![
        "--proto",
        proto,
        "--workload",
        "get",
        "--after",
        token,
        "--pipeline",
        "8",
        "--conns",
        "2",
        "--requests",
        "500",
        "--keyspace",
        "10",
        // Wait as long as it takes for the replica to have the token.
        "--wait-timeout",
        "0",
    ]
}

#[test]
fn kvbench_gets_on_a_replica_with_a_token_and_counts_the_tokens_it_refuses() {
    let (primary, replica) = primary_and_replica();
    let replies = pipeline(&primary, &["PUT key:1 v".into(), "LASTPOS".into()]);
    for proto in ["line", "resp"] {
        let json = kvbench(&replica, &gets_after(proto, &replies[1]));
        assert_eq!(field(&json, "errors"), 0, "{proto}: {json}");
        let refused = run_kvbench(&replica, &gets_after(proto, "no-token"));
        assert_eq!(refused.status.code(), Some(1), "{proto}: {refused:?}");
        let json = String::from_utf8(refused.stdout).unwrap();
        assert!(field(&json, "errors") >= 500, "{proto}: {json}");
    }
}

#[test]
fn kvbench_refuses_a_pipelined_cycle_workload_before_connecting() {
    // No node listens on port 1: the options are refused before any connection is tried.
    let output = Command::new(env!("CARGO_BIN_EXE_kvbench"))
        .args(["--port", "1", "--workload", "set-wait", "--pipeline", "4"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--pipeline 1"), "{stderr}");
}

#[test]
fn kvbench_with_a_rate_sends_no_faster_than_it_and_refuses_a_bad_one() {
    let node = NodeProcess::start(&[]);
    // 100 requests a second over 4 connections for 1 s: each connection sends one request
    // every 40 ms, starting within the first period, so at most 4 x 26 requests in all.
    let json = kvbench(
        &node,
        &[
            "--workload",
            "set",
            "--rate",
            "100",
            "--conns",
            "4",
            "--duration",
            "1",
        ],
    );
    let requests = field(&json, "requests");
    assert!(
        (1..=104).contains(&requests),
        "{requests} requests at 100 a second for 1 s: {json}"
    );
    for bad in ["0", "-5", "lots", "inf"] {
        let output = run_kvbench(&node, &[&format!("--rate={bad}")]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "--rate {bad} was taken");
        assert!(
            stderr.contains("is not a positive number of requests a second"),
            "--rate {bad}: {stderr}"
        );
    }
    let output = run_kvbench(&node, &["--workload", "set-wait", "--rate", "10"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--rate is for the set, get and mixed workloads"),
        "{stderr}"
    );
}
