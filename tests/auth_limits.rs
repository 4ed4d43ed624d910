//! Before it logs in, a connection to a node with a password may send only small requests, as
//! Redis holds unauthenticated clients: over RESP at most 10 arguments of at most 16 KiB each,
//! over the line protocol lines of at most 16 KiB. Anything bigger is answered with an error
//! and the connection closed, so someone without the password cannot make the node hold more
//! than a few KiB per connection. Once logged in, the node's own limits apply again.

mod common;

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

/// Send `requests` on a new connection to `node`; answers everything it replies until it
/// closes.
fn talk(node: &NodeProcess, requests: &[u8]) -> String {
    String::from_utf8(exchange(&mut node.raw(), requests)).unwrap()
}

#[test]
fn before_login_resp_takes_at_most_ten_arguments() {
    let node = NodeProcess::start(&["--requirepass", PASS]);
    let ten = ["DEL", "a", "b", "c", "d", "e", "f", "g", "h", "i"];
    let eleven = ["DEL", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j"];
    // Ten arguments are read (and refused for want of a login, as any command would be).
    let mut requests = resp(&ten);
    requests.extend(resp(&eleven));
    requests.extend(resp(&["PING"]));
    assert_eq!(
        talk(&node, &requests),
        "-NOAUTH Authentication required.\r\n\
         -ERR Protocol error: unauthenticated multibulk length\r\n",
        "the request of eleven closes the connection: the PING after it is never read"
    );
    let mut login = resp(&["AUTH", PASS]);
    login.extend(resp(&["PING"]));
    assert_eq!(
        talk(&node, &login),
        "+OK\r\n+PONG\r\n",
        "others are unaffected"
    );
}

#[test]
fn before_login_a_resp_value_over_16_kib_closes_the_connection() {
    let node = NodeProcess::start(&["--requirepass", PASS]);
    let at_limit = "v".repeat(16 * 1024);
    let over = "v".repeat(16 * 1024 + 1);
    let mut requests = resp(&["SET", "k", &at_limit]);
    requests.extend(resp(&["SET", "k", &over]));
    assert_eq!(
        talk(&node, &requests),
        "-NOAUTH Authentication required.\r\n\
         -ERR Protocol error: unauthenticated bulk length\r\n"
    );
    // Refused on its header: the node never waits for (or holds) the value.
    let mut stream = node.raw();
    let header = b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$536870912\r\n";
    assert_eq!(
        String::from_utf8(exchange(&mut stream, header)).unwrap(),
        "-ERR Protocol error: unauthenticated bulk length\r\n"
    );
}

#[test]
fn before_login_a_line_over_16_kib_closes_the_connection() {
    let node = NodeProcess::start(&["--requirepass", PASS]);
    let at_limit = format!("PUT k {}\n", "v".repeat(16 * 1024 - 6));
    let over = format!("PUT k {}\n", "v".repeat(16 * 1024 - 5));
    assert_eq!(
        talk(&node, format!("{at_limit}{over}PING\n").as_bytes()),
        "ERROR: NOAUTH: authentication required\n\
         ERROR: line too long before login (limit 16384 bytes until AUTH); closing the connection\n"
    );
    // A line that never ends is refused once it passes the limit, not at the node's own.
    let endless = "v".repeat(64 * 1024);
    assert_eq!(
        talk(&node, endless.as_bytes()),
        "ERROR: line too long before login (limit 16384 bytes until AUTH); closing the connection\n"
    );
}

#[test]
fn after_login_big_requests_are_taken_in_both_protocols() {
    let node = NodeProcess::start(&["--requirepass", PASS]);
    let big = "b".repeat(1024 * 1024);
    // The login and what follows it in the same write: what follows is read as logged in.
    let mut requests = resp(&["AUTH", PASS]);
    requests.extend(resp(&["SET", "big", &big]));
    requests.extend(resp(&[
        "MSET", "a", "1", "b", "2", "c", "3", "d", "4", "e", "5", "f", "6",
    ]));
    requests.extend(resp(&["STRLEN", "big"]));
    assert_eq!(talk(&node, &requests), "+OK\r\n+OK\r\n+OK\r\n:1048576\r\n");
    // (The line protocol's own limit is 1 MiB a line.)
    let big_line = &big[..512 * 1024];
    let line = format!("AUTH {PASS}\nPUT line {big_line}\nGET line\n");
    let replies = talk(&node, line.as_bytes());
    assert!(
        replies == format!("OK\nOK\n{big_line}\n"),
        "{:?}",
        &replies[..replies.len().min(200)]
    );
    // A failed login leaves the small limits in force.
    let mut requests = resp(&["AUTH", "wrong"]);
    requests.extend(resp(&["SET", "big", &big]));
    assert_eq!(
        talk(&node, &requests),
        "-WRONGPASS invalid username-password pair or user is disabled.\r\n\
         -ERR Protocol error: unauthenticated bulk length\r\n"
    );
}

#[test]
fn without_a_password_big_requests_are_taken_from_the_first_byte() {
    let node = NodeProcess::start(&[]);
    let big = "b".repeat(1024 * 1024);
    let mut requests = resp(&["SET", "big", &big]);
    requests.extend(resp(&["STRLEN", "big"]));
    assert_eq!(talk(&node, &requests), "+OK\r\n:1048576\r\n");
    let line = format!("PUT line {}\nEXIT\n", &big[..512 * 1024]);
    assert_eq!(talk(&node, line.as_bytes()), "OK\nGoodbye\n");
}
