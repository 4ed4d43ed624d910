//! `redis-benchmark` as a new user runs it: the rows whose commands a string store has complete
//! with no error, at pipeline 1 and 16, and with no `-t` at all it runs every row up to the
//! first data type kvstore does not have. Its `PING_INLINE` opens fresh connections with
//! `PING\r\n`, which the node must take for RESP (docs/protocol.md, "Which protocol").

mod common;

use std::process::{Command, Output};

use common::{exchange, NodeProcess};

/// redis-benchmark's rows whose commands kvstore has: its `-t` name and the name it prints,
/// in the order it runs them.
const SUPPORTED: [(&str, &str); 6] = [
    ("ping_inline", "PING_INLINE"),
    ("ping_mbulk", "PING_MBULK"),
    ("set", "SET"),
    ("get", "GET"),
    ("incr", "INCR"),
    ("mset", "MSET (10 keys)"),
];

/// redis-benchmark's default rows that use a data type other than strings (out of scope, see
/// docs/protocol.md), with the command each sends first. The `LRANGE_*` rows fill their list
/// with `LPUSH` before they run.
const UNSUPPORTED: [(&str, &str); 10] = [
    ("lpush", "LPUSH"),
    ("rpush", "RPUSH"),
    ("lpop", "LPOP"),
    ("rpop", "RPOP"),
    ("sadd", "SADD"),
    ("hset", "HSET"),
    ("spop", "SPOP"),
    ("zadd", "ZADD"),
    ("zpopmin", "ZPOPMIN"),
    ("lrange_100", "LPUSH"),
];

/// Run `redis-benchmark -q` against `node` with `args`.
fn redis_benchmark(node: &NodeProcess, args: &[&str]) -> Output {
    Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &node.addr.port().to_string(), "-q"])
        .args(args)
        .output()
        .expect("run redis-benchmark (CI installs redis-tools)")
}

/// Everything it printed. It redraws a row's progress in place with `\r`, so each piece
/// between line breaks and carriage returns is one message.
fn messages(output: &Output) -> Vec<String> {
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    text.split(['\r', '\n'])
        .map(str::trim)
        .filter(|m| !m.is_empty() && !m.contains("rps="))
        .map(str::to_string)
        .collect()
}

/// The names of the rows it completed (`NAME: <n> requests per second, ...`), in order.
fn completed(messages: &[String]) -> Vec<String> {
    messages
        .iter()
        .filter(|m| m.contains(" requests per second"))
        .filter_map(|m| m.split_once(": ").map(|(name, _)| name.to_string()))
        .collect()
}

#[test]
fn every_row_whose_commands_we_have_completes_at_pipeline_1_and_16() {
    let node = NodeProcess::start(&[]);
    let tests: Vec<&str> = SUPPORTED.iter().map(|(t, _)| *t).collect();
    let names: Vec<&str> = SUPPORTED.iter().map(|(_, name)| *name).collect();
    for pipeline in ["1", "16"] {
        let output = redis_benchmark(
            &node,
            &["-t", &tests.join(","), "-n", "2000", "-P", pipeline],
        );
        let messages = messages(&output);
        assert!(output.status.success(), "-P {pipeline}: {messages:?}");
        assert_eq!(completed(&messages), names, "-P {pipeline}: {messages:?}");
        assert!(
            !messages.iter().any(|m| m.contains("ERR")),
            "-P {pipeline}: errors reported: {messages:?}"
        );
    }
    assert!(node.answers_ping());
}

/// With no `-t`, redis-benchmark (7.x) runs its rows in order and exits 1 at the first error
/// reply ("We now immediately exit on error to avoid false results"): every row before
/// `LPUSH`, the first data type kvstore does not have, completes; `MSET`, the last default
/// row, is never reached (the test above runs it).
#[test]
fn its_defaults_complete_every_row_up_to_the_first_unsupported_data_type() {
    let node = NodeProcess::start(&[]);
    let output = redis_benchmark(&node, &["-n", "2000"]);
    let messages = messages(&output);
    assert_eq!(output.status.code(), Some(1), "{messages:?}");
    let names: Vec<&str> = SUPPORTED[..5].iter().map(|(_, name)| *name).collect();
    assert_eq!(completed(&messages), names, "{messages:?}");
    let errors: Vec<&String> = messages.iter().filter(|m| m.contains("ERR")).collect();
    assert_eq!(errors.len(), 1, "{messages:?}");
    assert!(
        errors[0].contains("Error from server: ERR unknown command 'LPUSH'"),
        "{errors:?}"
    );
    assert!(node.answers_ping());
}

/// Each default row of another data type stops at once with Redis's unknown-command error:
/// no hang, no crash, and the node serves on.
#[test]
fn rows_of_other_data_types_stop_with_unknown_command() {
    let node = NodeProcess::start(&[]);
    for (test, command) in UNSUPPORTED {
        let output = redis_benchmark(&node, &["-t", test, "-n", "100"]);
        let messages = messages(&output);
        assert_eq!(output.status.code(), Some(1), "{test}: {messages:?}");
        let expected = format!("Error from server: ERR unknown command '{command}'");
        assert!(
            messages.iter().any(|m| m.contains(&expected)),
            "{test}: {messages:?}"
        );
        assert!(completed(&messages).is_empty(), "{test}: {messages:?}");
    }
    assert!(node.answers_ping());
}

/// The first line of a connection picks its protocol: `PING\r\n` (what `PING_INLINE` sends on
/// a fresh connection) is RESP; ended by `\n` alone, or led by a verb only the line protocol
/// has, the connection speaks the line protocol as before.
#[test]
fn a_first_line_ended_by_crlf_is_resp_unless_only_the_line_protocol_has_its_verb() {
    let node = NodeProcess::start(&[]);
    let reply =
        |request: &[u8]| String::from_utf8_lossy(&exchange(&mut node.raw(), request)).into_owned();
    assert_eq!(reply(b"PING\r\nPING\r\n"), "+PONG\r\n+PONG\r\n");
    assert_eq!(reply(b"PING\nPING\r\n"), "PONG\nPONG\n");
    assert_eq!(reply(b"PUT k v\r\nGET k\r\n"), "OK\nv\n");
    assert_eq!(reply(b"GET k\r\nSET k w\r\n"), "$1\r\nv\r\n+OK\r\n");
    assert_eq!(reply(b"\r\nGET k\n"), "w\n");
    assert_eq!(reply(b"SET k x\n"), "ERROR: unknown command 'SET'\n");
}
