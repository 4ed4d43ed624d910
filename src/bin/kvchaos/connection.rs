//! One client connection to a node, over the line protocol or RESP: send an operation, and
//! classify what came back as the checker needs it (ok, definitely failed, or unknown).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use clap::ValueEnum;
use kvstore::chaos::history::{Call, Outcome};

/// How long a client waits for an answer before it counts the operation as unknown.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// The password every connection logs in with (`--pass`), set once at start: the nodes the
/// run starts require it.
static PASSWORD: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Log every connection of the run in with `password` (once, before any connection opens).
pub fn set_password(password: String) {
    let _ = PASSWORD.set(password);
}

/// The run's password, if it has one.
pub fn password() -> Option<&'static str> {
    PASSWORD.get().map(String::as_str)
}

/// The longest value a reply may carry (the values kvchaos writes are short).
const MAX_REPLY_BYTES: usize = 1 << 20;

/// The wire protocol clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Protocol {
    /// `PUT key value` lines (our node only).
    Line,
    /// RESP, as Redis clients speak it (`SET`, `GET`, `DEL`).
    Resp,
}

/// An open connection and its reader.
pub struct Connection {
    /// Where requests are written.
    stream: TcpStream,
    /// Where answers are read.
    reader: BufReader<TcpStream>,
    /// How requests are framed.
    protocol: Protocol,
    /// The text of the last error answered on it (after `ERROR: `), if the last answer was
    /// one: a `READONLY` from a failover cluster member names the primary.
    pub last_error: Option<String>,
}

impl Connection {
    /// Connect with the answer timeout, or `None` if the node cannot be reached now. The
    /// connection counts as open once the node has answered a `PING` through it: a proxy
    /// accepts a connection even while its node is down, and an operation sent on such a
    /// connection would be recorded as unknown although it never reached a node.
    pub fn open(addr: SocketAddr, protocol: Protocol) -> Option<Connection> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
        stream.set_read_timeout(Some(ANSWER_TIMEOUT)).ok()?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT)).ok()?;
        let _ = stream.set_nodelay(true);
        let reader = BufReader::new(stream.try_clone().ok()?);
        let mut connection = Connection {
            stream,
            reader,
            protocol,
            last_error: None,
        };
        // In the connection's own protocol: our node fixes a connection's protocol from its
        // first line, and takes `PING\r\n` (as Redis tools end lines) for RESP.
        let ping: &[u8] = match protocol {
            Protocol::Line => b"PING\n",
            Protocol::Resp => b"*1\r\n$4\r\nPING\r\n",
        };
        if let Some(password) = password() {
            // Logged in first, in the same write: the `PING` then proves the login too.
            let auth = match protocol {
                Protocol::Line => format!("AUTH {password}\n"),
                Protocol::Resp => resp(&["AUTH", password]),
            };
            connection.stream.write_all(auth.as_bytes()).ok()?;
            let ok = connection.read_line()?;
            (ok == "OK" || ok == "+OK").then_some(())?;
        }
        connection.stream.write_all(ping).ok()?;
        let pong = connection.read_line()?;
        (pong == "PONG" || pong == "+PONG").then_some(connection)
    }

    /// Send `call` on `key` and say what it did. `Unknown` means the answer did not come (or
    /// made no sense): the connection should not be used again, as the answer may still come.
    pub fn call(&mut self, key: &str, call: &Call) -> Outcome {
        let request = encode(self.protocol, key, call, None);
        if self.stream.write_all(request.as_bytes()).is_err() {
            return Outcome::Unknown;
        }
        self.answer(call)
    }

    /// Send `call` on `key` with `LASTPOS` after it, and `ROLE` last if `role` (line
    /// protocol), in one write, so all are answered in one batch: a read waits first for the
    /// position `after` names, if any (`GET key AFTER token timeout-ms`). Answers what the
    /// call did, the token `LASTPOS` answered (what the connection's replies have shown it,
    /// the call's included) and the node's role, each if its answer came; without them the
    /// connection should not be used again.
    pub fn call_with_token(
        &mut self,
        key: &str,
        call: &Call,
        after: Option<(&str, u64)>,
        role: bool,
    ) -> (Outcome, Option<String>, Option<String>) {
        let mut request = encode(self.protocol, key, call, after);
        request.push_str(&match self.protocol {
            Protocol::Line => "LASTPOS\n".to_string(),
            Protocol::Resp => resp(&["LASTPOS"]),
        });
        if role {
            request.push_str("ROLE\n");
        }
        if self.stream.write_all(request.as_bytes()).is_err() {
            return (Outcome::Unknown, None, None);
        }
        let outcome = self.answer(call);
        if outcome == Outcome::Unknown {
            return (outcome, None, None);
        }
        let token = match self.protocol {
            Protocol::Line => self.read_line().map(Reply::from_line),
            Protocol::Resp => self.read_resp(),
        };
        let Some(Reply::Value(token)) = token else {
            return (outcome, None, None);
        };
        let role = if role { self.read_line() } else { None };
        (outcome, Some(token), role)
    }

    /// The answer to `call`, sent already.
    fn answer(&mut self, call: &Call) -> Outcome {
        let answer = match self.protocol {
            Protocol::Line => self.read_line().map(Reply::from_line),
            Protocol::Resp => self.read_resp(),
        };
        self.last_error = match &answer {
            Some(Reply::Error(error)) => Some(error.clone()),
            _ => None,
        };
        answer.map_or(Outcome::Unknown, |reply| reply.outcome(call))
    }

    /// `GET key` and `ROLE` in one write (line protocol), so that both are answered in one
    /// batch: the read's outcome, and the node's role as it stood after the read was answered
    /// (`primary ...` or `replica primary=ADDR ...`), if that answer came. A member of a
    /// failover cluster checks its lease before it answers a batch as the primary, so a read
    /// answered by a node that was the primary after it answered is a primary read.
    pub fn get_with_role(&mut self, key: &str) -> (Outcome, Option<String>) {
        if self
            .stream
            .write_all(format!("GET {key}\nROLE\n").as_bytes())
            .is_err()
        {
            return (Outcome::Unknown, None);
        }
        let outcome = self.answer(&Call::Get);
        if outcome == Outcome::Unknown {
            return (outcome, None);
        }
        (outcome, self.read_line())
    }

    /// One request line and its one-line answer (line protocol): `ROLE`.
    pub fn request(&mut self, line: &str) -> Option<String> {
        self.stream.write_all(format!("{line}\n").as_bytes()).ok()?;
        self.read_line()
    }

    /// One answer line without its line ending, or `None` if none came.
    fn read_line(&mut self) -> Option<String> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(n) if n > 0 && line.ends_with('\n') => {
                Some(line.trim_end_matches(['\n', '\r']).to_string())
            }
            _ => None,
        }
    }

    /// One RESP reply (the simple kinds `SET`, `GET` and `DEL` give).
    fn read_resp(&mut self) -> Option<Reply> {
        let line = self.read_line()?;
        let (kind, rest) = line.split_at_checked(1)?;
        match kind {
            "+" => Some(Reply::Status(rest.to_string())),
            "-" => Some(Reply::Error(rest.to_string())),
            ":" => rest.parse().ok().map(Reply::Integer),
            "$" if rest == "-1" => Some(Reply::Nil),
            "$" => {
                let len: usize = rest.parse().ok().filter(|&n| n <= MAX_REPLY_BYTES)?;
                let mut value = vec![0u8; len + 2];
                self.reader.read_exact(&mut value).ok()?;
                value.truncate(len);
                String::from_utf8(value).ok().map(Reply::Value)
            }
            _ => None,
        }
    }
}

/// The request for `call` on `key`; a read waits for the position `after` names first.
fn encode(protocol: Protocol, key: &str, call: &Call, after: Option<(&str, u64)>) -> String {
    match (protocol, call, after) {
        (Protocol::Line, Call::Put(value), _) => format!("PUT {key} {value}\n"),
        (Protocol::Line, Call::Get, None) => format!("GET {key}\n"),
        (Protocol::Line, Call::Get, Some((token, ms))) => {
            format!("GET {key} AFTER {token} {ms}\n")
        }
        (Protocol::Line, Call::Del, _) => format!("DEL {key}\n"),
        (Protocol::Resp, Call::Put(value), _) => resp(&["SET", key, value]),
        (Protocol::Resp, Call::Get, None) => resp(&["GET", key]),
        (Protocol::Resp, Call::Get, Some((token, ms))) => {
            resp(&["GET", key, "AFTER", token, &ms.to_string()])
        }
        (Protocol::Resp, Call::Del, _) => resp(&["DEL", key]),
    }
}

/// A request as a RESP array of bulk strings.
fn resp(words: &[&str]) -> String {
    let mut request = format!("*{}\r\n", words.len());
    for word in words {
        request.push_str(&format!("${}\r\n{word}\r\n", word.len()));
    }
    request
}

/// An answer, whichever protocol carried it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    /// `OK` (a line, or a RESP status).
    Status(String),
    /// An error, with its text (after `ERROR: ` or `-`).
    Error(String),
    /// A RESP integer (`DEL`'s count).
    Integer(i64),
    /// Nothing there (`NOT_FOUND`, or a RESP nil).
    Nil,
    /// A value.
    Value(String),
}

impl Reply {
    /// A line-protocol answer: `OK`, `NOT_FOUND`, `ERROR: ...`, or a value.
    fn from_line(line: String) -> Reply {
        if let Some(error) = line.strip_prefix("ERROR: ") {
            return Reply::Error(error.to_string());
        }
        match line.as_str() {
            "OK" => Reply::Status(line),
            "NOT_FOUND" => Reply::Nil,
            _ => Reply::Value(line),
        }
    }

    /// What this answer to `call` means for the checker. An error that says the operation
    /// was not done is `Failed`; a persistence failure of a write is not one of them (the
    /// write was applied and its durability is unknown), and neither is an answer that does
    /// not fit the call. A read that got an error did nothing, whatever the error.
    fn outcome(self, call: &Call) -> Outcome {
        match (call, self) {
            (Call::Get, Reply::Error(_)) => Outcome::Failed,
            (_, Reply::Error(error)) => {
                let error = error.strip_prefix("ERR ").unwrap_or(&error);
                let error = error.strip_prefix("NOREPLICAS ").unwrap_or(error);
                // Applied, but its acknowledgement could not be given (a failover cluster's
                // primary without enough replicas or without its lease): it may survive.
                if error.starts_with("persistence failed") || error.starts_with("not acknowledged")
                {
                    Outcome::Unknown
                } else {
                    Outcome::Failed
                }
            }
            (Call::Put(_), Reply::Status(status)) if status == "OK" => Outcome::Written,
            (Call::Del, Reply::Status(status)) if status == "OK" => Outcome::Deleted(true),
            (Call::Del, Reply::Nil) => Outcome::Deleted(false),
            (Call::Del, Reply::Integer(n)) => Outcome::Deleted(n > 0),
            (Call::Get, Reply::Nil) => Outcome::Read(None),
            (Call::Get, Reply::Value(value)) => Outcome::Read(Some(value)),
            _ => Outcome::Unknown,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_mean_the_same_in_both_protocols() {
        let put = Call::Put("v".into());
        let ok = Reply::from_line("OK".into());
        assert_eq!(ok.clone().outcome(&put), Outcome::Written);
        assert_eq!(ok.outcome(&Call::Del), Outcome::Deleted(true));
        assert_eq!(
            Reply::Integer(0).outcome(&Call::Del),
            Outcome::Deleted(false)
        );
        assert_eq!(
            Reply::from_line("NOT_FOUND".into()).outcome(&Call::Get),
            Reply::Nil.outcome(&Call::Get)
        );
        assert_eq!(
            Reply::from_line("v".into()).outcome(&Call::Get),
            Outcome::Read(Some("v".into()))
        );
    }

    #[test]
    fn a_persistence_failure_is_unknown_and_other_errors_failed() {
        let put = Call::Put("v".into());
        for error in [
            "persistence failed: disk full",
            "ERR persistence failed: x",
            "not acknowledged: this node could not confirm it is still the primary",
        ] {
            assert_eq!(Reply::Error(error.into()).outcome(&put), Outcome::Unknown);
        }
        assert_eq!(
            Reply::Error("persistence failed: x".into()).outcome(&Call::Get),
            Outcome::Failed
        );
        for error in [
            "READONLY You can't write",
            "MISCONF Errors writing",
            "max clients reached",
            "writes refused until the disk recovers (not applied): disk full",
            "READONLY: no primary right now (an election is under way); not applied",
            "READONLY: this node is a replica; write to the primary at 127.0.0.1:1",
        ] {
            assert_eq!(Reply::Error(error.into()).outcome(&put), Outcome::Failed);
        }
        // An answer that does not fit the call proves nothing either way.
        assert_eq!(Reply::Integer(1).outcome(&put), Outcome::Unknown);
    }

    #[test]
    fn a_read_may_wait_for_a_token_in_both_protocols() {
        let get_after = |protocol| encode(protocol, "k", &Call::Get, Some(("1:ab:7", 500)));
        assert_eq!(get_after(Protocol::Line), "GET k AFTER 1:ab:7 500\n");
        assert_eq!(
            get_after(Protocol::Resp),
            resp(&["GET", "k", "AFTER", "1:ab:7", "500"])
        );
    }

    #[test]
    fn resp_requests_are_arrays_of_bulk_strings() {
        assert_eq!(resp(&["GET", "k1"]), "*2\r\n$3\r\nGET\r\n$2\r\nk1\r\n");
    }
}
