//! RESP2 on the same port: real Redis tools and a Redis client library nobody here wrote.

mod common;

use std::io::Write;
use std::process::Command;

use common::{exchange, read_to_close, redis_cli, NodeProcess};

#[test]
fn redis_cli_sets_gets_and_deletes_on_a_primary() {
    let node = NodeProcess::start(&[]);
    assert_eq!(redis_cli(&node, &["SET", "name", "John Smith"]), "OK\n");
    assert_eq!(redis_cli(&node, &["GET", "name"]), "John Smith\n");
    assert_eq!(
        redis_cli(&node, &["SET", "poem", "line one\nline two"]),
        "OK\n"
    );
    assert_eq!(redis_cli(&node, &["GET", "poem"]), "line one\nline two\n");
    assert_eq!(redis_cli(&node, &["EXISTS", "name", "poem", "none"]), "2\n");
    assert_eq!(redis_cli(&node, &["DEL", "name", "none"]), "1\n");
    assert_eq!(redis_cli(&node, &["GET", "name"]), "\n", "nil");
    assert_eq!(redis_cli(&node, &["DBSIZE"]), "1\n");
    let info = redis_cli(&node, &["INFO"]);
    assert!(
        info.contains("role:primary") && info.contains("keys:1"),
        "{info}"
    );
    assert_eq!(redis_cli(&node, &["SET", "k", "v", "EX", "10"]), "OK\n");

    // The line protocol reads what RESP wrote, and says so when it cannot.
    let mut client = node.client();
    let reply = client.request(b"GET poem").unwrap();
    assert!(
        reply.starts_with(b"ERROR: a stored value contains a newline"),
        "{reply:?}"
    );
    client.put(b"plain", b"from the line protocol").unwrap();
    assert_eq!(
        redis_cli(&node, &["GET", "plain"]),
        "from the line protocol\n"
    );
}

#[test]
fn redis_cli_reads_from_a_replica_and_is_refused_writes() {
    let replica = NodeProcess::start(&["--role", "replica"]);
    let pdir = tempfile::tempdir().unwrap();
    let primary = NodeProcess::start_in(pdir.path(), &["--replica", &replica.addr.to_string()]);
    assert_eq!(redis_cli(&primary, &["SET", "multi", "a\nb"]), "OK\n");
    assert_eq!(redis_cli(&primary, &["WAIT", "1", "60000"]), "1\n");
    assert_eq!(redis_cli(&replica, &["GET", "multi"]), "a\nb\n");
    assert_eq!(
        redis_cli(&replica, &["SET", "x", "y"]).trim_end(),
        "READONLY You can't write against a read only replica."
    );
    assert!(redis_cli(&replica, &["INFO"]).contains("role:replica"));
}

#[test]
fn a_redis_client_library_pipelines_binary_values() {
    let node = NodeProcess::start(&[]);
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", node.addr.port())).unwrap();
    let mut conn = client.get_connection().unwrap();
    let binary: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("SET").arg(format!("bin{i}")).arg(&binary[i..]);
    }
    let _: () = pipe.query(&mut conn).unwrap();
    let mut pipe = redis::pipe();
    for i in 0..500 {
        pipe.cmd("GET").arg(format!("bin{i}"));
    }
    let values: Vec<Vec<u8>> = pipe.query(&mut conn).unwrap();
    for (i, value) in values.iter().enumerate() {
        assert_eq!(value, &binary[i..], "bin{i}");
    }
    let _: () = redis::cmd("MSET")
        .arg("a")
        .arg("1")
        .arg("b")
        .arg(b"\0\r\n")
        .query(&mut conn)
        .unwrap();
    let got: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
        .arg("a")
        .arg("b")
        .arg("c")
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        got,
        vec![Some(b"1".to_vec()), Some(b"\0\r\n".to_vec()), None]
    );
    let removed: i64 = redis::cmd("DEL")
        .arg("a")
        .arg("b")
        .arg("c")
        .query(&mut conn)
        .unwrap();
    assert_eq!(removed, 2);
    // Persistence carries binary values unchanged.
    drop(conn);
    node.signal("TERM");
    let dir = node.data_dir.clone();
    let mut node = node;
    assert!(node.wait_exit().success());
    let restarted = NodeProcess::start_in(&dir, &[]);
    let client =
        redis::Client::open(format!("redis://127.0.0.1:{}/", restarted.addr.port())).unwrap();
    let mut conn = client.get_connection().unwrap();
    let value: Vec<u8> = redis::cmd("GET").arg("bin7").query(&mut conn).unwrap();
    assert_eq!(value, &binary[7..]);
}

#[test]
fn malformed_resp_gets_a_protocol_error_and_the_connection_closes() {
    let node = NodeProcess::start(&["--max-value-bytes", "1024", "--max-line-bytes", "1024"]);
    let cases: [&[u8]; 5] = [
        b"*1\r\n$4\r\nPING\r\n*x\r\n",
        b"*1\r\n+PING\r\n",
        b"*-5\r\n*1\r\n$-3\r\n",
        b"*1\r\n$999999999\r\n",
        b"*2\r\n$3\r\nGET\r\n$1\r\nkXX",
    ];
    let replies: Vec<String> = cases
        .iter()
        .map(|case| String::from_utf8_lossy(&exchange(&mut node.raw(), case)).into_owned())
        .collect();
    assert_eq!(
        replies[0],
        "+PONG\r\n-ERR Protocol error: invalid multibulk length\r\n"
    );
    assert!(
        replies[1].starts_with("-ERR Protocol error: expected '$'"),
        "{}",
        replies[1]
    );
    assert!(
        replies[2].starts_with("-ERR Protocol error: invalid bulk length"),
        "{}",
        replies[2]
    );
    assert!(
        replies[3].starts_with("-ERR Protocol error: invalid bulk length"),
        "{}",
        replies[3]
    );
    assert!(
        replies[4].starts_with("-ERR Protocol error"),
        "{}",
        replies[4]
    );
    assert!(node.answers_ping());
}

#[test]
fn wait_answers_an_integer_and_a_null_array_is_skipped() {
    let node = NodeProcess::start(&[]);
    let mut stream = node.raw();
    let replies = exchange(
        &mut stream,
        b"*-1\r\n*3\r\n$4\r\nWAIT\r\n$1\r\n0\r\n$1\r\n0\r\n",
    );
    assert_eq!(String::from_utf8_lossy(&replies), ":0\r\n");
}

#[test]
fn random_and_truncated_resp_frames_never_hurt_the_node_or_other_clients() {
    let node = NodeProcess::start(&[]);
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", node.addr.port())).unwrap();
    let mut bystander = client.get_connection().unwrap();
    let _: () = redis::cmd("SET")
        .arg("steady")
        .arg("value")
        .query(&mut bystander)
        .unwrap();
    // Seeded, so a failure can be replayed.
    let mut rng = fastrand::Rng::with_seed(0x2545_f491_4f6c_dd1d);
    let valid = b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n";
    for round in 0..60 {
        let mut frame = b"*".to_vec();
        match round % 3 {
            // Valid requests cut at a random point.
            0 => frame = valid[..(rng.u64(..) as usize % valid.len()).max(1)].to_vec(),
            // Valid requests with random bytes flipped.
            1 => {
                frame = valid.to_vec();
                for _ in 0..3 {
                    let at = rng.u64(..) as usize % frame.len();
                    frame[at] = rng.u64(..) as u8;
                }
                frame[0] = b'*';
            }
            // Random bytes after a '*'.
            _ => frame.extend((0..rng.u64(..) % 2000).map(|_| rng.u64(..) as u8)),
        }
        let mut stream = node.raw();
        let _ = stream.write_all(&frame);
        if round % 2 == 0 {
            // Half close: the node answers what it can and closes.
            let _ = stream.shutdown(std::net::Shutdown::Write);
            let _ = read_to_close(&mut stream);
        }
        // Otherwise the client vanishes mid-frame.
        drop(stream);
        let value: String = redis::cmd("GET")
            .arg("steady")
            .query(&mut bystander)
            .unwrap();
        assert_eq!(value, "value", "round {round}");
    }
    assert!(node.answers_ping());
}

#[test]
fn array_replies_count_against_the_client_output_limit() {
    let node = NodeProcess::start(&[
        "--client-output-limit",
        "2097152",
        "--max-value-bytes",
        "1048576",
    ]);
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", node.addr.port())).unwrap();
    let mut conn = client.get_connection().unwrap();
    let value = vec![b'v'; 1_000_000];
    let _: () = redis::cmd("SET")
        .arg("big")
        .arg(&value)
        .query(&mut conn)
        .unwrap();
    // Three copies are 3 MB of values: over the 2 MiB limit.
    let result: redis::RedisResult<Vec<Vec<u8>>> = redis::cmd("MGET")
        .arg("big")
        .arg("big")
        .arg("big")
        .query(&mut conn);
    let error = result.expect_err("over the output limit");
    assert!(error.to_string().contains("client output limit"), "{error}");
    // Two copies are within it.
    let mut conn = client.get_connection().unwrap();
    let values: Vec<Vec<u8>> = redis::cmd("MGET")
        .arg("big")
        .arg("big")
        .query(&mut conn)
        .unwrap();
    assert_eq!(values, vec![value.clone(), value]);
}

/// Once a connection speaks RESP, a line that is not an array is an inline command, split as
/// Redis splits it (quotes included), and a blank line between frames is skipped.
#[test]
fn inline_commands_and_blank_lines_on_a_resp_connection() {
    let node = NodeProcess::start(&[]);
    let reply = exchange(
        &mut node.raw(),
        b"*1\r\n$4\r\nPING\r\n\r\nPING\r\nSET \"my key\" 'v 1'\r\n\nGET \"my key\"\r\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "+PONG\r\n+PONG\r\n+OK\r\n$3\r\nv 1\r\n"
    );
    let reply = exchange(&mut node.raw(), b"*1\r\n$4\r\nPING\r\nSET \"k v\r\n");
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "+PONG\r\n-ERR Protocol error: unbalanced quotes in request\r\n"
    );
}

/// `redis-cli --pipe`, the standard way to bulk-load Redis, loads 100,000 commands (it ends
/// its stream with a blank line and a trailer, which must not be a protocol error).
#[test]
fn redis_cli_pipe_bulk_loads() {
    let node = NodeProcess::start(&[]);
    let mut script = Vec::new();
    for n in 0..100_000 {
        let (key, value) = (format!("key:{n}"), format!("value {n}"));
        write!(
            script,
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
            key.len(),
            value.len()
        )
        .unwrap();
    }
    let mut child = Command::new("redis-cli")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &node.addr.port().to_string(),
            "--pipe",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run redis-cli (CI installs redis-tools)");
    let mut stdin = child.stdin.take().unwrap();
    let feeder = std::thread::spawn(move || stdin.write_all(&script));
    let output = child.wait_with_output().unwrap();
    feeder.join().unwrap().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}");
    assert!(stdout.contains("errors: 0, replies: 100000"), "{stdout}");
    assert_eq!(redis_cli(&node, &["GET", "key:99999"]), "value 99999\n");
    assert_eq!(redis_cli(&node, &["DBSIZE"]), "100000\n");
}

/// The read-modify-write string commands answer as Redis's do, over RESP.
#[test]
fn counters_and_string_commands_answer_as_redis_does() {
    let node = NodeProcess::start(&[]);
    let cli = |args: &[&str]| redis_cli(&node, args).trim_end().to_string();
    assert_eq!(cli(&["INCR", "hits"]), "1");
    assert_eq!(cli(&["INCRBY", "hits", "41"]), "42");
    assert_eq!(cli(&["DECR", "hits"]), "41");
    assert_eq!(cli(&["DECRBY", "hits", "50"]), "-9");
    assert_eq!(cli(&["GET", "hits"]), "-9");
    assert_eq!(cli(&["SET", "name", "kv"]), "OK");
    assert_eq!(
        cli(&["INCR", "name"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(cli(&["APPEND", "name", "store"]), "7");
    assert_eq!(cli(&["STRLEN", "name"]), "7");
    assert_eq!(cli(&["STRLEN", "none"]), "0");
    assert_eq!(cli(&["SETNX", "name", "other"]), "0");
    assert_eq!(cli(&["SETNX", "fresh", "v"]), "1");
    assert_eq!(cli(&["GETSET", "fresh", "w"]), "v");
    assert_eq!(cli(&["GETDEL", "fresh"]), "w");
    assert_eq!(cli(&["GETDEL", "fresh"]), "");
    assert_eq!(cli(&["GET", "name"]), "kvstore");
    assert_eq!(
        cli(&["INCRBY", "hits", "x"]),
        "ERR value is not an integer or out of range"
    );
    assert_eq!(cli(&["CONFIG", "GET", "appendonly"]), "appendonly\nyes");
    assert_eq!(
        cli(&["CONFIG", "GET", "appendfsync"]),
        "appendfsync\neverysec"
    );
    let maxes = cli(&["CONFIG", "GET", "MAX*"]);
    assert!(
        maxes.contains("maxmemory\n0") && maxes.contains("maxclients\n10000"),
        "{maxes}"
    );
    assert_eq!(cli(&["CONFIG", "GET", "nothing-like-it"]), "");
    assert!(
        cli(&["CONFIG", "SET", "maxmemory", "1"]).starts_with("ERR CONFIG SET is not supported")
    );
    assert_eq!(cli(&["COPY", "name", "copied"]), "1");
    assert_eq!(cli(&["COPY", "name", "copied"]), "0");
    assert_eq!(cli(&["COPY", "name", "copied", "REPLACE"]), "1");
    assert_eq!(cli(&["RENAME", "copied", "moved"]), "OK");
    assert_eq!(cli(&["GET", "copied"]), "");
    assert_eq!(cli(&["GET", "moved"]), "kvstore");
    assert_eq!(cli(&["RENAMENX", "moved", "name"]), "0");
    assert_eq!(cli(&["RENAME", "absent", "x"]), "ERR no such key");
    assert_eq!(cli(&["MSETNX", "m1", "a", "m2", "b"]), "1");
    assert_eq!(cli(&["MSETNX", "m2", "c", "m3", "d"]), "0");
    assert_eq!(cli(&["EXISTS", "m3"]), "0");
    assert_eq!(cli(&["TYPE", "name"]), "string");
    assert_eq!(cli(&["TYPE", "none"]), "none");
    assert_eq!(cli(&["UNLINK", "name", "none"]), "1");
    let time = cli(&["TIME"]);
    let seconds: u64 = time.lines().next().unwrap().parse().unwrap();
    assert!(seconds > 1_700_000_000, "{time}");
    assert_eq!(
        cli(&["INCR"]),
        "ERR wrong number of arguments for 'incr' command"
    );
}

/// `MULTI`/`EXEC` as a Redis client library sends it (an atomic pipeline), and the errors
/// Redis gives around it; redis-py's default `pipeline()` is one of these.
#[test]
fn transactions_run_their_commands_together() {
    let node = NodeProcess::start(&[]);
    let client = redis::Client::open(format!("redis://127.0.0.1:{}/", node.addr.port())).unwrap();
    let mut conn = client.get_connection().unwrap();
    let (set, count, value): (String, i64, String) = redis::pipe()
        .atomic()
        .cmd("SET")
        .arg("counter")
        .arg("10")
        .cmd("INCRBY")
        .arg("counter")
        .arg(5)
        .cmd("GET")
        .arg("counter")
        .query(&mut conn)
        .unwrap();
    assert_eq!((set.as_str(), count, value.as_str()), ("OK", 15, "15"));
    let reply = exchange(
        &mut node.raw(),
        b"*1\r\n$4\r\nEXEC\r\n*1\r\n$5\r\nMULTI\r\n*1\r\n$3\r\nGET\r\n*1\r\n$4\r\nEXEC\r\n\
          *1\r\n$5\r\nMULTI\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*1\r\n$7\r\nDISCARD\r\n\
          *2\r\n$3\r\nGET\r\n$1\r\nk\r\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "-ERR EXEC without MULTI\r\n+OK\r\n\
         -ERR wrong number of arguments for 'get' command\r\n\
         -EXECABORT Transaction discarded because of previous errors.\r\n\
         +OK\r\n+QUEUED\r\n+OK\r\n$-1\r\n"
    );
}

/// On a replica a transaction that writes is refused whole: the write is refused as it is
/// queued, and `EXEC` then aborts.
#[test]
fn a_transaction_that_writes_is_refused_whole_on_a_replica() {
    let replica = NodeProcess::start(&["--role", "replica"]);
    let reply = exchange(
        &mut replica.raw(),
        b"*1\r\n$5\r\nMULTI\r\n*2\r\n$3\r\nGET\r\n$1\r\na\r\n*3\r\n$3\r\nSET\r\n$1\r\na\r\n$1\r\n1\r\n\
          *1\r\n$4\r\nEXEC\r\n",
    );
    assert_eq!(
        String::from_utf8_lossy(&reply),
        "+OK\r\n+QUEUED\r\n-READONLY You can't write against a read only replica.\r\n\
         -EXECABORT Transaction discarded because of previous errors.\r\n"
    );
}

/// `HELLO 3` switches the connection to RESP3 (maps, `_` nulls), as current clients open
/// (redis-py 5+, the redis crate with `protocol=resp3`); `HELLO 2` and no `HELLO` stay RESP2.
#[test]
fn hello_3_switches_to_resp3() {
    let node = NodeProcess::start(&[]);
    let reply = exchange(
        &mut node.raw(),
        b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*2\r\n$3\r\nGET\r\n$7\r\nmissing\r\n\
          *4\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$4\r\nAUTH\r\n$1\r\nu\r\n",
    );
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.starts_with("%7\r\n$6\r\nserver\r\n$7\r\nkvstore\r\n"),
        "{text}"
    );
    assert!(text.contains("$5\r\nproto\r\n:3\r\n"), "{text}");
    assert!(
        text.contains("_\r\n-ERR Syntax error in HELLO option 'auth'"),
        "{text}"
    );
    let reply = exchange(
        &mut node.raw(),
        b"*2\r\n$5\r\nHELLO\r\n$1\r\n2\r\n*2\r\n$3\r\nGET\r\n$7\r\nmissing\r\n",
    );
    let text = String::from_utf8_lossy(&reply);
    assert!(text.starts_with("*14\r\n"), "{text}");
    assert!(text.ends_with("$-1\r\n"), "{text}");
    let reply = exchange(&mut node.raw(), b"*2\r\n$5\r\nHELLO\r\n$1\r\n4\r\n");
    assert!(String::from_utf8_lossy(&reply).starts_with("-NOPROTO"));

    let url = format!("redis://127.0.0.1:{}/?protocol=resp3", node.addr.port());
    let client = redis::Client::open(url).unwrap();
    let mut conn = client.get_connection().unwrap();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    let value: Option<String> = redis::cmd("GET").arg("k").query(&mut conn).unwrap();
    assert_eq!(value.as_deref(), Some("v"));
    let missing: Option<String> = redis::cmd("GET").arg("nope").query(&mut conn).unwrap();
    assert_eq!(missing, None);

    // HELLO's SETNAME names the connection, as CLIENT SETNAME does, and is checked the same.
    let reply = exchange(
        &mut node.raw(),
        b"*4\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$7\r\nSETNAME\r\n$6\r\nworker\r\n\
          *2\r\n$6\r\nCLIENT\r\n$7\r\nGETNAME\r\n\
          *4\r\n$5\r\nHELLO\r\n$1\r\n3\r\n$7\r\nSETNAME\r\n$3\r\na b\r\n",
    );
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.contains("$6\r\nworker\r\n-ERR Client names cannot contain"),
        "{text}"
    );
}

/// redis-py from PyPI with its defaults (it opens with `HELLO 3`; `pipeline()` is a
/// MULTI/EXEC transaction), as a new user would run it. CI installs it in a virtual
/// environment (`.ci/run`); the interpreter is `KV_REDIS_PY`, or `target/pyenv/bin/python`.
#[test]
fn redis_py_from_pypi_works_with_its_defaults() {
    let node = NodeProcess::start(&[]);
    let script = format!(
        r#"
import redis
r = redis.Redis(port={port})
assert r.ping()
assert r.set("a", "1")
assert r.incr("a") == 2
p = r.pipeline()
p.set("b", 1)
p.incr("b")
p.get("b")
assert p.execute() == [True, 2, b"2"], "pipeline"
assert r.info()["role"] == "primary"
assert r.set("s", "v", ex=100)
assert r.ttl("s") == 100
assert r.expire("s", 50, lt=True) and 0 < r.pttl("s") <= 50000
assert r.set("s", "w", keepttl=True, get=True) == b"v" and r.ttl("s") == 50
assert r.getex("s", persist=True) == b"w" and r.ttl("s") == -1
assert r.set("n", "v", px=1, nx=True) and r.set("gone", "v", exat=1)
assert r.get("gone") is None and r.ttl("gone") == -2
print("ok", redis.__version__)
"#,
        port = node.addr.port()
    );
    let stdout = common::redis_py(&script);
    assert!(stdout.starts_with("ok "), "{stdout}");
}
