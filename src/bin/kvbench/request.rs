//! Requests, encoded straight into the buffer a connection writes.
//!
//! A batch of requests goes out with one write, so each request is appended to a reused
//! buffer instead of being built on its own: the hot loop allocates nothing.

use std::io::Write as _;

use crate::args::Proto;

/// Append one request for key `key:<key>` to `buf`: with `Proto::Line` the line
/// `PUT key:<n> <value>` or `GET key:<n>`; with `Proto::Resp` the array
/// `*3 $3 SET $<len> key:<n> $<len> <value>` or `*2 $3 GET $<len> key:<n>`. A GET ends with
/// `after`, the words of its position wait as [`after_words`] encodes them (none if empty).
pub fn push_request(
    buf: &mut Vec<u8>,
    proto: Proto,
    put: bool,
    key: u64,
    value: &[u8],
    after: &[u8],
) {
    // Writing into a Vec cannot fail, hence the `let _` on each write!.
    match proto {
        Proto::Line => {
            buf.extend_from_slice(if put { b"PUT key:" } else { b"GET key:" });
            let _ = write!(buf, "{key}");
            if put {
                buf.push(b' ');
                buf.extend_from_slice(value);
            } else {
                buf.extend_from_slice(after);
            }
            buf.push(b'\n');
        }
        Proto::Resp => {
            buf.extend_from_slice(match (put, after.is_empty()) {
                (true, _) => b"*3\r\n$3\r\nSET\r\n",
                (false, true) => b"*2\r\n$3\r\nGET\r\n",
                (false, false) => b"*5\r\n$3\r\nGET\r\n",
            });
            let digits = key.checked_ilog10().map_or(1, |d| d + 1);
            let _ = write!(buf, "${}\r\nkey:{key}\r\n", 4 + digits);
            if put {
                push_bulk(buf, value);
            } else {
                buf.extend_from_slice(after);
            }
        }
    }
}

/// The words `AFTER <token> <timeout-ms>` that end a GET which waits for a position, encoded
/// once for every [`push_request`]: a line's, after a blank; RESP's, as three bulk strings.
pub fn after_words(proto: Proto, token: &str, timeout_ms: u64) -> Vec<u8> {
    let timeout = timeout_ms.to_string();
    let mut words = Vec::new();
    match proto {
        Proto::Line => {
            let _ = write!(words, " AFTER {token} {timeout}");
        }
        Proto::Resp => {
            for word in [&b"AFTER"[..], token.as_bytes(), timeout.as_bytes()] {
                push_bulk(&mut words, word);
            }
        }
    }
    words
}

/// The verb that writes a key: `PUT` in the line protocol, `SET` over RESP.
pub fn set_verb(proto: Proto) -> &'static [u8] {
    match proto {
        Proto::Line => b"PUT",
        Proto::Resp => b"SET",
    }
}

/// Append one command made of `words` to `buf`: the words joined by blanks on one line, or
/// an array of bulk strings. For the cycles' and the lag probe's requests, which are not on
/// the hot path of a pipelined load.
pub fn push_command(buf: &mut Vec<u8>, proto: Proto, words: &[&[u8]]) {
    match proto {
        Proto::Line => {
            for (i, word) in words.iter().enumerate() {
                if i > 0 {
                    buf.push(b' ');
                }
                buf.extend_from_slice(word);
            }
            buf.push(b'\n');
        }
        Proto::Resp => {
            let _ = write!(buf, "*{}\r\n", words.len());
            for word in words {
                push_bulk(buf, word);
            }
        }
    }
}

/// Append `bytes` as one RESP bulk string.
fn push_bulk(buf: &mut Vec<u8>, bytes: &[u8]) {
    let _ = write!(buf, "${}\r\n", bytes.len());
    buf.extend_from_slice(bytes);
    buf.extend_from_slice(b"\r\n");
}

/// Put one request of the lag probe (a SET/PUT when there is a value, else a GET) in `buf`.
pub fn push_probe(buf: &mut Vec<u8>, proto: Proto, key: &str, value: Option<&str>) {
    buf.clear();
    match value {
        Some(value) => {
            let words = [set_verb(proto), key.as_bytes(), value.as_bytes()];
            push_command(buf, proto, &words);
        }
        None => push_command(buf, proto, &[b"GET", key.as_bytes()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes `push_request` appends to an empty buffer.
    fn request(proto: Proto, put: bool, key: u64, value: &[u8]) -> String {
        let mut buf = Vec::new();
        push_request(&mut buf, proto, put, key, value, b"");
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn a_line_put_or_get_is_one_line() {
        assert_eq!(request(Proto::Line, true, 7, b"xx"), "PUT key:7 xx\n");
        assert_eq!(request(Proto::Line, false, 7, b"xx"), "GET key:7\n");
    }

    #[test]
    fn a_resp_set_or_get_is_an_array_of_bulk_strings() {
        assert_eq!(
            request(Proto::Resp, true, 7, b"xx"),
            "*3\r\n$3\r\nSET\r\n$5\r\nkey:7\r\n$2\r\nxx\r\n"
        );
        assert_eq!(
            request(Proto::Resp, false, 7, b"xx"),
            "*2\r\n$3\r\nGET\r\n$5\r\nkey:7\r\n"
        );
    }

    #[test]
    fn a_resp_key_length_counts_every_digit_of_the_key_number() {
        for key in [0, 9, 10, 99_999, u64::MAX] {
            let name = format!("key:{key}");
            let expected = format!("*2\r\n$3\r\nGET\r\n${}\r\n{name}\r\n", name.len());
            assert_eq!(request(Proto::Resp, false, key, b""), expected);
        }
    }

    #[test]
    fn requests_append_so_that_a_batch_is_one_buffer() {
        let mut buf = Vec::new();
        push_request(&mut buf, Proto::Line, false, 1, b"", b"");
        push_request(&mut buf, Proto::Line, false, 2, b"", b"");
        assert_eq!(buf, b"GET key:1\nGET key:2\n");
    }

    #[test]
    fn a_get_with_a_position_wait_ends_with_its_after_words() {
        let mut buf = Vec::new();
        let after = after_words(Proto::Line, "0:ab:12", 1000);
        push_request(&mut buf, Proto::Line, false, 7, b"", &after);
        push_request(&mut buf, Proto::Line, true, 7, b"v", &after);
        assert_eq!(buf, b"GET key:7 AFTER 0:ab:12 1000\nPUT key:7 v\n");
        buf.clear();
        let after = after_words(Proto::Resp, "0:ab:12", 1000);
        push_request(&mut buf, Proto::Resp, false, 7, b"", &after);
        let expected =
            "*5\r\n$3\r\nGET\r\n$5\r\nkey:7\r\n$5\r\nAFTER\r\n$7\r\n0:ab:12\r\n$4\r\n1000\r\n";
        assert_eq!(String::from_utf8(buf).unwrap(), expected);
    }

    #[test]
    fn a_command_is_a_line_of_words_or_an_array_of_bulk_strings() {
        let mut buf = Vec::new();
        push_command(&mut buf, Proto::Line, &[b"WAIT", b"1", b"1000"]);
        assert_eq!(buf, b"WAIT 1 1000\n");
        buf.clear();
        push_command(&mut buf, Proto::Resp, &[b"LASTPOS"]);
        assert_eq!(buf, b"*1\r\n$7\r\nLASTPOS\r\n");
    }

    #[test]
    fn a_probe_request_replaces_the_previous_one() {
        let mut buf = b"stale".to_vec();
        push_probe(&mut buf, Proto::Line, "__lag:3", Some("v"));
        assert_eq!(buf, b"PUT __lag:3 v\n");
        push_probe(&mut buf, Proto::Resp, "__lag:3", None);
        assert_eq!(buf, b"*2\r\n$3\r\nGET\r\n$7\r\n__lag:3\r\n");
        push_probe(&mut buf, Proto::Resp, "__lag:3", Some("v"));
        assert_eq!(buf, b"*3\r\n$3\r\nSET\r\n$7\r\n__lag:3\r\n$1\r\nv\r\n");
    }
}
