//! A short smoke run of `kvbench` against a test node, over both protocols.

mod common;

use std::process::Command;

use common::NodeProcess;

/// Run kvbench against `node` with `args` and `--json`; answers the JSON line.
fn kvbench(node: &NodeProcess, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_kvbench"))
        .args(["--port", &node.addr.port().to_string(), "--json"])
        .args(args)
        .output()
        .expect("run kvbench");
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
