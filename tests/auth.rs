//! Client authentication, spoken to real `kvnode` processes in both protocols: nothing but
//! logging in (or leaving) before a login, `--requirepass` from a flag, a file or the
//! environment, named users with their rights, `HELLO 3 AUTH`, failed logins slowed down and
//! logged without holding up anyone else, and the users file reloaded by `ACL LOAD`.
//! (`auth_clients.rs`: redis-cli, redis-py, kvcli, kvbench and replication with passwords.)

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::{exchange, NodeProcess};

/// `--requirepass`'s password in these tests.
const PASS: &str = "s3cret-pw";

/// A RESP request of `words`.
fn resp(words: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", words.len()).into_bytes();
    for word in words {
        out.extend_from_slice(format!("${}\r\n{word}\r\n", word.len()).as_bytes());
    }
    out
}

/// Several RESP requests, pipelined.
fn resp_all(requests: &[&[&str]]) -> Vec<u8> {
    requests.iter().flat_map(|words| resp(words)).collect()
}

/// Send `requests` on a new connection to `node`, and everything it answers until it closes.
fn talk(node: &NodeProcess, requests: &[u8]) -> String {
    String::from_utf8(exchange(&mut node.raw(), requests)).unwrap()
}

/// A users file in `dir` with `users` (name, rights, password), hashed by `kvnode
/// hash-password`, as an operator makes one.
fn users_file(dir: &Path, users: &[(&str, &str, &str)]) -> PathBuf {
    let path = dir.join("users");
    let mut text = String::from("# name rights hash\n");
    for (name, rights, password) in users {
        text.push_str(&hash_line(name, rights, password));
        text.push('\n');
    }
    std::fs::write(&path, text).unwrap();
    path
}

/// `kvnode hash-password --user name --rights rights`, the password on its stdin.
fn hash_line(name: &str, rights: &str, password: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_kvnode"))
        .args(["hash-password", "--user", name, "--rights", rights])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let line = String::from_utf8(output.stdout)
        .unwrap()
        .trim_end()
        .to_string();
    assert!(
        line.starts_with(&format!("{name} {rights} $argon2id$")),
        "{line}"
    );
    assert!(!line.contains(password));
    line
}

/// A node with three users: `reader` (read), `app` (read, write), `ops` (every right).
fn node_with_users() -> (tempfile::TempDir, PathBuf, NodeProcess) {
    let dir = tempfile::tempdir().unwrap();
    let users = users_file(
        dir.path(),
        &[
            ("reader", "read", "reader-pw"),
            ("app", "read,write", "app-pw"),
            ("ops", "all", "ops-pw"),
        ],
    );
    let node = NodeProcess::start(&["--users-file", users.to_str().unwrap()]);
    (dir, users, node)
}

#[test]
fn before_a_login_everything_but_auth_hello_and_quit_answers_noauth_in_both_protocols() {
    let node = NodeProcess::start(&["--requirepass", PASS]);
    // The line protocol; the requests after AUTH, in the same write, run logged in.
    let replies = talk(
        &node,
        format!("PUT a 1\nPING\nACL WHOAMI\nAUTH wrong\nAUTH {PASS}\nPUT a 1\nGET a\nACL WHOAMI\nEXIT\n")
            .as_bytes(),
    );
    let noauth = "ERROR: NOAUTH: authentication required\n";
    assert_eq!(
        replies,
        format!(
            "{noauth}{noauth}{noauth}\
             ERROR: WRONGPASS: invalid username-password pair or user is disabled\n\
             OK\nOK\n1\ndefault\nGoodbye\n"
        )
    );
    // RESP, in Redis's words.
    let replies = talk(
        &node,
        &resp_all(&[
            &["GET", "a"],
            &["MULTI"],
            &["HELLO", "3"],
            &["AUTH", "default", PASS],
            &["GET", "a"],
            &["QUIT"],
        ]),
    );
    assert_eq!(
        replies,
        "-NOAUTH Authentication required.\r\n-NOAUTH Authentication required.\r\n\
         -NOAUTH HELLO must be called with the client already authenticated, otherwise the \
         HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
         select the RESP protocol version at the same time\r\n+OK\r\n$1\r\n1\r\n+OK\r\n"
    );
    // QUIT needs no login.
    assert_eq!(talk(&node, &resp(&["QUIT"])), "+OK\r\n");
    // A node without a password answers AUTH as Redis does, and lets everyone in.
    let open = NodeProcess::start(&[]);
    assert_eq!(
        talk(
            &open,
            &resp_all(&[&["AUTH", "x"], &["AUTH", "default", "x"], &["PING"]])
        ),
        "-ERR AUTH <password> called without any password configured for the default user. \
         Are you sure your configuration is correct?\r\n+OK\r\n+PONG\r\n"
    );
    assert_eq!(
        talk(&open, b"AUTH x\nPING\n"),
        "ERROR: AUTH: this node has no password (see --requirepass and --users-file)\nPONG\n"
    );
}

#[test]
fn each_user_runs_what_its_rights_allow() {
    let (_dir, _users, node) = node_with_users();
    let replies = talk(
        &node,
        b"AUTH reader reader-pw\nGET k\nPUT k v\nINFO\nACL WHOAMI\nAUTH reader-pw\nAUTH nobody x\n",
    );
    assert_eq!(
        replies,
        "OK\nNOT_FOUND\n\
         ERROR: NOPERM: user reader has no permission to run 'set' (it needs the write right)\n\
         ERROR: NOPERM: user reader has no permission to run 'info' (it needs the admin right)\n\
         reader\n\
         ERROR: WRONGPASS: invalid username-password pair or user is disabled\n\
         ERROR: WRONGPASS: invalid username-password pair or user is disabled\n"
    );
    // A writer writes, but runs no admin command; one refused inside MULTI aborts it.
    let noperm = |command: &str| {
        format!("-NOPERM User app has no permissions to run the '{command}' command\r\n")
    };
    let replies = talk(
        &node,
        &resp_all(&[
            &["AUTH", "app", "app-pw"],
            &["SET", "k", "v"],
            &["GETSET", "k", "w"],
            &["FLUSHALL"],
            &["CONFIG", "GET", "maxmemory"],
            &["CLIENT", "LIST"],
            &["DIGEST"],
            &["MULTI"],
            &["SET", "k", "x"],
            &["INFO"],
            &["EXEC"],
            &["GET", "k"],
        ]),
    );
    let expected = [
        "+OK\r\n+OK\r\n$1\r\nv\r\n".to_string(),
        noperm("flushall"),
        noperm("config|get"),
        noperm("client|list"),
        noperm("digest"),
        "+OK\r\n+QUEUED\r\n".into(),
        noperm("info"),
        "-EXECABORT Transaction discarded because of previous errors.\r\n$1\r\nw\r\n".into(),
    ]
    .concat();
    assert_eq!(replies, expected);
    // An administrator sees who is connected as whom, and can close them.
    let mut app = node.raw();
    app.write_all(b"AUTH app app-pw\n").unwrap();
    let mut app_reader = BufReader::new(app.try_clone().unwrap());
    let mut line = String::new();
    app_reader.read_line(&mut line).unwrap();
    assert_eq!(line, "OK\n");
    let replies = talk(
        &node,
        &resp_all(&[
            &["AUTH", "ops", "ops-pw"],
            &["CLIENT", "KILL", "USER", "app"],
            &["FLUSHALL"],
        ]),
    );
    // (The connection of the earlier exchange may not have left the registry yet.)
    assert!(
        replies == "+OK\r\n:1\r\n+OK\r\n" || replies == "+OK\r\n:2\r\n+OK\r\n",
        "{replies}"
    );
    line.clear();
    assert_eq!(
        app_reader.read_line(&mut line).unwrap(),
        0,
        "app was closed"
    );
}

#[test]
fn hello_logs_in_as_it_picks_the_protocol() {
    let (_dir, _users, node) = node_with_users();
    let replies = talk(
        &node,
        &resp_all(&[
            &["HELLO", "3", "AUTH", "app", "wrong"],
            &["HELLO", "3", "AUTH", "app", "app-pw", "SETNAME", "worker"],
            &["GET", "missing"],
            &["CLIENT", "GETNAME"],
            &["ACL", "WHOAMI"],
        ]),
    );
    let (refused, rest) = replies.split_once("\r\n").unwrap();
    assert_eq!(
        refused,
        "-WRONGPASS invalid username-password pair or user is disabled."
    );
    assert!(rest.starts_with("%7\r\n$6\r\nserver\r\n"), "{rest}");
    assert!(
        rest.ends_with("_\r\n$6\r\nworker\r\n$3\r\napp\r\n"),
        "RESP3 from HELLO's reply on: {rest}"
    );
    let replies = talk(&node, &resp(&["HELLO", "2", "AUTH", "ops", "ops-pw"]));
    assert!(replies.starts_with("*14\r\n"), "{replies}");
    // An unknown protocol is refused before the password is looked at.
    let replies = talk(&node, &resp(&["HELLO", "4", "AUTH", "ops", "wrong"]));
    assert_eq!(replies, "-NOPROTO unsupported protocol version\r\n");
}

#[test]
fn failed_logins_are_slowed_down_and_logged_without_holding_up_anyone_else() {
    let node = NodeProcess::start(&["--requirepass", PASS]);
    let mut guesser = node.raw();
    let port = guesser.local_addr().unwrap().port();
    let mut replies = BufReader::new(guesser.try_clone().unwrap());
    let sent = Instant::now();
    guesser
        .write_all(b"AUTH guess-1\nAUTH guess-2\nAUTH guess-3\nAUTH guess-4\n")
        .unwrap();
    // Meanwhile another client logs in and is answered at once: the waits hold no thread.
    let other = {
        let addr = node.addr.to_string();
        thread::spawn(move || {
            let mut client = kvstore::client::Client::connect(&addr, common::DEADLINE).unwrap();
            client
                .auth(&kvstore::client::Credentials::new(None, PASS))
                .unwrap();
            client.ping().unwrap();
            Instant::now()
        })
    };
    let mut answered = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        replies.read_line(&mut line).unwrap();
        assert!(line.starts_with("ERROR: WRONGPASS"), "{line}");
        answered.push(sent.elapsed());
    }
    // The address's failures slow its next logins, right or wrong, node-wide: none before
    // the first, then 100 ms, twice as long each time: 0 + 100 + 200 + 400.
    assert!(answered[1] >= Duration::from_millis(100), "{answered:?}");
    assert!(answered[3] >= Duration::from_millis(700), "{answered:?}");
    let other_done = other.join().unwrap();
    assert!(
        other_done < sent + answered[3],
        "the other client waited for the guesser"
    );
    // The first failure and each doubling are logged with the guesser's address (a guesser
    // cannot flood the log); no password is.
    let peer = format!("peer: 127.0.0.1:{port}");
    node.wait_for_log("recent_failures_of_this_address: 4");
    let log = node.log();
    let failures = log
        .lines()
        .filter(|l| l.contains("authentication failed") && l.contains(&peer))
        .count();
    assert_eq!(failures, 3, "{log}");

    // A new connection from the same address is slowed as well: a guesser gains nothing by
    // opening one per guess, nor by closing it when no answer came at once.
    let started = Instant::now();
    assert!(talk(
        &node,
        b"AUTH guess-5
"
    )
    .starts_with("ERROR: WRONGPASS"));
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert!(!log.contains("guess-") && !log.contains(PASS), "{log}");
}

/// Whether `pid`'s command line contains `text` (what `ps` shows).
fn command_line_shows(pid: u32, text: &str) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    String::from_utf8_lossy(&cmdline).contains(text)
}

#[test]
fn the_password_can_come_from_a_file_or_the_environment_and_stays_out_of_ps() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("requirepass");
    std::fs::write(&file, format!("{PASS}\n")).unwrap();
    let from_file = NodeProcess::start(&["--requirepass-file", file.to_str().unwrap()]);
    let env = [("KVSTORE_REQUIREPASS", PASS)];
    let data = tempfile::tempdir().unwrap();
    let from_env = NodeProcess::try_start_with("127.0.0.1:0", data.path(), &[], &env).unwrap();
    for node in [&from_file, &from_env] {
        assert_eq!(
            talk(node, format!("PING\nAUTH {PASS}\nPING\n").as_bytes()),
            "ERROR: NOAUTH: authentication required\nOK\nPONG\n"
        );
        assert!(!command_line_shows(node.pid(), PASS));
    }
    // The flag and the file together are a mistake, refused at start.
    let both = [
        "--requirepass",
        PASS,
        "--requirepass-file",
        file.to_str().unwrap(),
    ];
    assert!(NodeProcess::try_start_in(data.path(), &both).is_err());
    // So is a users file with a mistake, which names its line.
    std::fs::write(dir.path().join("users"), "app read not-a-hash\n").unwrap();
    let users = dir.path().join("users");
    let failure =
        NodeProcess::try_start_in(data.path(), &["--users-file", users.to_str().unwrap()])
            .err()
            .expect("a users file with a mistake stops the start");
    assert!(failure.log.contains("line 1"), "{}", failure.log);
}

#[test]
fn acl_load_puts_the_users_file_in_force_for_connections_already_logged_in() {
    let (dir, users, node) = node_with_users();
    let mut app = node.client();
    assert_eq!(app.request(b"AUTH app app-pw").unwrap(), b"OK");
    let mut reader = node.client();
    assert_eq!(reader.request(b"AUTH reader reader-pw").unwrap(), b"OK");
    assert!(reader
        .request(b"ACL LOAD")
        .unwrap()
        .starts_with(b"ERROR: NOPERM: user reader has no permission to run 'acl|load'"));
    // The app loses its writes, and the reader is gone.
    let text = [
        hash_line("app", "read", "app-pw"),
        hash_line("ops", "all", "ops-pw"),
    ]
    .join("\n");
    std::fs::write(&users, text).unwrap();
    let load = talk(
        &node,
        &resp_all(&[&["AUTH", "ops", "ops-pw"], &["ACL", "LOAD"]]),
    );
    assert_eq!(load, "+OK\r\n+OK\r\n");
    assert!(app
        .request(b"PUT k v")
        .unwrap()
        .starts_with(b"ERROR: NOPERM"));
    assert_eq!(app.request(b"GET k").unwrap(), b"NOT_FOUND");
    assert_eq!(
        reader.request(b"GET k").unwrap(),
        b"ERROR: NOAUTH: authentication required"
    );
    node.wait_for_log("users file reloaded (ACL LOAD)");
    // A file with a mistake changes nothing, and says why (over the line protocol too).
    std::fs::write(&users, "app sideways x\n").unwrap();
    let mut ops = node.client();
    assert_eq!(ops.request(b"AUTH ops ops-pw").unwrap(), b"OK");
    let refused = String::from_utf8(ops.request(b"ACL LOAD").unwrap()).unwrap();
    assert!(
        refused.starts_with("ERROR: ACL LOAD failed: the users file")
            && refused.contains("line 1")
            && refused.ends_with("the users in force are unchanged"),
        "{refused}"
    );
    assert_eq!(app.request(b"GET k").unwrap(), b"NOT_FOUND");
    drop(dir);
}
