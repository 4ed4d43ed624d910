//! Command parsing, in both protocols: whatever the arguments or the line, parsing and
//! planning a command never panics, and what it answers does not depend on things the
//! protocols say do not matter.

use bytes::Bytes;
use kv_actors::protocol::command::{self, Command, Request};
use kv_actors::protocol::line_commands;

use crate::gen;

/// RESP requests made of arguments from `data` (see [`gen::args`]), and the lines of `data`
/// as line-protocol requests.
///
/// Properties: `from_resp` leaves the argument list empty for the next request; a command's
/// name is case-insensitive; blanks before a line's verb change nothing, and neither does
/// the `\r` of a `\r\n` line end; an error a line gets back is one line (it is sent after
/// `ERROR: `, and a line break in it would let a request forge replies); every command
/// parsed plans without panicking.
pub fn commands(data: &[u8]) {
    let args = gen::args(data);
    let parsed = from_resp(args.clone());
    if let Some((name, rest)) = args.split_first() {
        for case in [name.to_ascii_uppercase(), name.to_ascii_lowercase()] {
            let mut again = vec![Bytes::from(case)];
            again.extend_from_slice(rest);
            let other = from_resp(again);
            match (&parsed, &other) {
                (Some(Ok(a)), Some(Ok(b))) => assert_eq!(a, b, "{args:?}"),
                (a, b) => assert_eq!(
                    a.as_ref().map(Result::is_ok),
                    b.as_ref().map(Result::is_ok),
                    "{args:?}"
                ),
            }
        }
    }
    plan(parsed);

    for line in data.split(|&b| b == b'\n') {
        let parsed = line_commands::parse(&Bytes::copy_from_slice(line));
        if let Some(Err(error)) = &parsed {
            let text = error.to_string();
            assert!(
                !text.contains(['\n', '\r']),
                "the error for line {line:?} breaks the reply line: {text:?}"
            );
        }
        let mut indented = b" \t".to_vec();
        indented.extend_from_slice(line);
        assert_eq!(
            line_commands::parse(&Bytes::from(indented)),
            parsed,
            "blanks before {line:?}"
        );
        if !line.ends_with(b"\r") {
            let mut crlf = line.to_vec();
            crlf.push(b'\r');
            assert_eq!(
                line_commands::parse(&Bytes::from(crlf)),
                parsed,
                "{line:?} ended by \\r\\n"
            );
        }
        plan(parsed);
    }
}

/// Parse `args` as one RESP request, checking the list is left empty.
fn from_resp(mut args: Vec<Bytes>) -> Option<Request> {
    let parsed = command::from_resp(&mut args);
    assert!(args.is_empty(), "from_resp left arguments behind");
    parsed
}

/// Plan a parsed command as a session would.
fn plan(parsed: Option<Request>) {
    if let Some(Ok(command)) = parsed {
        let _ = Command::is_write(&command);
        let mut ops = Vec::new();
        let _ = command.plan(&mut ops);
    }
}
