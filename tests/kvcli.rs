//! `kvcli`, run as a user would: one command, commands piped on stdin, and failures.

mod common;

use std::process::{Command, Output};

use common::NodeProcess;

fn kvcli(node: Option<&NodeProcess>, args: &[&str], stdin: &str) -> Output {
    let port = node.map(|node| node.addr.port().to_string());
    let mut all: Vec<&str> = match &port {
        Some(port) => vec!["--port", port],
        None => vec![],
    };
    all.extend_from_slice(args);
    common::kvcli(&all, stdin)
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

#[test]
fn one_command_prints_its_reply() {
    let node = NodeProcess::start(&[]);
    let put = kvcli(Some(&node), &["PUT", "name", "John", "Smith"], "");
    assert!(put.status.success());
    assert_eq!(stdout(&put), "OK\n");
    let get = kvcli(Some(&node), &["get", "name"], "");
    assert_eq!(stdout(&get), "John Smith\n");
    assert!(get.status.success());
    let missing = kvcli(Some(&node), &["GET", "nobody"], "");
    assert_eq!(stdout(&missing), "NOT_FOUND\n");
    assert!(
        missing.status.success(),
        "NOT_FOUND is an answer, not an error"
    );
}

#[test]
fn an_error_reply_exits_one() {
    let node = NodeProcess::start(&[]);
    let output = kvcli(Some(&node), &["GET"], "");
    assert_eq!(
        stdout(&output),
        "ERROR: usage: GET <key> [AFTER <token> <timeout-ms>]\n"
    );
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn piped_commands_are_all_run_in_order() {
    let node = NodeProcess::start(&[]);
    let script = "PUT a 1\n\nGET a\nBOGUS\nDEL a\nGET a\nPING\n";
    let output = kvcli(Some(&node), &[], script);
    assert_eq!(
        stdout(&output),
        "OK\n1\nERROR: unknown command 'BOGUS'\nOK\nNOT_FOUND\nPONG\n"
    );
    assert_eq!(output.status.code(), Some(1), "one reply was an error");

    let many: String = (0..2000).map(|i| format!("PUT k{i} v{i}\n")).collect();
    let output = kvcli(Some(&node), &[], &many);
    assert!(output.status.success());
    assert_eq!(stdout(&output), "OK\n".repeat(2000));
}

/// A script with Windows line endings still speaks the line protocol: kvcli does not send the
/// `\r`, which on a first line would make the node take it for a Redis client.
#[test]
fn a_script_with_crlf_line_endings_runs_as_the_line_protocol() {
    let node = NodeProcess::start(&[]);
    let output = kvcli(Some(&node), &[], "GET a\r\nPUT a 1\r\nGET a\r\nPING\r\n");
    assert_eq!(stdout(&output), "NOT_FOUND\nOK\n1\nPONG\n");
    assert!(output.status.success());
}

#[test]
fn a_piped_script_of_large_values_cannot_deadlock() {
    let node = NodeProcess::start(&[]);
    let value = "x".repeat(900 * 1024);
    // Megabytes of requests and of replies in flight at once, both ways.
    let script: String = (0..64)
        .map(|i| format!("PUT k{i} {value}\nGET k{i}\n"))
        .collect();
    let output = kvcli(Some(&node), &[], &script);
    assert!(output.status.success());
    let expected: String = (0..64).map(|_| format!("OK\n{value}\n")).collect();
    assert!(stdout(&output) == expected, "replies differ");
}

#[test]
fn exit_in_a_script_stops_it() {
    let node = NodeProcess::start(&[]);
    let output = kvcli(Some(&node), &[], "PING\nEXIT\nPING\n");
    assert_eq!(stdout(&output), "PONG\nGoodbye\n");
    assert!(output.status.success());
}

#[test]
fn an_unreachable_node_exits_two_with_a_clear_message() {
    // Bind then drop a listener to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = kvcli(None, &["--port", &port.to_string(), "PING"], "");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.starts_with(&format!("kvcli: cannot connect to 127.0.0.1:{port}")),
        "stderr was {stderr:?}"
    );
}

/// A tmux server of the test's own, killed when dropped.
struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("run tmux (CI installs it)");
        assert!(output.status.success(), "tmux {args:?} failed");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "kv"])
    }

    fn wait_for_screen(&self, what: &str, condition: impl Fn(&str) -> bool) {
        common::wait_until(what, || condition(&self.screen()));
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}

#[test]
fn the_interactive_prompt_runs_commands_and_keeps_history() {
    let node = NodeProcess::start(&[]);
    let home = tempfile::tempdir().unwrap();
    let tmux = Tmux {
        socket: format!("kvcli-test-{}", std::process::id()),
    };
    let command = format!(
        "HOME={} {} --port {}",
        home.path().display(),
        env!("CARGO_BIN_EXE_kvcli"),
        node.addr.port()
    );
    tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "kv",
        "-x",
        "100",
        "-y",
        "30",
        &command,
    ]);
    // capture-pane drops trailing blanks, so look for the prompt without its space.
    let prompt = format!("127.0.0.1:{}>", node.addr.port());
    tmux.wait_for_screen("the prompt appears", |s| s.contains(&prompt));

    tmux.run(&["send-keys", "-t", "kv", "PUT greeting hello world", "Enter"]);
    tmux.wait_for_screen("PUT is answered", |s| s.lines().any(|l| l == "OK"));
    tmux.run(&["send-keys", "-t", "kv", "GET greeting", "Enter"]);
    let answers = |n: usize| move |s: &str| s.lines().filter(|l| *l == "hello world").count() == n;
    tmux.wait_for_screen("GET is answered", answers(1));
    // Up-arrow recalls the last command from history.
    tmux.run(&["send-keys", "-t", "kv", "Up", "Enter"]);
    tmux.wait_for_screen("the recalled GET is answered", answers(2));
    tmux.run(&["send-keys", "-t", "kv", "EXIT", "Enter"]);
    let history = home.path().join(".kvcli_history");
    common::wait_until("kvcli saves its history on exit", || {
        std::fs::read_to_string(&history).is_ok_and(|h| h.contains("GET greeting"))
    });
}

/// A one-shot command that the line protocol would split differently than its arguments say
/// is refused before anything is sent, and so is an option kvcli does not know.
#[test]
fn arguments_the_line_protocol_cannot_carry_are_refused() {
    let node = NodeProcess::start(&[]);
    let refused = kvcli(Some(&node), &["PUT", "my key", "value"], "");
    assert_eq!(refused.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("\"my key\""), "{stderr}");
    // Nothing was stored under `my`.
    assert_eq!(
        stdout(&kvcli(Some(&node), &["GET", "my"], "")),
        "NOT_FOUND\n"
    );
    // PUT's value may hold blanks.
    let put = kvcli(Some(&node), &["PUT", "greeting", "hello world"], "");
    assert_eq!(stdout(&put), "OK\n");
    assert_eq!(
        stdout(&kvcli(Some(&node), &["GET", "greeting"], "")),
        "hello world\n"
    );
    let unknown = kvcli(Some(&node), &["--verbose", "GET", "greeting"], "");
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("unknown option '--verbose'"), "{stderr}");
}
