//! Requests, encoded straight into the buffer a connection writes.
//!
//! A batch of requests goes out with one write, so each request is appended to a reused
//! buffer instead of being built on its own: the hot loop allocates nothing.

use std::io::Write as _;

use crate::args::Proto;

/// Append one request for key `key:<key>` to `buf`: with `Proto::Line` the line
/// `PUT key:<n> <value>` or `GET key:<n>`; with `Proto::Resp` the array
/// `*3 $3 SET $<len> key:<n> $<len> <value>` or `*2 $3 GET $<len> key:<n>`.
pub fn push_request(buf: &mut Vec<u8>, proto: Proto, put: bool, key: u64, value: &[u8]) {
    // Writing into a Vec cannot fail, hence the `let _` on each write!.
    match proto {
        Proto::Line => {
            buf.extend_from_slice(if put { b"PUT key:" } else { b"GET key:" });
            let _ = write!(buf, "{key}");
            if put {
                buf.push(b' ');
                buf.extend_from_slice(value);
            }
            buf.push(b'\n');
        }
        Proto::Resp => {
            buf.extend_from_slice(if put {
                b"*3\r\n$3\r\nSET\r\n"
            } else {
                b"*2\r\n$3\r\nGET\r\n"
            });
            let digits = key.checked_ilog10().map_or(1, |d| d + 1);
            let _ = write!(buf, "${}\r\nkey:{key}\r\n", 4 + digits);
            if put {
                let _ = write!(buf, "${}\r\n", value.len());
                buf.extend_from_slice(value);
                buf.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// Put one request of the lag probe (a SET/PUT when there is a value, else a GET) in `buf`.
pub fn push_probe(buf: &mut Vec<u8>, proto: Proto, key: &str, value: Option<&str>) {
    buf.clear();
    let _ = match (proto, value) {
        (Proto::Line, Some(value)) => writeln!(buf, "PUT {key} {value}"),
        (Proto::Line, None) => writeln!(buf, "GET {key}"),
        (Proto::Resp, Some(value)) => write!(
            buf,
            "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{value}\r\n",
            key.len(),
            value.len()
        ),
        (Proto::Resp, None) => write!(buf, "*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes `push_request` appends to an empty buffer.
    fn request(proto: Proto, put: bool, key: u64, value: &[u8]) -> String {
        let mut buf = Vec::new();
        push_request(&mut buf, proto, put, key, value);
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
        push_request(&mut buf, Proto::Line, false, 1, b"");
        push_request(&mut buf, Proto::Line, false, 2, b"");
        assert_eq!(buf, b"GET key:1\nGET key:2\n");
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
