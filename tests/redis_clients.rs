//! A Redis client library nobody here wrote (the `redis` crate), in RESP2 and in RESP3, and the
//! connection commands clients and operators use: `CLIENT ...` (one client killing another)
//! and `COMMAND ...`; and the data types this server does not have answer `unknown command`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;

use common::{exchange, read_to_close, wait_until, NodeProcess};
use redis::Value;

/// A `redis` crate connection to `node`, speaking `protocol` (`resp2` or `resp3`).
fn connect(node: &NodeProcess, protocol: &str) -> redis::Connection {
    let url = format!(
        "redis://127.0.0.1:{}/?protocol={protocol}",
        node.addr.port()
    );
    redis::Client::open(url)
        .and_then(|client| client.get_connection())
        .unwrap_or_else(|e| panic!("connect with {protocol}: {e}"))
}

/// A RESP request of `words`.
fn frame(words: &[&str]) -> String {
    let mut frame = format!("*{}\r\n", words.len());
    for word in words {
        frame.push_str(&format!("${}\r\n{word}\r\n", word.len()));
    }
    frame
}

/// The whole reply of `node` to the request `words`, sent alone on a new connection.
fn reply_to(node: &NodeProcess, words: &[&str]) -> String {
    let reply = exchange(&mut node.raw(), frame(words).as_bytes());
    String::from_utf8_lossy(&reply).into_owned()
}

/// Send `words` on a raw RESP connection and read one reply line (a simple reply).
fn send(stream: &mut TcpStream, words: &[&str]) -> String {
    stream.write_all(frame(words).as_bytes()).unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

/// Send `PING` on a line-protocol connection; answers the reply line.
fn line_ping(stream: &mut TcpStream) -> String {
    stream.write_all(b"PING\n").unwrap();
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).unwrap();
    line
}

/// The `CLIENT LIST` line of the connection whose `name=` is `name`, if listed.
fn listed(conn: &mut redis::Connection, name: &str) -> Option<String> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query(conn).unwrap();
    list.lines()
        .find(|line| line.contains(&format!(" name={name} ")))
        .map(str::to_string)
}

/// The value of `field` in a `CLIENT LIST` line.
fn field<'a>(line: &'a str, field: &str) -> &'a str {
    line.split(' ')
        .find_map(|pair| pair.strip_prefix(&format!("{field}=")))
        .unwrap_or_else(|| panic!("no {field} in {line}"))
}

#[test]
fn the_redis_crate_works_in_resp2_and_resp3() {
    let node = NodeProcess::start(&[]);
    for protocol in ["resp2", "resp3"] {
        let mut conn = connect(&node, protocol);
        // Binary values: every byte, CR LF and NUL included, in keys and values.
        let key = format!("bin\r\n\0{protocol}").into_bytes();
        let value: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(&value)
            .query(&mut conn)
            .unwrap();
        let got: Vec<u8> = redis::cmd("GET").arg(&key).query(&mut conn).unwrap();
        assert_eq!(got, value, "{protocol}");
        let missing: Option<Vec<u8>> = redis::cmd("GET").arg("nobody").query(&mut conn).unwrap();
        assert_eq!(missing, None, "{protocol}: a nil");
        let counter = format!("counter-{protocol}");
        let n: i64 = redis::cmd("INCR").arg(&counter).query(&mut conn).unwrap();
        assert_eq!(n, 1);
        // A pipeline, then a MULTI/EXEC transaction.
        let (set, incr, get, nil): (String, i64, String, Option<String>) = redis::pipe()
            .cmd("SET")
            .arg("p")
            .arg("10")
            .cmd("INCRBY")
            .arg("p")
            .arg(5)
            .cmd("GET")
            .arg("p")
            .cmd("GET")
            .arg("nobody")
            .query(&mut conn)
            .unwrap();
        assert_eq!(
            (set.as_str(), incr, get.as_str(), nil),
            ("OK", 15, "15", None)
        );
        let (incr, get): (i64, String) = redis::pipe()
            .atomic()
            .cmd("INCR")
            .arg(&counter)
            .cmd("GET")
            .arg(&counter)
            .query(&mut conn)
            .unwrap();
        assert_eq!((incr, get.as_str()), (2, "2"), "{protocol}: MULTI/EXEC");
        // The connection's identity.
        let unnamed: Option<String> = redis::cmd("CLIENT")
            .arg("GETNAME")
            .query(&mut conn)
            .unwrap();
        assert_eq!(unnamed, None, "{protocol}: no name yet");
        let _: () = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(format!("app-{protocol}"))
            .query(&mut conn)
            .unwrap();
        let name: String = redis::cmd("CLIENT")
            .arg("GETNAME")
            .query(&mut conn)
            .unwrap();
        assert_eq!(name, format!("app-{protocol}"));
        let id: i64 = redis::cmd("CLIENT").arg("ID").query(&mut conn).unwrap();
        assert!(id > 0);
        let info: String = redis::cmd("CLIENT").arg("INFO").query(&mut conn).unwrap();
        assert_eq!(field(&info, "id"), id.to_string());
        assert_eq!(field(&info, "name"), format!("app-{protocol}"));
        assert_eq!(field(&info, "cmd"), "client|info");
        assert_eq!(field(&info, "resp"), &protocol[4..]);
        // The crate says who it is on connect (CLIENT SETINFO), and it shows.
        assert_eq!(field(&info, "lib-name"), "redis-rs");
        let refused = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg("two words")
            .query::<()>(&mut conn)
            .expect_err("a name with a space");
        assert!(
            refused
                .to_string()
                .contains("Client names cannot contain spaces"),
            "{refused}"
        );
    }
}

/// `COMMAND COUNT`, `COMMAND LIST` and `COMMAND INFO` over the wire, in Redis's shapes.
#[test]
fn command_describes_the_supported_commands() {
    let node = NodeProcess::start(&[]);
    let mut conn = connect(&node, "resp2");
    let count: i64 = redis::cmd("COMMAND").arg("COUNT").query(&mut conn).unwrap();
    let names: Vec<String> = redis::cmd("COMMAND").arg("LIST").query(&mut conn).unwrap();
    assert_eq!(count as usize, names.len());
    for name in ["get", "set", "incr", "client", "command", "multi", "exec"] {
        assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
    }
    let info: Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg("mset")
        .arg("lpush")
        .query(&mut conn)
        .unwrap();
    let Value::Array(items) = info else {
        panic!("{info:?}");
    };
    assert_eq!(items[1], Value::Nil, "lpush is not a command here");
    let Value::Array(mset) = &items[0] else {
        panic!("{items:?}");
    };
    assert_eq!(mset[0], Value::BulkString(b"mset".to_vec()));
    assert_eq!(&mset[1..2], &[Value::Int(-3)]);
    assert_eq!(&mset[3..6], &[Value::Int(1), Value::Int(-1), Value::Int(2)]);
    let all: Vec<Value> = redis::cmd("COMMAND").query(&mut conn).unwrap();
    assert_eq!(all.len() as i64, count);
    assert_eq!(
        reply_to(&node, &["COMMAND", "FOO"]),
        "-ERR unknown subcommand 'FOO'. Try COMMAND HELP.\r\n"
    );
}

/// Lists, hashes, sets, sorted sets, streams (and pub/sub, scripting) are not supported: each
/// answers Redis's `unknown command`, as docs/protocol.md's table says.
#[test]
fn other_data_types_answer_unknown_command() {
    let node = NodeProcess::start(&[]);
    for name in ["LPUSH", "HSET", "SADD", "ZADD", "XADD", "SUBSCRIBE", "EVAL"] {
        assert_eq!(
            reply_to(&node, &[name, "k", "v"]),
            format!("-ERR unknown command '{name}', with args beginning with: 'k' 'v'\r\n")
        );
    }
}

/// One client lists the others and kills them by id and by address: each killed connection is
/// closed at once, without a reply, and the node goes on serving everyone else.
#[test]
fn client_list_shows_every_connection_and_client_kill_closes_one() {
    let node = NodeProcess::start(&[]);
    let mut admin = connect(&node, "resp2");
    let mut victim = node.raw();
    assert_eq!(
        send(&mut victim, &["CLIENT", "SETNAME", "victim"]),
        "+OK\r\n"
    );
    let mut old_victim = node.raw();
    assert_eq!(
        send(&mut old_victim, &["CLIENT", "SETNAME", "old"]),
        "+OK\r\n"
    );
    // A line-protocol client is a client too.
    let mut line_client = node.raw();
    assert_eq!(line_ping(&mut line_client), "PONG\n");

    let line = listed(&mut admin, "victim").expect("the victim is listed");
    assert_eq!(
        field(&line, "addr"),
        victim.local_addr().unwrap().to_string()
    );
    assert_eq!(field(&line, "laddr"), node.addr.to_string());
    assert_eq!(field(&line, "cmd"), "client|setname");
    assert_eq!(field(&line, "resp"), "2");
    assert_eq!(field(&line, "flags"), "N");
    let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut admin).unwrap();
    let line_client_addr = line_client.local_addr().unwrap().to_string();
    let shown = list
        .lines()
        .find(|l| field(l, "addr") == line_client_addr)
        .expect("the line-protocol client is listed");
    assert_eq!((field(shown, "resp"), field(shown, "cmd")), ("0", "ping"));

    // New form: by id, answering how many were killed.
    let id = field(&line, "id").to_string();
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(&id)
        .query(&mut admin)
        .unwrap();
    assert_eq!(killed, 1);
    assert!(
        read_to_close(&mut victim).is_empty(),
        "closed without a reply"
    );
    wait_until("the killed client leaves CLIENT LIST", || {
        listed(&mut admin, "victim").is_none()
    });
    let again: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(&id)
        .query(&mut admin)
        .unwrap();
    assert_eq!(again, 0);

    // Old form: by address, answering OK or Redis's error.
    let old_addr = old_victim.local_addr().unwrap().to_string();
    let _: () = redis::cmd("CLIENT")
        .arg("KILL")
        .arg(&old_addr)
        .query(&mut admin)
        .unwrap();
    assert!(read_to_close(&mut old_victim).is_empty());
    wait_until("the second killed client leaves CLIENT LIST", || {
        listed(&mut admin, "old").is_none()
    });
    let gone = redis::cmd("CLIENT")
        .arg("KILL")
        .arg(&old_addr)
        .query::<()>(&mut admin)
        .expect_err("no such client any more");
    assert!(gone.to_string().contains("No such client"), "{gone}");
    let none: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ADDR")
        .arg(&old_addr)
        .query(&mut admin)
        .unwrap();
    assert_eq!(none, 0);

    // The new form skips the connection that asks unless told otherwise.
    let me: i64 = redis::cmd("CLIENT").arg("ID").query(&mut admin).unwrap();
    let skipped: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(me)
        .query(&mut admin)
        .unwrap();
    assert_eq!(skipped, 0);

    // Everyone else is still served.
    let pong: String = redis::cmd("PING").query(&mut admin).unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(line_ping(&mut line_client), "PONG\n");
    assert!(node.answers_ping());
    assert_eq!(
        reply_to(&node, &["CLIENT", "PAUSE"]),
        "-ERR unknown subcommand 'PAUSE'. Try CLIENT HELP.\r\n"
    );
}

/// redis-py from PyPI with its defaults (RESP3) parses `CLIENT INFO` and `CLIENT LIST` (it
/// turns some fields into integers) and kills a client by id with its own helpers.
#[test]
fn redis_py_reads_and_kills_clients() {
    let node = NodeProcess::start(&[]);
    let script = format!(
        r#"
import time
import redis
r = redis.Redis(port={port})
r.client_setname("py-admin")
assert r.client_getname() in (b"py-admin", "py-admin")
info = r.client_info()
assert info["id"] == r.client_id() and info["name"] == "py-admin", info
assert info["lib-name"] == "redis-py" and info["resp"] == "3", info
assert r.command_count() > 30
other = redis.Redis(port={port}, protocol=2)
other.client_setname("doomed")
assert {{c["name"]: c["resp"] for c in r.client_list()}}["doomed"] == "2"
assert r.client_kill_filter(_id=other.client_id()) == 1
deadline = time.time() + 60
while any(c["name"] == "doomed" for c in r.client_list()):
    assert time.time() < deadline, "the killed client is still listed"
    time.sleep(0.01)
print("ok")
"#,
        port = node.addr.port()
    );
    assert_eq!(common::redis_py(&script), "ok\n");
}
